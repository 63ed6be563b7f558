"""Interaction logs: one row per shown item, as a validated pandas DataFrame.

Columns (``LOG_COLUMNS``; extra columns are kept, after these):

============  ===========  ===========================================================================
column        dtype        meaning
============  ===========  ===========================================================================
session       any          id of the shopping session (int or str)
slate         int64        which slate of the session (0, 1, ...: one per query); optional, default 0
query         str          query text (or any string key standing for the context)
position      int64        0-based display position of the item in its slate
item          any          id of the shown item (int catalog row or str SKU)
click         bool         the item was clicked
purchase      bool         the item was bought (implies ``click``)
propensity    float64      probability the logging policy showed this item here, in ``(0, 1]``;
                           NaN when unknown
============  ===========  ===========================================================================

One *slate* -- rows sharing ``(session, slate)`` -- is the unit click models explain; its positions
must be distinct. A slate may have gaps (positions that were not logged): the fitters treat them as
not shown.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from encoders.errors import ConfigError, InputNotFoundError, LogSchemaError, MissingDependencyError

#: Positions are slots of one results page: the click models keep per-position parameters up to the
#: largest one, so a stray huge value would cost memory and time for nothing.
MAX_POSITION = 1000

REQUIRED_COLUMNS: tuple[str, ...] = ("session", "query", "position", "item", "click", "purchase", "propensity")
"""Columns every log must have."""

LOG_COLUMNS: tuple[str, ...] = ("session", "slate", "query", "position", "item", "click", "purchase", "propensity")
"""All schema columns in canonical order (``slate`` is optional on input)."""


def _fmt(value: Any) -> str:
    """A value as an error message shows it (numpy scalars as plain Python)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _non_numeric(s: pd.Series) -> Any:
    """The first value of ``s`` that is not a number (booleans count as not numbers)."""
    if pd.api.types.is_bool_dtype(s):
        return s.iloc[0]
    numeric = pd.to_numeric(s, errors="coerce")
    return s[numeric.isna() & s.notna()].iloc[0]


def _as_int(df: pd.DataFrame, col: str) -> pd.Series:
    """Column as ``int64``, or LogSchemaError when it holds anything but whole numbers."""
    s = df[col]
    if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
        raise LogSchemaError(f"log column '{col}' must hold integers; found {_fmt(_non_numeric(s))}.")
    values = s.to_numpy(dtype=float)
    frac = values != np.round(values)
    if np.any(frac):
        raise LogSchemaError(f"log column '{col}' must hold integers; found {_fmt(values[frac][0])}.")
    out = s.astype(np.int64)
    if np.any(out < 0):
        raise LogSchemaError(f"log column '{col}' must be >= 0; found {_fmt(out[out < 0].iloc[0])}.")
    return out


def _as_bool(df: pd.DataFrame, col: str) -> pd.Series:
    """Column as ``bool`` from booleans or 0/1 numbers, else LogSchemaError."""
    s = df[col]
    if pd.api.types.is_bool_dtype(s):
        return s.astype(bool)
    if not pd.api.types.is_numeric_dtype(s):
        raise LogSchemaError(f"log column '{col}' must hold booleans or 0/1 values; found {_fmt(_non_numeric(s))}.")
    bad = ~s.isin([0, 1])
    if bad.any():
        raise LogSchemaError(f"log column '{col}' must hold booleans or 0/1 values; found {_fmt(s[bad].iloc[0])}.")
    return s.astype(bool)


