"""``shoprank contrast``: one agent across two ``shoprank compare`` runs, paired on the same shoppers.

An ablation is two ``compare`` runs that differ in one setting (``--set agent.aux_heads=true``,
``--set env.attribute_buckets=1024``) and share seeds and sessions. Common random numbers make them paired:
session ``s`` of seed ``k`` is the same shopper and query in both, and so are the held-out shoppers of the
learning curves (stream 3 per seed). This command reports, for ``--agent``:

* **final performance**: the paired difference B − A of every session metric (``sessions.csv``), mean and
  Student-t 95% CI over per-seed means (``--ci-over``, as ``compare``);
* **sample efficiency**: the paired difference of the held-out reward at every learning-curve point and of
  its mean over the points (the normalised area under the curve: a variant that learns faster has a larger
  one even when both end at the same level);
* one plot with both learning curves (mean and 95% band over seeds) and the reference levels of run A.

Example::

    shoprank contrast --runs runs/mtl_static_off runs/mtl_static_aux --labels off,aux --agent ppo_scratch \\
        --out runs/contrast_aux

Files in ``--out``: ``paired.csv``, ``curve_paired.csv``, ``learning_curves.png``, ``contrast.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from encoders.errors import ConfigError, InputNotFoundError, command_errors
from experiments.evaluate import paired_differences, t_interval
from experiments.learning_curves import plot_curves

AUC = "mean over points"
"""``env_steps`` label of the area-under-the-curve row of ``curve_paired.csv``."""


def _read(run: Path, name: str) -> pd.DataFrame:
    path = Path(run) / name
    if not path.is_file():
        raise InputNotFoundError(f"{path} not found: is {run} a finished `shoprank compare` run folder?")
    return pd.read_csv(path)


def _agent_rows(frame: pd.DataFrame, agent: str, run: Path, what: str) -> pd.DataFrame:
    rows = frame[frame["agent"] == agent]
    if rows.empty:
        raise ConfigError(f"agent {agent!r} is not in {Path(run) / what} (agents there: "
                          f"{sorted(set(frame['agent']))}).")
    return rows


def final_differences(runs: Sequence[Path], labels: Sequence[str], agent: str, ci_over: str = "auto") -> pd.DataFrame:
    """Paired ``labels[1] − labels[0]`` of ``agent``'s session metrics (:func:`paired_differences` rows)."""
    frames = []
    for run, label in zip(runs, labels):
        rows = _agent_rows(_read(run, "sessions.csv"), agent, run, "sessions.csv").copy()
        rows["agent"] = f"{agent} ({label})"
        frames.append(rows)
    keys = [set(zip(f["seed"], f["session"], f["reset_seed"])) for f in frames]
    if keys[0] != keys[1]:
        raise ConfigError("the two runs did not evaluate the same seeds and sessions (reset seeds differ); "
                          "rerun them with the same --seeds and --sessions.")
    both = pd.concat(frames, ignore_index=True)
    out = paired_differences(both, baseline=f"{agent} ({labels[0]})", ci_over=ci_over)
    return out[out["agent"] == f"{agent} ({labels[1]})"].reset_index(drop=True)


def curve_differences(curves: Sequence[pd.DataFrame], labels: Sequence[str]) -> pd.DataFrame:
    """Paired ``labels[1] − labels[0]`` held-out reward per curve point and of the mean over points.

    Args:
        curves: ``agent, seed, env_steps, reward`` rows of one agent per run.
        labels: Names of the two runs.

    Returns:
        ``env_steps, mean_a, mean_b, mean_diff, ci95_low, ci95_high, n`` (``env_steps`` is :data:`AUC` for the
        area row); CIs over seeds present in both runs.
    """
    a, b = (c.set_index(["seed", "env_steps"])["reward"] for c in curves)
    common = a.index.intersection(b.index)
    if common.empty:
        raise ConfigError("the two runs' learning curves share no (seed, env_steps) point; were they trained "
                          "with the same --train-steps and seeds?")
    diff = (b.loc[common] - a.loc[common]).rename("diff").reset_index()
    rows = []
    for steps, group in diff.groupby("env_steps", sort=True):
        mean, low, high, n = t_interval(group["diff"].to_numpy())
        rows.append({"env_steps": steps, f"mean_{labels[0]}": float(a.loc[group.set_index(["seed", "env_steps"]).index].mean()),
                     f"mean_{labels[1]}": float(b.loc[group.set_index(["seed", "env_steps"]).index].mean()),
                     "mean_diff": mean, "ci95_low": low, "ci95_high": high, "n": n})
    per_seed = diff.groupby("seed")["diff"].mean().to_numpy()
    mean, low, high, n = t_interval(per_seed)
    rows.append({"env_steps": AUC, f"mean_{labels[0]}": float(a.loc[common].mean()),
                 f"mean_{labels[1]}": float(b.loc[common].mean()), "mean_diff": mean, "ci95_low": low,
                 "ci95_high": high, "n": n})
    return pd.DataFrame(rows)


