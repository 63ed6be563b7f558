"""The candidate-set extractor, the score-head policies and the agent factory."""

from __future__ import annotations

import json
import re

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from agents.extractor import MASKED_SCORE, CandidateSetExtractor
from agents.checkpoint import load_agent
from agents.factory import AgentConfig, build_agent, train_agent
from agents.policies import valid_actions
from envs import EnvConfig, WorldConfig, static_config

FAST_WORLD = WorldConfig(text_encoder="hashing", n_products=300)
TINY = AgentConfig(n_steps=32, batch_size=32, n_epochs=1, hidden=16, heads=2, n_envs=2, learning_starts=16,
                   buffer_size=500, target_update_interval=50)


def _batch(space: gym.spaces.Dict, n: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    space.seed(seed)
    samples = [space.sample() for _ in range(n)]
    batch = {k: torch.tensor(np.stack([s[k] for s in samples]), dtype=torch.float32) for k in space.spaces}
    batch["mask"] = (batch["mask"] > 0.3).float()
    batch["history_mask"] = (batch["history_mask"] > 0.5).float()
    return batch


@pytest.mark.parametrize("env_id", ["ShopRank-v0", "ShopRankSeq-v0"])
def test_extractor_is_permutation_equivariant(env_id):
    env = gym.make(env_id, config=EnvConfig(world=FAST_WORLD))
    torch.manual_seed(0)
    extractor = CandidateSetExtractor(env.observation_space, hidden=16, heads=2).eval()
    obs = _batch(env.observation_space)
    k = obs["candidates"].shape[1]
    perm = torch.randperm(k, generator=torch.Generator().manual_seed(1))
    permuted = dict(obs)
    for key in ("candidates", "mask") + (("placed",) if "placed" in obs else ()):
        permuted[key] = obs[key][:, perm]
    with torch.no_grad():
        out, out_p = extractor(obs), extractor(permuted)
    assert torch.allclose(out[:, :k][:, perm], out_p[:, :k], atol=1e-5)   # scores permute with the candidates
    assert torch.allclose(out[:, k:], out_p[:, k:], atol=1e-5)             # pooled features are invariant
    assert torch.all(out[:, :k][obs["mask"] < 0.5] == MASKED_SCORE)


def test_untrained_ppo_ranks_like_the_retriever():
    model = build_agent("ppo", static_config(world=FAST_WORLD), TINY, seed=0, n_envs=1)
    env = gym.make("ShopRankStatic-v0", config=static_config(world=FAST_WORLD))
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert np.argsort(-action)[:10].tolist() == list(range(10))


@pytest.mark.parametrize("algo", ["ppo", "maskable_ppo", "dqn"])
def test_tiny_training_then_checkpoint_gives_identical_actions(algo, tmp_path):
    config = static_config(world=FAST_WORLD)
    model = train_agent(algo, config, total_timesteps=64, seed=1, run_dir=tmp_path, config=TINY)
    assert (tmp_path / "checkpoint" / "policy.pt").is_file() and list((tmp_path / "tb").iterdir())
    loaded = load_agent(tmp_path / "checkpoint")
    env = gym.make("ShopRankSeqStatic-v0" if loaded.sequential else "ShopRankStatic-v0", config=config)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        a, _ = model.predict(obs, deterministic=True)
        b, _ = loaded.predict(obs, deterministic=True)
        assert np.array_equal(a, b)


def test_masked_dqn_explores_only_valid_candidates():
    model = build_agent("dqn", static_config(world=FAST_WORLD), TINY, seed=0, n_envs=1)
    model.exploration_rate = 1.0
    obs = {"mask": np.array([[1, 1, 0, 1]] * 50, np.float32), "placed": np.array([[0, 1, 0, 0]] * 50, np.float32)}
    actions, _ = model.predict(obs, deterministic=False)
    assert set(actions.tolist()) == {0, 3}
    assert valid_actions(obs)[0].tolist() == [True, False, False, True]


def test_same_seed_same_training():
    config = static_config(world=FAST_WORLD)
    env = gym.make("ShopRankStatic-v0", config=config)
    runs = [train_agent("ppo", config, total_timesteps=64, seed=3, config=TINY) for _ in range(2)]
    obs, _ = env.reset(seed=11)
    assert np.array_equal(runs[0].predict(obs, deterministic=True)[0], runs[1].predict(obs, deterministic=True)[0])


def test_factory_messages(tmp_path):
    with pytest.raises(ValueError, match=re.escape("unknown RL algorithm 'a2c'; choose one of ['dqn', 'maskable_ppo', 'ppo'].")):
        build_agent("a2c", static_config(world=FAST_WORLD))
    with pytest.raises(ValueError, match=re.escape("AgentConfig.hidden (10) must be divisible by heads (4).")):
        AgentConfig(hidden=10, heads=4)
    with pytest.raises(FileNotFoundError, match=re.escape(f"not a ShopRank checkpoint: {tmp_path / 'agent.json'} is missing")):
        load_agent(tmp_path)


def test_train_cli_writes_run_folder_with_eval_and_hparams(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from experiments.train import main

    code = main(["--algo", "ppo", "--steps", "64", "--run-dir", str(tmp_path), "--no-progress",
                 "--set", "env.max_queries=1", "--set", "env.world.text_encoder=hashing",
                 "--set", "env.world.n_products=300", "--set", "agent.n_steps=32", "--set", "agent.batch_size=32",
                 "--set", "agent.hidden=16", "--set", "agent.heads=2", "--set", "agent.n_envs=2",
                 "--set", "eval_every=32", "--set", "eval_sessions=5"])
    assert code == 0
    for name in ("config.yaml", "config.json", "train.json", "checkpoint/agent.json", "checkpoint/policy.pt"):
        assert (tmp_path / name).is_file(), name
    run = next((tmp_path / "tb").iterdir())
    events = EventAccumulator(str(run))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"shop/reward", "shop/clicks", "shop/ndcg", "shop/ctr_pos_1", "eval/reward", "eval/ndcg"} <= scalars


def test_config_errors_name_the_key():
    from experiments.config import load_config

    with pytest.raises(ValueError, match=re.escape("unknown config key(s) ['lr'] in 'agent'; known:")):
        load_config(overrides=["agent.lr=0.1"])
    with pytest.raises(ValueError, match=re.escape("config key 'total_timesteps' must be int, got 'many'")):
        load_config(overrides=["total_timesteps=many"])
    with pytest.raises(ValueError, match=re.escape("config key 'total_timesteps' must be int, got '2.5e0'")):
        load_config(overrides=["total_timesteps=2.5e0"])
    with pytest.raises(ValueError, match=re.escape("config key 'agent.learning_rate' must be float, got 'fast'")):
        load_config(overrides=["agent.learning_rate=fast"])


def test_numbers_yaml_reads_as_text_are_converted():
    from experiments.config import load_config

    # PyYAML reads 1e-3 and 1e5 (no dot) as strings
    config = load_config(overrides=["agent.learning_rate=1e-3", "total_timesteps=1e5"])
    assert config.agent.learning_rate == 0.001 and isinstance(config.agent.learning_rate, float)
    assert config.total_timesteps == 100_000 and isinstance(config.total_timesteps, int)


def test_env_overrides_apply_on_top_of_the_registered_config():
    from experiments.config import apply_overrides

    config = apply_overrides(static_config(), ["world.image_weight=0", "reward.revenue=0"])
    assert config.max_queries == 1 and config.world.image_weight == 0.0 and config.reward.revenue == 0.0
    with pytest.raises(ValueError, match=re.escape("unknown config key(s) ['colour'] in 'world'")):
        apply_overrides(static_config(), ["world.colour=red"])


@pytest.mark.parametrize("name", ["static_ppo.yaml", "session_ppo.yaml", "luma_static.yaml"])
def test_shipped_configs_load(name):
    from pathlib import Path

    from experiments.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / name)
    assert config.algo == "ppo" and config.total_timesteps > 0


