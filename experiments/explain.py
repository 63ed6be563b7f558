"""``shoprank explain``: why did the agent rank that first? Feature-group attributions of one slate, or of many.

One query::

    shoprank explain --checkpoint runs/ppo/checkpoint --query "red summer dress" --out runs/ppo/explain

samples a shopper (``--seed``), plays ``--history-queries`` queries of their session with the agent (so the
history attention has clicked products to look at), then ranks the candidates the retriever returns for
``--query``. For every shown product the score is split over feature groups (text vector, photo vector, price,
retriever, shopper profile, session, query, history; :mod:`experiments.attribution`) by exact Shapley values
(``--method shapley``, the default) or integrated gradients (``--method ig``). Written to ``--out``:
``explain.html`` (one self-contained page: the slate and the retriever's order as photo strips, the
attribution table with thumbnails, the attention heatmaps), ``attributions.csv`` and ``attributions.md``.

The global view::

    shoprank explain --global --checkpoint runs/ppo/checkpoint --seeds 5 --sessions 100 --out runs/ppo/explain

plays the same shoppers with the intact agent and with one group scrambled at a time
(:class:`~experiments.attribution.PermutedGroupAgent`): the drop in reward per session, with a 95% CI over
seeds, is the group's importance. Written: ``global_importance.csv``, ``global_importance.md``,
``sessions.csv``.

Checkpoints are loaded as ``shoprank evaluate`` loads them (:mod:`agents.checkpoint`: data only, plug-ins only
when named with ``--simulator`` / ``--plugin`` or ``--trust-plugins``).
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from encoders.errors import ConfigError, InputNotFoundError, command_errors
from experiments.compare import parse_seeds
from experiments.evaluate_cli import check_out, parse_plugins

SET_ATTENTION_NOTE = ("the network has no set-attention layer (e.g. the ppo_scratch preset, layers=0): candidates "
                      "are scored without looking at each other")


# -- loading a checkpoint (shared with ``shoprank watch``) ----------------------------------------------------
def add_checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    """``--checkpoint``, ``--catalog`` and the plug-in flags of ``explain`` and ``watch``."""
    p.add_argument("--checkpoint", type=Path, required=True, help="RL checkpoint folder (agent.json + policy.pt)")
    p.add_argument("--catalog", default=None,
                   help="'synthetic' or a CSV catalog folder (default: the checkpoint's training catalog)")
    p.add_argument("--simulator", default=None, help="the simulator plug-in to use instead of the checkpoint's")
    p.add_argument("--plugin", action="append", default=[], metavar="FIELD=NAME",
                   help="a plug-in you choose for an env-config field (world.text_encoder, world.image_encoder, "
                        "world.fusion, simulator); repeatable")
    p.add_argument("--trust-plugins", action="store_true",
                   help="import the plug-ins the checkpoint names (only for checkpoints you trust)")


def load_checkpoint(args: argparse.Namespace, command: str) -> tuple[Any, Any, Any, str]:
    """``(agent, env_config, world, env_id)`` of ``args.checkpoint`` (a :class:`~agents.checkpoint.LoadedAgent`;
    ``env_id`` the ``Box``-action env it was trained in).

    Raises:
        InputNotFoundError: no checkpoint there. CheckpointError: a bad one (see :mod:`agents.checkpoint`).
    """
    from agents.checkpoint import load_policy, read_checkpoint
    from envs.world import get_world

    if not args.checkpoint.exists():
        raise InputNotFoundError(f"checkpoint {args.checkpoint} does not exist.")
    meta = read_checkpoint(args.checkpoint, parse_plugins(args.plugin, args.simulator, None), args.trust_plugins)
    config = meta.env_config
    if args.catalog is not None:
        config = dataclasses.replace(config, world=dataclasses.replace(config.world, catalog=str(args.catalog)))
    world = get_world(config.world)
    agent = load_policy(args.checkpoint, meta, config)
    fingerprint = world.catalog.fingerprint()
    if meta.catalog_fingerprint is not None and meta.catalog_fingerprint != fingerprint:
        print(f"shoprank {command}: warning: the checkpoint was trained on catalog {meta.catalog_fingerprint}, but "
              f"this run uses catalog {fingerprint} ({config.world.catalog}); the policy has never seen these "
              "products.", file=sys.stderr)
    return agent, config, world, meta.env_id


def make_env(agent: Any, config: Any, world: Any, env_id: str = "ShopRank-v0", render_mode: str | None = None):
    """The single env an agent acts in: ``env_id`` or, for a per-slot agent, its sequential twin
    (:data:`envs.SEQUENTIAL_IDS`), on a shared world."""
    import gymnasium as gym

    import envs

    return gym.make(envs.sequential_id(env_id) if agent.sequential else env_id, config=config, world=world,
                    render_mode=render_mode)


# -- one query ---------------------------------------------------------------------------------------------
@dataclass
class QueryExplanation:
    """The explained slate of one query for one shopper.

    Attributes:
        query: The query text.
        candidates: ``int64 (K,)`` catalog rows the retriever returned (its order), ``-1`` padded.
        positions: ``int64 (N,)`` candidate positions shown per slot, ``-1`` = empty.
        attributions: Per shown slot, the :class:`~experiments.attribution.Attribution` of the observation it
            was chosen from (one shared observation for a per-query agent).
        attention: Attention maps of the first slot's observation (:func:`~experiments.attribution.attention_maps`).
        history: ``int64 (H,)`` the shopper's clicked products the agent sees, ``-1`` padded.
        notes: What the reader should know (fusion split, absent layers).
    """

    query: str
    candidates: np.ndarray
    positions: np.ndarray
    attributions: list[Any]
    attention: dict[str, np.ndarray]
    history: np.ndarray
    notes: list[str]

    @property
    def groups(self) -> list[str]:
        return self.attributions[0].groups if self.attributions else []

    def slot_values(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per shown slot: ``values (n, G)``, ``scores (n,)``, ``baseline scores (n,)``, ``gap (n,)``."""
        rows = [(a.values[p], a.scores[p], a.baseline_scores[p], a.gap[p])
                for a, p in zip(self.attributions, self.positions) if p >= 0]
        if not rows:
            g = len(self.groups)
            return np.zeros((0, g)), np.zeros(0), np.zeros(0), np.zeros(0)
        values, scores, base, gap = zip(*rows)
        return np.stack(values), np.array(scores), np.array(base), np.array(gap)


