"""PPO's online score fit: the warm start's Poisson loss kept up on each rollout (agents.aux_heads.profiled_poisson_loss)."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from agents.aux_heads import SCORE_FIT_KEY, profiled_poisson_loss
from agents.pretrain import collect_logs
from agents.factory import ONLINE_ONLY_FIELDS, AgentConfig, build_agent, train_agent
from agents.slate_ppo import SlotCreditPPO
from encoders.errors import ConfigError
from envs import RewardSpec, static_config
from tests.test_aux_heads import FAST_WORLD, TINY  # the same tiny world and agent


def test_config_messages():
    with pytest.raises(ConfigError, match=re.escape("AgentConfig.score_fit_weight must be finite and >= 0, got -1.0.")):
        AgentConfig(score_fit_weight=-1.0)
    with pytest.raises(ConfigError, match=re.escape("AgentConfig.score_fit_weight must be finite and >= 0, got inf.")):
        AgentConfig(score_fit_weight=float("inf"))
    with pytest.raises(ConfigError, match=re.escape(
            "AgentConfig.score_fit_weight > 0 needs slate_policy='plackett_luce' and pretrain_target='reward' (it fits "
            "the scores to each slot's reward), got slate_policy='gaussian', pretrain_target='reward'.")):
        AgentConfig(score_fit_weight=1.0, slate_policy="gaussian")
    with pytest.raises(ConfigError, match=re.escape("got slate_policy='plackett_luce', pretrain_target='clicks'.")):
        AgentConfig(score_fit_weight=1.0, pretrain_target="clicks")
    assert "score_fit_weight" in ONLINE_ONLY_FIELDS      # it does not change the warm start (tests/test_agents.py)
    with pytest.raises(ConfigError, match=re.escape(
            "AgentConfig.score_fit_weight > 0 is PPO's online score fit; algorithm 'dqn' does not use it "
            "(set score_fit_weight=0).")):
        build_agent("dqn", static_config(world=FAST_WORLD), AgentConfig(score_fit_weight=1.0))
    negative = static_config(world=FAST_WORLD, reward=RewardSpec(click=-0.5))
    with pytest.raises(ConfigError, match=re.escape(
            "AgentConfig.score_fit_weight > 0 needs non-negative slot rewards (a Poisson fit), got RewardSpec(click=-0.5, "
            "purchase=1.0, revenue=0.02); use score_fit_weight=0 with negative reward weights.")):
        build_agent("ppo", negative, AgentConfig(score_fit_weight=1.0, n_envs=1))


def test_the_rllib_module_refuses_the_fit():
    pytest.importorskip("ray", reason="the RLlib module needs the distributed extra")
    from agents.rllib_module import check_config

    with pytest.raises(ConfigError, match=re.escape(
            "the RLlib module does not implement the online score fit (AgentConfig.score_fit_weight > 0): train it "
            "with score_fit_weight=0.")):
        check_config(AgentConfig(score_fit_weight=0.5))


def test_profiled_loss_equals_the_poisson_loss_at_the_best_slot_bias():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 3, generator=generator)
    rewards = torch.poisson(torch.exp(scores + torch.tensor([0.5, -0.2, -1.0])), generator=generator)
    filled = torch.ones(64, 3, dtype=torch.bool)
    filled[:5, 2] = False
    profiled = profiled_poisson_loss(scores, rewards, filled)

    def poisson(bias: torch.Tensor) -> torch.Tensor:
        logits = scores + bias
        weight = filled.float()
        return ((torch.exp(logits) - rewards * logits) * weight).sum() / weight.sum()

    bias = torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.LBFGS([bias], max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure():
        optimizer.zero_grad()
        loss = poisson(bias)
        loss.backward()
        return loss

    optimizer.step(closure)
    assert profiled.item() == pytest.approx(poisson(bias.detach()).item(), abs=1e-5)
    # envelope theorem: the gradient in the scores is the Poisson loss's at the fitted bias
    s = scores.clone().requires_grad_(True)
    profiled_poisson_loss(s, rewards, filled).backward()
    s2 = scores.clone().requires_grad_(True)
    weight = filled.float()
    (((torch.exp(s2 + bias.detach()) - rewards * (s2 + bias.detach())) * weight).sum() / weight.sum()).backward()
    assert torch.allclose(s.grad, s2.grad, atol=1e-5)
    assert torch.equal(s.grad[:5, 2], torch.zeros(5))                     # empty slots take no gradient


def test_profiled_loss_is_stable_at_any_score_level():
    """The loss ignores a shift of all scores (the bias absorbs it), so nothing pins their level: far from 0 the
    loss and its gradient must stay what they are near 0."""
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(32, 4, generator=generator)
    rewards = torch.poisson(torch.exp(scores), generator=generator)
    filled = torch.ones(32, 4, dtype=torch.bool)
    filled[:3, 3] = False
    base = scores.clone().requires_grad_(True)
    reference = profiled_poisson_loss(base, rewards, filled)
    reference.backward()
    for shift in (-40.0, 95.0):
        shifted = (scores + shift).requires_grad_(True)
        loss = profiled_poisson_loss(shifted, rewards, filled)
        loss.backward()
        assert torch.isfinite(loss) and torch.allclose(shifted.grad, base.grad, atol=1e-5)
        assert loss.item() == pytest.approx(reference.item(), abs=1e-4)        # s + b does not move
    empty = profiled_poisson_loss(scores, rewards, torch.zeros_like(filled))
    assert empty.item() == 0.0


def test_profiled_loss_ignores_masked_scores_and_is_finite():
    scores = torch.tensor([[0.3, -1e9], [0.1, -1e9]])
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    filled = torch.tensor([[True, False], [True, False]])
    loss = profiled_poisson_loss(scores, rewards, filled)
    assert torch.isfinite(loss)
    # slot 0 only: b = log(1 / (e^0.3 + e^0.1)); loss = mean(e^(s+b)) - 1 * (0.3 + b) / 2
    b = np.log(1.0 / (np.exp(0.3) + np.exp(0.1)))
    assert loss.item() == pytest.approx((1.0 - (0.3 + b)) / 2, rel=1e-6)


def test_ppo_minibatches_carry_slot_rewards():
    config = static_config(world=FAST_WORLD)
    agent = AgentConfig(**{**TINY.__dict__, "slot_credit": False, "score_fit_weight": 1.0})
    model = build_agent("ppo", config, agent, seed=0)
    assert isinstance(model, SlotCreditPPO) and model.rollout_buffer.score_fit and not model.rollout_buffer.credit
    model.learn(total_timesteps=128)
    batch = next(model.rollout_buffer.get(64))
    rewards = batch.observations[SCORE_FIT_KEY]
    assert rewards.shape == (64, config.slate_size) and float(rewards.sum()) > 0
    # each step's slot rewards are that step's (ShopRankStatic-v0: the reward is their sum), env by env
    buffer = model.rollout_buffer
    assert np.allclose(buffer.fit_rewards.sum(axis=-1), buffer.rewards, atol=1e-4)
    assert model.policy.score_fit_losses == []                           # logged and cleared after each update
    with torch.no_grad():
        model.policy.evaluate_actions(batch.observations, batch.actions)
    assert len(model.policy.score_fit_losses) == 1 and np.isfinite(model.policy.score_fit_losses[0])


def test_the_online_fit_predicts_held_out_slot_rewards_better():
    """Same seed and steps, with and without the fit: the fitted scores explain fresh logged slot rewards better."""
    config = static_config(world=FAST_WORLD)
    env = gym.make("ShopRankStatic-v0", config=config)
    observations, shown, outcomes = collect_logs(env, 300, seed=11, outcomes=("reward",))
    obs_t = {key: torch.as_tensor(value) for key, value in observations.items()}
    shown_t = torch.as_tensor(shown).clamp(min=0)
    losses = {}
    for weight in (0.0, 2.0):
        agent = AgentConfig(**{**TINY.__dict__, "n_steps": 64, "slot_credit": True, "slot_discount": 0.0,
                               "score_fit_weight": weight, "learning_rate": 3e-3})
        model = train_agent("ppo", config, total_timesteps=2048, seed=0, config=agent)
        with torch.no_grad():
            scores = model.policy.pi_features_extractor(obs_t)[:, :config.n_candidates]
            losses[weight] = profiled_poisson_loss(scores.gather(1, shown_t), torch.as_tensor(outcomes["reward"]),
                                                   torch.as_tensor(shown >= 0)).item()
    assert losses[2.0] < losses[0.0] - 0.01, losses


def test_the_fit_changes_training_is_logged_and_saved(tmp_path):
    config = static_config(world=FAST_WORLD)
    agent = AgentConfig(**{**TINY.__dict__, "slot_credit": True, "slot_discount": 0.0})
    plain = train_agent("ppo", config, total_timesteps=128, seed=3, config=agent)
    fitted = train_agent("ppo", config, total_timesteps=128, seed=3, run_dir=tmp_path,
                         config=AgentConfig(**{**agent.__dict__, "score_fit_weight": 0.5}))
    changed = [not torch.equal(a, b) for a, b in zip(plain.policy.state_dict().values(),
                                                   fitted.policy.state_dict().values())]
    assert any(changed)                                                   # the fit moves the weights
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "tb").iterdir()))).Reload()
    assert "train/score_fit_loss" in events.Tags()["scalars"]
    from agents.checkpoint import load_agent

    assert load_agent(tmp_path / "checkpoint").policy.score_fit_weight == 0.5
