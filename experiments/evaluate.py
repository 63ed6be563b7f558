"""Evaluate agents with common random numbers, summarise with confidence intervals, write reports.

**Common random numbers.** Session ``i`` of seed ``s`` is reset with ``derive_seed(s, i)`` (a
``SeedSequence`` of ``(s, i, 0)``) for every agent, so all agents meet the same shoppers and first
queries; the env's step randomness is drawn in the same amounts whatever the slate, so their clicks
share the same uniforms too. Agents are built per seed by ``factory(env, seed)`` and own their
randomness (seeded generators), never the env's. Privileged truth for MRR (best) is read from the env
without drawing random numbers. Agents with ``sequential = True`` (one candidate per slot: DQN,
MaskablePPO) are run in the env's sequential twin (``envs.SEQUENTIAL_IDS``: ``ShopRankSeq-v1`` for
``ShopRank-v1``) built with the same config and world, which draws the same shoppers, queries and clicks
per reset seed — so they are paired with the Box-env agents too.

**Confidence intervals.** ``summarize(..., ci_over="auto")``: with at least 5 seeds, a Student-t 95%
interval over the per-seed means (``n`` = seeds) — the honest unit when a seed also changes the agent's
training; with fewer seeds, a t-interval over all seeds × sessions (``n`` = sessions), which treats
sessions as independent. ``coverage`` is one number per agent × seed, so it always uses per-seed values.
**Paired differences** (``paired.csv``) are agent − baseline on the same (seed, session), with the same
kind of interval; an agent paired with an identical agent gives exactly 0.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import gymnasium as gym
import numpy as np
import pandas as pd
from scipy import stats
from tqdm.auto import tqdm

from encoders.errors import ConfigError
from agents.logging_policy import derive_seed
from encoders.blas import blas_threads
from experiments.metrics import SESSION_METRICS, SessionAccumulator, Truth, catalog_coverage

SUMMARY_COLUMNS = ["agent", "metric", "mean", "ci95_low", "ci95_high", "n"]
PAIRED_COLUMNS = ["agent", "baseline", "metric", "mean_diff", "ci95_low", "ci95_high", "n", "rel_diff"]
MIN_SEEDS_FOR_SEED_CI = 5
BAR_METRICS = ("reward", "clicks", "purchases", "ctr", "ndcg", "mrr_best")


class Policy(Protocol):
    """SB3-style policy: ``predict(obs, deterministic=True) -> (action, state)``."""

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]: ...


AgentFactory = Callable[[gym.Env, int], Policy]
"""``(env, seed) -> policy``; called once per seed (online learners start fresh each seed)."""


# ----------------------------------------------------------------------------------------------------
# environment
# ----------------------------------------------------------------------------------------------------
def resolve_config(env_id: str, config: Any = None, catalog: str | None = None,
                   text_encoder: str | None = None) -> Any:
    """The ``EnvConfig`` an env id runs with, with optional catalog / text-encoder overrides.

    ``gym.make(id, config=...)`` replaces the registered config, so overrides are applied to the
    registered one (e.g. ``ShopRankStatic-v0`` keeps ``max_queries=1``).
    """
    import envs  # noqa: F401  (registers the ids)

    if env_id not in gym.registry or not env_id.startswith("ShopRank"):
        raise ConfigError(f"unknown env id {env_id!r}; registered ShopRank ids: "
                         f"{sorted(k for k in gym.registry if k.startswith('ShopRank'))}.")
    if config is None:
        config = gym.registry[env_id].kwargs.get("config") or envs.EnvConfig()
    world = config.world
    if catalog is not None:
        world = dataclasses.replace(world, catalog=str(catalog))
    if text_encoder is not None:
        world = dataclasses.replace(world, text_encoder=text_encoder)
    return dataclasses.replace(config, world=world)


def make_env(env_id: str, config: Any = None) -> gym.Env:
    """``gym.make(env_id, config=resolve_config(env_id, config))``."""
    return gym.make(env_id, config=resolve_config(env_id, config))


def _truth(env: gym.Env) -> Truth | None:
    core = getattr(env.unwrapped, "core", None)
    if core is None or not getattr(core, "privileged", False):
        return None
    utilities = core.candidate_utilities()
    if utilities is None:
        return None
    return Truth(candidate_ids=np.asarray(core.candidates).copy(), utilities=np.asarray(utilities, dtype=float))


# ----------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------
def _wants_masks(agent: Policy) -> bool:
    try:
        return "action_masks" in inspect.signature(agent.predict).parameters
    except (TypeError, ValueError):
        return False


def run_session(env: gym.Env, agent: Policy, reset_seed: int, slate_size: int, fused: np.ndarray | None,
                deterministic: bool = True) -> tuple[dict[str, float], list[int]]:
    """Play one session; returns its metrics and the shown catalog ids.

    Works in the Box envs (one step per slate) and the sequential envs (one step per slot; a slate's
    metrics are recorded when its ``info`` carries ``shown_ids``; ``action_masks=`` is passed to
    ``predict`` when the agent's ``predict`` accepts it, as MaskablePPO's does). Calls
    ``agent.update(obs, action, info)`` after each step when the agent has it (online bandits).
    """
    acc = SessionAccumulator(slate_size, fused)
    update = getattr(agent, "update", None)
    masks = getattr(env.unwrapped, "action_masks", None) if _wants_masks(agent) else None
    obs, _ = env.reset(seed=reset_seed)
    done = False
    reward_since_slate = 0.0
    while not done:
        truth = _truth(env)
        extra = {"action_masks": masks()} if masks is not None else {}
        action, _ = agent.predict(obs, deterministic=deterministic, **extra)
        next_obs, reward, terminated, truncated, info = env.step(action)
        if callable(update):
            update(obs, action, info)
        reward_since_slate += float(reward)
        if "shown_ids" in info:
            acc.add(reward_since_slate, info, truth)
            reward_since_slate = 0.0
        obs, done = next_obs, terminated or truncated
    return acc.result(), acc.shown_ids


def evaluate_agents(agents: Mapping[str, AgentFactory], env_id: str = "ShopRankStatic-v0", config: Any = None,
                    seeds: Sequence[int] = (0, 1, 2, 3, 4), n_sessions: int = 200, *, env: gym.Env | None = None,
                    progress: bool = True, deterministic: bool = True, n_blas_threads: int | None = 1,
                    cells: Any = None) -> pd.DataFrame:
    """Evaluate every agent on the same shoppers and queries.

    Args:
        agents: Agent name -> ``factory(env, seed)``; names become the ``agent`` column.
        env_id: Registered env id (ignored when ``env`` is given).
        config: ``EnvConfig`` (default: the id's registered config).
        seeds: Seeds; each gives ``n_sessions`` sessions and a freshly built agent.
        n_sessions: Sessions per seed.
        env: A pre-built env to use (one env/world per process is cheaper).
        progress: Show a progress bar over sessions.
        deterministic: Passed to ``predict``.
        n_blas_threads: BLAS threads during evaluation (``None`` = unchanged); 1 is fastest for the
            bandits' small matrices on a busy machine.
        cells: Resumable results (``experiments.run_folder.CellStore``: ``load(name, seed) -> rows |
            None``, ``save(name, seed, rows)``): a finished (agent, seed) cell is read back instead of
            rebuilding the agent and replaying its sessions; each newly finished cell is saved.

    Returns:
        One row per agent × seed × session: ``agent, seed, session, reset_seed`` and the metrics of
        :mod:`experiments.metrics` (``ctr_pos_k`` included). ``df.attrs`` holds ``env_id``,
        ``catalog_size`` and ``slate_size``.
    """
    if not agents:
        raise ConfigError("agents is empty: give at least one name -> factory.")
    if n_sessions < 1:
        raise ConfigError(f"n_sessions must be >= 1, got {n_sessions}.")
    if len(seeds) < 1:
        raise ConfigError("seeds is empty: give at least one seed.")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct, got {list(seeds)}.")
    env = env if env is not None else make_env(env_id, config)
    if isinstance(env.action_space, gym.spaces.Discrete):
        raise ConfigError("evaluate_agents needs a Box-action env (ShopRank-v0 / ShopRankStatic-v0); agents with "
                         "sequential=True are run in its sequential twin (envs.SEQUENTIAL_IDS) with the same config "
                         "automatically.")
    seq_env: list[gym.Env] = []

    def env_for(agent: Policy) -> gym.Env:
        if not getattr(agent, "sequential", False):
            return env
        if not seq_env:  # same config and world: same shoppers and queries per reset seed
            import envs

            seq_id = envs.sequential_id(getattr(env.spec, "id", None) or env_id)
            seq_env.append(gym.make(seq_id, config=env.unwrapped.config, world=env.unwrapped.world))
        return seq_env[0]

    world = getattr(env.unwrapped, "world", None)
    fused = getattr(world, "fused", None)
    catalog_size = int(world.n_products) if world is not None else 0
    slate_size = int(env.unwrapped.config.slate_size)
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(agents) * len(seeds) * n_sessions, disable=not progress, desc="evaluate", unit="session")
    with blas_threads(n_blas_threads):
        for name, factory in agents.items():
            for seed in seeds:
                bar.set_description(f"{name} seed {seed}")
                saved = cells.load(name, int(seed)) if cells is not None else None
                if saved is not None:  # finished by an earlier, interrupted run
                    rows.extend(saved)
                    bar.update(len(saved))
                    continue
                agent = factory(env, int(seed))
                agent_env = env_for(agent)
                shown: set[int] = set()
                start = len(rows)
                for i in range(n_sessions):
                    reset_seed = derive_seed(seed, i)
                    metrics, ids = run_session(agent_env, agent, reset_seed, slate_size, fused, deterministic)
                    shown.update(ids)
                    rows.append({"agent": name, "seed": int(seed), "session": i, "reset_seed": reset_seed, **metrics})
                    bar.update(1)
                coverage = catalog_coverage(shown, catalog_size) if catalog_size else float("nan")
                for row in rows[start:]:
                    row["coverage"] = coverage
                if cells is not None:
                    cells.save(name, int(seed), rows[start:])
    bar.close()
    df = pd.DataFrame(rows)
    df.attrs.update({"env_id": getattr(env.spec, "id", env_id), "catalog_size": catalog_size,
                     "slate_size": slate_size})
    return df


# ----------------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------------
def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """Mean and Student-t interval of ``float (n,)`` values (``nan`` dropped); ``nan`` bounds when ``n < 2``."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(values.mean())
    if n < 2:
        return mean, float("nan"), float("nan"), 1
    sem = float(values.std(ddof=1)) / np.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return mean, mean - half, mean + half, n


def ci_unit(df: pd.DataFrame, ci_over: str = "auto") -> str:
    """``"seeds"`` or ``"sessions"``: the unit of the intervals (``auto``: seeds when >= 5 seeds)."""
    if ci_over not in ("auto", "seeds", "sessions"):
        raise ConfigError(f"ci_over must be 'auto', 'seeds' or 'sessions', got {ci_over!r}.")
    if ci_over != "auto":
        return ci_over
    return "seeds" if df["seed"].nunique() >= MIN_SEEDS_FOR_SEED_CI else "sessions"


def _units(frame: pd.DataFrame, metric: str, unit: str) -> np.ndarray:
    if unit == "seeds" or metric == "coverage":
        return frame.groupby("seed")[metric].mean().to_numpy()
    return frame[metric].to_numpy()


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Summary metrics present in ``df`` (``reward`` first; ``ctr_pos_k`` excluded)."""
    return [m for m in SESSION_METRICS if m in df.columns]


def summarize(df: pd.DataFrame, ci_over: str = "auto") -> pd.DataFrame:
    """One row per agent × metric: ``agent, metric, mean, ci95_low, ci95_high, n``."""
    unit = ci_unit(df, ci_over)
    rows = []
    for agent, frame in df.groupby("agent", sort=False):
        for metric in metric_columns(df):
            mean, low, high, n = t_interval(_units(frame, metric, unit))
            rows.append({"agent": agent, "metric": metric, "mean": mean, "ci95_low": low, "ci95_high": high, "n": n})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def paired_differences(df: pd.DataFrame, baseline: str = "retriever", ci_over: str = "auto") -> pd.DataFrame:
    """Agent − ``baseline`` per (seed, session), summarised like :func:`summarize`.

    Returns:
        ``agent, baseline, metric, mean_diff, ci95_low, ci95_high, n, rel_diff`` (``rel_diff`` = mean
        difference / baseline mean). Empty when ``baseline`` was not evaluated.
    """
    if baseline not in set(df["agent"]):
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    unit = ci_unit(df, ci_over)
    keys = ["seed", "session"]
    metrics = metric_columns(df)
    base = df[df["agent"] == baseline].set_index(keys)[metrics]
    rows = []
    for agent, frame in df.groupby("agent", sort=False):
        other = frame.set_index(keys)[metrics]
        common = other.index.intersection(base.index)
        diff = (other.loc[common] - base.loc[common]).reset_index()
        for metric in metrics:
            mean, low, high, n = t_interval(_units(diff, metric, unit))
            base_mean = float(base.loc[common, metric].mean())
            rel = mean / base_mean if base_mean != 0 and np.isfinite(base_mean) else float("nan")
            rows.append({"agent": agent, "baseline": baseline, "metric": metric, "mean_diff": mean,
                         "ci95_low": low, "ci95_high": high, "n": n, "rel_diff": rel})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


REFERENCE_AGENTS = ("oracle", "profile_oracle")
"""Agents that every other agent's reward is also reported as a share of (when they were evaluated)."""


def ratio_interval(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """``mean(x) / mean(y)`` of paired ``float (n,)`` samples with a delta-method Student-t interval.

    The ratio ``R`` has standard error ``sd(x - R y) / (sqrt(n) |mean(y)|)`` (first-order, pairs with a
    ``nan`` dropped); ``nan`` bounds when ``n < 2`` or ``mean(y) == 0``.

    Returns:
        ``(ratio, low, high, n)``.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = len(x)
    if n == 0 or y.mean() == 0:
        return float("nan"), float("nan"), float("nan"), n
    ratio = float(x.mean() / y.mean())
    if n < 2:
        return ratio, float("nan"), float("nan"), n
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * float((x - ratio * y).std(ddof=1)) / (
        np.sqrt(n) * abs(float(y.mean())))
    return ratio, ratio - half, ratio + half, n


def reward_shares(df: pd.DataFrame, references: Sequence[str] = REFERENCE_AGENTS,
                  ci_over: str = "auto") -> pd.DataFrame:
    """Each agent's mean reward as a share of each reference agent's, with a 95% CI.

    The share is ``mean(agent) / mean(reference)`` per CI unit (per seed when CIs are over seeds: the
    ratio of the two per-seed means on the same shoppers, Student-t over seeds; over sessions: the ratio
    of the overall means with the paired delta-method interval of :func:`ratio_interval`).

    Returns:
        ``agent, reference, share, ci95_low, ci95_high, n``; empty when no reference was evaluated.
    """
    columns = ["agent", "reference", "share", "ci95_low", "ci95_high", "n"]
    unit = ci_unit(df, ci_over)
    per_seed = df.groupby(["agent", "seed"], sort=False)["reward"].mean().unstack(0)
    per_session = df.pivot_table(index=["seed", "session"], columns="agent", values="reward", sort=False)
    rows = []
    for reference in (r for r in references if r in per_seed.columns):
        for agent in per_seed.columns:
            if unit == "seeds":
                share, low, high, n = t_interval((per_seed[agent] / per_seed[reference]).to_numpy())
            else:
                share, low, high, n = ratio_interval(per_session[agent].to_numpy(), per_session[reference].to_numpy())
            rows.append({"agent": agent, "reference": reference, "share": share, "ci95_low": low,
                         "ci95_high": high, "n": n})
    return pd.DataFrame(rows, columns=columns)


def ctr_by_position(df: pd.DataFrame) -> pd.DataFrame:
    """Mean CTR per agent × slot (``agent, position, ctr``) from the ``ctr_pos_k`` columns."""
    cols = sorted((c for c in df.columns if c.startswith("ctr_pos_")), key=lambda c: int(c.rsplit("_", 1)[1]))
    long = df.groupby("agent", sort=False)[cols].mean().reset_index().melt(
        id_vars="agent", var_name="position", value_name="ctr")
    long["position"] = long["position"].str.rsplit("_", n=1).str[1].astype(int)
    return long


def _fmt(mean: float, low: float, high: float) -> str:
    if not np.isfinite(mean):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{mean:.3f}"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _percent(share: float, low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{100 * share:.1f}"
    return f"{100 * share:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def markdown_table(summary: pd.DataFrame, metrics: Sequence[str] | None = None) -> str:
    """Agents as rows, metrics as columns, cells ``mean [ci95_low, ci95_high]``."""
    metrics = list(metrics or dict.fromkeys(summary["metric"]))
    lines = ["| agent | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for agent, frame in summary.groupby("agent", sort=False):
        cells = frame.set_index("metric")
        row = [_fmt(*cells.loc[m, ["mean", "ci95_low", "ci95_high"]]) if m in cells.index else "" for m in metrics]
        lines.append(f"| {agent} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_summary(df: pd.DataFrame, out_dir: str | Path, baseline: str = "retriever",
                  ci_over: str = "auto", plots: bool = True) -> dict[str, Path]:
    """Write the evaluation report into ``out_dir``.

    Files: ``sessions.csv`` (per-session rows), ``summary.csv`` (exactly ``agent, metric, mean,
    ci95_low, ci95_high, n``), ``paired.csv`` (vs ``baseline``), ``ctr_by_position.csv``,
    ``reward_shares.csv`` (when an oracle was evaluated), ``summary.md`` and, with ``plots``, ``metrics.png`` (bars with CIs) and ``ctr_by_position.png``.

    Returns:
        Name -> path of every file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "reward" not in df.columns:
        raise ValueError("df has no 'reward' column: pass the DataFrame returned by evaluate_agents.")
    unit = ci_unit(df, ci_over)
    summary = summarize(df, unit)
    paired = paired_differences(df, baseline, unit)
    by_pos = ctr_by_position(df)
    paths = {"sessions": out / "sessions.csv", "summary": out / "summary.csv", "paired": out / "paired.csv",
             "ctr_by_position_csv": out / "ctr_by_position.csv", "markdown": out / "summary.md"}
    df.to_csv(paths["sessions"], index=False)
    summary.to_csv(paths["summary"], index=False)
    paired.to_csv(paths["paired"], index=False)
    by_pos.to_csv(paths["ctr_by_position_csv"], index=False)
    n_seeds, n_sessions = df["seed"].nunique(), int(df.groupby(["agent", "seed"]).size().max())
    unit_text = (f"Student-t 95% CI over per-seed means (n = {n_seeds} seeds)" if unit == "seeds" else
                 f"Student-t 95% CI over all seeds x sessions (n = sessions; fewer than "
                 f"{MIN_SEEDS_FOR_SEED_CI} seeds); coverage over per-seed values")
    md = [f"# Evaluation: {df.attrs.get('env_id', '')}", "",
          f"{df['agent'].nunique()} agents x {n_seeds} seeds x {n_sessions} sessions, common random numbers. "
          f"{unit_text}.", "", markdown_table(summary), ""]
    if len(paired):
        md += [f"## Paired difference vs `{baseline}` (same shoppers and queries)", "",
               markdown_table(paired.rename(columns={"mean_diff": "mean"})), "",
               "Relative reward difference: " + ", ".join(
                   f"{r.agent} {100 * r.rel_diff:+.1f}%" for r in paired[paired.metric == "reward"].itertuples()), ""]
    shares = reward_shares(df, ci_over=unit)
    if len(shares):
        paths["shares"] = out / "reward_shares.csv"
        shares.to_csv(paths["shares"], index=False)
        wide = shares.assign(cell=[_percent(r.share, r.ci95_low, r.ci95_high) for r in shares.itertuples()]
                             ).pivot(index="agent", columns="reference", values="cell")
        refs = [r for r in REFERENCE_AGENTS if r in wide.columns]
        md += ["## Reward as a share of the oracles (%, per-seed ratios)", "",
               "`oracle` reads the shopper's hidden state; `profile_oracle` knows the simulator's equations but "
               "sees only what the observation shows (the ceiling of an observation-only myopic ranker).", "",
               "| agent | " + " | ".join(f"of {r}" for r in refs) + " |", "|---" * (len(refs) + 1) + "|"]
        md += [f"| {agent} | " + " | ".join(wide.loc[agent, r] for r in refs) + " |"
               for agent in dict.fromkeys(shares["agent"])]
        md.append("")
    if plots:
        from experiments.plots import plot_ctr_by_position, plot_metric_bars

        paths["metrics_png"] = plot_metric_bars(summary, out / "metrics.png", [m for m in BAR_METRICS
                                                                               if m in set(summary.metric)])
        paths["ctr_by_position_png"] = plot_ctr_by_position(by_pos, out / "ctr_by_position.png")
        md += ["![metrics](metrics.png)", "", "![CTR by position](ctr_by_position.png)", ""]
    paths["markdown"].write_text("\n".join(md))
    return paths
