"""Open Bandit Dataset loader and the end-to-end fit + fidelity report on the real sample."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulators.fidelity_cli import main as fidelity_main
from simulators.fitting import fidelity_report, split_log
from simulators.logs import LOG_COLUMNS
from simulators.obd import load_obd, n_items


@pytest.fixture(scope="module")
def obd_random(shared_data: Path) -> pd.DataFrame:
    return load_obd(shared_data / "obd" / "random" / "all")


def test_random_sample_maps_to_log(obd_random: pd.DataFrame, shared_data: Path) -> None:
    raw = pd.read_csv(shared_data / "obd" / "random" / "all" / "all.csv")
    log = obd_random
    assert list(log.columns)[: len(LOG_COLUMNS)] == list(LOG_COLUMNS)
    assert len(log) == len(raw) == 10_000
    np.testing.assert_array_equal(log["position"], raw["position"] - 1)
    assert set(log["position"]) == {0, 1, 2}
    np.testing.assert_array_equal(log["item"], raw["item_id"])
    assert log["click"].sum() == raw["click"].sum()
    np.testing.assert_allclose(log["propensity"], 0.0125)  # uniform random over 80 items, kept
    assert not log["purchase"].any()
    # Rows sharing a timestamp (and user) are one impression: 10,000 rows, 9,991 sessions.
    assert log["session"].nunique() == raw["timestamp"].nunique() == 9_991
    assert log.groupby("session")["query"].nunique().max() == 1
    assert log["query"].str.match(r"^u[0-9a-f]{12}$").all()


def test_bts_sample_keeps_its_propensities(shared_data: Path) -> None:
    raw = pd.read_csv(shared_data / "obd" / "bts" / "all" / "all.csv")
    log = load_obd(shared_data / "obd" / "bts" / "all" / "all.csv")  # the CSV path works too
    np.testing.assert_allclose(log["propensity"], raw["propensity_score"])


def test_wrong_path_and_missing_columns(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="^" + re.escape(
            f"no Open Bandit Dataset file at {missing}: pass a folder holding one campaign CSV (all.csv, men.csv "
            "or women.csv, e.g. ../shared/data/obd/random/all) or the path of the CSV itself.") + "$"):
        load_obd(missing)
    (tmp_path / "item_context.csv").write_text("item_id\n0\n")
    with pytest.raises(FileNotFoundError, match="^" + re.escape(
            f"no Open Bandit Dataset file in {tmp_path}: pass a folder holding one campaign CSV (all.csv, men.csv "
            "or women.csv, e.g. ../shared/data/obd/random/all) or the path of the CSV itself.") + "$"):
        load_obd(tmp_path)  # a folder with only item_context.csv
    bad = tmp_path / "all.csv"
    bad.write_text("timestamp,item_id,position,click\n2019-11-24,1,1,0\n")
    with pytest.raises(ValueError, match=re.escape(
            f"{bad} is not an Open Bandit Dataset file: missing column(s) 'propensity_score', 'user_feature_0', "
            "'user_feature_1', 'user_feature_2', 'user_feature_3'.")):
        load_obd(tmp_path)
    (tmp_path / "men.csv").write_text("x\n")
    with pytest.raises(FileNotFoundError, match="^" + re.escape(
            f"{tmp_path} holds several CSV files (all.csv, men.csv): pass the path of the campaign CSV to read.") + "$"):
        load_obd(tmp_path)


def test_any_campaign_name(shared_data: Path, tmp_path: Path) -> None:
    """A folder holding men.csv (or any single campaign CSV) loads like one holding all.csv."""
    src = shared_data / "obd" / "random" / "all"
    folder = tmp_path / "men"
    folder.mkdir()
    (folder / "men.csv").write_text((src / "all.csv").read_text())
    (folder / "item_context.csv").write_text((src / "item_context.csv").read_text())
    pd.testing.assert_frame_equal(load_obd(folder), load_obd(src))
    assert n_items(folder) == 80


def test_fidelity_report_on_real_obd(obd_random: pd.DataFrame) -> None:
    train, test = split_log(obd_random, 0.3, np.random.default_rng(0))
    report = fidelity_report(train, test, n_bootstrap=100, seed=0)
    assert report["model"].tolist() == ["constant CTR", "position CTR", "PBM", "cascade", "DCM", "DBN"]
    for col in ["log_likelihood", "ll_gain_vs_constant", "perplexity", "perplexity@1", "perplexity@2", "perplexity@3"]:
        assert (report[f"{col}_low"] <= report[col] + 1e-12).all() and (report[col] <= report[f"{col}_high"] + 1e-12).all()
    assert np.isfinite(report["log_likelihood"]).all() and (report["log_likelihood"] < 0).all()
    # CTR ~ 0.004: perplexity just above 1; intervals are wide (about 40 clicks): report, don't rank.
    assert report["perplexity"].between(1.0, 1.2).all()
    assert (report["log_likelihood_high"] > report["log_likelihood_low"]).all()
    assert report.loc[0, "ll_gain_vs_constant"] == 0.0
    # issue 14: no fitted model is significantly worse than a constant click rate on held-out data; the
    # prior strength is chosen on the training split, with a fall-back to the prior the report names
    fitted = report.iloc[2:]
    assert (fitted["ll_gain_vs_constant_high"] >= 0).all(), fitted[["model", "ll_gain_vs_constant_high", "note"]]
    assert fitted["prior_strength"].notna().all() and (fitted["note"] != "").all()


def test_fidelity_cli_on_obd(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fid"
    assert fidelity_main(["--obd", str(shared_data / "obd" / "random" / "all"), "--out", str(out),
                          "--n-bootstrap", "20"]) == 0
    assert {p.name for p in out.iterdir()} == {"fidelity.csv", "fidelity.md", "perplexity_by_position.png",
                                               "click_models"}
    assert {p.name for p in (out / "click_models").iterdir()} == {"PBM.json", "cascade.json", "DCM.json", "DBN.json"}
    table = pd.read_csv(out / "fidelity.csv")
    assert len(table) == 6 and "perplexity@3_high" in table.columns
    md = (out / "fidelity.md").read_text()
    assert md.startswith("| model | LL / impression | LL gain vs constant | perplexity |") and "| DBN |" in md
    assert "| constant CTR |" in capsys.readouterr().out


def test_fidelity_cli_bad_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fidelity_main(["--obd", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "fidelity: error: no Open Bandit Dataset file at" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fidelity_main(["--out", str(tmp_path)])  # one of --log / --obd is required
