"""Interaction-log schema, file round trips and the recorder."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulators.logs import LOG_COLUMNS, LogRecorder, LogSchemaError, empty_log, read_log, validate_log, write_log


def good_log() -> pd.DataFrame:
    return pd.DataFrame({
        "session": [0, 0, 0, 1, 1],
        "query": ["red shoes", "red shoes", "red shoes", "NA", "NA"],
        "position": [0, 1, 2, 0, 2],
        "item": [10, 11, 12, 10, 13],
        "click": [1, 0, 1, 0, 0],
        "purchase": [True, False, False, False, False],
        "propensity": [1.0, 0.5, np.nan, 0.25, 0.25],
    })


def test_validate_normalises() -> None:
    out = validate_log(good_log().assign(extra="x"))
    assert list(out.columns) == [*LOG_COLUMNS, "extra"]
    assert out["click"].dtype == bool and out["position"].dtype == np.int64
    assert (out["slate"] == 0).all()
    assert out["query"].tolist()[-1] == "NA"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.drop(columns=["click", "position"]), "log is missing required column(s): 'position', 'click'."),
    (lambda d: d.assign(position=[0, 1, 2, -1, 2]), "log column 'position' must be >= 0; found -1."),
    (lambda d: d.assign(position=[0, 1, 2, 5000, 2]), "log column 'position' must be < 1000 (a slot on a results page); found 5000."),
    (lambda d: d.assign(position=[0, 1, 2.5, 0, 2]), "log column 'position' must hold integers; found 2.5."),
    (lambda d: d.assign(position=list("abcde")), "log column 'position' must hold integers; found 'a'."),
    (lambda d: d.assign(click=[0, 2, 0, 0, 0]), "log column 'click' must hold booleans or 0/1 values; found 2."),
    (lambda d: d.assign(purchase=list("yynnn")),
     "log column 'purchase' must hold booleans or 0/1 values; found 'y'."),
    (lambda d: d.assign(item=[1, None, 3, 4, 5]), "log column 'item' has 1 missing value(s)."),
    (lambda d: d.assign(propensity=[1.0, 1.5, 1.0, 1.0, 1.0]),
     "log column 'propensity' must be in (0, 1] or NaN; found 1.5."),
    (lambda d: d.assign(propensity=[1.0, 0.0, 1.0, 1.0, 1.0]),
     "log column 'propensity' must be in (0, 1] or NaN; found 0.0."),
    (lambda d: d.assign(propensity=list("abcde")), "log column 'propensity' must hold numbers; found 'a'."),
    (lambda d: d.assign(purchase=[False, True, False, False, False]),
     "log column 'purchase' is True without a click in 1 row(s)."),
    (lambda d: d.assign(position=[0, 0, 2, 0, 2]),
     "log has 1 duplicate (session, slate, position) row(s); each shown position must appear once per slate."),
    (lambda d: d.values.tolist(), "log must be a pandas DataFrame, got list."),
])
def test_bad_logs_raise_exact_messages(mutate, message: str) -> None:
    with pytest.raises(LogSchemaError, match=re.escape(message)):
        validate_log(mutate(good_log()))
    assert issubclass(LogSchemaError, ValueError)


def test_csv_round_trip(tmp_path: Path) -> None:
    path = write_log(good_log(), tmp_path / "sub" / "log.csv")
    back = read_log(path)
    pd.testing.assert_frame_equal(back, validate_log(good_log()))


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape(f"unsupported log file suffix '.txt' in {tmp_path / 'log.txt'}; "
                                                   "use one of: .csv, .parquet.")):
        write_log(good_log(), tmp_path / "log.txt")
    with pytest.raises(FileNotFoundError, match=re.escape(f"no log file at {tmp_path / 'missing.csv'}.")):
        read_log(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(LogSchemaError, match=re.escape(f"{tmp_path / 'empty.csv'} is not a readable log: ")):
        read_log(tmp_path / "empty.csv")
    (tmp_path / "bad.csv").write_text("session,query,item\n0,q,1\n")
    with pytest.raises(LogSchemaError, match=re.escape("log is missing required column(s): 'position', 'click', "
                                                       "'purchase', 'propensity'.")):
        read_log(tmp_path / "bad.csv")


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_parquet_round_trip_or_clear_error(tmp_path: Path) -> None:
    has_engine = any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet"))
    if has_engine:
        pd.testing.assert_frame_equal(read_log(write_log(good_log(), tmp_path / "l.parquet")), validate_log(good_log()))
    else:
        with pytest.raises(ImportError, match=re.escape("writing or reading .parquet logs needs pyarrow or "
                                                        "fastparquet; install one, or use a .csv path.")):
            write_log(good_log(), tmp_path / "l.parquet")


def test_recorder_accumulates_slates(tmp_path: Path) -> None:
    rec = LogRecorder()
    assert len(rec) == 0 and len(rec.to_frame()) == 0
    rec.record(5, "boots", np.array([3, -1, 7]), np.array([True, False, True]), np.array([True, False, False]),
               np.array([0.5, 1.0, 0.2]))
    rec.record(5, "socks", np.array([2, 4]), np.zeros(2, bool), np.zeros(2, bool))
    rec.record("s2", "boots", np.array([3]), np.ones(1, bool), np.zeros(1, bool), 1.0)
    df = rec.to_frame()
    assert len(rec) == 5 and rec.n_slates == 3
    assert df["slate"].tolist() == [0, 0, 1, 1, 0]
    assert df["position"].tolist() == [0, 2, 0, 1, 0]  # the empty slot (-1) is not logged
    assert df["item"].tolist() == [3, 7, 2, 4, 3]
    assert df["propensity"].iloc[:2].tolist() == [0.5, 0.2] and df["propensity"].iloc[2:4].isna().all()
    assert read_log(rec.write(tmp_path / "rec.csv"))["session"].astype(str).tolist() == ["5"] * 4 + ["s2"]


def test_recorder_rejects_bad_calls() -> None:
    rec = LogRecorder()
    with pytest.raises(ValueError, match=re.escape("items, clicks, purchases and propensities must be 1-D arrays of "
                                                   "one length, got items (3,), clicks (2,), purchases (3,), "
                                                   "propensities (3,).")):
        rec.record(0, "q", np.arange(3), np.zeros(2, bool), np.zeros(3, bool))
    with pytest.raises(ValueError, match=re.escape("a purchase needs a click in the same slot; got purchases "
                                                   "without clicks at positions [1].")):
        rec.record(0, "q", np.arange(2), np.zeros(2, bool), np.array([False, True]))
    assert len(rec) == 0


def test_empty_log_is_valid() -> None:
    assert list(empty_log().columns) == list(LOG_COLUMNS)
