"""PPO with the Plackett-Luce slate policy: SB3 integration, per-slot credit, learning curves; DQN's fast path;
and training tests (PPO, DQN) that fail when learning breaks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy import stats
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy

import envs  # noqa: F401
from agents.baselines import make_baseline
from agents.distributions import PlackettLuceDistribution
from agents.factory import AGENT_PRESETS, AgentConfig, build_agent, train_agent
from agents.policies import valid_actions
from agents.logging_policy import derive_seed
from agents.slate_ppo import SlotCreditPPO, SlotCreditRolloutBuffer
from envs import WorldConfig, static_config

FAST_WORLD = WorldConfig(text_encoder="hashing", n_products=300)
TINY = AgentConfig(n_steps=32, batch_size=32, n_epochs=1, hidden=16, heads=2, n_envs=2, slot_credit=True,
                   slot_discount=0.0)


def test_plackett_luce_ppo_saves_loads_and_runs_sb3_evaluate_policy(tmp_path):
    config = static_config(world=FAST_WORLD)
    model = build_agent("ppo", config, TINY, seed=0)
    assert isinstance(model, SlotCreditPPO) and isinstance(model.policy.action_dist, PlackettLuceDistribution)
    model.learn(64)
    model.save(tmp_path / "model.zip")
    loaded = PPO.load(tmp_path / "model.zip", device="cpu")
    env = gym.make("ShopRankStatic-v0", config=config)
    obs, _ = env.reset(seed=5)
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    mean, _ = evaluate_policy(loaded, env, n_eval_episodes=3)
    assert np.isfinite(mean)


def test_sampled_actions_show_a_plackett_luce_draw_and_deterministic_ranks_by_score():
    config = static_config(world=FAST_WORLD)
    model = build_agent("ppo", config, TINY, seed=0, n_envs=1)
    env = gym.make("ShopRankStatic-v0", config=config)
    obs, _ = env.reset(seed=1)
    slates = set()
    for _ in range(20):
        action, _ = model.predict(obs, deterministic=False)
        slates.add(tuple(env.unwrapped.slate_from_scores(action)))
    assert len(slates) > 10                   # the untrained policy's scores are close: draws differ
    action, _ = model.predict(obs, deterministic=True)
    assert np.argsort(-action)[:10].tolist() == list(range(10))   # the retriever prior ranks first


def _buffer(slot_discount: float) -> SlotCreditRolloutBuffer:
    env = gym.make("ShopRankStatic-v0", config=static_config(world=FAST_WORLD))
    buf = SlotCreditRolloutBuffer(4, env.observation_space, env.action_space, n_envs=1, gamma=0.9, gae_lambda=1.0,
                                  n_slots=3, slot_discount=slot_discount)
    rng = np.random.default_rng(0)
    buf.slot_rewards[:] = rng.random((4, 1, 3)).astype(np.float32)
    buf.rewards[:] = buf.slot_rewards.sum(axis=2)
    buf.values[:] = rng.random((4, 1)).astype(np.float32)
    buf.episode_starts[:] = 1.0                                     # one-query episodes
    buf.full = True
    buf.compute_returns_and_advantage(torch.zeros(1), np.ones(1, dtype=bool))
    return buf


def test_slot_credit_advantages_follow_the_documented_formula():
    unbiased = _buffer(1.0)
    a_t = unbiased.advantages[:, 0]                                 # R_t - V_t for one-query episodes
    assert np.allclose(unbiased.slot_advantages[:, 0, 0], a_t - a_t.mean(), atol=1e-6)  # slot 1: A_t itself
    myopic = _buffer(0.0)
    r, v = myopic.slot_rewards[:, 0, :], myopic.values[:, 0]
    share = r.mean(axis=0) / r.sum(axis=1).mean()
    expected = r - share[None, :] * v[:, None]
    assert np.allclose(myopic.slot_advantages[:, 0, :], expected - expected.mean(axis=0), atol=1e-6)


def test_learning_curve_is_recorded_from_the_first_step(tmp_path):
    config = static_config(world=FAST_WORLD)
    model = train_agent("ppo", config, 128, seed=0, run_dir=tmp_path / "ppo" / "seed0", config=TINY, eval_every=64,
                        eval_sessions=5)
    steps = [point["env_steps"] for point in model.learning_curve]
    assert steps[0] == 0 and steps[-1] == model.num_timesteps and steps == sorted(steps)
    assert (tmp_path / "ppo" / "seed0" / "learning_curve.csv").is_file()
    from experiments.learning_curves import collect_curves, summarize_curves

    table = summarize_curves(collect_curves(tmp_path))
    assert set(table["agent"]) == {"ppo"} and table["n_seeds"].max() == 1


def test_pretrained_presets_take_no_online_step():
    for name in ("ppo_pretrained", "dqn_pretrained"):
        preset = AGENT_PRESETS[name]
        assert not preset.online and preset.config.pretrain_sessions > 0


def _rewards(agent, env, n: int, seed: int) -> np.ndarray:
    out = []
    for i in range(n):
        obs, _ = env.reset(seed=derive_seed(seed, i))
        action, _ = agent.predict(obs, deterministic=True)
        out.append(env.step(action)[1])
    return np.array(out)


@pytest.mark.slow
def test_ppo_from_scratch_beats_retriever_order_with_a_paired_ci_above_zero():
    """The ``ppo_scratch`` preset, 12,288 online steps, no logged data: its slates must earn more than the
    retriever's order on the same 300 held-out shoppers (paired 95% CI above 0). Fails when learning breaks
    (e.g. an untrained policy ranks exactly like the retriever: difference 0)."""
    config = static_config(world=FAST_WORLD)
    model = train_agent("ppo", config, 12_288, seed=0, config=AGENT_PRESETS["ppo_scratch"].config)
    env = gym.make("ShopRankStatic-v0", config=config)
    diff = _rewards(model, env, 300, 7) - _rewards(make_baseline("retriever", env, 7), env, 300, 7)
    low = diff.mean() - stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    assert low > 0, f"ppo_scratch - retriever = {diff.mean():.3f}, 95% CI low {low:.3f}"


def test_dqn_without_bootstrap_skips_the_target_network_and_learns_the_same():
    """gamma = 0: the target network's values are multiplied by 0, so ``dqn`` does not evaluate it
    (zeros instead); the trained Q-network is the same as with the target evaluated."""
    from dataclasses import replace

    config = static_config(world=FAST_WORLD)
    cfg = replace(TINY, gamma=0.0, learning_starts=20, buffer_size=500, train_freq=1)
    models = []
    for bootstrap in (False, True):            # built and trained one after the other: SB3 seeds its
        model = build_agent("dqn", config, cfg, seed=4)   # global RNGs (replay sampling) when building
        assert not model.policy.bootstrap and not model.q_net_target.bootstrap
        model.q_net_target.bootstrap = bootstrap           # True: evaluate the target as SB3 would
        model.learn(60)
        models.append(model)
    for a, b in zip(models[0].q_net.parameters(), models[1].q_net.parameters()):
        torch.testing.assert_close(a, b)
    obs = {k: torch.as_tensor(v) for k, v in models[0].env.reset().items()}
    assert torch.equal(models[0].q_net_target(obs), torch.zeros(2, config.n_candidates))
    assert not torch.equal(models[1].q_net_target(obs), torch.zeros(2, config.n_candidates))
    assert build_agent("dqn", config, replace(cfg, gamma=0.5), seed=0).q_net_target.bootstrap


def test_masked_dqn_explores_each_row_of_a_batch_on_its_own():
    model = build_agent("dqn", static_config(world=FAST_WORLD), TINY, seed=0)
    model.exploration_rate = 0.5
    obs = model.env.reset()
    obs = {k: np.repeat(v[:1], 200, axis=0) for k, v in obs.items()}   # 200 copies of one state
    greedy, _ = model.predict(obs, deterministic=True)
    actions, _ = model.predict(obs, deterministic=False)
    share = float(np.mean(actions != greedy))
    assert 0.3 < share < 0.6                   # about half explore (a random pick may equal the greedy one)
    assert valid_actions(obs)[np.arange(200), actions].all()


@pytest.mark.slow
def test_dqn_from_scratch_beats_retriever_order_with_a_paired_ci_above_zero():
    """The ``dqn_scratch`` preset, 8,000 online slot steps (800 slates), no logged data: its slates must
    earn more than the retriever's order on the same 300 held-out shoppers (paired 95% CI above 0).
    Fails when DQN learning breaks (an untrained Q-network ranks like the retriever: difference 0)."""
    from experiments.evaluate import evaluate_agents

    config = static_config(world=FAST_WORLD)
    model = train_agent("dqn", config, 8_000, seed=0, config=AGENT_PRESETS["dqn_scratch"].config)
    df = evaluate_agents({"dqn_scratch": lambda env, seed: model,
                          "retriever": lambda env, seed: make_baseline("retriever", env, seed)},
                         "ShopRankStatic-v0", config, seeds=[7], n_sessions=300, progress=False)
    reward = df.pivot(index="session", columns="agent", values="reward")
    diff = (reward["dqn_scratch"] - reward["retriever"]).to_numpy()
    low = diff.mean() - stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    assert low > 0, f"dqn_scratch - retriever = {diff.mean():.3f}, 95% CI low {low:.3f}"
