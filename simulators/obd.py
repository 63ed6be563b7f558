"""Load the Open Bandit Dataset (Saito et al., 2020) into the interaction-log format.

OBD logs one recommended item per row (``timestamp, item_id, position (1-3), click, propensity_score,
user_feature_0..3, ...``). In the full dataset the three positions of one impression share a timestamp;
the small sample keeps a subset of rows, so most impressions have one row, a few two. The mapping:

==============  ========================================================================================
log column      from OBD
==============  ========================================================================================
session         impression number: rows sharing ``timestamp`` and user features, in file order
query           ``"u" + sha1(user_feature_0..3)[:12]``: the user context stands in for a query
position        ``position - 1`` (0-based)
item            ``item_id``
click           ``click``
purchase        False (OBD has no purchases)
propensity      ``propensity_score``
timestamp       kept as an extra column
==============  ========================================================================================
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from encoders.errors import InputNotFoundError, LogSchemaError
from simulators.logs import validate_log

OBD_COLUMNS: tuple[str, ...] = ("timestamp", "item_id", "position", "click", "propensity_score",
                                "user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3")
"""Columns of an OBD campaign CSV the loader reads."""

_USER_FEATURES = OBD_COLUMNS[5:]

ITEM_CONTEXT = "item_context.csv"
"""The item-feature file OBD ships beside each campaign log."""


def _resolve(path: str | Path) -> Path:
    """The CSV file: ``path`` itself, or the one campaign CSV in the folder ``path`` (``all.csv``,
    ``men.csv``, ``women.csv`` or any other name; ``item_context.csv`` is not a log)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.glob("*.csv") if p.name != ITEM_CONTEXT)
        if len(found) == 1:
            return found[0]
        if not found:
            raise InputNotFoundError(f"no Open Bandit Dataset file in {path}: pass a folder holding one campaign "
                                     "CSV (all.csv, men.csv or women.csv, e.g. ../shared/data/obd/random/all) or the "
                                     "path of the CSV itself.")
        raise InputNotFoundError(f"{path} holds several CSV files ({', '.join(p.name for p in found)}): pass the "
                                 "path of the campaign CSV to read.")
    if not path.is_file():
        raise InputNotFoundError(f"no Open Bandit Dataset file at {path}: pass a folder holding one campaign CSV "
                                 "(all.csv, men.csv or women.csv, e.g. ../shared/data/obd/random/all) or the path "
                                 "of the CSV itself.")
    return path


def _user_key(features: pd.DataFrame) -> pd.Series:
    """``"u" + sha1`` prefix of the joined user features, one per row."""
    joined = features.astype(str).agg("|".join, axis=1)
    keys = {s: "u" + hashlib.sha1(s.encode()).hexdigest()[:12] for s in joined.unique()}
    return joined.map(keys)


def n_items(path: str | Path) -> int | None:
    """Number of items (actions) from the ``item_context.csv`` next to the campaign CSV; None if absent."""
    ctx = _resolve(path).parent / ITEM_CONTEXT
    if not ctx.is_file():
        return None
    return int(len(pd.read_csv(ctx, usecols=["item_id"])))


def load_obd(path: str | Path) -> pd.DataFrame:
    """Read an OBD campaign CSV as an interaction log.

    Args:
        path: A folder holding one campaign CSV (``all.csv``, ``men.csv``, ``women.csv``; e.g.
            ``../shared/data/obd/random/all``) or the CSV file.

    Returns:
        A validated log (see :mod:`simulators.logs`), one row per OBD row, in file order.

    Raises:
        InputNotFoundError: no CSV at ``path``, or a folder with several.
        LogSchemaError: the CSV lacks OBD columns.
    """
    csv = _resolve(path)
    header = pd.read_csv(csv, nrows=0).columns
    missing = [c for c in OBD_COLUMNS if c not in header]
    if missing:
        raise LogSchemaError(f"{csv} is not an Open Bandit Dataset file: missing column(s) "
                         + ", ".join(f"'{c}'" for c in missing) + ".")
    raw = pd.read_csv(csv, usecols=list(OBD_COLUMNS))
    query = _user_key(raw[list(_USER_FEATURES)])
    impression = raw.groupby(["timestamp", *_USER_FEATURES], sort=False).ngroup().to_numpy()
    return validate_log(pd.DataFrame({
        "session": impression.astype(np.int64),
        "query": query.to_numpy(),
        "position": raw["position"].to_numpy() - 1,
        "item": raw["item_id"].to_numpy(),
        "click": raw["click"].to_numpy(),
        "purchase": np.zeros(len(raw), dtype=bool),
        "propensity": raw["propensity_score"].to_numpy(dtype=float),
        "timestamp": raw["timestamp"].to_numpy(),
    }))
