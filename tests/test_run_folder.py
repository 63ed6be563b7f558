"""Crash-safe run folders: atomic files, one run per folder, manifest, refusing to mix, resuming compare."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from encoders.errors import ShopRankError
from experiments.run_folder import (LOCK, MANIFEST, TMP_MARK, CellStore, RunFolder, RunFolderError, atomic_path,
                                    atomic_write_text)

ROOT = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TMP_MARK in p.name]


# ----------------------------------------------------------------------------------------------------
# atomic files
# ----------------------------------------------------------------------------------------------------
def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "summary.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError, match="killed half-way"):
        with atomic_path(target) as tmp:
            tmp.write_text("new, but only ha")
            raise RuntimeError("killed half-way")
    assert target.read_text() == "old\n"
    assert _leftovers(tmp_path) == []
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".csv" and tmp.parent == tmp_path and not tmp.exists()
        tmp.write_text("new\n")
    assert target.read_text() == "new\n" and _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------------------------
# the run folder
# ----------------------------------------------------------------------------------------------------
def test_manifest_records_the_run(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out, "compare", {"agents": ["random"], "sessions": 3}, seeds=[0, 1]) as run:
        manifest = json.loads((out / MANIFEST).read_text())
        assert manifest["status"] == "running" and manifest["ended"] is None
        assert manifest["pid"] == os.getpid() and (out / LOCK).read_text() == str(os.getpid())
        run.write_text("summary.md", "# done\n")
        run.finish()
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["status"] == "finished" and manifest["ended"]
    assert manifest["command"] == "compare" and manifest["seeds"] == [0, 1]
    assert manifest["config"] == {"agents": ["random"], "sessions": 3}
    assert manifest["versions"]["numpy"] == np.__version__ and manifest["versions"]["python"]
    assert manifest["git"] is None or len(manifest["git"]["commit"]) == 40
    assert (out / LOCK).read_text() == ""  # released


def test_two_runs_cannot_share_a_folder(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out, "compare", {}):
        with pytest.raises(RunFolderError) as info:
            RunFolder(out, "evaluate", {}).open()
        assert str(info.value) == (f"{out} is in use by another run (pid {os.getpid()}); wait for it to finish or "
                                   "choose another output folder.")
        assert isinstance(info.value, ShopRankError)
    with RunFolder(out, "compare", {}, overwrite=True):  # free again once the first run has closed
        pass


def test_finished_run_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out, "evaluate", {"a": 1}) as run:
        run.write_text("summary.csv", "agent\n")
        run.finish()
    ended = json.loads((out / MANIFEST).read_text())["ended"]
    with pytest.raises(RunFolderError) as info:
        RunFolder(out, "evaluate", {"a": 1}).open()
    assert str(info.value) == (f"{out} holds a finished run (shoprank evaluate, finished {ended}); pass --overwrite "
                               "to replace it, or choose another output folder.")
    assert (out / "summary.csv").read_text() == "agent\n"  # untouched
    with RunFolder(out, "evaluate", {"a": 2}, overwrite=True) as run:
        assert not (out / "summary.csv").exists()  # the old run's files are gone, not mixed in
        assert json.loads((out / MANIFEST).read_text())["config"] == {"a": 2}


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(RunFolderError) as info:
            RunFolder(tmp_path, "compare", {}, overwrite=overwrite).open()
        assert str(info.value) == (f"{tmp_path} is not empty and is not a ShopRank run folder (no manifest.json; "
                                   "it holds ['notes.txt']); choose a new or empty output folder.")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def _crashed_run(out: Path, command: str, config: dict) -> int:
    """A run folder as a killed process leaves it: status running, its pid in the lock file, a temp file."""
    with RunFolder(out, command, config) as run:
        run.write_text("partial.csv", "a,b\n1,2\n")
    pid = _dead_pid()
    (out / LOCK).write_text(str(pid))
    (out / f".sessions{TMP_MARK}{pid}-1.csv").write_text("a,b\n1,")  # a write cut short
    return pid


def test_stale_lock_is_taken_over_and_unfinished_run_discarded(tmp_path):
    out = tmp_path / "run"
    pid = _crashed_run(out, "evaluate", {"a": 1})
    log = io.StringIO()
    with RunFolder(out, "evaluate", {"a": 1}, log=log) as run:
        assert not run.resumed
        assert not (out / "partial.csv").exists() and _leftovers(out) == []
    lines = log.getvalue().splitlines()
    assert lines[0] == f"shoprank evaluate: taking over the stale lock of {out} left by pid {pid} (no longer running)."
    assert lines[1].startswith(f"shoprank evaluate: discarding the unfinished run in {out} (started ")
    assert lines[1].endswith(", status running).")


def test_unfinished_run_resumes_with_the_same_config_only(tmp_path):
    out = tmp_path / "run"
    _crashed_run(out, "compare", {"sessions": 3, "seeds": [0]})
    with pytest.raises(RunFolderError) as info:
        RunFolder(out, "compare", {"sessions": 4, "seeds": [0]}, resumable=True, log=io.StringIO()).open()
    assert str(info.value) == (f"{out} holds an unfinished run of shoprank compare with a different config (differs "
                               "in: sessions); pass --overwrite to discard it, or choose another output folder.")
    with RunFolder(out, "compare", {"sessions": 3, "seeds": [0]}, resumable=True, log=io.StringIO()) as run:
        assert run.resumed and (out / "partial.csv").exists() and _leftovers(out) == []
        assert len(json.loads((out / MANIFEST).read_text())["resumed"]) == 1


def test_failure_marks_the_manifest(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyError):
        with RunFolder(out, "train", {}):
            raise KeyError("boom")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["status"] == "failed" and manifest["error"] == "KeyError: 'boom'"


def test_staging_moves_files_only_on_success(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out, "report", {}) as run:
        with pytest.raises(ValueError):
            with run.staging() as staging:
                (staging / "summary.csv").write_text("x\n")
                raise ValueError("plot failed")
        assert not (out / "summary.csv").exists() and _leftovers(out) == []
        with run.staging() as staging:
            (staging / "sub").mkdir()
            (staging / "sub" / "curves.png").write_bytes(b"png")
            (staging / "summary.csv").write_text("x\n")
        assert (out / "summary.csv").read_text() == "x\n" and (out / "sub" / "curves.png").read_bytes() == b"png"
        assert _leftovers(out) == []


def test_cells_round_trip_exactly(tmp_path):
    cells = CellStore(tmp_path / "cells", n_sessions=3)
    rows = [{"agent": "random", "seed": 0, "session": i, "reset_seed": np.int64(10 + i),
             "reward": np.float64(0.1 + 0.2 * i / 3), "ndcg": float("nan") if i == 1 else 1 / 3,
             "left": np.bool_(i == 2)} for i in range(3)]
    assert cells.load("random", 0) is None
    cells.save("random", 0, rows)
    loaded = cells.load("random", 0)
    pd.testing.assert_frame_equal(pd.DataFrame(loaded), pd.DataFrame(rows))
    assert CellStore(tmp_path / "cells", n_sessions=4).load("random", 0) is None  # another session count
    assert cells.done() == [tmp_path / "cells" / "random" / "seed0.json"]


def test_output_of_an_earlier_version_is_replaced_only_with_overwrite(tmp_path):
    (tmp_path / "summary.csv").write_text("agent\n")
    (tmp_path / "sessions.csv").write_text("agent\n")
    with pytest.raises(RunFolderError) as info:
        RunFolder(tmp_path, "compare", {}).open()
    assert str(info.value) == (f"{tmp_path} holds the output of an earlier ShopRank run (no manifest.json); pass "
                               "--overwrite to replace it, or choose another output folder.")
    with RunFolder(tmp_path, "compare", {}, overwrite=True):
        assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK, MANIFEST]


# ----------------------------------------------------------------------------------------------------
# the commands
# ----------------------------------------------------------------------------------------------------
def test_evaluate_and_report_write_run_folders(tmp_path, capsys):
    import gymnasium as gym

    from agents.baselines import make_baseline
    from envs import static_config
    from envs.world import WorldConfig
    from experiments import cli

    env = gym.make("ShopRankStatic-v0", config=static_config(world=WorldConfig(text_encoder="hashing")))
    checkpoint = make_baseline("linucb", env).save(tmp_path / "linucb")
    out = tmp_path / "ev"
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--seeds", "1", "--sessions", "2", "--text-encoder",
            "hashing", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["status"] == "finished" and manifest["config"]["agents"] == ["linucb", "retriever"]
    summary = (out / "summary.csv").read_bytes()
    capsys.readouterr()
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == (f"shoprank evaluate: error: {out} holds a finished run (shoprank evaluate, "
                                       f"finished {manifest['ended']}); pass --overwrite to replace it, or choose "
                                       "another output folder.\n")
    assert cli.main([*argv, "--overwrite"]) == 0
    assert (out / "summary.csv").read_bytes() == summary  # same seeds, same report
    (out / "summary.md").unlink()
    assert cli.main(["report", str(out)]) == 0
    assert (out / "summary.md").is_file() and (out / "summary.csv").read_bytes() == summary
    assert _leftovers(out) == []
    assert json.loads((out / MANIFEST).read_text())["status"] == "finished"  # report leaves the manifest as is
    with RunFolder(out, "compare", {}, overwrite=True):  # a run holds the folder: report must wait
        capsys.readouterr()
        assert cli.main(["report", str(out)]) == 2
        assert f"{out} is in use by another run (pid {os.getpid()})" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------
# compare: SIGKILL mid-run, rerun, same report
# ----------------------------------------------------------------------------------------------------
def _compare_command(out: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "experiments.cli", "compare", "--agents", "random,retriever,ppo_scratch",
            "--seeds", "2", "--sessions", "20", "--env", "ShopRankStatic-v0", "--text-encoder", "hashing",
            "--set", "world.n_products=200", "--set", f"world.cache_dir={cache}", "--train-steps", "64",
            "--agent-set", "n_steps=16", "--agent-set", "batch_size=16", "--agent-set", "n_envs=1",
            "--no-progress", "--out", str(out)]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _check_whole_files(out: Path) -> None:
    """Every result file present parses completely (no truncated CSV or JSON)."""
    for path in out.rglob("*.json"):
        json.loads(path.read_text())
    for path in out.rglob("*.csv"):
        pd.read_csv(path)


@pytest.mark.slow
def test_compare_killed_mid_run_resumes_to_the_same_report(tmp_path):
    cache = tmp_path / "cache"
    reference = tmp_path / "reference"
    done = _run(_compare_command(reference, cache))
    assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(_compare_command(out, cache), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    cells = CellStore(out / "cells", 20)
    deadline = time.monotonic() + 600
    while len(cells.done()) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finished_before = {p: p.read_bytes() for p in cells.done()}
    assert 4 <= len(finished_before) < 6, "the kill must land mid-run (while ppo_scratch trains)"
    assert json.loads((out / MANIFEST).read_text())["status"] == "running"
    assert not (out / "summary.csv").exists()
    _check_whole_files(out)

    resumed = _run(_compare_command(out, cache))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming the unfinished run in {out}" in resumed.stderr
    assert f"{len(finished_before)} of 6 (agent, seed) cells finished earlier: kept" in resumed.stderr
    assert {p: p.read_bytes() for p in finished_before} == finished_before  # kept, not recomputed
    assert len(cells.done()) == 6
    assert json.loads((out / MANIFEST).read_text())["status"] == "finished"
    for name in ("summary.csv", "sessions.csv", "paired.csv"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert _leftovers(out) == []
    _check_whole_files(out)

    again = _run(_compare_command(out, cache))  # a finished run is not silently redone or mixed with
    assert again.returncode == 2
    assert f"shoprank compare: error: {out} holds a finished run (shoprank compare, finished" in again.stderr
