"""AgentConfig.expected_reward: online training on each slate's expected reward, everything else on sampled rewards."""

from __future__ import annotations

import re
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from agents.checkpoint import read_checkpoint
from agents.factory import ONLINE_ONLY_FIELDS, AgentConfig, build_agent, online_env_config, train_agent, warm_start_key
from encoders.errors import NoExpectedResponseError, SimulatorError
from envs import EnvConfig, RewardSpec, static_config
from tests.test_aux_heads import FAST_WORLD, TINY  # the same tiny world and agent


def test_only_the_online_env_config_changes():
    sampled = static_config(world=FAST_WORLD)
    assert online_env_config(sampled, AgentConfig()) is sampled
    online = online_env_config(sampled, AgentConfig(expected_reward=True))
    assert online.reward == RewardSpec(expected=True)
    assert replace(online, reward=sampled.reward) == sampled  # nothing else differs
    already = static_config(world=FAST_WORLD, reward=RewardSpec(expected=True))
    assert online_env_config(already, AgentConfig(expected_reward=True)) is already
    # an online-only field: a cached warm start is shared with the sampled-reward agent
    assert "expected_reward" in ONLINE_ONLY_FIELDS
    assert (warm_start_key("ppo", sampled, replace(TINY, expected_reward=True), 0, "ShopRankStatic-v0")
            == warm_start_key("ppo", sampled, TINY, 0, "ShopRankStatic-v0"))


def test_training_envs_reward_the_expected_value(tmp_path):
    cfg = static_config(world=FAST_WORLD)
    model = train_agent("ppo", cfg, 64, seed=3, run_dir=tmp_path, config=replace(TINY, expected_reward=True),
                        eval_every=32, eval_sessions=4, env_id="ShopRankStatic-v0")
    assert model.env.get_attr("config")[0].reward.expected is True
    # the rollout's rewards are the env's expected rewards: replay the same seed in an expected-reward vector env
    from envs.vector_env import sb3_vec_env

    probe = sb3_vec_env(2, online_env_config(cfg, AgentConfig(expected_reward=True)), seed=3, env_id="ShopRankStatic-v0")
    sampled = sb3_vec_env(2, cfg, seed=3, env_id="ShopRankStatic-v0")
    probe.reset(), sampled.reset()
    actions = np.random.default_rng(0).normal(size=(2, cfg.n_candidates)).astype(np.float32)
    expected_reward, sampled_reward = probe.step(actions)[1], sampled.step(actions)[1]
    assert not np.array_equal(expected_reward, sampled_reward)
    assert np.all(expected_reward > 0) and np.all(expected_reward != np.round(expected_reward))
    # the held-out curve and the checkpoint keep the sampled rewards
    assert len(model.learning_curve) >= 2
    saved = read_checkpoint(tmp_path / "checkpoint")
    assert saved.env_config.reward.expected is False and saved.agent_config.expected_reward is True


def test_a_simulator_without_expected_response_is_refused():
    cfg = EnvConfig(world=FAST_WORLD, simulator="experiments.examples.custom_shopper:make", max_queries=1)
    message = "RewardSpec(expected=True) needs a simulator with expected_response; PopularityShopper has none."
    # the env refuses it when it is built, not at its first step
    with pytest.raises(NoExpectedResponseError, match=re.escape(message)):
        gym.make("ShopRank-v0", config=replace(cfg, reward=RewardSpec(expected=True)))
    with pytest.raises(NoExpectedResponseError, match=re.escape(
            f"AgentConfig.expected_reward=True trains on expected rewards: {message} Train on sampled rewards with "
            "expected_reward=False (--agent-set expected_reward=false).")):
        build_agent("ppo", cfg, replace(TINY, expected_reward=True), env_id="ShopRankStatic-v0")
    assert issubclass(NoExpectedResponseError, SimulatorError)
    build_agent("ppo", cfg, TINY, env_id="ShopRankStatic-v0")  # sampled rewards: fine
