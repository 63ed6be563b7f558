"""Learning curves as a first-class output: held-out reward vs env steps and wall time, over seeds.

Each trained agent writes ``learning_curve.csv`` into its run folder (``agents.factory.train_agent`` with
``eval_every``; evaluations on held-out shoppers of stream 3, never the training ones nor the final
comparison's). This module gathers them into one table, measures the reference levels (retriever order,
``profile_oracle``, ``oracle``) on the **same** held-out shoppers, and plots mean and 95% band over seeds:

* ``learning_curves.csv`` — ``agent, seed, env_steps, wall_s, reward`` (+ the other held-out metrics);
* ``learning_curves.png`` — reward vs env steps (left) and vs wall time (right), one line per agent with
  its Student-t 95% band over seeds, the reference levels as horizontal lines;
* ``learning_curve_references.csv`` — ``agent, seed, reward`` of the reference baselines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from encoders.errors import ShopRankError  # noqa: E402

REFERENCE_AGENTS = ("retriever", "profile_oracle", "oracle")
"""Baselines drawn as horizontal lines (those the env's shopper supports)."""
CURVE_FILE = "learning_curve.csv"


def collect_curves(train_root: Path, pattern: str = f"*/seed*/{CURVE_FILE}") -> pd.DataFrame:
    """Every learning curve below ``train_root`` matching ``pattern`` as one table.

    Compare's layout is ``<agent>/seed<k>/learning_curve.csv``; a curve in a folder not named ``seed<k>``
    (``shoprank train``'s run folder) is seed 0 of an agent named after that folder.

    Returns:
        ``agent, seed, env_steps, wall_s, reward, ...`` rows (empty when no curve was written).
    """
    frames = []
    for path in sorted(Path(train_root).glob(pattern)):
        frame = pd.read_csv(path)
        folder = path.parent
        is_seed = folder.name.startswith("seed") and folder.name[4:].isdigit()
        frame.insert(0, "seed", int(folder.name[4:]) if is_seed else 0)
        frame.insert(0, "agent", folder.parent.name if is_seed else folder.name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["agent", "seed", "env_steps", "wall_s", "reward"])


def reference_levels(env: Any, seeds: Sequence[int], n_sessions: int,
                     names: Iterable[str] = REFERENCE_AGENTS) -> pd.DataFrame:
    """Held-out reward of the reference baselines on the learning curves' shoppers (stream 3).

    A baseline the env's shopper cannot serve (e.g. an oracle with a custom simulator) is left out.

    Returns:
        ``agent, seed, reward`` rows.
    """
    from agents.baselines import make_baseline
    from agents.callbacks import held_out_metrics

    rows = []
    for name in names:
        for seed in seeds:
            try:
                agent = make_baseline(name, env, seed)
                reward = held_out_metrics(agent, env, n_sessions, seed)["reward"]
            except ShopRankError:
                break
            rows.append({"agent": name, "seed": seed, "reward": reward})
    return pd.DataFrame(rows, columns=["agent", "seed", "reward"])


def _band(values: np.ndarray) -> tuple[float, float, float]:
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def summarize_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and Student-t 95% band over seeds per ``(agent, env_steps)``; ``wall_s`` is the seeds' mean.

    Returns:
        ``agent, env_steps, wall_s, n_seeds, reward, ci95_low, ci95_high`` rows.
    """
    rows = []
    for (agent, steps), group in curves.groupby(["agent", "env_steps"], sort=True):
        mean, low, high = _band(group["reward"].to_numpy())
        rows.append({"agent": agent, "env_steps": steps, "wall_s": float(group["wall_s"].mean()),
                     "n_seeds": len(group), "reward": mean, "ci95_low": low, "ci95_high": high})
    return pd.DataFrame(rows)


def plot_curves(curves: pd.DataFrame, references: pd.DataFrame, out_png: Path) -> Path:
    """Reward vs env steps and vs wall time (mean, 95% band over seeds) with reference lines."""
    summary = summarize_curves(curves)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for agent, group in summary.groupby("agent"):
        for ax, x in zip(axes, ("env_steps", "wall_s")):
            line, = ax.plot(group[x], group["reward"], marker="o", ms=3, label=f"{agent} (n={group['n_seeds'].max()})")
            ax.fill_between(group[x], group["ci95_low"], group["ci95_high"], color=line.get_color(), alpha=0.2)
    styles = {"retriever": ":", "profile_oracle": "--", "oracle": "-."}
    for name, group in references.groupby("agent"):
        level = float(group["reward"].mean())
        for ax in axes:
            ax.axhline(level, color="grey", ls=styles.get(name, ":"), lw=1)
        axes[1].annotate(f"{name} {level:.2f}", (1.0, level), xycoords=("axes fraction", "data"), fontsize=8,
                         ha="right", va="bottom", color="dimgrey")
    axes[0].set_xlabel("env steps")
    axes[1].set_xlabel("wall time (s, incl. warm start)")
    axes[0].set_ylabel("held-out reward per session")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("learning curves: mean and 95% band over seeds (held-out shoppers)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)


def write_learning_curves(train_root: Path, out_dir: Path, env: Any, seeds: Sequence[int],
                          n_sessions: int, curves_glob: str = f"*/seed*/{CURVE_FILE}") -> dict[str, Path]:
    """Gather the curves below ``train_root`` (``curves_glob``) and write the CSVs and plot into ``out_dir``.

    Returns:
        Paths by name (``curves``, ``references``, ``plot``); empty when no agent wrote a curve.
    """
    curves = collect_curves(train_root, curves_glob)
    if curves.empty:
        return {}
    references = reference_levels(env, seeds, n_sessions)
    out_dir = Path(out_dir)
    paths = {"curves": out_dir / "learning_curves.csv", "references": out_dir / "learning_curve_references.csv",
             "plot": out_dir / "learning_curves.png"}
    curves.to_csv(paths["curves"], index=False)
    references.to_csv(paths["references"], index=False)
    plot_curves(curves, references, paths["plot"])
    return paths