def validate_log(df: pd.DataFrame) -> pd.DataFrame:
    """Check a log against the schema and return a normalised copy.

    Normalisation: ``slate`` added (0) when absent; ``position``/``slate`` as ``int64``; ``click``/
    ``purchase`` as ``bool`` (0/1 accepted); ``query`` as ``str``; ``propensity`` as ``float64``;
    schema columns first in ``LOG_COLUMNS`` order, extra columns after; index reset.

    Args:
        df: The log, one row per shown item.

    Returns:
        The normalised log.

    Raises:
        LogSchemaError: (a ``ValueError``) naming the first missing or bad column.
    """
    if not isinstance(df, pd.DataFrame):
        raise LogSchemaError(f"log must be a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise LogSchemaError("log is missing required column(s): " + ", ".join(f"'{c}'" for c in missing) + ".")
    out = df.copy()
    if "slate" not in out.columns:
        out["slate"] = 0
    for col in ("session", "slate", "query", "position", "item", "click", "purchase"):
        n_missing = int(out[col].isna().sum())
        if n_missing:
            raise LogSchemaError(f"log column '{col}' has {n_missing} missing value(s).")
    out["slate"] = _as_int(out, "slate")
    out["position"] = _as_int(out, "position")
    if len(out) and int(out["position"].max()) >= MAX_POSITION:
        raise LogSchemaError(f"log column 'position' must be < {MAX_POSITION} (a slot on a results page); "
                             f"found {int(out['position'].max())}.")
    out["click"] = _as_bool(out, "click")
    out["purchase"] = _as_bool(out, "purchase")
    out["query"] = out["query"].astype(str)
    if not pd.api.types.is_numeric_dtype(out["propensity"]) or pd.api.types.is_bool_dtype(out["propensity"]):
        bad_value = _fmt(_non_numeric(out["propensity"]))
        raise LogSchemaError(f"log column 'propensity' must hold numbers; found {bad_value}.")
    prop = out["propensity"].astype(float)
    bad = prop.notna() & ~((prop > 0) & (prop <= 1))
    if bad.any():
        raise LogSchemaError(f"log column 'propensity' must be in (0, 1] or NaN; found {_fmt(prop[bad].iloc[0])}.")
    out["propensity"] = prop
    orphan = int((out["purchase"] & ~out["click"]).sum())
    if orphan:
        raise LogSchemaError(f"log column 'purchase' is True without a click in {orphan} row(s).")
    dup = int(out.duplicated(["session", "slate", "position"]).sum())
    if dup:
        raise LogSchemaError(f"log has {dup} duplicate (session, slate, position) row(s); "
                             "each shown position must appear once per slate.")
    extra = [c for c in out.columns if c not in LOG_COLUMNS]
    return out[list(LOG_COLUMNS) + extra].reset_index(drop=True)


def empty_log() -> pd.DataFrame:
    """A valid log with no rows."""
    return validate_log(pd.DataFrame({c: pd.Series([], dtype=t) for c, t in (
        ("session", np.int64), ("query", str), ("position", np.int64), ("item", np.int64),
        ("click", bool), ("purchase", bool), ("propensity", float))}))


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False)


def _read_csv(path: Path) -> pd.DataFrame:
    # Query strings are kept verbatim (no "NA"/"" -> NaN); only propensity may be missing.
    return pd.read_csv(path, dtype={"query": str}, keep_default_na=False,
                       na_values={"propensity": ["", "nan", "NaN"]})


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    _require_parquet()
    df.to_parquet(path, index=False)


def _read_parquet(path: Path) -> pd.DataFrame:
    _require_parquet()
    return pd.read_parquet(path)


