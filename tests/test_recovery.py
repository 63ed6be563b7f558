"""The click-model recovery benchmark: every model meets its own tolerance on several seeds, not only seed 0."""

from __future__ import annotations

import pytest

from benchmarks import recovery


def test_every_model_meets_its_tolerance_on_several_seeds():
    # 25k sessions: tolerances scale by sqrt(100k / 25k) = 2 (benchmarks/recovery.py, TOLERANCES)
    errors = recovery.recovery_errors([0, 1, 2], 25_000)
    assert sorted(set(errors.model)) == sorted(recovery.TOLERANCES) and len(errors) == 3 * 4
    assert errors.tolerance.tolist() == pytest.approx([2 * recovery.TOLERANCES[m] for m in errors.model])
    assert errors.ok.all(), errors[~errors.ok]
    assert (errors.max_error > 0).all()  # a fit that copied the truth would be suspicious


def test_main_fails_when_a_model_misses_its_tolerance(monkeypatch, capsys):
    assert recovery.main(["--sessions", "2000", "--seeds", "1"]) == 0
    assert "PASS: 4 of 4" in capsys.readouterr().out
    monkeypatch.setitem(recovery.TOLERANCES, "DBN", 1e-6)
    assert recovery.main(["--sessions", "2000", "--seeds", "1"]) == 1
    assert "FAIL: 3 of 4" in capsys.readouterr().out


def test_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        recovery.main(["--seeds", "0"])
    assert "--sessions must be >= 100 and --seeds >= 1" in capsys.readouterr().err