def session_observation(agent: Any, env: Any, seed: int, history_queries: int
                        ) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """A sampled shopper's observation after up to ``history_queries`` queries played by ``agent``: profile,
    session counters and clicked-product history (without the sequential env's keys), the catalog rows of
    that history (``int64 (H,)``, -1 padded) and the number of queries played.

    Only states the agent acts in are returned: a query after which the session ends (the shopper leaves, or
    the budget, e.g. ``max_queries = 1``, runs out) is not counted, and the observation before it is used."""
    obs, _ = env.reset(seed=seed)
    core = env.unwrapped.core
    masks = getattr(env.unwrapped, "action_masks", None)
    context, history, played = core.observation(), core.core.sessions.history[0].copy(), 0
    while played < history_queries:
        extra = {"action_masks": masks()} if agent.sequential else {}
        action, _ = agent.predict(obs, deterministic=True, **extra)
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
        if "shown_ids" in info:
            context, history, played = core.observation(), core.core.sessions.history[0].copy(), played + 1
    return context, history, played


def with_query(obs: dict[str, np.ndarray], world: Any, core: Any, query: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``obs`` with ``query``'s vector and retrieved candidates (the env's own retrieval table), and the
    candidates' catalog rows ``int64 (K,)``."""
    table = core.core.table
    row = int(table.rows([query])[0])
    out = dict(obs)
    out["query"], out["candidates"], out["mask"] = table.query_obs[row], table.cand[row], table.mask[row]
    return out, table.ids[row].copy()


def slot_observations(agent: Any, net: Any, obs: dict[str, np.ndarray], slate_size: int
                      ) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """The agent's slate for ``obs`` and the observation each slot was chosen from.

    A per-query agent ranks once (the top ``N`` scores, ties in retriever order); a per-slot agent picks the
    highest-scoring selectable candidate slot by slot (its deterministic action), with ``placed`` / ``slot``
    updated after each pick. Returns ``positions int64 (N,)`` (-1 = empty) and one observation per slot.
    """
    import torch

    from envs.core import slate_positions
    from experiments.attribution import scores_of, to_batch

    k = len(obs["mask"])
    valid = np.asarray(obs["mask"]) > 0.5
    if not agent.sequential:
        with torch.no_grad():
            scores = scores_of(net, to_batch(obs))[0].numpy()
        positions = slate_positions(scores[None], valid[None], slate_size)[0]
        return positions, [obs] * slate_size
    positions = np.full(slate_size, -1, dtype=np.int64)
    placed = np.zeros(k, dtype=np.float32)
    observations = []
    for slot in range(slate_size):
        slot_obs = {**obs, "placed": placed.copy(), "slot": np.eye(slate_size, dtype=np.float32)[slot]}
        observations.append(slot_obs)
        selectable = valid & (placed < 0.5)
        if not selectable.any():
            continue
        with torch.no_grad():
            scores = scores_of(net, to_batch(slot_obs))[0].numpy()
        pick = int(np.flatnonzero(selectable)[np.argmax(scores[selectable])])
        positions[slot], placed[pick] = pick, 1.0
    return positions, observations


