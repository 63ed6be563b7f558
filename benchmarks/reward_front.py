"""Clicks vs revenue: the trade-off that ``RewardSpec`` weightings trace (a Pareto front).

A ranker that optimises the env's reward serves whatever the weights ask for: clicks
(``RewardSpec(click=1, purchase=0, revenue=0)``), revenue (``RewardSpec(0, 0, 1)``) or a mix. This study
evaluates the rankers that optimise the reward spec they are given, the privileged ``oracle`` and the
observation-only ``profile_oracle`` (both rank by each candidate's expected reward under the spec), under
several weightings, on the same shoppers (common random numbers), and reports clicks and revenue per session
for each; retriever order, which ignores the weights, is the reference point. The points no other weighting
of the same ranker beats on both clicks and revenue form its Pareto front.

    python -m benchmarks.reward_front --weights 1:0:0,1:0:0.02,1:0:0.1,0:0:1 --seeds 5 --sessions 200

Writes ``benchmarks/results/reward_front.{json,md}`` and the plot ``docs/figures/reward_front.png``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import envs  # noqa: E402,F401  (registers the ids)
from agents.baselines import baseline_factory  # noqa: E402
from benchmarks.machine import machine_info  # noqa: E402
from benchmarks.study_io import check_counts, command_footer, study_command, study_parser, write_study  # noqa: E402
from envs.config import EnvConfig  # noqa: E402
from envs.reward import RewardSpec  # noqa: E402
from experiments.evaluate import evaluate_agents, make_env, summarize  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "reward_front.png"
DEFAULT_WEIGHTS = "1:0:0,1:1:0,1:1:0.02,1:0:0.02,1:0:0.05,1:0:0.1,1:0:0.3,0:0:1"
"""``click:purchase:revenue`` weightings swept by default: clicks only, towards revenue only."""
RANKERS = ("oracle", "profile_oracle")
"""Rankers that optimise the reward spec they run under."""
REFERENCE = "retriever"
METRICS = ("clicks", "purchases", "revenue", "reward")


def parse_weights(text: str) -> list[RewardSpec]:
    """``"1:0:0,0:0:1"`` -> ``[RewardSpec(1, 0, 0), RewardSpec(0, 0, 1)]`` (``ValueError`` naming the bad item)."""
    specs = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        parts = item.split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            click, purchase, revenue = (float(x) for x in parts)
        except ValueError:
            raise ValueError(f"a weighting is click:purchase:revenue (three numbers), got {item!r}.") from None
        if min(click, purchase, revenue) < 0 or click + purchase + revenue <= 0:
            raise ValueError(f"weights must be >= 0 and not all 0, got {item!r}.")
        specs.append(RewardSpec(click=click, purchase=purchase, revenue=revenue))
    if not specs:
        raise ValueError("--weights needs at least one click:purchase:revenue weighting.")
    return specs


def label(spec: RewardSpec) -> str:
    return f"{spec.click:g}:{spec.purchase:g}:{spec.revenue:g}"


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``bool (n,)``: points no other point matches or beats on both ``x`` and ``y`` while beating it on one."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    dominated = ((x[None, :] >= x[:, None]) & (y[None, :] >= y[:, None])
                 & ((x[None, :] > x[:, None]) | (y[None, :] > y[:, None])))
    return ~dominated.any(axis=1)


def study(specs: Sequence[RewardSpec], env_id: str, seeds: Sequence[int], n_sessions: int,
          rankers: Sequence[str] = RANKERS, config: EnvConfig | None = None) -> pd.DataFrame:
    """One row per (ranker, weighting) (and one for retriever order): mean and 95% CI of :data:`METRICS` per
    session, and ``pareto`` (on its ranker's front). ``config``: the env's config (default: the id's registered
    one); its ``reward`` is replaced by each weighting."""
    base = config if config is not None else make_env(env_id).unwrapped.config
    rows = []
    for spec in specs:
        env = make_env(env_id, replace(base, reward=spec))
        names = list(rankers) + ([REFERENCE] if spec is specs[0] else [])
        df = evaluate_agents({name: baseline_factory(name) for name in names}, env=env, seeds=seeds,
                             n_sessions=n_sessions, progress=False)
        summary = summarize(df).set_index(["agent", "metric"])
        for name in names:
            row = {"ranker": name, "weights": label(spec) if name != REFERENCE else "—"}
            for metric in METRICS:
                m = summary.loc[(name, metric)]
                row.update({metric: m["mean"], f"{metric}_low": m["ci95_low"], f"{metric}_high": m["ci95_high"]})
            rows.append(row)
    table = pd.DataFrame(rows)
    table["pareto"] = False
    for name in rankers:
        at = table.index[table.ranker == name]
        table.loc[at, "pareto"] = pareto_mask(table.loc[at, "clicks"], table.loc[at, "revenue"])
    return table


def plot(table: pd.DataFrame, out_png: Path, title: str) -> Path:
    """Clicks (x) vs revenue (y) per session with 95% CIs; each ranker's front joined by a line."""
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    for name, marker in zip(RANKERS + (REFERENCE,), ("o", "s", "*")):
        part = table[table.ranker == name].sort_values("clicks")
        if part.empty:
            continue
        xerr = [part.clicks - part.clicks_low, part.clicks_high - part.clicks]
        yerr = [part.revenue - part.revenue_low, part.revenue_high - part.revenue]
        handle = ax.errorbar(part.clicks, part.revenue, xerr=xerr, yerr=yerr, fmt=marker, ms=8 if marker != "*" else 13,
                             capsize=2, label=name if name != REFERENCE else "retriever order (ignores weights)")
        front = part[part.pareto]
        if len(front) > 1:
            ax.plot(front.clicks, front.revenue, "-", color=handle[0].get_color(), alpha=0.6)
        if name == RANKERS[0]:
            for _, r in part.iterrows():
                ax.annotate(r.weights, (r.clicks, r.revenue), textcoords="offset points", xytext=(6, -10), fontsize=7)
    ax.set_xlabel("clicks per session")
    ax.set_ylabel("revenue per session")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def to_markdown(table: pd.DataFrame, meta: dict) -> str:
    lines = ["# Clicks vs revenue under RewardSpec weightings", "",
             f"Machine: {meta['machine']['cpu_model']}. `{meta['env']}`, {meta['seeds']} seeds × {meta['sessions']} "
             "sessions, common random numbers; mean and Student-t 95% CI over per-seed means. Weights are "
             "`click:purchase:revenue` (revenue per currency unit); *front* marks the weightings on their ranker's "
             "Pareto front of clicks and revenue.", "",
             "| ranker | weights | clicks per session | purchases | revenue per session | front |",
             "|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        cell = lambda m, f=".2f": f"{r[m]:{f}} [{r[m + '_low']:{f}}, {r[m + '_high']:{f}}]"  # noqa: E731
        front = "yes" if r["pareto"] else ("—" if r["ranker"] == REFERENCE else "no")
        lines.append(f"| {r['ranker']} | {r['weights']} | {cell('clicks')} | {cell('purchases')} | "
                     f"{cell('revenue', '.1f')} | {front} |")
    lines += command_footer(meta)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = study_parser("shoprank bench reward-front", __doc__.split("\n\n")[0], RESULTS)
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help="comma-separated click:purchase:revenue weightings")
    p.add_argument("--env", default="ShopRank-v0", help="registered env id")
    p.add_argument("--plot", type=Path, default=FIGURE, help="PNG of the front")
    args = p.parse_args(argv)
    try:
        specs = parse_weights(args.weights)
    except ValueError as exc:
        p.error(str(exc))
    check_counts(p, args)
    table = study(specs, args.env, list(range(args.seeds)), args.sessions)
    plot(table, args.plot, f"{args.env}: clicks vs revenue per session, {args.seeds} seeds × {args.sessions} sessions")
    meta = {"machine": machine_info(), "env": args.env, "seeds": args.seeds, "sessions": args.sessions,
            "weights": [label(s) for s in specs], "plot": str(args.plot),
            "command": study_command("shoprank bench reward-front", argv, skip=2)}
    write_study(args.out, "reward_front", meta, table, to_markdown(table, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
