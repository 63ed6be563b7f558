"""Stock SB3 DQN (no action masks) runs in ShopRankSeq-v0 through agents.valid_picks.ValidPicks."""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import DQN

import envs  # noqa: F401  (registers the ids)
from agents.valid_picks import ValidPicks
from envs import WorldConfig, static_config

CONFIG = replace(static_config(world=WorldConfig(text_encoder="hashing")), n_candidates=6, slate_size=3)
DQN_ARGS = dict(learning_starts=30, buffer_size=300, batch_size=16, seed=0,
                policy_kwargs={"net_arch": [16]}, exploration_fraction=1.0)


def test_a_masked_pick_becomes_the_next_valid_candidate():
    env = ValidPicks(gym.make("ShopRankSeqStatic-v0", config=CONFIG))
    env.reset(seed=0)
    _, _, _, _, info = env.step(4)
    assert info["picked"] == 4 and not info["remapped"]
    assert env.valid_pick(4) == 5 and env.valid_pick(2) == 2
    env.step(5)
    assert env.valid_pick(4) == 0 and env.valid_pick(5) == 0  # wraps round to the top of the list
    _, _, _, _, info = env.step(5)
    assert info["picked"] == 0 and info["remapped"] and info["slate_done"]
    assert info["shown_ids"].tolist() == env.unwrapped.core.candidates[[4, 5, 0]].tolist()


def test_stock_dqn_fails_on_a_masked_pick_without_it_and_learns_with_it():
    with pytest.raises(ValueError, match="is masked: candidate"):
        DQN("MultiInputPolicy", gym.make("ShopRankSeqStatic-v0", config=CONFIG), **DQN_ARGS).learn(300)
    env = ValidPicks(gym.make("ShopRankSeqStatic-v0", config=CONFIG))
    model = DQN("MultiInputPolicy", env, **DQN_ARGS)
    q_before = model.q_net.state_dict()["q_net.0.weight"].clone()
    model.learn(300)
    assert not np.allclose(q_before.numpy(), model.q_net.state_dict()["q_net.0.weight"].numpy())  # it learned
    remapped, slates = 0, 0
    obs, _ = env.reset(seed=1)
    for _ in range(30):
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, info = env.step(action)
        remapped += info["remapped"]
        if info["slate_done"]:
            shown = info["shown_ids"][info["shown_ids"] >= 0]
            assert len(set(shown.tolist())) == len(shown) == 3 and np.isfinite(reward)
            slates += 1
        if terminated or truncated:
            obs, _ = env.reset()
    assert slates == 10 and remapped > 0  # a greedy policy that ignores the mask repeats its favourite pick