def explain_query(agent: Any, config: Any, world: Any, query: str, seed: int = 0, method: str = "shapley",
                  history_queries: int = 2, net: Any = None, env_id: str = "ShopRank-v0",
                  **method_kwargs: Any) -> QueryExplanation:
    """Rank ``query``'s candidates for a sampled shopper and attribute each shown product's score.

    Args:
        agent: A loaded agent (``predict``, ``policy``, ``sequential``).
        config: The env config; world: its world.
        query: Query text (retrieved like any shopper's query).
        seed: Samples the shopper (the env's reset seed).
        method: Key of :data:`~experiments.attribution.METHODS`.
        history_queries: Queries of the shopper's session played by the agent first.
        net: The scoring network to explain (default the agent's; the sanity check passes a randomised one).
        env_id: The ``Box``-action env id the agent was trained in (its sequential twin for a per-slot agent).
        method_kwargs: Passed to the method (``steps`` for ``ig``).
    """
    from experiments.attribution import METHODS, attention_maps, feature_groups, score_network

    if method not in METHODS:
        raise ConfigError(f"unknown attribution method {method!r}; choose one of {sorted(METHODS)}.")
    if not query.strip():
        raise ConfigError("--query must not be empty.")
    net = score_network(agent.policy) if net is None else net
    env = make_env(agent, config, world, env_id)
    context, history, played = session_observation(agent, env, seed, history_queries)
    obs, candidates = with_query(context, world, env.unwrapped.core, query)
    layout = env.unwrapped.layout
    all_groups = feature_groups(layout, world.fusion)
    groups = [g for g in all_groups if not g.discrete]
    positions, observations = slot_observations(agent, net, obs, config.slate_size)
    explain = METHODS[method]
    attributions, cache = [], {}
    for slot_obs in observations:
        key = id(slot_obs)
        if key not in cache:
            cache[key] = explain(net, slot_obs, groups, **method_kwargs)
        attributions.append(cache[key])
    notes = [f"the shopper's state after {played} earlier queries of their session played by the agent"
             + (f" (of {history_queries} asked: the session would have ended)" if played < history_queries else "")]
    if not any(g.name == "photo" for g in groups):
        notes.append(f"the fusion '{config.world.fusion}' mixes text and photo in every column of the product "
                     "vector, so they are attributed as one group, 'product vector'")
    discrete = [g.name for g in all_groups if g.discrete]
    if discrete:
        notes.append(f"{', '.join(repr(n) for n in discrete)}: integer ids (hashed catalog attributes) are not split by "
                     "Shapley values or integrated gradients (ids have no mean and no path between them); "
                     "`explain --global` measures them by scrambling them across the candidates")
    elif "attributes" not in [g.name for g in groups]:
        notes.append("the observation has no attribute features (category, colour, ...): no 'attributes' group")
    attention = attention_maps(net, observations[0])
    if not getattr(net, "attention", None):
        notes.append(SET_ATTENTION_NOTE)
    if "history" not in attention:
        notes.append("no clicked products in the shopper's history yet: the history attention was not used")
    env.close()
    return QueryExplanation(query, candidates, positions, attributions, attention, history, notes)


def group_column(group: str) -> str:
    """The CSV column of a group's attribution (``"photo"`` -> ``"attr_photo"``)."""
    return "attr_" + group.replace(" ", "_")


