"""Plots of a run folder: learning curves from TensorBoard scalars, metric bars with CIs, CTR by position.

Matplotlib runs on the ``Agg`` backend (no display needed); every function writes a PNG and returns
its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from encoders.errors import InputNotFoundError

SCALAR_PREFIX = "shop/"


def read_scalars(run_dir: str | Path, prefix: str = SCALAR_PREFIX) -> pd.DataFrame:
    """All scalars under ``prefix`` from every TensorBoard event file below ``run_dir``.

    Returns:
        ``run, tag, step, value`` rows; ``run`` is the event file's folder relative to ``run_dir``.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = Path(run_dir)
    if not root.is_dir():
        raise InputNotFoundError(f"run folder {root} does not exist.")
    rows = []
    for folder in sorted({p.parent for p in root.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        run = str(folder.relative_to(root)) or "."
        for tag in acc.Tags().get("scalars", []):
            if tag.startswith(prefix):
                rows += [{"run": run, "tag": tag, "step": e.step, "value": e.value} for e in acc.Scalars(tag)]
    return pd.DataFrame(rows, columns=["run", "tag", "step", "value"])


def plot_learning_curves(run_dir: str | Path, out_png: str | Path, prefix: str = SCALAR_PREFIX,
                         tags: Sequence[str] | None = None) -> Path:
    """One panel per ``shop/`` scalar, one line per run (event folder) below ``run_dir``.

    Args:
        run_dir: Folder searched recursively for ``events.out.tfevents.*``.
        out_png: Output image.
        prefix: Tag prefix to plot.
        tags: Only these tags (default: all under ``prefix``, ``shop/ctr_pos*`` last).

    Raises:
        FileNotFoundError: no event file, or no scalar under ``prefix``.
    """
    data = read_scalars(run_dir, prefix)
    if data.empty:
        raise InputNotFoundError(f"no TensorBoard scalars under '{prefix}' in {run_dir}.")
    all_tags = sorted(data["tag"].unique(), key=lambda t: ("ctr_pos" in t, t))
    tags = [t for t in (tags or all_tags) if t in set(all_tags)]
    cols = min(3, len(tags))
    rows = int(np.ceil(len(tags) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, tag in zip(axes.ravel(), tags):
        for run, frame in data[data["tag"] == tag].groupby("run"):
            frame = frame.sort_values("step")
            ax.plot(frame["step"], frame["value"], label=run, lw=1.2)
        ax.set_title(tag, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(tags):]:
        ax.axis("off")
    if data["run"].nunique() > 1:
        axes.ravel()[0].legend(fontsize=6)
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_metric_bars(summary: pd.DataFrame, out_png: str | Path, metrics: Sequence[str] = ("reward",)) -> Path:
    """Bars of each agent's mean with 95% CI error bars, one panel per metric.

    Args:
        summary: ``agent, metric, mean, ci95_low, ci95_high, n`` rows.
        out_png: Output image.
        metrics: Metrics to show (those missing from ``summary`` are skipped).
    """
    metrics = [m for m in metrics if m in set(summary["metric"])] or ["reward"]
    agents = list(dict.fromkeys(summary["agent"]))
    cols = min(3, len(metrics))
    rows = int(np.ceil(len(metrics) / cols))
    width = max(3.2, 0.45 * len(agents) + 1.5)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.4 * rows), squeeze=False)
    colors = plt.cm.tab10(np.arange(len(agents)) % 10)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    for ax, metric in zip(axes.ravel(), metrics):
        part = summary[summary["metric"] == metric].set_index("agent").reindex(agents)
        mean = part["mean"].to_numpy(dtype=float)
        low = np.nan_to_num(mean - part["ci95_low"].to_numpy(dtype=float))
        high = np.nan_to_num(part["ci95_high"].to_numpy(dtype=float) - mean)
        ax.bar(np.arange(len(agents)), mean, yerr=[low, high], color=colors, capsize=3)
        ax.set_xticks(np.arange(len(agents)))
        ax.set_xticklabels(agents, rotation=45, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_ctr_by_position(by_position: pd.DataFrame, out_png: str | Path) -> Path:
    """CTR per slot (1 = top), one line per agent. ``by_position``: ``agent, position, ctr`` rows."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for agent, frame in by_position.groupby("agent", sort=False):
        frame = frame.sort_values("position")
        ax.plot(frame["position"], frame["ctr"], marker="o", ms=3, label=agent)
    ax.set_xlabel("position")
    ax.set_ylabel("CTR")
    ax.set_title("CTR by position")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
