"""``shoprank ope`` on Open Bandit Dataset logs and on ShopRank's own (replayed) logs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.ope.cli import main, write_log


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_obd_random_policy_on_random_logs_is_the_logged_ctr(shared_data: Path, tmp_path: Path, capsys):
    """Uniform target on uniform logs: every weight is 1, so IPS and SNIPS are the logged click rate."""
    logs = shared_data / "obd" / "random" / "all"
    code, out, _ = _run(["--logs", str(logs), "--agent", "random", "--out", str(tmp_path), "--n-bootstrap", "20"],
                        capsys)
    assert code == 0
    table = pd.read_csv(tmp_path / "ope.csv").set_index("estimator")
    assert list(table.index) == ["DM", "IPS", "SNIPS", "DR", "SNDR", "Switch-DR"]
    ctr = pd.read_csv(logs / "all.csv")["click"].mean()
    assert table.loc["IPS", "estimate"] == pytest.approx(ctr, abs=1e-12)
    assert table.loc["SNIPS", "estimate"] == pytest.approx(ctr, abs=1e-12)
    assert table.loc["IPS", "ess"] == pytest.approx(len(pd.read_csv(logs / "all.csv")))
    assert (table["ci_low"] <= table["ci_high"]).all()
    assert (tmp_path / "ope.png").stat().st_size > 0 and "| IPS |" in out


def test_obd_bts_from_random_reports_relative_error(shared_data: Path, tmp_path: Path, capsys):
    obd = shared_data / "obd"
    code, out, _ = _run(["--logs", str(obd / "random" / "all"), "--agent", f"logged:{obd / 'bts' / 'all'}",
                         "--on-policy-logs", str(obd / "bts" / "all"), "--out", str(tmp_path), "--n-bootstrap", "20"],
                        capsys)
    assert code == 0
    table = pd.read_csv(tmp_path / "ope.csv")
    truth = pd.read_csv(obd / "bts" / "all" / "all.csv")["click"].mean()
    np.testing.assert_allclose(table["relative_error"], (table["estimate"] - truth).abs() / truth)
    assert json.loads((tmp_path / "ope.json").read_text())["on_policy_value"] == pytest.approx(truth)
    assert "relative error" in out


def test_bad_input_is_one_line(shared_data: Path, tmp_path: Path, capsys):
    logs = str(shared_data / "obd" / "random" / "all")
    code, _, err = _run(["--logs", logs, "--agent", "retriever", "--out", str(tmp_path)], capsys)
    assert code == 2
    assert err.strip() == ("shoprank ope: error: on Open Bandit Dataset logs the agent must be 'random' or "
                           "'logged:PATH' (the policy that produced another OBD log); got 'retriever'. ShopRank agents "
                           "rank ShopRank candidates and cannot act on OBD contexts.")
    plain = tmp_path / "plain.csv"
    plain.write_text("session,query,position,item,click,purchase,propensity\n0,q,0,1,1,0,0.5\n")
    code, _, err = _run(["--logs", str(plain), "--agent", "retriever", "--out", str(tmp_path)], capsys)
    assert code == 2
    assert err.strip() == (f"shoprank ope: error: {plain} has no replay recipe plain.csv.ope.json: OPE needs the "
                           "logged contexts, which `shoprank ope log` records (logs of InteractionLogger lack them).")
    code, _, err = _run(["--logs", logs, "--agent", "random", "--out", str(tmp_path), "--n-bootstrap", "3"], capsys)
    assert code == 2 and err.strip() == "shoprank ope: error: n_resamples must be an integer >= 10, got 3."


def test_shoprank_log_round_trip_and_replay_check(tmp_path: Path, capsys):
    """A log written by `shoprank ope log` is replayed; a tampered click is caught."""
    log = write_log(300, tmp_path / "static.csv", temperature=3.0, seed=1, batch=150)
    frame = pd.read_csv(log)
    assert len(frame) == 300 * 10 and (frame["propensity"] > 0).all() and (frame["propensity"] <= 1).all()
    code, _, _ = _run(["--logs", str(log), "--agent", "retriever", "--out", str(tmp_path / "a"),
                       "--n-bootstrap", "20"], capsys)
    assert code == 0
    table = pd.read_csv(tmp_path / "a" / "ope.csv").set_index("estimator")
    assert set(table.index) == {"DM", "IPS", "SNIPS", "DR", "SNDR", "Switch-DR", "slate IPS", "independent IPS", "RIPS"}
    # the per-slot IPS and independent IPS are the same estimator on the same weights
    assert table.loc["IPS", "estimate"] == pytest.approx(table.loc["independent IPS", "estimate"])
    logged = frame.groupby("session")["click"].sum().mean()
    assert 0.5 * logged < table.loc["SNIPS", "estimate"] < 2 * logged
    frame.loc[5, "click"] = not frame.loc[5, "click"]
    frame.to_csv(log, index=False)
    code, _, err = _run(["--logs", str(log), "--agent", "retriever", "--out", str(tmp_path / "b")], capsys)
    assert code == 2
    assert err.strip() == (f"shoprank ope: error: {log} does not replay: the env's clicks differ from the logged ones "
                           "(a log from another ShopRank version, catalog or env config).")