def test_dqn_slot_credit_splits_each_slate_reward_over_its_picks():
    """Same seed, warm-up only (no learning): the credited buffer holds each slate's reward split over its
    slots (the same per-slate sums), the plain one holds 0, ..., 0, slate reward."""
    from dataclasses import replace as dc_replace

    config = static_config(world=FAST_WORLD)
    steps = 10 * 12  # twelve complete slates (N = 10)
    buffers = {}
    for credit in (False, True):
        cfg = dc_replace(TINY, slot_credit=credit, learning_starts=10_000)
        model = build_agent("dqn", config, cfg, seed=5, n_envs=1)
        model.learn(total_timesteps=steps)
        buffers[credit] = model.replay_buffer.rewards[:steps, 0].reshape(12, 10).copy()
    plain, credited = buffers[False], buffers[True]
    assert np.all(plain[:, :-1] == 0.0)
    np.testing.assert_allclose(credited.sum(axis=1), plain[:, -1], rtol=1e-5)
    assert np.any(credited[:, :-1] != 0.0)  # earlier slots got their own products' clicks
    assert model.slot_credit


def test_slot_observations_place_the_products_shown_above():
    from agents.pretrain import reward_to_go, slot_observations

    k = 6
    observations = {"mask": torch.ones(2, k), "candidates": torch.arange(2.0)[:, None].repeat(1, k)}
    shown = torch.tensor([[4, 1, 2], [0, 5, -1]])
    batch = slot_observations(observations, shown, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 2, 1, 2]))
    assert batch["placed"].tolist() == [[0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 1, 0],
                                        [1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 1]]
    assert batch["slot"].argmax(1).tolist() == [0, 2, 1, 2]
    assert batch["candidates"][:, 0].tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(reward_to_go(np.array([[1.0, 2.0, 4.0]]), 0.5), [[1 + 1 + 1, 2 + 2, 4]])
    np.testing.assert_allclose(reward_to_go(np.array([[1.0, 2.0, 4.0]]), 0.0), [[1, 2, 4]])


