"""``shoprank distill``: students learn the teacher's ranking, save as ordinary checkpoints, bad input is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registers the ids)
from agents.checkpoint import load_agent, save_agent
from agents.distill import (STUDENT_KEYS, DistillConfig, distill, fit_student, gather_states, load_teacher,
                            ranking_agreement)
from agents.factory import AGENT_PRESETS, AgentConfig, build_agent
from envs import WorldConfig, static_config
from experiments import cli
from experiments.evaluate import evaluate_agents

CONFIG = static_config(world=WorldConfig(text_encoder="hashing", n_products=300))
FAST = DistillConfig(states=3000, rounds=1, epochs=8, held_out=500, n_envs=250)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A ``ppo_scratch``-shaped teacher whose scores depend on the features in a non-trivial way: the score
    head's last layer re-drawn at full scale (untrained, it would rank like the retriever prior)."""
    model = build_agent("ppo", CONFIG, AGENT_PRESETS["ppo_scratch"].config, seed=0, n_envs=1)
    with torch.no_grad():
        model.policy.features_extractor.score_head[-1].weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(0))
    return save_agent(model, "ppo", CONFIG, AGENT_PRESETS["ppo_scratch"].config, tmp_path_factory.mktemp("t") / "ck")


def test_listwise_loss_decreases(teacher):
    agent, meta = load_teacher(teacher)
    obs, scores = gather_states(agent.policy, agent.policy, meta.env_config, 600, 200, seed=1)
    assert scores.shape == (600, meta.env_config.n_candidates) and set(obs) == set(STUDENT_KEYS)
    for loss in ("plackett_luce", "listnet"):
        student = build_agent("ppo", CONFIG, AgentConfig(network="student_mlp"), seed=0, n_envs=1)
        losses = fit_student(student.policy.features_extractor, obs, scores, DistillConfig(epochs=4, loss=loss), 10,
                             np.random.default_rng(0))
        assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.95 * losses[0], (loss, losses)


def test_students_rank_like_the_teacher_and_evaluate(teacher, tmp_path, capsys):
    mlp = distill(teacher, FAST, tmp_path / "mlp")
    linear = distill(teacher, DistillConfig(**{**FAST.__dict__, "student": "linear"}))
    chance = mlp.agreement["chance_top1"]
    assert chance == pytest.approx(1 / 20)
    assert mlp.agreement["top1"] > 5 * chance and mlp.agreement["top_n_overlap"] > 0.6
    assert mlp.agreement["top1"] > linear.agreement["top1"]  # the context matters: the MLP reads it
    student = load_agent(tmp_path / "mlp")  # an ordinary checkpoint: data only, strict keys
    assert (tmp_path / "mlp" / "distill.json").is_file()
    df = evaluate_agents({"student": lambda env, seed: student}, "ShopRankStatic-v0", CONFIG, [0], 3, progress=False)
    assert len(df) == 3 and np.isfinite(df["reward"]).all()
    out = tmp_path / "compare"
    base = ["compare", "--agents", "retriever", "--seeds", "1", "--sessions", "2", "--text-encoder", "hashing",
            "--set", "env.world.n_products=300", "--no-progress", "--out", str(out)]
    assert cli.main([*base, "--checkpoint", f"student={tmp_path / 'mlp'}"]) == 0
    assert "student" in (out / "summary.csv").read_text()
    capsys.readouterr()
    assert cli.main([*base, "--checkpoint", "retriever=" + str(tmp_path / "mlp"), "--overwrite"]) == 2
    assert capsys.readouterr().err.strip() == ("shoprank compare: error: --checkpoint name 'retriever' is already used "
                                               "by another agent.")
    assert cli.main([*base, "--checkpoint", "student", "--overwrite"]) == 2
    assert capsys.readouterr().err.strip() == ("shoprank compare: error: --checkpoint 'student' must look like "
                                               "NAME=DIR (e.g. student=runs/student).")
    tiny = DistillConfig(states=300, rounds=2, epochs=1, held_out=0, n_envs=300)
    first, again = distill(teacher, tiny), distill(teacher, tiny)  # same seed, same student
    for a, b in zip(first.model.policy.state_dict().values(), again.model.policy.state_dict().values()):
        assert torch.equal(a, b)


def test_distill_cli_bad_input(teacher, capsys, tmp_path):
    cases = [(["--teacher", str(teacher), "--student", "tree"],
              "shoprank distill: error: unknown student 'tree'; choose one of ['linear', 'mlp']."),
             (["--teacher", str(tmp_path / "nowhere"), "--student", "mlp"],
              f"shoprank distill: error: teacher checkpoint {tmp_path / 'nowhere'} does not exist."),
             (["--teacher", str(tmp_path), "--student", "mlp"],
              f"shoprank distill: error: not a ShopRank checkpoint: {tmp_path / 'agent.json'} is missing"),
             (["--teacher", str(teacher), "--student", "mlp", "--loss", "hinge"],
              "shoprank distill: error: unknown distillation loss 'hinge'; choose one of ['listnet', 'plackett_luce'].")]
    for extra, message in cases:
        code = cli.main(["distill", *extra, "--out", str(tmp_path / "out"), "--no-progress"])
        assert code == 2
        assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "out").exists()


def test_ranking_agreement_counts():
    teacher = np.array([[3.0, 2.0, 1.0, 0.0]])
    same = ranking_agreement(teacher, teacher, np.ones((1, 4)), 2)
    assert same == {"top1": 1.0, "top_n_overlap": 1.0, "exact_top_n": 1.0, "chance_top1": 0.25}
    swapped = ranking_agreement(np.array([[2.0, 3.0, 0.0, 1.0]]), teacher, np.ones((1, 4)), 2)
    assert swapped["top1"] == 0.0 and swapped["top_n_overlap"] == 1.0 and swapped["exact_top_n"] == 0.0


def test_bench_distill_bad_input_is_one_line_before_anything_trains(capsys, tmp_path):
    code = cli.main(["bench", "distill", "--teacher-preset", "dqn", "--out", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "shoprank bench: error: unknown teacher preset 'dqn'; choose one of ['ppo', 'ppo_longterm', "
        "'ppo_longterm_pretrained', 'ppo_pretrained', 'ppo_scratch'].")
    assert not (tmp_path / "out").exists()
    code = cli.main(["bench", "distill", "--states", "0", "--out", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.strip() == "shoprank bench: error: DistillConfig.states must be >= 1, got 0."
    assert not (tmp_path / "out").exists()
