"""``shoprank report RUN_DIR``: rebuild the report of a run folder.

For a comparison folder (it has ``sessions.csv``): the summary tables, paired differences and plots.
For any folder holding TensorBoard events (a training run, or a comparison's ``train/``): the learning
curves of the ``shop/`` scalars (and ``eval/`` when present) as ``learning_curves.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from encoders.errors import InputNotFoundError, command_errors
from experiments.evaluate import write_summary
from experiments.plots import plot_learning_curves
from experiments.run_folder import RunFolder


def build_report(run_dir: Path, baseline: str = "retriever", out: Path | None = None) -> list[Path]:
    """Write every report file that ``run_dir`` has the data for into ``out`` (default ``run_dir``);
    returns the paths written."""
    out = run_dir if out is None else out
    written: list[Path] = []
    sessions = run_dir / "sessions.csv"
    if sessions.is_file():
        written += list(write_summary(pd.read_csv(sessions), out, baseline=baseline).values())
    if any(run_dir.rglob("events.out.tfevents.*")):
        for prefix, name in (("shop/", "learning_curves.png"), ("eval/", "eval_curves.png")):
            try:
                written.append(plot_learning_curves(run_dir, out / name, prefix=prefix))
            except FileNotFoundError:
                continue
    return written


@command_errors("report")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoprank report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a compare --out folder or a train run folder")
    parser.add_argument("--baseline", default="retriever", help="agent for paired differences")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        raise InputNotFoundError(f"no such folder: {args.run_dir}")
    with RunFolder(args.run_dir, "report", update=True) as run:  # locked: not while a run writes there
        with run.staging() as staging:  # each file renamed into place whole
            written = [run.moved(p, staging) for p in build_report(args.run_dir, args.baseline, out=staging)]
    if not written:
        raise InputNotFoundError(f"nothing to report in {args.run_dir} (no sessions.csv, no TensorBoard events)")
    for path in written:
        print(path)
    return 0
