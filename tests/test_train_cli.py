"""``shoprank train``: --steps honoured or rounded with a notice, a training progress bar, an evaluation at the end."""

from __future__ import annotations

import json

import pytest

from experiments.train import main

TINY = ["--set", "env.max_queries=1", "--set", "env.world.text_encoder=hashing", "--set", "agent.hidden=16",
        "--set", "agent.heads=2", "--set", "agent.n_steps=16", "--set", "agent.batch_size=16",
        "--set", "agent.n_envs=2", "--set", "eval_sessions=3"]


@pytest.mark.parametrize("algo, steps, expected", [("ppo", 48, 64), ("ppo", 64, 64), ("dqn", 33, 40), ("dqn", 16, 16)])
def test_steps_are_honoured_or_rounded_with_a_notice(tmp_path, capsys, algo, steps, expected):
    extra = ["--set", "agent.learning_starts=8", "--set", "agent.buffer_size=200"] if algo == "dqn" else []
    assert main(["--algo", algo, "--steps", str(steps), "--run-dir", str(tmp_path), "--no-progress", *TINY,
                 *extra]) == 0
    err = capsys.readouterr().err
    unit, what = (32, "n_steps x n_envs") if algo == "ppo" else (8, "train_freq x n_envs")  # train_freq 4
    notice = (f"note: {algo} trains in whole rollouts of {unit} env steps ({what}): {expected} steps for "
              f"the {steps} asked (ask a multiple of {unit} to match)")
    assert (notice in err) == (expected != steps)
    record = json.loads((tmp_path / "train.json").read_text())
    assert (record["total_timesteps"], record["steps_asked"]) == (expected, steps)


def test_training_has_its_own_progress_bar_and_is_evaluated_at_the_end(tmp_path, capsys):
    from experiments.plots import read_scalars

    assert main(["--algo", "ppo", "--steps", "64", "--run-dir", str(tmp_path), *TINY]) == 0
    err = capsys.readouterr().err
    bar = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("train ppo seed 0")]
    assert bar and "64/64" in bar[-1] and "reward=" in bar[-1] and "step/s" in bar[-1]
    evals = read_scalars(tmp_path / "tb", prefix="eval/")  # eval_every (5000) > steps: still evaluated
    assert not evals[evals.tag == "eval/reward"].empty