def contrast(runs: Sequence[Path], labels: Sequence[str], agent: str, out: Path, ci_over: str = "auto") -> dict[str, Path]:
    """Write the contrast of ``agent`` between two compare runs into ``out`` (see the module docstring)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final = final_differences(runs, labels, agent, ci_over)
    curves = []
    for run, label in zip(runs, labels):
        rows = _agent_rows(_read(run, "learning_curves.csv"), agent, run, "learning_curves.csv").copy()
        rows["agent"] = f"{agent} ({label})"
        curves.append(rows)
    per_point = curve_differences(curves, labels)
    references = _read(runs[0], "learning_curve_references.csv")
    paths = {"paired": out / "paired.csv", "curve_paired": out / "curve_paired.csv",
             "plot": out / "learning_curves.png", "markdown": out / "contrast.md"}
    final.to_csv(paths["paired"], index=False)
    per_point.to_csv(paths["curve_paired"], index=False)
    plot_curves(pd.concat(curves, ignore_index=True), references, paths["plot"])
    paths["markdown"].write_text(to_markdown(final, per_point, runs, labels, agent))
    return paths


def _config_changes(runs: Sequence[Path]) -> list[str]:
    """``key: A -> B`` for the compare settings that differ between the runs (from ``compare_config.json``)."""
    configs = []
    for run in runs:
        path = Path(run) / "compare_config.json"
        configs.append(json.loads(path.read_text()) if path.is_file() else {})

    def flat(value, prefix=""):
        if isinstance(value, dict):
            return {k2: v2 for k, v in value.items() for k2, v2 in flat(v, f"{prefix}{k}.").items()}
        return {prefix[:-1]: value}

    a, b = flat(configs[0]), flat(configs[1])
    return [f"`{key}`: {a.get(key)!r} → {b.get(key)!r}" for key in sorted(set(a) | set(b))
            if a.get(key) != b.get(key) and key != "argv"]


def to_markdown(final: pd.DataFrame, per_point: pd.DataFrame, runs: Sequence[Path], labels: Sequence[str],
                agent: str) -> str:
    lines = [f"# {agent}: {labels[1]} − {labels[0]} (paired on the same shoppers)", "",
             f"Runs: A = `{runs[0]}` ({labels[0]}), B = `{runs[1]}` ({labels[1]}). Differences B − A, mean and "
             "Student-t 95% CI.", ""]
    changes = _config_changes(runs)
    if changes:
        lines += ["Settings that differ: " + "; ".join(changes), ""]
    lines += ["## Final policy (evaluation sessions)", "", "| metric | B − A | 95% CI | relative | n |", "|---|---|---|---|---|"]
    for _, r in final.iterrows():
        lines.append(f"| {r['metric']} | {r['mean_diff']:+.3f} | [{r['ci95_low']:+.3f}, {r['ci95_high']:+.3f}] | "
                     f"{r['rel_diff']:+.1%} | {r['n']} |")
    lines += ["", "## Learning curve (held-out reward)", "",
              f"| env steps | {labels[0]} | {labels[1]} | B − A | 95% CI |", "|---|---|---|---|---|"]
    for _, r in per_point.iterrows():
        steps = r["env_steps"] if r["env_steps"] == AUC else f"{int(float(r['env_steps'])):,}"
        lines.append(f"| {steps} | {r[f'mean_{labels[0]}']:.3f} | {r[f'mean_{labels[1]}']:.3f} | "
                     f"{r['mean_diff']:+.3f} | [{r['ci95_low']:+.3f}, {r['ci95_high']:+.3f}] |")
    lines.append("")
    return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shoprank contrast", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", nargs=2, type=Path, required=True, metavar=("A", "B"), help="two compare run folders")
    p.add_argument("--labels", default="A,B", help="names of the two runs, comma-separated")
    p.add_argument("--agent", required=True, help="agent evaluated in both runs (e.g. ppo_scratch)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--ci-over", choices=("auto", "seeds", "sessions"), default="auto")
    return p


@command_errors("contrast")
def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    labels = [x.strip() for x in args.labels.split(",")]
    if len(labels) != 2 or not all(labels) or labels[0] == labels[1]:
        parser.error(f"--labels needs two distinct names, got {args.labels!r}")
    paths = contrast(args.runs, labels, args.agent, args.out, args.ci_over)
    print(paths["markdown"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
