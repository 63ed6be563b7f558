"""``shoprank ope``: score a policy on logged feedback with every off-policy estimator.

Usage::

    # Open Bandit Dataset logs (a campaign CSV, or a folder holding one): context-free policies
    shoprank ope --logs ../shared/data/obd/random/all --agent logged:../shared/data/obd/bts/all \\
        --on-policy-logs ../shared/data/obd/bts/all --out runs/ope_obd
    # ShopRank's own logs: write them, then score any agent or checkpoint on the logged contexts
    shoprank ope log --sessions 20000 --out runs/logs/static.csv
    shoprank ope --logs runs/logs/static.csv --agent lambdamart --out runs/ope_lambdamart

Writes ``ope.csv`` and ``ope.md`` (estimator, estimate, 95% CI, effective sample size) and ``ope.png`` into
``--out`` and prints the table.

Agents: on OBD logs, ``random`` (uniform) or ``logged:PATH`` (the policy that produced another OBD log,
from its item-by-position frequencies). On ShopRank logs, any baseline name (``retriever``,
``lambdamart``, ...; trained in the env as ``shoprank compare`` does) or ``--checkpoint DIR`` (a baseline
or RL checkpoint): a deterministic ranker gets one-hot action probabilities; a checkpoint whose policy
has a Plackett-Luce head is scored as that stochastic policy.

ShopRank logs carry a replay recipe (``<log>.ope.json``: env, seed, batch, logging policy): the contexts
the agent scores are re-created by replaying the logged slates in the env, and the replayed clicks must
equal the logged ones (a check that the log belongs to this build and catalog).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from encoders.errors import ConfigError, InputNotFoundError, command_errors
from experiments.ope.core import Bootstrap, OPEResult
from experiments.ope.estimators import run_all, standard_estimators
from experiments.ope.obd import OBDLog, evaluate, policy_of_log, uniform_policy
from experiments.ope.simulate import (
    CrossFitRewardTable,
    DeterministicRanker,
    PlackettLuce,
    RankPlackettLuce,
    ReplayedLogging,
    baseline_scorer,
    collect,
    log_frame,
    make_env,
    retriever_scores,
    slate_size,
)
from experiments.ope.slate import slate_estimators

RECIPE_SUFFIX = ".ope.json"
RECIPE_FORMAT = "shoprank-ope-log"


# --------------------------------------------------------------------------------------------------
# shoprank ope log
# --------------------------------------------------------------------------------------------------
def _log_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shoprank ope log",
                                description="Log ShopRankStatic-v0 sessions under a Plackett-Luce policy over "
                                            "retriever ranks, with the recipe to replay them.")
    p.add_argument("--sessions", type=int, required=True, help="sessions to log")
    p.add_argument("--out", type=Path, required=True, help="CSV to write (the recipe goes to <out>.ope.json)")
    p.add_argument("--temperature", type=float, default=3.0, help="logging PL temperature (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the env and the logging draws (default 0)")
    p.add_argument("--batch", type=int, default=1000, help="sessions stepped at once (default 1000)")
    return p


def write_log(sessions: int, out: Path, temperature: float = 3.0, seed: int = 0, batch: int = 1000) -> Path:
    """Log ``sessions`` sessions to ``out`` (CSV) and the replay recipe to ``out.ope.json``."""
    if sessions < 1:
        raise ConfigError(f"--sessions must be >= 1, got {sessions}.")
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}.")
    logging = RankPlackettLuce(f"PL over retriever ranks (T={temperature:g})", retriever_scores, temperature)
    env = make_env(batch)
    frame = log_frame(env, logging, sessions, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    recipe = {"format": RECIPE_FORMAT, "version": 1, "env_id": "ShopRankStatic-v0", "seed": seed, "batch": batch,
              "n_sessions": sessions, "slate_size": slate_size(env),
              "logging": {"scorer": "retriever", "temperature": temperature,
                          "n_table_samples": logging.n_table_samples, "table_seed": logging.seed}}
    Path(str(out) + RECIPE_SUFFIX).write_text(json.dumps(recipe, indent=1))
    return out


# --------------------------------------------------------------------------------------------------
# shoprank ope
# --------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shoprank ope", description=__doc__.split("\n\n")[0])
    p.add_argument("--logs", type=Path, required=True,
                   help="OBD campaign CSV (or a folder holding one), or a ShopRank log written by `shoprank ope log`")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--agent", help="OBD: random | logged:PATH; ShopRank logs: a baseline name")
    who.add_argument("--checkpoint", type=Path, help="ShopRank logs: a baseline or RL checkpoint folder")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--on-policy-logs", type=Path,
                   help="OBD log of the evaluated policy itself: its CTR is the truth (adds relative errors)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and cross-fitting (default 0)")
    p.add_argument("--n-bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    return p


def _is_obd(path: Path) -> bool:
    if path.is_dir():
        return True
    if not path.is_file():
        raise InputNotFoundError(f"no log at {path}.")
    return "propensity_score" in pd.read_csv(path, nrows=0).columns


def _obd_policy(agent: str | None, log: OBDLog):
    if agent == "random":
        return uniform_policy(log.n_actions, log.len_list)
    if agent is not None and agent.startswith("logged:"):
        return policy_of_log(agent[len("logged:"):], log.n_actions, log.len_list)
    raise ConfigError(f"on Open Bandit Dataset logs the agent must be 'random' or 'logged:PATH' (the policy that "
                      f"produced another OBD log); got {agent!r}. ShopRank agents rank ShopRank candidates and "
                      "cannot act on OBD contexts.")


def run_obd(args: argparse.Namespace, boot: Bootstrap) -> tuple[list[OPEResult], dict]:
    log = OBDLog.load(args.logs)
    if args.checkpoint is not None:
        raise ConfigError("on Open Bandit Dataset logs use --agent random or --agent logged:PATH, not --checkpoint.")
    policy = _obd_policy(args.agent, log)
    results = evaluate(log, policy, seed=args.seed, bootstrap=boot)
    meta = {"logs": str(args.logs), "policy": policy.name, "rows": log.n_rows,
            "value": "mean click per shown (impression, position)"}
    if args.on_policy_logs is not None:
        truth, se = OBDLog.load(args.on_policy_logs).on_policy_value()
        meta.update(on_policy_value=truth, on_policy_se=se)
    return results, meta


def _agent_policy(args: argparse.Namespace):
    """The evaluated ShopRank policy (deterministic ranker, or PL when the checkpoint has a PL head)."""
    import gymnasium as gym

    import envs  # noqa: F401
    from agents.baselines import is_baseline_checkpoint, load_baseline, make_baseline

    single = gym.make("ShopRankStatic-v0")
    if args.agent is not None:
        return DeterministicRanker(args.agent, baseline_scorer(make_baseline(args.agent, single, args.seed)))
    if is_baseline_checkpoint(args.checkpoint):
        agent = load_baseline(args.checkpoint, single)
        return DeterministicRanker(str(args.checkpoint), baseline_scorer(agent))
    from agents.checkpoint import load_agent

    agent = load_agent(args.checkpoint)
    logits = plackett_luce_logits(agent)
    if logits is not None:
        return PlackettLuce(str(args.checkpoint), logits)
    return DeterministicRanker(str(args.checkpoint),
                               lambda obs: np.asarray(agent.predict(dict(obs), deterministic=True)[0], np.float64))


def plackett_luce_logits(agent):
    """``obs -> (B, K)`` logits when ``agent``'s policy has a Plackett-Luce action head, else None.

    The seam: an SB3 policy whose ``get_distribution(obs)`` returns a distribution with a ``scores``
    tensor (``agents.distributions.PlackettLuceDistribution``) is scored as that PL policy.
    """
    policy = getattr(agent, "policy", None)
    if policy is None or not hasattr(policy, "get_distribution") or not hasattr(policy, "obs_to_tensor"):
        return None
    from agents.distributions import PlackettLuceDistribution  # noqa: F401  (present with the PL head)

    if not isinstance(getattr(policy, "action_dist", None), PlackettLuceDistribution):
        return None

    def logits(obs) -> np.ndarray:
        import torch

        with torch.no_grad():
            dist = policy.get_distribution(policy.obs_to_tensor(dict(obs))[0])
        return dist.scores.detach().cpu().numpy().astype(np.float64)

    return logits


def run_shoprank(args: argparse.Namespace, boot: Bootstrap) -> tuple[list[OPEResult], dict]:
    recipe_path = Path(str(args.logs) + RECIPE_SUFFIX)
    if not recipe_path.is_file():
        raise InputNotFoundError(f"{args.logs} has no replay recipe {recipe_path.name}: OPE needs the logged "
                                 "contexts, which `shoprank ope log` records (logs of InteractionLogger lack them).")
    recipe = json.loads(recipe_path.read_text())
    if recipe.get("format") != RECIPE_FORMAT:
        raise ConfigError(f"{recipe_path} is not a ShopRank OPE log recipe (format {recipe.get('format')!r}).")
    frame = pd.read_csv(args.logs)
    n, n_slots = int(recipe["n_sessions"]), int(recipe["slate_size"])
    if len(frame) != n * n_slots:
        raise ConfigError(f"{args.logs} has {len(frame)} rows; its recipe says {n} sessions x {n_slots} slots.")
    lg = recipe["logging"]
    logging = RankPlackettLuce(f"PL over retriever ranks (T={lg['temperature']:g})", retriever_scores,
                               float(lg["temperature"]), int(lg["n_table_samples"]), int(lg["table_seed"]))
    slates = frame["candidate"].to_numpy(np.int64).reshape(n, n_slots)
    clicks = frame["click"].to_numpy(bool).reshape(n, n_slots)
    table = CrossFitRewardTable.fit(frame["logging_rank"].to_numpy(np.int64).reshape(n, n_slots), clicks,
                                    int(frame["logging_rank"].max()) + 1, seed=args.seed)
    target = _agent_policy(args)
    env = make_env(int(recipe["batch"]))
    sim = collect(env, ReplayedLogging(logging, slates), [target], n, int(recipe["seed"]), table)
    if not np.array_equal(sim.clicks, clicks):
        raise ConfigError(f"{args.logs} does not replay: the env's clicks differ from the logged ones (a log from "
                          "another ShopRank version, catalog or env config).")
    bandit = [_scaled(r, n_slots) for r in run_all(standard_estimators(), sim.bandit_data(target.name),
                                                   seed=args.seed, bootstrap=boot)]
    rng = np.random.default_rng([args.seed, 1])
    slate = [e.estimate(sim.slate_data(target.name), rng, boot) for e in slate_estimators()]
    meta = {"logs": str(args.logs), "policy": target.name, "sessions": n, "value": "clicks per session",
            "logging_value": float(clicks.sum(axis=1).mean())}
    return bandit + slate, meta


def _scaled(r: OPEResult, k: int) -> OPEResult:
    """A per-slot estimate as a per-session one (times the slate size)."""
    return OPEResult(r.estimator, r.estimate * k, r.ci_low * k, r.ci_high * k, r.ess, r.n, r.confidence)


def results_table(results: list[OPEResult], meta: dict) -> pd.DataFrame:
    """One row per estimator; relative error columns when the on-policy value is known."""
    table = pd.DataFrame([r.as_row() for r in results])
    if "on_policy_value" in meta:
        truth = meta["on_policy_value"]
        table["relative_error"] = (table["estimate"] - truth).abs() / truth
    return table


def to_markdown(table: pd.DataFrame, meta: dict) -> str:
    """The table as Markdown with a line on what was evaluated."""
    cols = ["estimator", "estimate", "95% CI", "ESS"] + (["relative error"] if "relative_error" in table else [])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in table.itertuples(index=False):
        cells = [r.estimator, f"{r.estimate:.5g}", f"[{r.ci_low:.5g}, {r.ci_high:.5g}]", f"{r.ess:.0f}"]
        if "relative_error" in table:
            cells.append(f"{100 * r.relative_error:.1f}%")
        lines.append("| " + " | ".join(cells) + " |")
    note = f"\n\nPolicy `{meta['policy']}` on `{meta['logs']}`; value = {meta['value']}."
    if "on_policy_value" in meta:
        note += f" On-policy value {meta['on_policy_value']:.5g} (se {meta['on_policy_se']:.2g})."
    return "\n".join(lines) + note + "\n"


def plot(table: pd.DataFrame, meta: dict, path: Path) -> Path:
    """Estimates with their intervals (and the on-policy value when known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    y = np.arange(len(table))
    est = table["estimate"].to_numpy()
    low = np.clip(est - table["ci_low"].to_numpy(), 0, None)  # a point estimate may lie outside its
    high = np.clip(table["ci_high"].to_numpy() - est, 0, None)  # percentile interval (e.g. slate IPS at 0)
    ax.errorbar(est, y, xerr=[low, high], fmt="o", capsize=3)
    if "on_policy_value" in meta:
        ax.axvline(meta["on_policy_value"], ls="--", c="k", label="on-policy value")
        ax.legend(fontsize="small")
    ax.set_yticks(y, table["estimator"])
    ax.set_xlabel(f"estimated value ({meta['value']})")
    ax.set_title(f"OPE of {meta['policy']}"[:80], fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@command_errors("ope")
def main(argv: list[str] | None = None) -> int:
    """Run ``shoprank ope`` (or ``shoprank ope log``); returns the exit status."""
    argv = list(argv or [])
    if argv and argv[0] == "log":
        args = _log_parser().parse_args(argv[1:])
        path = write_log(args.sessions, args.out, args.temperature, args.seed, args.batch)
        print(f"wrote {path} and {path}{RECIPE_SUFFIX}")
        return 0
    args = _parser().parse_args(argv)
    boot = Bootstrap(args.n_bootstrap)
    results, meta = run_obd(args, boot) if _is_obd(args.logs) else run_shoprank(args, boot)
    table = results_table(results, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "ope.csv", index=False)
    md = to_markdown(table, meta)
    (args.out / "ope.md").write_text(md)
    (args.out / "ope.json").write_text(json.dumps(meta, indent=1))
    plot(table, meta, args.out / "ope.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
