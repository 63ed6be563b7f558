"""The README's "Train from your own script" block is experiments/examples/train_ppo.py, and that script runs."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from agents.factory import AGENT_PRESETS, AgentPreset
from envs import WorldConfig, static_config
from experiments.examples import train_ppo

ROOT = Path(__file__).resolve().parents[1]


def readme_block(heading: str) -> str:
    """The first ```python block below ``heading`` in the README."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, f"no python block below {heading!r}"
    return match.group(1)


def test_the_readme_block_is_the_example_file():
    assert readme_block("## Train from your own script") == (ROOT / "experiments/examples/train_ppo.py").read_text()


def test_the_example_runs_with_tiny_budgets(tmp_path, monkeypatch):
    ppo = AGENT_PRESETS["ppo_scratch"]
    tiny = replace(ppo.config, n_envs=1, n_steps=32, batch_size=32, n_epochs=1)
    monkeypatch.setitem(AGENT_PRESETS, "tiny_ppo", AgentPreset(ppo.algo, tiny, "PPO with a 32-step rollout"))
    monkeypatch.setattr(train_ppo, "static_config",
                        lambda: static_config(world=WorldConfig(text_encoder="hashing")))
    summary = train_ppo.main(train_ppo.Args(steps=64, seeds=1, sessions=30, agent="tiny_ppo", out=tmp_path))
    reward = summary[summary.metric == "reward"].set_index("agent")["mean"]
    assert list(reward.index) == ["random", "retriever", "oracle", "ppo"]
    assert np.isfinite(reward).all() and reward["oracle"] > reward["random"]
    assert list((tmp_path / "ppo-seed0" / "tb").rglob("events.out.tfevents.*"))
    assert (tmp_path / "ppo-seed0" / "checkpoint" / "policy.pt").is_file()
