"""The constant inputs of ShopRankStatic-v0 are exactly the ones its docstring lists."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the ids)
from envs import WorldConfig, static_config


def test_the_documented_inputs_and_only_those_are_constant():
    env = gym.make("ShopRankStatic-v0", config=static_config(world=WorldConfig(text_encoder="hashing")))
    observations = [env.reset(seed=seed)[0] for seed in range(60)]
    stacked = {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    for key in ("session", "history", "history_mask"):
        assert not stacked[key].any(), key
    assert stacked["mask"].all()
    for key in ("query", "profile"):
        assert (stacked[key].std(axis=0) > 0).all(), key
    candidates = stacked["candidates"].reshape(-1, stacked["candidates"].shape[-1])
    constant = np.flatnonzero(candidates.std(axis=0) == 0)
    photo = env.unwrapped.layout.column("has_photo")
    assert constant.tolist() == [photo] and np.all(candidates[:, photo] == 1.0)