def _require_parquet() -> None:
    """ImportError with the fix when no parquet engine is installed."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        try:
            import fastparquet  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError("writing or reading .parquet logs needs pyarrow or fastparquet; "
                              "install one, or use a .csv path.") from exc


_WRITERS: dict[str, Callable[[pd.DataFrame, Path], None]] = {".csv": _write_csv, ".parquet": _write_parquet}
_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {".csv": _read_csv, ".parquet": _read_parquet}


def _suffix(path: Path, table: dict[str, Any]) -> str:
    suffix = path.suffix.lower()
    if suffix not in table:
        raise ConfigError(f"unsupported log file suffix '{path.suffix}' in {path}; use one of: "
                         + ", ".join(sorted(table)) + ".")
    return suffix


def write_log(df: pd.DataFrame, path: str | Path) -> Path:
    """Validate ``df`` and write it to ``path`` (format from the suffix: ``.csv`` or ``.parquet``).

    Returns:
        The path written.
    """
    path = Path(path)
    writer = _WRITERS[_suffix(path, _WRITERS)]
    df = validate_log(df)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(df, path)
    return path


def read_log(path: str | Path) -> pd.DataFrame:
    """Read a log written by :func:`write_log` (or any file with the schema) and validate it.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: unsupported suffix, or a schema violation (:class:`LogSchemaError`).
    """
    path = Path(path)
    reader = _READERS[_suffix(path, _READERS)]
    if not path.is_file():
        raise InputNotFoundError(f"no log file at {path}.")
    try:
        frame = reader(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise LogSchemaError(f"{path} is not a readable log: {exc}") from None
    return validate_log(frame)


class LogRecorder:
    """Accumulates log rows slate by slate (what an environment calls after each response).

    Each :meth:`record` call is one slate; calls with the same ``session_id`` get slate numbers 0, 1, ...
    Empty slots (``item == -1`` for integer ids) are not logged, so a slate may have position gaps.

    Example:
        >>> rec = LogRecorder()
        >>> rec.record(7, "red shoes", np.array([3, 1]), np.array([True, False]), np.array([False, False]), 1.0)
        >>> rec.to_frame()[["session", "position", "item", "click"]].values.tolist()
        [[7, 0, 3, True], [7, 1, 1, False]]
    """

    def __init__(self) -> None:
        self._chunks: list[pd.DataFrame] = []
        self._slates: dict[Any, int] = {}
        self._n_rows = 0

    def __len__(self) -> int:
        """Number of rows recorded so far."""
        return self._n_rows

    @property
    def n_slates(self) -> int:
        """Number of :meth:`record` calls so far."""
        return sum(self._slates.values())

    def record(self, session_id: Any, query_text: str, items: np.ndarray, clicks: np.ndarray,
               purchases: np.ndarray, propensities: np.ndarray | float = np.nan) -> None:
        """Add one slate.

        Args:
            session_id: Id of the shopping session (hashable; int or str).
            query_text: The query the slate answered.
            items: ``(N,)`` item ids in display order; ``-1`` marks an empty slot.
            clicks: ``bool (N,)``.
            purchases: ``bool (N,)``; a purchase needs a click.
            propensities: ``float (N,)`` or a scalar for all slots (NaN = unknown).

        Raises:
            ValueError: the arrays are not 1-D of one length, or a purchase has no click.
        """
        items = np.asarray(items)
        clicks = np.asarray(clicks, dtype=bool)
        purchases = np.asarray(purchases, dtype=bool)
        props = np.broadcast_to(np.asarray(propensities, dtype=float), items.shape) if items.ndim == 1 \
            else np.asarray(propensities, dtype=float)
        shapes = {"items": items.shape, "clicks": clicks.shape, "purchases": purchases.shape,
                  "propensities": props.shape}
        if items.ndim != 1 or len(set(shapes.values())) != 1:
            raise ValueError("items, clicks, purchases and propensities must be 1-D arrays of one length, got "
                             + ", ".join(f"{k} {v}" for k, v in shapes.items()) + ".")
        if np.any(purchases & ~clicks):
            raise ValueError("a purchase needs a click in the same slot; got purchases without clicks at "
                             f"positions {np.flatnonzero(purchases & ~clicks).tolist()}.")
        shown = items != -1 if np.issubdtype(items.dtype, np.integer) else np.ones(len(items), dtype=bool)
        slate = self._slates.get(session_id, 0)
        self._slates[session_id] = slate + 1
        n = int(shown.sum())
        self._chunks.append(pd.DataFrame({
            "session": [session_id] * n, "slate": np.full(n, slate, dtype=np.int64), "query": [str(query_text)] * n,
            "position": np.flatnonzero(shown).astype(np.int64), "item": items[shown], "click": clicks[shown],
            "purchase": purchases[shown], "propensity": props[shown]}))
        self._n_rows += n

    def to_frame(self) -> pd.DataFrame:
        """All rows so far as a validated log DataFrame."""
        if not self._chunks:
            return empty_log()
        return validate_log(pd.concat(self._chunks, ignore_index=True))

    def write(self, path: str | Path) -> Path:
        """Write the rows so far with :func:`write_log`."""
        return write_log(self.to_frame(), path)