def explanation_table(ex: QueryExplanation, catalog: Any) -> pd.DataFrame:
    """One row per shown product: slot, retriever rank, product, price, score, baseline score, each group's
    attribution, their sum and the completeness gap."""
    values, scores, base, gap = ex.slot_values()
    rows = []
    for i, (slot, pos) in enumerate((s, p) for s, p in enumerate(ex.positions) if p >= 0):
        item = int(ex.candidates[pos])
        rows.append({"query": ex.query, "slot": slot + 1, "retriever_rank": int(pos) + 1,
                     "product_id": str(catalog.ids[item]), "title": str(catalog.titles[item]),
                     "price": float(catalog.prices[item]), "score": scores[i], "baseline_score": base[i],
                     **{group_column(g): values[i, j] for j, g in enumerate(ex.groups)},
                     "attribution_sum": values[i].sum(), "completeness_gap": gap[i],
                     "method": ex.attributions[0].method})
    return pd.DataFrame(rows)


def attributions_markdown(table: pd.DataFrame, groups: Sequence[str]) -> str:
    """The attribution table as Markdown: one row per shown product, one column per group."""
    head = "| slot | product | retriever rank | price | score | " + " | ".join(groups) + " |"
    lines = [head, "|" + "---|" * (5 + len(groups))]
    for r in table.to_dict("records"):
        values = " | ".join(f"{r[group_column(g)]:+.2f}" for g in groups)
        lines.append(f"| {r['slot']} | {r['title']} | {r['retriever_rank']} | {r['price']:.2f} | {r['score']:+.2f} | "
                     f"{values} |")
    base = float(table["baseline_score"].iloc[0]) if len(table) else float("nan")
    return "\n".join(lines) + f"\n\nBaseline score (all candidates alike, no shopper context): {base:+.2f}.\n"


# -- the page ----------------------------------------------------------------------------------------------
def _figure_uri(fig) -> str:
    import base64

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _short(title: str, n: int = 28) -> str:
    return title if len(title) <= n else title[: n - 1] + "…"


def attention_figures(ex: QueryExplanation, catalog: Any) -> list[tuple[str, str]]:
    """``(title, data URI)`` heatmaps of the attention maps: rows = candidates (shown slots first, then the
    rest in retriever order), columns = the attended candidates or clicked products."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [int(p) for p in ex.positions if p >= 0]
    order = shown + [i for i in range(len(ex.candidates)) if i not in shown and ex.candidates[i] >= 0]
    labels = [(f"slot {shown.index(i) + 1}: " if i in shown else f"retriever #{i + 1}: ") + _short(str(catalog.titles[ex.candidates[i]]))
              for i in order]
    out = []
    for name, weights in ex.attention.items():
        if name == "history":
            cols = [j for j, item in enumerate(ex.history) if item >= 0]
            matrix = weights[np.ix_(order, cols)]
            xlabels = [_short(str(catalog.titles[ex.history[j]])) for j in cols]
            title = "History attention: each candidate over the shopper's clicked products"
        else:
            matrix = weights[np.ix_(order, order)]
            xlabels = labels
            title = f"Set attention (layer {name.split()[-1]}): each candidate over the other candidates"
        fig, ax = plt.subplots(figsize=(2.5 + 0.28 * len(xlabels), 1.5 + 0.24 * len(labels)))
        image = ax.imshow(matrix, cmap="viridis", aspect="auto", vmin=0.0)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xticks(range(len(xlabels)), xlabels, fontsize=7, rotation=90)
        fig.colorbar(image, ax=ax, fraction=0.03, label="attention weight (mean over heads)")
        out.append((title, _figure_uri(fig)))
    return out


def _cell(value: float, scale: float) -> str:
    strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    colour = (f"rgba(44,160,44,{0.75 * strength:.2f})" if value >= 0 else f"rgba(214,39,40,{0.75 * strength:.2f})")
    return f'<td style="background:{colour};text-align:right">{value:+.3f}</td>'


def explanation_html(ex: QueryExplanation, table: pd.DataFrame, catalog: Any, heading: str) -> str:
    """The self-contained page of one explained slate (images inline)."""
    from envs.render import SlateView, data_uri, draw_slate

    n = len(ex.positions)
    values, scores, _, gap = ex.slot_values()
    slot_scores = np.full(n, np.nan)
    slot_scores[ex.positions >= 0] = scores
    rows = np.where(ex.positions >= 0, ex.candidates[np.maximum(ex.positions, 0)], -1)
    slate = draw_slate(catalog, SlateView(rows, ranks=ex.positions, scores=slot_scores,
                                          caption=[f"query: {ex.query!r}   the agent's slate", heading]))
    top = ex.candidates[:n]
    retriever = draw_slate(catalog, SlateView(top, ranks=np.where(top >= 0, np.arange(len(top)), -1),
                                              caption=[f"query: {ex.query!r}   the retriever's order", ""]))
    photos = catalog.load_images(rows[rows >= 0]) if (rows >= 0).any() else []
    scale = float(np.abs(values).max()) if values.size else 1.0
    head = "".join(f"<th>{html.escape(g)}</th>" for g in ex.groups)
    body = []
    for i, record in enumerate(table.itertuples(index=False)):
        body.append(
            f'<tr><td>{record.slot}</td><td><img src="{data_uri(photos[i])}" width="48" height="48"></td>'
            f"<td>{html.escape(record.title)}</td><td>{record.retriever_rank}</td><td>{record.price:.2f}</td>"
            f"<td>{record.score:+.3f}</td><td>{record.baseline_score:+.3f}</td>"
            + "".join(_cell(v, scale) for v in values[i]) + f"<td>{gap[i]:.1e}</td></tr>")
    method = ex.attributions[0].method if ex.attributions else "shapley"
    method_text = ("exact Shapley values over the groups (they sum to score − baseline score)" if method == "shapley"
                   else "integrated gradients, Gauss-Legendre quadrature in float64 (the gap is the quadrature error)")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in ex.notes)
    figures = "".join(f"<h3>{html.escape(t)}</h3><img src=\"{uri}\">" for t, uri in attention_figures(ex, catalog))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>shoprank explain: {html.escape(ex.query)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1300px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ddd;padding:3px 6px}} th{{background:#f4f4f4}} img{{max-width:100%}}</style></head><body>
<h1>Why this slate? <small>{html.escape(ex.query)}</small></h1>
<p>{html.escape(heading)}</p>
<img src="{data_uri(slate)}" alt="the agent's slate"><br><img src="{data_uri(retriever)}" alt="the retriever's order">
<h2>Each shown product's score, split over feature groups</h2>
<p>Method: {method_text}. Baseline: every candidate-feature group at its mean over this query's candidates (all
candidates look alike), every context group (profile, session, query, history) at zero. Green raises the score,
red lowers it; a group's value is over the features of <em>all</em> candidates (the network compares them).</p>
<table><tr><th>slot</th><th>picture</th><th>product</th><th>retriever rank</th><th>price</th><th>score</th>
<th>baseline score</th>{head}<th>completeness gap</th></tr>
{''.join(body)}</table>
<ul>{notes}</ul>
<h2>Attention</h2>{figures or '<p>No attention layer was used for this observation.</p>'}
</body></html>
"""


