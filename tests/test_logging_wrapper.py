"""Env sessions logged in the interaction-log format, then fitted end to end."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import envs  # noqa: F401
from envs import EnvConfig, WorldConfig
from envs.logging_wrapper import InteractionLogger
from simulators.fitting import PBMEstimator, fidelity_report, fit_click_model, split_log
from simulators.logs import validate_log

FAST = EnvConfig(world=WorldConfig(text_encoder="hashing"))


def test_logged_sessions_match_the_env_and_fit():
    env = InteractionLogger(gym.make("ShopRank-v0", config=FAST), propensity=lambda obs, action: np.full(10, 0.05))
    rng = np.random.default_rng(0)
    clicks = purchases = slates = 0
    for seed in range(60):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 20).astype(np.float32))
            clicks += info["clicks"]
            purchases += info["purchases"]
            slates += 1
            done = terminated or truncated
    log = validate_log(env.recorder.to_frame())
    assert log["session"].nunique() == 60 and env.recorder.n_slates == slates
    assert log["click"].sum() == clicks and log["purchase"].sum() == purchases
    assert (log["propensity"] == 0.05).all() and set(log["position"]) == set(range(10))
    fitted = fit_click_model(log, PBMEstimator())
    assert fitted is not None
    train, test = split_log(log, 0.3, np.random.default_rng(0))
    report = fidelity_report(train, test, n_bootstrap=20)
    assert len(report) >= 3
