"""Argument parsing and output shared by the studies (``ceiling``, ``lookahead``, ``reward_front``, ``imitation``)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from encoders.atomic_files import atomic_write_text


def study_parser(prog: str, description: str, results: Path, sessions: int = 200,
                 sessions_help: str = "sessions per seed") -> argparse.ArgumentParser:
    """A study's parser with the flags every study has: ``--seeds`` (5), ``--sessions`` and ``--out`` (the folder
    of ``<stem>.{json,md}``, default ``results``); the study adds its own."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=sessions, help=sessions_help)
    parser.add_argument("--out", type=Path, default=results, help="folder of the study's .json and .md")
    return parser


def check_counts(parser: argparse.ArgumentParser, args: argparse.Namespace, *counts: str) -> None:
    """``parser.error`` unless ``--seeds >= 2`` (a CI needs two) and ``--sessions`` and each named count flag
    (``"draws"`` for ``--draws``) are ``>= 1``."""
    flags = ["sessions", *counts]
    if args.seeds < 2 or any(getattr(args, name) < 1 for name in flags):
        names = [f"--{name}" for name in flags]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        parser.error(f"--seeds must be >= 2 (for a CI){' and ' if len(names) == 1 else ', '}{listed} >= 1")


def study_command(prefix: str, argv: Sequence[str] | None, skip: int = 1) -> str:
    """The command line that reran a study: ``prefix`` and its arguments (``sys.argv[skip:]`` when ``argv`` is
    ``None``), for the report's footer."""
    return prefix + " " + " ".join(sys.argv[skip:] if argv is None else argv)


def command_footer(meta: dict) -> list[str]:
    """The Markdown lines that end every study's report: the command that produced it."""
    return ["", "Command: `" + meta["command"] + "`", ""]


def parse_numbers(parser: argparse.ArgumentParser, text: str, flag: str, minimum: float,
                  inclusive: bool) -> list[float]:
    """Comma-separated finite numbers ``>= minimum`` (``> minimum`` unless ``inclusive``); ``parser.error``
    naming ``flag`` otherwise."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        parser.error(f"{flag} must be comma-separated numbers, got {text!r}")
    bound = ">=" if inclusive else ">"
    if not values or not all(math.isfinite(v) and (v >= minimum if inclusive else v > minimum) for v in values):
        parser.error(f"{flag} needs at least one finite value, all {bound} {minimum:g}; got {text!r}")
    return values


def write_study(out: Path, stem: str, meta: dict, table: pd.DataFrame, markdown: str) -> None:
    """Write ``<out>/<stem>.json`` (``meta`` and the table's rows) and ``<out>/<stem>.md``, then print the
    Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{stem}.json",
                      json.dumps({**meta, "rows": table.to_dict("records")}, indent=2, default=float))
    atomic_write_text(out / f"{stem}.md", markdown)
    print(markdown)


def write_report(out: Path, stem: str, report: dict, markdown: str) -> None:
    """Write ``<out>/<stem>.json`` (``report``) and ``<out>/<stem>.md``, then print the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{stem}.json", json.dumps(report, indent=2, default=float))
    atomic_write_text(out / f"{stem}.md", markdown)
    print(markdown)
