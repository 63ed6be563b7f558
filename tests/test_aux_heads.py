"""Multi-task heads: auxiliary click / purchase predictions of the candidate network (agents.aux_heads)."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from agents.aux_heads import AUX_LABEL_KEYS, aux_loss, shown_slots, with_loss_gradient
from agents.extractor import CandidateSetExtractor
from agents.factory import AgentConfig, build_agent, train_agent, warm_start
from agents.pretrain import PretrainConfig, collect_logs, pretrain_scores
from agents.slate_ppo import SlotCreditPPO, SlotCreditRolloutBuffer
from encoders.errors import ConfigError
from envs import WorldConfig, static_config

FAST_WORLD = WorldConfig(text_encoder="hashing", n_products=300)
TINY = AgentConfig(n_steps=32, batch_size=32, n_epochs=1, hidden=16, heads=2, n_envs=2, layers=0)


def test_config_messages():
    with pytest.raises(ConfigError, match=re.escape("AgentConfig.aux_loss_weight must be finite and >= 0, got -0.5.")):
        AgentConfig(aux_loss_weight=-0.5)
    with pytest.raises(ConfigError, match=re.escape("AgentConfig.aux_loss_weight must be finite and >= 0, got nan.")):
        AgentConfig(aux_loss_weight=float("nan"))
    with pytest.raises(ConfigError, match=re.escape(
            "AgentConfig.aux_heads needs network='candidate_set' (the students have no auxiliary heads), "
            "got network='student_mlp'.")):
        AgentConfig(aux_heads=True, network="student_mlp")


def test_shown_slots_mirror_the_env_slate():
    actions = torch.tensor([[0.1, 0.9, 0.5, 0.9], [1.0, 0.0, -1.0, 2.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    shown, filled = shown_slots(actions, mask, 3)
    assert shown.tolist() == [[1, 3, 2], [0, 1, 2]]       # ties in candidate order; padding never shown first
    assert filled.all()
    shown, filled = shown_slots(actions[1:], torch.tensor([[1.0, 0.0, 0.0, 0.0]]), 2)
    assert shown[0, 0] == 0 and filled.tolist() == [[True, False]]


def test_aux_loss_is_the_mean_cross_entropy_of_the_shown_slots():
    logits = torch.zeros(1, 4, 2)
    logits[0, 2] = torch.tensor([2.0, -1.0])
    bias = torch.zeros(2, 2)
    shown, filled = torch.tensor([[2, 0]]), torch.tensor([[True, False]])
    loss = aux_loss(logits, bias, shown, filled, torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 1.0]]))
    expected = -np.log(1 / (1 + np.exp(-2.0))) - np.log(1 - 1 / (1 + np.exp(1.0)))   # the empty slot is left out
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_with_loss_gradient_adds_the_loss_gradient_and_keeps_the_value():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    carrier = w * 3.0
    aux = (w ** 2).sum()
    tied = with_loss_gradient(carrier, 0.5 * aux)
    assert torch.equal(tied, carrier)
    (tied.sum() ** 2).backward()
    expected = 2 * carrier.sum().detach() * 3.0 + 0.5 * 2 * w.detach()
    assert torch.allclose(w.grad, expected)


def test_extractor_aux_heads_leave_the_scores_alone():
    env = gym.make("ShopRankStatic-v0", config=static_config(world=FAST_WORLD))
    torch.manual_seed(0)
    plain = CandidateSetExtractor(env.observation_space, hidden=16, heads=2)
    torch.manual_seed(0)
    multi = CandidateSetExtractor(env.observation_space, hidden=16, heads=2, aux_heads=True)
    obs, _ = env.reset(seed=0)
    batch = {k: torch.as_tensor(v)[None] for k, v in obs.items()}
    with torch.no_grad():
        assert torch.equal(plain(batch), multi(batch))
    assert plain.last_aux is None and multi.last_aux.shape == (1, obs["mask"].shape[0], 2)


def test_ppo_minibatches_carry_slot_labels_and_the_aux_loss_trains_the_heads():
    config = static_config(world=FAST_WORLD)
    agent = AgentConfig(**{**TINY.__dict__, "aux_heads": True, "slot_credit": False, "learning_rate": 3e-3})
    model = build_agent("ppo", config, agent, seed=0)
    assert isinstance(model, SlotCreditPPO) and isinstance(model.rollout_buffer, SlotCreditRolloutBuffer)
    assert not model.rollout_buffer.credit and model.rollout_buffer.aux_labels
    model.learn(total_timesteps=256)
    buffer = model.rollout_buffer
    batch = next(buffer.get(16))
    assert set(AUX_LABEL_KEYS) <= set(batch.observations)
    clicks = batch.observations["aux_clicks"]
    assert clicks.shape == (16, config.slate_size) and set(clicks.unique().tolist()) <= {0.0, 1.0}
    assert buffer.slot_labels[0].sum() > 0                                # clicks were recorded
    losses = model.policy.aux_losses
    assert losses == []                                                   # logged and cleared after each update
    # the heads learn: their loss on the last rollout falls when the policy keeps training
    model.policy.aux_loss_weight = 1.0
    before = _aux_loss_on(model, batch)
    model.learn(total_timesteps=512, reset_num_timesteps=False)
    assert _aux_loss_on(model, batch) < before


def _aux_loss_on(model, batch) -> float:
    with torch.no_grad():
        model.policy.evaluate_actions(batch.observations, batch.actions)
    return model.policy.aux_losses.pop()


def test_ppo_with_slot_credit_and_aux_heads_trains_and_logs(tmp_path):
    agent = AgentConfig(**{**TINY.__dict__, "aux_heads": True, "slot_credit": True, "slot_discount": 0.0})
    model = train_agent("ppo", static_config(world=FAST_WORLD), total_timesteps=128, seed=0, config=agent,
                        run_dir=tmp_path)
    assert model.rollout_buffer.credit and model.rollout_buffer.log_probs.shape[-1] == 10
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "tb").iterdir()))).Reload()
    assert "train/aux_loss" in events.Tags()["scalars"]
    from agents.checkpoint import load_agent

    loaded = load_agent(tmp_path / "checkpoint")                          # the heads are saved and rebuilt
    assert loaded.policy.pi_features_extractor.aux_head is not None
    env = gym.make("ShopRankStatic-v0", config=static_config(world=FAST_WORLD))
    obs, _ = env.reset(seed=2)
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_warm_start_fits_the_aux_heads_to_logged_clicks_and_purchases():
    config = static_config(world=FAST_WORLD)
    env = gym.make("ShopRankStatic-v0", config=config)
    observations, shown, outcomes = collect_logs(env, 60, seed=0, outcomes=("reward", "clicks", "purchases"))
    assert set(outcomes) == {"reward", "clicks", "purchases"}
    assert np.all(outcomes["purchases"] <= outcomes["clicks"])           # a purchase follows a click
    torch.manual_seed(0)
    extractor = CandidateSetExtractor(env.observation_space, hidden=16, heads=2, aux_heads=True)
    labels = (outcomes["clicks"], outcomes["purchases"], 1.0)
    losses = pretrain_scores(extractor, config.n_candidates, observations, shown, outcomes["reward"],
                             PretrainConfig(epochs=4), seed=0, aux_labels=labels)
    assert losses[-1] < losses[0]
    with pytest.raises(ConfigError, match=re.escape(
            "aux_labels need an extractor with auxiliary heads (CandidateSetExtractor(aux_heads=True)).")):
        pretrain_scores(CandidateSetExtractor(env.observation_space, hidden=16, heads=2), config.n_candidates,
                        observations, shown, outcomes["reward"], PretrainConfig(epochs=1), seed=0, aux_labels=labels)


def test_factory_warm_start_moves_the_aux_heads():
    config = static_config(world=FAST_WORLD)
    agent = AgentConfig(**{**TINY.__dict__, "aux_heads": True, "pretrain_sessions": 30, "pretrain_epochs": 2})
    model = build_agent("ppo", config, agent, seed=0)
    extractor = model.policy.pi_features_extractor
    before = [p.detach().clone() for p in extractor.aux_head.parameters()]
    warm_start(model, "ppo", config, agent, seed=0, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, extractor.aux_head.parameters()))
    assert extractor.aux_slot_bias.abs().sum() > 0
