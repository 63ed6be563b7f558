"""The Ray RLlib scale-out backend (skipped when Ray is not installed: ``make distributed`` installs it).

The module tests build :class:`agents.rllib_module.ShopRankRLModule` without starting Ray and check that it
*is* ShopRank's SB3 policy (same modules, same distribution, weights that move both ways). The ``slow``
tests start a local Ray instance (on a 2-core machine most of their time is Ray's start and the env runner's
imports, ~40-80 s).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray is not in the dev extra: install the distributed extra (make distributed, "
                         "or pip install -c constraints.txt -e '.[dev,distributed]') to run the RLlib backend tests")

from ray.rllib.core.columns import Columns  # noqa: E402

from agents.checkpoint import WEIGHTS_FILE, load_agent  # noqa: E402
from agents.factory import AgentConfig, make_env  # noqa: E402
from agents.policies import CandidateScorePolicy  # noqa: E402
from agents.rllib_module import (PREFIX, ShopRankRLModule, build_sb3_policy, export_checkpoint,  # noqa: E402
                                 load_sb3_state_dict, module_spec, sb3_state_dict)
from envs import EnvConfig, WorldConfig  # noqa: E402
from envs.vector_env import ShopRankVectorEnv  # noqa: E402
from experiments.rllib_backend import RLLIB_AGENT, RllibConfig, make_rllib_env, train_rllib  # noqa: E402

TINY = EnvConfig(n_candidates=10, slate_size=5, max_queries=3,
                 world=WorldConfig(n_products=300, text_encoder="hashing", image_encoder="", cache_dir=""))
SMALL_AGENT = replace(RLLIB_AGENT, batch_size=32, n_epochs=1)


@pytest.fixture(scope="module")
def env():
    env = make_env(TINY, sequential=False)
    yield env
    env.close()


def build_module(env, seed: int = 0, inference_only: bool = False) -> ShopRankRLModule:
    spec = module_spec(SMALL_AGENT, TINY.slate_size, seed=seed)
    spec.observation_space, spec.action_space, spec.inference_only = env.observation_space, env.action_space, \
        inference_only
    return spec.build()


def batch_of(env, n: int = 6) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
    rows = [env.reset(seed=s)[0] for s in range(n)]
    obs = {key: np.stack([r[key] for r in rows]) for key in rows[0]}
    return obs, {key: torch.as_tensor(v) for key, v in obs.items()}


def test_the_module_is_the_sb3_policy(env):
    module = build_module(env)
    policy = module.policy
    assert type(policy) is CandidateScorePolicy
    # every parameter RLlib trains is one of the SB3 policy's: no second network
    assert {id(p) for p in module.parameters()} == {id(p) for p in policy.parameters()}
    obs, tensors = batch_of(env)
    out = module.forward_train({Columns.OBS: tensors})
    dist = module.get_train_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    with torch.no_grad():
        sb3_dist = policy.get_distribution(policy.obs_to_tensor(obs)[0])
        actions = dist.sample()
        values, sb3_log_prob, sb3_entropy = policy.evaluate_actions(policy.obs_to_tensor(obs)[0], actions)
        torch.testing.assert_close(out[Columns.ACTION_DIST_INPUTS], sb3_dist.scores)
        assert sb3_log_prob.shape == (6, TINY.slate_size)  # slot credit: SB3's policy gives the per-slot terms
        torch.testing.assert_close(dist.slot_logp(actions), sb3_log_prob)
        torch.testing.assert_close(dist.logp(actions), sb3_log_prob.sum(dim=1))
        torch.testing.assert_close(dist.entropy(), sb3_entropy)
        torch.testing.assert_close(module.compute_values({Columns.OBS: tensors}, out[Columns.EMBEDDINGS]),
                                   values.squeeze(-1))
        greedy = dist.to_deterministic().sample().numpy()
    np.testing.assert_array_equal(greedy, policy.predict(obs, deterministic=True)[0])
    # a sampled action is a rank encoding (a permutation of the K rank scores) that the env accepts
    assert np.allclose(np.sort(actions.numpy(), axis=1), np.sort(greedy, axis=1))


def test_same_seed_same_module_and_the_global_rng_is_left_alone(env):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = build_module(env, seed=3), build_module(env, seed=3), build_module(env, seed=4)
    assert torch.rand(1) == before
    sa, sb, sc = a.policy.state_dict(), b.policy.state_dict(), c.policy.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_weights_move_both_ways(env):
    module = build_module(env, seed=1)
    state = sb3_state_dict(module.get_state())  # RLlib's state (NumPy arrays) -> SB3 names and tensors
    assert all(k == PREFIX + name for k, name in zip(module.state_dict(), state))
    policy = build_sb3_policy(env.observation_space, env.action_space, SMALL_AGENT, TINY.slate_size, seed=2)
    policy.load_state_dict(state, strict=True)  # RLlib -> SB3
    obs, tensors = batch_of(env)
    with torch.no_grad():
        scores = module.forward_inference({Columns.OBS: tensors})[Columns.ACTION_DIST_INPUTS]
        torch.testing.assert_close(policy.get_distribution(policy.obs_to_tensor(obs)[0]).scores, scores)
    other = build_module(env, seed=5)
    load_sb3_state_dict(other, policy.state_dict())  # SB3 -> RLlib (fine-tuning)
    with torch.no_grad():
        torch.testing.assert_close(other.forward_inference({Columns.OBS: tensors})[Columns.ACTION_DIST_INPUTS],
                                   module.forward_inference({Columns.OBS: tensors})[Columns.ACTION_DIST_INPUTS])


def test_exported_checkpoint_is_a_plain_shoprank_checkpoint(env, tmp_path):
    module = build_module(env, seed=1)
    path = export_checkpoint(module.get_state(), TINY, SMALL_AGENT, tmp_path / "ck")
    meta = json.loads((path / "agent.json").read_text())
    assert meta["algo"] == "ppo" and meta["agent_config"]["hidden"] == SMALL_AGENT.hidden
    weights = torch.load(path / WEIGHTS_FILE, weights_only=True)  # tensors only, no pickled code
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    agent = load_agent(path)
    obs, tensors = batch_of(env)
    with torch.no_grad():
        greedy = module.get_inference_action_dist_cls().from_logits(
            module.forward_inference({Columns.OBS: tensors})[Columns.ACTION_DIST_INPUTS]).to_deterministic().sample()
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], greedy.numpy())


def test_env_factory_gives_the_batched_env():
    from envs.config import config_to_dict

    vec = make_rllib_env({**config_to_dict(TINY), "num_envs": 4})
    assert isinstance(vec, ShopRankVectorEnv) and vec.num_envs == 4
    single = make_rllib_env(config_to_dict(TINY))
    assert single.observation_space == vec.single_observation_space
    assert single.action_space.shape == (10,)


@pytest.mark.slow
def test_train_export_and_evaluate(tmp_path):
    from experiments.evaluate import evaluate_agents

    warm = replace(SMALL_AGENT, pretrain_sessions=20, pretrain_epochs=1)  # slot credit and a warm start
    summary = train_rllib(TINY, num_env_runners=1, iterations=2, run_dir=tmp_path, num_cpus=2,
                          config=RllibConfig(agent=warm, train_batch_size=64, num_envs_per_env_runner=4))
    assert summary["env_steps"] >= 128 and len(summary["env_runner_nodes"]) == 1
    assert len(summary["warm_start_losses"]) == 1 and np.isfinite(summary["warm_start_losses"][0])
    assert summary["iterations"][-1]["episode_return_mean"] == summary["episode_return_mean"]
    saved = json.loads((tmp_path / "rllib_results.json").read_text())
    assert saved["num_env_runners"] == 1 and saved["rllib_config"]["num_envs_per_env_runner"] == 4
    assert not ray.is_initialized()  # the local instance it started is shut down
    agent = load_agent(tmp_path / "checkpoint")
    df = evaluate_agents({"rllib_ppo": lambda env, seed: agent}, "ShopRank-v0", TINY, [0], 5, progress=False)
    assert len(df) == 5 and np.isfinite(df["reward"]).all()


def test_the_warm_start_is_sb3_ppo_warm_start():
    """The RLlib module's warm start fits the same network to the same logged sessions as SB3's ``ppo`` does."""
    from agents.factory import build_agent, warm_start
    from experiments.rllib_backend import warm_started_policy

    agent = replace(SMALL_AGENT, pretrain_sessions=20, pretrain_epochs=2)
    policy, losses = warm_started_policy(TINY, RllibConfig(agent=agent, seed=3))
    initial = build_module(make_env(TINY, sequential=False), seed=3).policy.state_dict()
    assert not all(torch.equal(initial[k], v) for k, v in policy.state_dict().items())  # the fit moved the weights
    model = build_agent("ppo", TINY, agent, seed=3, n_envs=1)
    model.policy.load_state_dict(initial)
    assert warm_start(model, "ppo", TINY, agent, seed=3, progress=False)[0] == losses
    for key, value in model.policy.state_dict().items():
        torch.testing.assert_close(policy.state_dict()[key], value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_env_runners"):
        train_rllib(TINY, num_env_runners=-1)
    with pytest.raises(ValueError, match="iterations"):
        train_rllib(TINY, iterations=0)


def test_configs_the_module_refuses():
    from agents.rllib_module import check_config
    from encoders.errors import ConfigError

    for config, message in (
            (replace(SMALL_AGENT, return_credit=True),
             "the RLlib module does not implement return credit (AgentConfig.return_credit=True, ShopRank-v1): train "
             "it with return_credit=False."),
            (replace(SMALL_AGENT, slate_policy="gaussian"),
             "the RLlib module supports slate_policy='plackett_luce', got 'gaussian'."),
            (replace(SMALL_AGENT, aux_heads=True),
             "the RLlib module does not implement the auxiliary heads' loss (AgentConfig.aux_heads=True): train it "
             "with aux_heads=False.")):
        with pytest.raises(ConfigError) as info:
            check_config(config)
        assert str(info.value) == message


def _sessions(env, policy, n_sessions: int) -> list[list[tuple]]:
    """``n_sessions`` sessions of ``env`` acted in by ``policy`` (sampled slates): per step
    ``(obs, action (K,), reward, info, next_obs)``."""
    sessions = []
    for seed in range(n_sessions):
        obs, _ = env.reset(seed=100 + seed)
        steps, done = [], False
        while not done:
            with torch.no_grad():
                action = policy.get_distribution(policy.obs_to_tensor(obs)[0]).sample()[0].numpy()
            next_obs, reward, terminated, truncated, info = env.step(action)
            steps.append((obs, action, float(reward), info, next_obs))
            obs, done = next_obs, terminated or truncated
        sessions.append(steps)
    return sessions


@pytest.mark.parametrize("slot_discount", [0.0, 1.0])
def test_rllib_slot_credit_loss_is_sb3_slot_credit_loss_on_the_same_batch(env, slot_discount):
    """The same sessions go (a) into SB3's ``SlotCreditRolloutBuffer`` and one ``SlotCreditPPO.train`` minibatch,
    (b) through the RLlib learner's connector pipeline (episodes with their infos) and its loss: per-slot
    old log-probabilities, value targets, per-slot advantages and the loss agree."""
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode
    from ray.rllib.evaluation.postprocessing import Postprocessing
    from stable_baselines3.common.logger import Logger

    from agents.factory import build_agent
    from agents.rllib_learner import SLOT_ADVANTAGES, ShopRankPPOLearner
    from envs.config import config_to_dict
    from experiments.rllib_backend import ppo_config

    agent = replace(SMALL_AGENT, slot_discount=slot_discount, ent_coef=0.01, gamma=0.9, gae_lambda=0.8)
    collector = build_sb3_policy(env.observation_space, env.action_space, agent, TINY.slate_size, seed=7)
    sessions = _sessions(env, collector, 12)
    steps = [step for session in sessions for step in session]
    m = len(steps)
    assert m > len(sessions)  # some sessions have several queries: GAE crosses steps

    # (a) SB3: the rollout buffer filled as SlotCreditPPO.collect_rollouts fills it, then one train() minibatch
    model = build_agent("ppo", TINY, replace(agent, n_steps=m, batch_size=m, n_epochs=1, n_envs=1), seed=0)
    model.policy.load_state_dict(collector.state_dict())
    buffer = model.rollout_buffer
    for session in sessions:
        for t, (obs, action, reward, info, _) in enumerate(session):
            with torch.no_grad():
                value, log_prob, _ = model.policy.evaluate_actions(model.policy.obs_to_tensor(obs)[0],
                                                                   torch.as_tensor(action)[None])
            buffer.record_slot_rewards([info])
            buffer.add({k: v[None] for k, v in obs.items()}, action[None], np.array([reward]), np.array([t == 0]),
                       value, log_prob)
    buffer.compute_returns_and_advantage(torch.zeros(1), np.ones(1, dtype=bool))
    sb3_slot_adv, sb3_returns = buffer.slot_advantages[:, 0].copy(), buffer.returns[:, 0].copy()
    sb3_old_logp = buffer.log_probs[:, 0].copy()

    # (b) RLlib: the learner built from the same agent config and weights, fed the sessions as episodes
    config = ppo_config(config_to_dict(TINY), 0, RllibConfig(agent=agent))
    learner = config.build_learner(spaces={DEFAULT_MODULE_ID: (env.observation_space, env.action_space)})
    assert isinstance(learner, ShopRankPPOLearner)
    module = learner.module[DEFAULT_MODULE_ID]
    load_sb3_state_dict(module, collector.state_dict())
    episodes = []
    for session in sessions:
        observations = [session[0][0]] + [step[4] for step in session]
        with torch.no_grad():
            scores = module.forward_exploration(
                {Columns.OBS: {k: torch.as_tensor(np.stack([o[k] for o in observations[:-1]])) for k in observations[0]}}
            )[Columns.ACTION_DIST_INPUTS]
        actions = np.stack([step[1] for step in session])
        logp = module.get_exploration_action_dist_cls().from_logits(scores).logp(torch.as_tensor(actions))
        episodes.append(SingleAgentEpisode(
            observations=observations, actions=list(actions), rewards=[step[2] for step in session],
            infos=[{}] + [step[3] for step in session], terminated=True, len_lookback_buffer=0,
            extra_model_outputs={Columns.ACTION_DIST_INPUTS: list(scores.numpy()),
                                 Columns.ACTION_LOGP: list(logp.numpy())}).to_numpy())
    batch = learner._learner_connector(rl_module=learner.module, batch={}, episodes=episodes,
                                       shared_data={})[DEFAULT_MODULE_ID]
    mask = batch[Columns.LOSS_MASK]
    assert int(mask.sum()) == m and len(mask) == m + len(sessions)  # one artificial bootstrap step per episode
    rllib_old_logp = module.get_exploration_action_dist_cls().from_logits(
        batch[Columns.ACTION_DIST_INPUTS]).slot_logp(batch[Columns.ACTIONS])[mask]
    np.testing.assert_allclose(rllib_old_logp.numpy(), sb3_old_logp, atol=1e-5)
    np.testing.assert_allclose(batch[Postprocessing.VALUE_TARGETS][mask].numpy(), sb3_returns, atol=1e-5)
    np.testing.assert_allclose(batch[SLOT_ADVANTAGES][mask].numpy(), sb3_slot_adv, atol=1e-5)
    assert np.abs(sb3_slot_adv).max() > 0.01  # not a vacuous comparison
    # both learners now hold the same, moved weights (as after some updates): ratios differ from 1
    generator = torch.Generator().manual_seed(0)
    moved = {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in collector.state_dict().items()}
    load_sb3_state_dict(module, moved)
    model.policy.load_state_dict(moved)
    fwd_out = module.forward_train(batch)
    ratio = torch.exp(module.get_train_action_dist_cls().from_logits(fwd_out[Columns.ACTION_DIST_INPUTS]).slot_logp(
        batch[Columns.ACTIONS])[mask] - rllib_old_logp)
    assert (ratio - 1).abs().max() > 0.01
    loss = learner.compute_loss_for_module(module_id=DEFAULT_MODULE_ID, config=learner.config, batch=batch,
                                           fwd_out=fwd_out)

    model.set_logger(Logger(folder=None, output_formats=[]))
    model.train()  # one epoch, one minibatch of the m steps: logs that minibatch's loss before its update
    assert abs(loss.item() - model.logger.name_to_value["train/loss"]) < 1e-5
    policy_loss = learner.metrics.peek((DEFAULT_MODULE_ID, "policy_loss"))
    assert abs(float(policy_loss) - model.logger.name_to_value["train/policy_gradient_loss"]) < 1e-5
    assert abs(float(policy_loss)) > 1e-3  # the per-slot ratios and advantages are in the compared number


def test_env_runners_train_on_expected_rewards_when_asked():
    from envs.config import config_to_dict
    from experiments.rllib_backend import ppo_config

    for expected in (False, True):
        config = ppo_config(config_to_dict(TINY), 0, RllibConfig(agent=AgentConfig(expected_reward=expected)))
        assert config.env_config["reward"]["expected"] is expected
        assert {**config.env_config, "reward": None} == {**config_to_dict(TINY), "reward": None}


def test_expected_rewards_with_a_simulator_without_them_are_refused_before_ray_starts(monkeypatch):
    import experiments.rllib_backend as backend
    from encoders.errors import NoExpectedResponseError

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray must not start for a config that cannot run")

    monkeypatch.setattr(backend, "_start_ray", no_ray)
    custom = replace(TINY, simulator="experiments.examples.custom_shopper:make")
    with pytest.raises(NoExpectedResponseError, match=re.escape(
            "RewardSpec(expected=True) needs a simulator with expected_response; PopularityShopper has none.")):
        train_rllib(custom, config=RllibConfig(agent=AgentConfig(expected_reward=True)))
