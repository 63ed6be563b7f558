"""Argument parsing and output shared by the simulator studies (``ceiling``, ``lookahead``)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from encoders.atomic_files import atomic_write_text


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
