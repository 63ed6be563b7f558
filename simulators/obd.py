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
"""Columns of an OBD ``all.csv`` the loader reads."""

_USER_FEATURES = OBD_COLUMNS[5:]


def _resolve(path: str | Path) -> Path:
    """The CSV file: ``path`` itself, or ``path/all.csv`` when ``path`` is a directory."""
    path = Path(path)
    csv = path / "all.csv" if path.is_dir() else path
    if not csv.is_file():
        raise InputNotFoundError(f"no Open Bandit Dataset file at {csv}: pass a folder holding all.csv "
                                "(e.g. ../shared/data/obd/random/all) or the path of the CSV itself.")
    return csv


def _user_key(features: pd.DataFrame) -> pd.Series:
    """``"u" + sha1`` prefix of the joined user features, one per row."""
    joined = features.astype(str).agg("|".join, axis=1)
    keys = {s: "u" + hashlib.sha1(s.encode()).hexdigest()[:12] for s in joined.unique()}
    return joined.map(keys)


def load_obd(path: str | Path) -> pd.DataFrame:
    """Read an OBD ``all.csv`` as an interaction log.

    Args:
        path: A folder holding ``all.csv`` (e.g. ``../shared/data/obd/random/all``) or the CSV file.

    Returns:
        A validated log (see :mod:`simulators.logs`), one row per OBD row, in file order.

    Raises:
        FileNotFoundError: no CSV at ``path``.
        ValueError: the CSV lacks OBD columns.
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
