"""``fidelity``: fit every click model to a log and report held-out fidelity against the baselines.

Usage::

    python -m simulators.fidelity_cli --obd ../shared/data/obd/random/all --out runs/fidelity
    python -m simulators.fidelity_cli --log logs/sessions.csv --out runs/fidelity --test-fraction 0.2

Writes ``fidelity.csv`` (every number with its interval), ``fidelity.md`` (a Markdown table),
``perplexity_by_position.png`` and ``click_models/<model>.json`` (each fitted click model's position effects:
examination / continuation per position, persistence, satisfaction, the attractiveness prior) into
``--out``, and prints the Markdown table. The env's shopper runs on a saved model with
``shoprank train --set env.shopper.click_model=<out>/click_models/PBM.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from encoders.atomic_files import atomic_path, atomic_write_text
from encoders.errors import command_errors
from simulators.fitting import (PRIOR_GRID, PRIOR_ONLY, FittedModel, default_estimators, fidelity_report,
                                fitted_model_json, split_log)
from simulators.logs import read_log
from simulators.obd import load_obd


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shoprank fidelity", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--log", type=Path, help="interaction log (.csv or .parquet) in the simulators.logs schema")
    src.add_argument("--obd", type=Path,
                     help="Open Bandit Dataset campaign CSV, or a folder holding one (all.csv, men.csv, women.csv)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--test-fraction", type=float, default=0.3, help="share of sessions held out (default 0.3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the bootstrap (default 0)")
    p.add_argument("--n-bootstrap", type=int, default=200, help="bootstrap resamples for the CIs (default 200)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval coverage (default 0.95)")
    p.add_argument("--prior-strength", type=float, default=None,
                   help="pseudo-observations smoothing per-(query, item) parameters (default: chosen per model by "
                        "cross-validation on the training split, falling back to the prior when the data cannot "
                        "support per-item parameters)")
    p.add_argument("--cv-folds", type=int, default=3, help="folds of that cross-validation (default 3)")
    p.add_argument("--max-iter", type=int, default=500, help="EM iterations at most (default 500)")
    p.add_argument("--progress", action="store_true", help="show progress bars over EM iterations")
    return p


def _with_ci(report: pd.DataFrame, col: str, digits: int) -> pd.Series:
    """``"v [low, high]"`` strings for one metric column."""
    fmt = f"{{:.{digits}f}}"
    return report.apply(lambda r: f"{fmt.format(r[col])} [{fmt.format(r[col + '_low'])}, "
                                  f"{fmt.format(r[col + '_high'])}]", axis=1)


def to_markdown(report: pd.DataFrame) -> str:
    """The report of :func:`simulators.fitting.fidelity_report` as a Markdown table (value [CI])."""
    positions = [c for c in report.columns if c.startswith("perplexity@") and not c.endswith(("_low", "_high"))]
    table = pd.DataFrame({"model": report["model"],
                          "LL / impression": _with_ci(report, "log_likelihood", 5),
                          "LL gain vs constant": _with_ci(report, "ll_gain_vs_constant", 5),
                          "perplexity": _with_ci(report, "perplexity", 4)})
    for col in positions:
        table[col] = _with_ci(report, col, 4)
    if "prior_strength" in report:
        table["prior strength"] = [("prior only" if v >= PRIOR_ONLY else f"{v:g}") if np.isfinite(v) else "-"
                                   for v in report["prior_strength"]]
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    conf = report.attrs.get("confidence", 0.95)
    note = (f"\n\nHeld-out log-likelihood per impression (higher is better) and perplexity (lower is better; "
            f"1 is perfect) with {conf:.0%} bootstrap intervals over test slates; "
            f"{report.attrs.get('n_train_slates', '?')} training / {report.attrs.get('n_test_slates', '?')} "
            "test slates.\n")
    notes = [f"- {m}: {n}." for m, n in zip(report["model"], report.get("note", [""] * len(report))) if n]
    return "\n".join([header, rule, *body]) + note + ("\n" + "\n".join(notes) + "\n" if notes else "")


def plot_perplexity(report: pd.DataFrame, path: Path) -> Path:
    """PNG of perplexity per position (with intervals), one series per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = [c for c in report.columns if c.startswith("perplexity@") and not c.endswith(("_low", "_high"))]
    x = np.arange(1, len(positions) + 1)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    width = 0.6 / max(len(report), 1)
    for i in range(len(report)):
        row = report.iloc[i]
        vals = row[positions].to_numpy(float)
        low = row[[c + "_low" for c in positions]].to_numpy(float)
        high = row[[c + "_high" for c in positions]].to_numpy(float)
        ax.errorbar(x + (i - (len(report) - 1) / 2) * width, vals, yerr=[vals - low, high - vals], fmt="o-",
                    capsize=3, label=str(row["model"]))
    ax.set_xticks(x)
    ax.set_xlabel("position")
    ax.set_ylabel("held-out perplexity (lower is better)")
    ax.set_title("Click-model fidelity by position")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


CLICK_MODEL_DIR = "click_models"
"""Subfolder of ``--out`` holding one ``<model>.json`` per fitted click model."""


def save_click_models(report: pd.DataFrame, fitted: dict[str, FittedModel], n_positions: int, out: Path,
                      source: str) -> list[Path]:
    """Write ``out/click_models/<model>.json`` for every fitted click model of the report (the baselines have
    none; the report's note on the model goes into the file); returns the paths written."""
    folder = out / CLICK_MODEL_DIR
    written = []
    for row in report.itertuples(index=False):
        strength = float(row.prior_strength)
        data = fitted_model_json(fitted[row.model], n_positions, strength if np.isfinite(strength) else None,
                                 source, row.note)
        if data is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        written.append(atomic_write_text(folder / f"{row.model}.json", json.dumps(data, indent=1) + "\n"))
    return written


@command_errors("fidelity")
def main(argv: list[str] | None = None) -> int:
    """Run the ``fidelity`` command; returns the exit status (0 ok, 2 bad input)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    log = load_obd(args.obd) if args.obd is not None else read_log(args.log)
    train, test = split_log(log, args.test_fraction, np.random.default_rng(args.seed))
    fixed = args.prior_strength is not None
    fitted: dict[str, FittedModel] = {}
    report = fidelity_report(train, test, estimators=default_estimators(args.prior_strength if fixed else 1.0,
                                                                        args.max_iter),
                             n_bootstrap=args.n_bootstrap, confidence=args.confidence, seed=args.seed,
                             progress=args.progress, prior_grid=None if fixed else PRIOR_GRID, cv_folds=args.cv_folds,
                             fitted=fitted)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "fidelity.csv") as tmp:
        report.to_csv(tmp, index=False)
    markdown = to_markdown(report)
    atomic_write_text(args.out / "fidelity.md", markdown)
    with atomic_path(args.out / "perplexity_by_position.png") as tmp:
        plot_perplexity(report, tmp)
    saved = save_click_models(report, fitted, int(train["position"].max()) + 1, args.out,
                              str(args.obd if args.obd is not None else args.log))
    print(markdown)
    print(f"click models for the env (--set env.shopper.click_model=PATH): {', '.join(str(p) for p in saved)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
