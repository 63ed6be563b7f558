"""The imitation-ceiling study: its labels are profile_oracle's values, the fitted network ranks far above the
retriever, and the command writes its table."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the ids)
from agents.logging_policy import derive_seed
from benchmarks import imitation
from benchmarks.study_io import write_study
from envs import WorldConfig, static_config

CONFIG = static_config(world=WorldConfig(text_encoder="hashing", n_products=400))


def test_labels_are_profile_oracles_expected_rewards():
    observations, values = imitation.labelled_states(CONFIG, 6, seed=1)
    env = gym.make("ShopRankStatic-v0", config=CONFIG)
    for i in (0, 5):
        obs, _ = env.reset(seed=derive_seed(1, i, stream=1))
        assert np.array_equal(obs["candidates"], observations["candidates"][i])
        expected = np.where(obs["mask"] > 0, env.unwrapped.privileged_scores(observable=True), 0.0)
        np.testing.assert_allclose(values[i], expected, rtol=1e-6)
    assert values.shape == (6, CONFIG.n_candidates) and (values >= 0).all() and values.max() > 0


def test_the_fitted_network_ranks_like_profile_oracle_far_above_the_retriever(tmp_path):
    table = imitation.study([3000], epochs=8, seeds=[0, 1], n_sessions=40, config=CONFIG)
    row = table.iloc[0]
    assert row.imitation_share > row.retriever_share + 0.1  # it learned the oracle's ranking, not retriever order
    assert np.isfinite([row.imitation_low, row.imitation_high, row.final_loss]).all()
    meta = {"machine": {"cpu_model": "test"}, "seeds": 2, "sessions": 40, "epochs": 3, "command": "test"}
    write_study(tmp_path, "imitation", meta, table, imitation.to_markdown(table, meta))
    assert json.loads((tmp_path / "imitation.json").read_text())["rows"][0]["states"] == 3000
    assert "| 3,000 |" in (tmp_path / "imitation.md").read_text()
