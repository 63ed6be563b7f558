"""Training that resumes, and fine-tuning on new logged feedback.

* A run killed mid-rollout and resumed with ``shoprank train --resume`` ends with exactly the policy of an
  uninterrupted run on the same seed (bit for bit): the checkpoint holds the policy, the optimiser state, the
  step counter, every random generator (torch, NumPy's global one SB3 shuffles minibatches with, the env's)
  and the env's sessions in progress, taken at an update boundary. Without the sessions the run ends elsewhere.
* TensorBoard continues in the same folder at the right step.
* The training state is data only: a pickle that needs code is refused, never run.
* ``shoprank train --init-from CHECKPOINT --logs LOG`` fine-tunes a trained policy on a ShopRank log; the loss
  on the logs goes down, it starts below a fresh network's, and the checkpoint evaluates.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.checkpoint import STATE_FILE, STATE_TENSORS, PeriodicCheckpoint, read_weights, restore_training_state
from encoders.errors import CheckpointError, InputNotFoundError
from experiments.train import main

TINY = ["--algo", "ppo", "--seed", "3", "--no-progress", "--set", "env.max_queries=3",
        "--set", "env.world.text_encoder=hashing", "--set", "agent.hidden=16", "--set", "agent.heads=2",
        "--set", "agent.n_steps=16", "--set", "agent.batch_size=16", "--set", "agent.n_envs=2",
        "--set", "eval_sessions=3", "--set", "eval_every=32"]
"""Sessions of up to 3 queries (so sessions run across rollout boundaries), 32 env steps per rollout."""
TOTAL, KILL_AT, EVERY = 128, 80, 32
"""The run trains 4 rollouts; the interrupted one saves at steps 32 and 64 and is killed mid-rollout at 80."""


class Killed(Exception):
    """Stands for the process being killed."""


def _kill_at(monkeypatch, step: int) -> None:
    def on_step(self) -> bool:
        if self.num_timesteps >= step:
            raise Killed
        return True

    monkeypatch.setattr(PeriodicCheckpoint, "_on_step", on_step)


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = read_weights(a / "policy.pt"), read_weights(b / "policy.pt")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_interrupted_then_resumed_run_ends_with_the_uninterrupted_policy(tmp_path, monkeypatch, capsys):
    from experiments.plots import read_scalars

    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*TINY, "--steps", str(TOTAL), "--run-dir", str(full)]) == 0
    with monkeypatch.context() as patch:
        _kill_at(patch, KILL_AT)
        with pytest.raises(Killed):
            main([*TINY, "--steps", str(TOTAL), "--run-dir", str(cut), "--checkpoint-every", str(EVERY)])
    state = json.loads((cut / "checkpoint" / STATE_FILE).read_text())
    assert state["num_timesteps"] == 64 and state["exact"] is True
    assert json.loads((cut / "manifest.json").read_text())["status"] == "failed"
    control = tmp_path / "control"  # the same checkpoint without the sessions in progress
    shutil.copytree(cut, control)
    (control / "checkpoint" / STATE_FILE).write_text(json.dumps({**state, "exact": False}))

    assert main(["--resume", str(cut), "--no-progress"]) == 0
    assert "resumed at step 64, now 128" in capsys.readouterr().out
    assert _same_weights(full / "checkpoint", cut / "checkpoint")
    full_opt = torch.load(full / "checkpoint" / STATE_TENSORS, weights_only=True)["optimizer"]["state"]
    cut_opt = torch.load(cut / "checkpoint" / STATE_TENSORS, weights_only=True)["optimizer"]["state"]
    assert all(torch.equal(full_opt[i][k], cut_opt[i][k]) for i in full_opt for k in full_opt[i])
    record = json.loads((cut / "train.json").read_text())
    assert (record["total_timesteps"], record["resumed_at"]) == (TOTAL, 64)
    assert json.loads((cut / "manifest.json").read_text())["status"] == "finished"
    # TensorBoard: one run folder, continued up to the last step; the learning curve keeps its early points
    assert [p.name for p in (cut / "tb").iterdir()] == ["ppo_1"]
    scalars = read_scalars(cut / "tb")
    assert scalars["step"].max() == TOTAL
    curve = np.loadtxt(cut / "learning_curve.csv", delimiter=",", skiprows=1, usecols=0)
    assert curve[0] == 0 and curve[-1] == TOTAL and np.all(np.diff(curve) > 0)

    assert main(["--resume", str(control), "--no-progress"]) == 0
    assert not _same_weights(full / "checkpoint", control / "checkpoint")

    capsys.readouterr()
    assert main(["--resume", str(cut), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"shoprank train: error: {cut} has trained 128 steps already, total_timesteps is 128: pass --steps N with "
        "N > 128 to train further.")


def test_resume_refuses_other_settings_and_missing_state(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--resume", str(tmp_path), "--set", "agent.learning_rate=0.1"])
    assert capsys.readouterr().err.strip().endswith(
        "error: --resume takes the run's own configuration; drop --set")
    (tmp_path / "manifest.json").write_text(json.dumps({"command": "train", "status": "failed"}))
    (tmp_path / "config.yaml").write_text("algo: ppo\n")
    assert main(["--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"shoprank train: error: nothing to resume in {tmp_path}: no checkpoint/{STATE_FILE} (a run folder of "
        "`shoprank train` holds one once it has saved a checkpoint: at the end, or every --checkpoint-every steps).")


class _Boom:
    def __reduce__(self):
        return (print, ("code ran",))


def test_training_state_is_data_only(tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    torch.save({}, folder / "policy.pt")
    (folder / STATE_FILE).write_text(json.dumps({"format": "shoprank-training-state", "format_version": 1,
                                                 "num_timesteps": 0, "n_updates": 0, "episode_num": 0}))
    (folder / STATE_TENSORS).write_bytes(pickle.dumps({"optimizer": _Boom(), "torch_rng": _Boom()}))
    with pytest.raises(CheckpointError) as err:
        restore_training_state(None, folder)
    assert str(err.value) == (f"{folder / STATE_TENSORS} is not a training state written by ShopRank "
                              "(UnpicklingError; only plain tensors and numbers are loaded, never pickled code).")
    (folder / STATE_FILE).write_text(json.dumps({"format": "shoprank-training-state", "format_version": 1,
                                                 "num_timesteps": -1, "n_updates": 0, "episode_num": 0}))
    with pytest.raises(CheckpointError) as err:
        restore_training_state(None, folder)
    assert str(err.value) == f"{folder / STATE_FILE}: num_timesteps must be an integer >= 0, got an integer -1."
    (folder / STATE_FILE).unlink()
    with pytest.raises(InputNotFoundError) as err:
        restore_training_state(None, folder)
    assert str(err.value) == f"cannot resume from {folder}: {STATE_FILE} is missing."


FINE_TUNE_BASE = ["--algo", "ppo", "--steps", "32", "--no-progress", "--set", "agent.hidden=16",
                  "--set", "agent.heads=2", "--set", "agent.n_steps=16", "--set", "agent.batch_size=16",
                  "--set", "agent.n_envs=2", "--set", "eval_sessions=3", "--set", "agent.pretrain_sessions=300",
                  "--set", "agent.pretrain_epochs=3"]
"""A PPO warm-started on 300 logged sessions of the default world (the world `shoprank ope log` logs in)."""


@pytest.mark.slow
def test_init_from_fine_tunes_on_new_logs_and_evaluates(tmp_path, capsys):
    from dataclasses import replace

    from agents.callbacks import held_out_metrics
    from agents.checkpoint import load_agent
    from agents.factory import build_agent, make_env
    from agents.pretrain import PretrainConfig, pretrain_scores
    from experiments.ope.cli import write_log
    from experiments.train import logged_feedback

    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert main([*FINE_TUNE_BASE, "--run-dir", str(base)]) == 0
    log = write_log(600, tmp_path / "new.csv", temperature=3.0, seed=7, batch=300)
    assert main(["--init-from", str(base / "checkpoint"), "--logs", str(log), "--run-dir", str(tuned),
                 "--epochs", "3", "--no-progress"]) == 0
    record = json.loads((tuned / "train.json").read_text())
    losses = record["loss_per_epoch"]
    assert record["sessions"] == 600 and len(losses) == 3 and losses[-1] < losses[0]
    assert f"fine-tuned {base / 'checkpoint'} on 600 logged sessions" in capsys.readouterr().out
    # it starts from the trained weights: its first pass over the logs fits them better than a fresh network's
    agent = load_agent(base / "checkpoint")
    fresh = build_agent("ppo", agent.env_config, replace(json_agent_config(base), pretrain_sessions=0), seed=0)
    obs, shown, clicks = logged_feedback(log)
    fresh_losses = pretrain_scores(fresh.policy.pi_features_extractor, agent.env_config.n_candidates, obs, shown,
                                   clicks, PretrainConfig(sessions=600, epochs=1), seed=0)
    assert losses[0] < fresh_losses[0]
    assert not _same_weights(base / "checkpoint", tuned / "checkpoint")
    tuned_agent = load_agent(tuned / "checkpoint")
    metrics = held_out_metrics(tuned_agent, make_env(tuned_agent.env_config, False), 5, seed=0)
    assert np.isfinite(metrics["reward"]) and metrics["session_length"] >= 1


def json_agent_config(run_dir: Path):
    from agents.checkpoint import read_checkpoint

    return read_checkpoint(run_dir / "checkpoint").agent_config


def test_resuming_a_finished_run_keeps_its_warm_start_record(tmp_path):
    """``train.json`` records the warm start; a run resumed for more steps fits none and keeps that record."""
    run = tmp_path / "run"
    warm = [*TINY, "--set", "agent.pretrain_sessions=20", "--set", "agent.pretrain_epochs=1"]
    assert main([*warm, "--steps", "32", "--run-dir", str(run)]) == 0
    first = json.loads((run / "train.json").read_text())["warm_start"]
    assert not first["cached"] and first["fit_seconds"] > 0 and len(first["loss_per_epoch"]) == 1
    assert main(["--resume", str(run), "--steps", "64", "--no-progress"]) == 0
    record = json.loads((run / "train.json").read_text())
    assert (record["total_timesteps"], record["resumed_at"]) == (64, 32) and record["warm_start"] == first
