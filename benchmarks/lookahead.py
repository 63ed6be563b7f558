"""Does the default session env reward looking ahead? Myopic oracle vs purchase-averse lookahead oracles.

In ``ShopRank-v0`` a purchase ends the shopper's need, and the shopper then leaves with probability
``1 - p_continue_after_purchase`` (0.5 by default). A far-sighted ranker might therefore prefer clicks that
do not end the session. This study checks whether that lever pays: each ``lookahead-V`` ranker knows the
hidden state like ``oracle`` and ranks by

    immediate value - P(click) * P(buy | click) * (1 - p_continue_after_purchase) * V

(each candidate shown alone in the top slot), i.e. it charges a purchase for the ``V`` reward a continuing
session would still bring. ``V = 0`` is the myopic ``oracle``. If some ``V > 0`` beat it, the dynamics
would contain a long-horizon effect an RL agent could learn; the table says how much.

    .venv/bin/python -m benchmarks.lookahead --values 3,6,12 --seeds 5 --sessions 200

Writes ``benchmarks/results/lookahead.{json,md}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

import envs  # noqa: F401  (registers the ids)
from agents.baselines import Baseline, OracleBaseline
from benchmarks.ceiling import top_slot_probabilities, unbored_shopper
from benchmarks.machine import machine_info
from benchmarks.study_io import check_counts, command_footer, parse_numbers, study_command, study_parser, write_study
from envs import EnvConfig, WorldConfig
from experiments.evaluate import evaluate_agents, reward_shares, summarize

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("reward", "clicks", "purchases", "session_length")


class LookaheadOracle(OracleBaseline):
    """Privileged ranker that charges each candidate's purchase for the session it may end.

    Args:
        env: The env being evaluated (its simulator must be a :class:`DefaultShopper`).
        value: ``V``, the reward a continuing session is taken to be worth.
    """

    name = "lookahead"

    def __init__(self, env, value: float) -> None:
        super().__init__(env)
        self.unbored = unbored_shopper(self.env, "LookaheadOracle")
        self.value = value

    def scores(self, obs) -> np.ndarray:
        core = self.env.core
        immediate = core.candidate_values()
        click, p_buy = top_slot_probabilities(self.unbored, core.state, core.query, core.candidates,
                                              core.config.slate_size)
        leave = 1.0 - core.sim.config.p_continue_after_purchase
        return np.where(core.candidates >= 0, immediate - click * p_buy * leave * self.value, -np.inf)


def agents(values: Sequence[float]) -> dict[str, Callable[..., Baseline]]:
    """``oracle`` and one ``lookahead-V`` per value: name -> ``factory(env, seed)``."""
    out: dict[str, Callable[..., Baseline]] = {"oracle": lambda env, seed: OracleBaseline(env)}
    for v in values:
        out[f"lookahead-{v:g}"] = lambda env, seed, v=v: LookaheadOracle(env, v)
    return out


def study(values: Sequence[float], seeds: Sequence[int], n_sessions: int,
          world: WorldConfig = WorldConfig()) -> pd.DataFrame:
    """One row per ranker: mean and CI of each metric in :data:`METRICS` and the share of ``oracle``."""
    df = evaluate_agents(agents(values), "ShopRank-v0", config=EnvConfig(world=world), seeds=seeds,
                         n_sessions=n_sessions, progress=False)
    summary = summarize(df)
    shares = reward_shares(df, references=("oracle",)).set_index("agent")
    rows = []
    for agent in agents(values):
        row = {"agent": agent, "share_of_oracle": shares.loc[agent, "share"],
               "share_low": shares.loc[agent, "ci95_low"], "share_high": shares.loc[agent, "ci95_high"]}
        for metric in METRICS:
            m = summary[(summary.agent == agent) & (summary.metric == metric)].iloc[0]
            row.update({metric: m["mean"], f"{metric}_low": m["ci95_low"], f"{metric}_high": m["ci95_high"]})
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame, meta: dict) -> str:
    lines = ["# Myopic oracle vs purchase-averse lookahead in the default session env", "",
             f"Machine: {meta['machine']['cpu_model']}. `ShopRank-v0`, {meta['seeds']} seeds × {meta['sessions']} "
             "sessions, common random numbers; mean and Student-t 95% CI over per-seed means.", "",
             "| ranker | reward per session | share of oracle | purchases | clicks | queries per session |",
             "|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        cell = lambda m: f"{r[m]:.2f} [{r[m + '_low']:.2f}, {r[m + '_high']:.2f}]"  # noqa: E731
        lines.append(f"| {r['agent']} | {cell('reward')} | {r['share_of_oracle']:.1%} "
                     f"[{r['share_low']:.1%}, {r['share_high']:.1%}] | {cell('purchases')} | {cell('clicks')} | "
                     f"{cell('session_length')} |")
    lines += command_footer(meta)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = study_parser("shoprank bench lookahead", __doc__.split("\n\n")[0], RESULTS)
    p.add_argument("--values", default="3,6,12", help="comma-separated V values (> 0)")
    args = p.parse_args(argv)
    values = parse_numbers(p, args.values, "--values", minimum=0, inclusive=False)
    check_counts(p, args)
    table = study(values, list(range(args.seeds)), args.sessions)
    meta = {"machine": machine_info(), "seeds": args.seeds, "sessions": args.sessions, "values": values,
            "command": study_command("python -m benchmarks.lookahead", argv)}
    write_study(args.out, "lookahead", meta, table, to_markdown(table, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
