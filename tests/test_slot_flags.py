"""``envs.slot_flags``: per-slot outcome flags read from a step's info, the same for every consumer."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs import WorldConfig, static_config
from envs.slot_flags import slot_flags


def test_flags_mark_the_listed_slots_and_drop_those_past_the_end():
    info = {"clicked_positions": np.array([0, 3, 12]), "purchased_positions": np.array([], dtype=int)}
    np.testing.assert_array_equal(slot_flags(info, "clicks", 5), [1, 0, 0, 1, 0])
    assert slot_flags(info, "clicks", 5).dtype == np.float32
    np.testing.assert_array_equal(slot_flags(info, "purchases", 3, dtype=bool), [False, False, False])


def test_flags_agree_with_the_env_counts():
    env = gym.make("ShopRank-v0", config=static_config(world=WorldConfig(text_encoder="hashing", n_products=200)))
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    total = {"clicks": 0.0, "purchases": 0.0}
    for _ in range(30):
        _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        for outcome in total:
            flags = slot_flags(info, outcome, len(info["shown_ids"]))
            assert flags.sum() == info[outcome]
            total[outcome] += flags.sum()
        if terminated or truncated:
            env.reset()
    assert total["clicks"] > 0 and total["purchases"] > 0


def test_missing_key_names_it():
    with pytest.raises(KeyError) as err:
        slot_flags({}, "purchases", 4)
    assert err.value.args[0] == ("info['purchased_positions'] is missing: per-slot purchases need it on every step "
                                 "(ShopRank-v0, ShopRank-v1 and their vector envs provide it).")