# -- global view -------------------------------------------------------------------------------------------
def global_importance(agent: Any, config: Any, world: Any, seeds: Sequence[int], sessions: int,
                      progress: bool = True, env_id: str = "ShopRank-v0") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reward drop when each feature group is scrambled (:class:`~experiments.attribution.PermutedGroupAgent`).

    Returns:
        ``(importance, sessions)``: one row per group, ``group, reward_drop, ci95_low, ci95_high, n_seeds,
        relative_drop`` (drop / intact reward; CIs over seeds), and the per-session metrics of every agent.
    """
    import gymnasium as gym

    from experiments.attribution import PermutedGroupAgent, feature_groups
    from experiments.evaluate import evaluate_agents, paired_differences

    env = gym.make(env_id, config=config, world=world)
    groups = feature_groups(env.unwrapped.layout, world.fusion)
    agents = {"intact": lambda env, seed: agent}
    for index, group in enumerate(groups):
        agents[f"scrambled {group.name}"] = (lambda env, seed, group=group, index=index:
                                             PermutedGroupAgent(agent, group, seed=int(seed) * 1000 + index))
    df = evaluate_agents(agents, config=config, seeds=list(seeds), n_sessions=sessions, env=env, progress=progress)
    paired = paired_differences(df, baseline="intact", ci_over="seeds")
    reward = paired[(paired["metric"] == "reward") & (paired["agent"] != "intact")]
    def drop(column: str) -> np.ndarray:
        return 0.0 - reward[column].to_numpy()  # (0.0 - x: no "-0.0" for a group that changes nothing)

    importance = pd.DataFrame({
        "group": [name.removeprefix("scrambled ") for name in reward["agent"]], "reward_drop": drop("mean_diff"),
        "ci95_low": drop("ci95_high"), "ci95_high": drop("ci95_low"), "n_seeds": reward["n"].to_numpy(),
        "relative_drop": drop("rel_diff")})
    intact = df[df["agent"] == "intact"].groupby("seed")["reward"].mean()
    importance.attrs["intact_reward"] = float(intact.mean())
    return importance, df


def importance_markdown(importance: pd.DataFrame) -> str:
    """The importance table as Markdown (drop in reward per session, 95% CI over seeds, share of intact)."""
    lines = [f"Intact agent: reward {importance.attrs.get('intact_reward', float('nan')):.3f} per session.", "",
             "| feature group scrambled | reward drop per session [95% CI] | share of the intact reward |",
             "|---|---|---|"]
    for r in importance.itertuples(index=False):
        lines.append(f"| {r.group} | {r.reward_drop:+.3f} [{r.ci95_low:+.3f}, {r.ci95_high:+.3f}] | "
                     f"{100 * r.relative_drop:+.1f}% |")
    return "\n".join(lines) + "\n"


# -- CLI ---------------------------------------------------------------------------------------------------
def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shoprank explain", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_checkpoint_arguments(p)
    p.add_argument("--query", default=None, help="the query text to explain")
    p.add_argument("--seed", type=int, default=0, help="samples the shopper")
    p.add_argument("--history-queries", type=int, default=2,
                   help="queries of the shopper's session the agent plays first (gives a click history)")
    p.add_argument("--method", default="shapley", help="attribution method: shapley (exact) or ig")
    p.add_argument("--steps", type=int, default=64, help="--method ig: quadrature nodes")
    p.add_argument("--global", dest="global_view", action="store_true",
                   help="feature-group importance: the drop in reward when each group is scrambled")
    p.add_argument("--seeds", type=parse_seeds, default=parse_seeds("5"), help="--global: count or list of seeds")
    p.add_argument("--sessions", type=int, default=100, help="--global: sessions per seed")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true")
    return p


def check_arguments(args: argparse.Namespace) -> None:
    """The checks that need no checkpoint (exact messages; ``tests/test_explain.py``)."""
    from experiments.attribution import METHODS

    if not args.global_view and args.query is None:
        raise ConfigError("give --query TEXT (one slate explained) or --global (feature-group importance).")
    if args.global_view and args.query is not None:
        raise ConfigError("--query and --global are exclusive: --global scores the groups over whole sessions.")
    if args.method not in METHODS:
        raise ConfigError(f"unknown attribution method {args.method!r}; choose one of {sorted(METHODS)}.")
    for flag, value, low in (("--sessions", args.sessions, 1), ("--steps", args.steps, 2),
                             ("--history-queries", args.history_queries, 0), ("--seed", args.seed, 0)):
        if value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}.")
    check_out(args.out)


@command_errors("explain")
def main(argv: Sequence[str] | None = None) -> int:
    """Explain one slate (``--query``) or the groups' global importance (``--global``); returns an exit code."""
    args = make_parser().parse_args(argv)
    check_arguments(args)
    agent, config, world, env_id = load_checkpoint(args, "explain")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.global_view:
        importance, sessions = global_importance(agent, config, world, args.seeds, args.sessions,
                                                 progress=not args.no_progress, env_id=env_id)
        importance.to_csv(args.out / "global_importance.csv", index=False)
        sessions.to_csv(args.out / "sessions.csv", index=False)
        markdown = importance_markdown(importance)
        (args.out / "global_importance.md").write_text(markdown)
        print(markdown)
        return 0
    kwargs = {"steps": args.steps} if args.method == "ig" else {}
    ex = explain_query(agent, config, world, args.query, args.seed, args.method, args.history_queries,
                       env_id=env_id, **kwargs)
    table = explanation_table(ex, world.catalog)
    table.to_csv(args.out / "attributions.csv", index=False)
    (args.out / "attributions.md").write_text(attributions_markdown(table, ex.groups))
    heading = f"{agent.name} checkpoint {args.checkpoint}; the shopper of seed {args.seed}"
    (args.out / "explain.html").write_text(explanation_html(ex, table, world.catalog, heading), encoding="utf-8")
    print(f"wrote {args.out / 'explain.html'} and {args.out / 'attributions.csv'} "
          f"({len(table)} products x {len(ex.groups)} groups, method {args.method}, "
          f"largest completeness gap {float(np.abs(table['completeness_gap']).max()) if len(table) else 0.0:.1e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