def test_dqn_warm_start_fits_logged_slot_rewards_and_syncs_the_target():
    from dataclasses import replace as dc_replace

    from agents.factory import warm_start

    config = static_config(world=FAST_WORLD)
    cfg = dc_replace(TINY, pretrain_sessions=60, pretrain_epochs=3, gamma=0.0, slot_credit=True, seed_buffer=True,
                     buffer_size=1000)
    model = build_agent("dqn", config, cfg, seed=0, n_envs=1)
    losses, seconds = warm_start(model, "dqn", config, cfg, seed=0, progress=False)
    assert seconds > 0
    assert len(losses) == 3 and losses[-1] < losses[0]
    for a, b in zip(model.policy.q_net.parameters(), model.policy.q_net_target.parameters()):
        assert torch.equal(a, b)
    # the logged transitions are in the replay buffer: one per shown slot, slate ends terminal
    buffer = model.replay_buffer
    assert buffer.pos == 60 * 10 and not buffer.full
    assert buffer.dones[9:600:10, 0].all() and not buffer.dones[:9, 0].any()
    assert buffer.observations["placed"][:10, 0].sum(axis=1).tolist() == list(range(10))
    np.testing.assert_array_equal(buffer.next_observations["placed"][:9, 0], buffer.observations["placed"][1:10, 0])
    assert buffer.rewards[:600, 0].sum() > 0
    model.learn(total_timesteps=20)  # online learning continues on top
    assert buffer.pos == 620
    small = dc_replace(cfg, buffer_size=100)
    with pytest.raises(ValueError, match=re.escape("the replay buffer holds 100 transitions; 600 logged ones do not "
                                                   "fit after the 0 it has (raise AgentConfig.buffer_size).")):
        warm_start(build_agent("dqn", config, small, seed=0, n_envs=1), "dqn", config, small, seed=0, progress=False)


def test_a_cached_warm_start_continues_exactly_like_a_fitted_one(tmp_path):
    from dataclasses import replace as dc_replace

    from agents.factory import build_agent, warm_start, warm_start_key

    env_config = static_config(world=FAST_WORLD)
    cfg = dc_replace(TINY, pretrain_sessions=40, pretrain_epochs=2, slot_credit=True)

    def trained(cache):
        model = train_agent("ppo", env_config, 64, seed=3, config=cfg, env_id="ShopRankStatic-v0", warm_cache=cache)
        return {k: v.clone() for k, v in model.policy.state_dict().items()}

    fitted = trained(None)
    model = build_agent("ppo", env_config, cfg, seed=3, env_id="ShopRankStatic-v0")
    warm_start(model, "ppo", env_config, cfg, 3, False, env_id="ShopRankStatic-v0")
    first_fit = {k: v.clone() for k, v in model.policy.state_dict().items()}  # the warm start alone
    first = trained(tmp_path)  # fits and keeps its weights
    saved = list(tmp_path.glob("*.pt"))
    assert [p.stem for p in saved] == [warm_start_key("ppo", env_config, cfg, 3, "ShopRankStatic-v0")]
    assert json.loads(saved[0].with_suffix(".json").read_text())["fit_seconds"] > 0  # credited to wall-time curves
    stamp = saved[0].stat().st_mtime_ns
    second = trained(tmp_path)  # loads them
    assert saved[0].stat().st_mtime_ns == stamp
    for key in fitted:
        assert torch.equal(fitted[key], first[key]) and torch.equal(fitted[key], second[key]), key
    assert warm_start_key("ppo", env_config, cfg, 4, "ShopRankStatic-v0") != saved[0].stem
    assert warm_start_key("ppo", env_config, dc_replace(cfg, pretrain_sessions=41), 3, "ShopRankStatic-v0") != saved[0].stem
    # online-only settings neither build the network nor enter the fit: the same warm start, the same key
    online = dc_replace(cfg, learning_rate=1e-5, n_steps=16, batch_size=16, n_epochs=1, gamma=0.5, gae_lambda=0.5,
                        ent_coef=0.01, clip_range=0.1, target_kl=0.5, score_fit_weight=2.0, expected_reward=True)
    assert warm_start_key("ppo", env_config, online, 3, "ShopRankStatic-v0") == saved[0].stem
    model = build_agent("ppo", env_config, online, seed=3, env_id="ShopRankStatic-v0")
    warm_start(model, "ppo", env_config, online, 3, False, env_id="ShopRankStatic-v0")
    for key, value in model.policy.state_dict().items():
        assert torch.equal(value, first_fit[key]), key
    # DQN's warm start also fills its replay buffer: never served from the cache
    dqn_cfg = dc_replace(TINY, pretrain_sessions=10, pretrain_epochs=1, gamma=0.0, seed_buffer=True, n_envs=1)
    train_agent("dqn", env_config, 32, seed=3, config=dqn_cfg, env_id="ShopRankStatic-v0", warm_cache=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
