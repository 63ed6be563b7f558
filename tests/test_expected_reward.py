"""AgentConfig.expected_reward: online training on each slate's expected reward, everything else on sampled rewards."""

from __future__ import annotations

import re
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
import agents.factory as factory
from agents.baselines import BaselineConfig
from agents.checkpoint import load_agent, read_checkpoint
from agents.factory import ONLINE_ONLY_FIELDS, AgentConfig, build_agent, online_env_config, train_agent, warm_start_key
from encoders.errors import ConfigError, NoExpectedResponseError, SimulatorError
from envs import EnvConfig, RewardSpec, static_config
from tests.test_aux_heads import FAST_WORLD, TINY  # the same tiny world and agent

CUSTOM = EnvConfig(world=FAST_WORLD, simulator="experiments.examples.custom_shopper:make", max_queries=1)
"""A static env whose plug-in shopper has no expected_response."""


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


def test_training_envs_reward_the_expected_value_and_nothing_else_does(tmp_path, monkeypatch):
    cfg = static_config(world=FAST_WORLD)
    made = []  # every single env train_agent makes: the warm start's logging env and the held-out curve's env
    real_make_env = factory.make_env
    monkeypatch.setattr(factory, "make_env",
                        lambda config, *a, **k: made.append(config) or real_make_env(config, *a, **k))
    rewards, sampled = [], []  # what PPO learnt from; the sampled outcomes' reward (info's clicks, purchases, revenue)

    from stable_baselines3.common.callbacks import BaseCallback

    class Rewards(BaseCallback):
        def _on_step(self) -> bool:
            rewards.append(np.array(self.locals["rewards"]))
            sampled.append([cfg.reward.total(np.array([i["clicks"], i["purchases"], i["revenue"]]))
                            for i in self.locals["infos"]])
            return True

    agent = replace(TINY, expected_reward=True, pretrain_sessions=40, pretrain_epochs=1, pretrain_envs=4)
    model = train_agent("ppo", cfg, 64, seed=3, run_dir=tmp_path, config=agent, eval_every=32, eval_sessions=4,
                        env_id="ShopRankStatic-v0", callbacks=[Rewards()])
    assert model.env.get_attr("config")[0].reward.expected is True
    # the rewards PPO learnt from are expected values: every slate earns some, and none is its sampled outcome's
    learnt, outcome = np.concatenate(rewards), np.concatenate(sampled)
    assert len(learnt) == 64 and np.all(learnt > 0)
    assert np.mean(np.abs(learnt - outcome) > 1e-3) > 0.9  # trained on sampled rewards, this share would be 0
    # the warm start logged and the curve evaluated on sampled rewards; so does the checkpoint's env
    assert made and all(config.reward.expected is False for config in made)
    assert len(model.learning_curve) >= 2
    saved = read_checkpoint(tmp_path / "checkpoint")
    assert saved.env_config.reward.expected is False and saved.agent_config.expected_reward is True


def test_a_simulator_without_expected_response_is_refused_where_it_is_needed(tmp_path):
    message = "RewardSpec(expected=True) needs a simulator with expected_response; PopularityShopper has none."
    # the env refuses it when it is built, not at its first step
    with pytest.raises(NoExpectedResponseError, match=re.escape(message)):
        gym.make("ShopRank-v0", config=replace(CUSTOM, reward=RewardSpec(expected=True)))
    with pytest.raises(NoExpectedResponseError, match=re.escape(
            f"AgentConfig.expected_reward=True trains on expected rewards: {message} Train on sampled rewards with "
            "expected_reward=False (--set agent.expected_reward=false).")):
        build_agent("ppo", CUSTOM, replace(TINY, expected_reward=True), env_id="ShopRankStatic-v0")
    assert issubclass(NoExpectedResponseError, SimulatorError)
    # without online steps nothing needs the simulator's truth: the warm start alone, a loaded checkpoint
    agent = replace(TINY, expected_reward=True)
    train_agent("ppo", CUSTOM, 0, run_dir=tmp_path, config=agent, env_id="ShopRankStatic-v0")
    plugins = {"simulator": CUSTOM.simulator}
    assert read_checkpoint(tmp_path / "checkpoint", plugins=plugins).agent_config.expected_reward
    loaded = load_agent(tmp_path / "checkpoint", plugins=plugins)
    env = gym.make("ShopRankStatic-v0", config=CUSTOM)
    action, _ = loaded.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(action)
    build_agent("ppo", CUSTOM, TINY, env_id="ShopRankStatic-v0")  # sampled rewards: fine


def test_compare_checks_it_before_anything_trains():
    from experiments.compare import preflight

    env = gym.make("ShopRankStatic-v0", config=CUSTOM)
    with pytest.raises(ConfigError, match=re.escape(
            "agent 'ppo' cannot run in ShopRankStatic-v0 with this config: it trains on expected rewards "
            "(expected_reward=True), which need a simulator with expected_response; PopularityShopper has none. "
            "Add --agent-set expected_reward=false (checked before any training; nothing was trained)")):
        preflight(["retriever", "ppo"], env, "ShopRankStatic-v0", BaselineConfig())
    preflight(["retriever", "ppo_pretrained"], env, "ShopRankStatic-v0", BaselineConfig())  # no online step
    preflight(["ppo"], env, "ShopRankStatic-v0", BaselineConfig(), ["expected_reward=false"])
