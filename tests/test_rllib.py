"""The Ray RLlib scale-out backend (skipped when Ray is not installed: ``make distributed`` installs it).

The module tests build :class:`agents.rllib_module.ShopRankRLModule` without starting Ray and check that it
*is* ShopRank's SB3 policy (same modules, same distribution, weights that move both ways). The ``slow``
tests start a local Ray instance (on a 2-core machine most of their time is Ray's start and the env runner's
imports, ~40-80 s).
"""

from __future__ import annotations

import json
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
        torch.testing.assert_close(dist.logp(actions), sb3_log_prob)
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

    summary = train_rllib(TINY, num_env_runners=1, iterations=2, run_dir=tmp_path, num_cpus=2,
                          config=RllibConfig(agent=SMALL_AGENT, train_batch_size=64, num_envs_per_env_runner=4))
    assert summary["env_steps"] >= 128 and len(summary["env_runner_nodes"]) == 1
    assert summary["iterations"][-1]["episode_return_mean"] == summary["episode_return_mean"]
    saved = json.loads((tmp_path / "rllib_results.json").read_text())
    assert saved["num_env_runners"] == 1 and saved["rllib_config"]["num_envs_per_env_runner"] == 4
    assert not ray.is_initialized()  # the local instance it started is shut down
    agent = load_agent(tmp_path / "checkpoint")
    df = evaluate_agents({"rllib_ppo": lambda env, seed: agent}, "ShopRank-v0", TINY, [0], 5, progress=False)
    assert len(df) == 5 and np.isfinite(df["reward"]).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_env_runners"):
        train_rllib(TINY, num_env_runners=-1)
    with pytest.raises(ValueError, match="iterations"):
        train_rllib(TINY, iterations=0)


def test_configs_the_module_refuses():
    from agents.rllib_module import check_config
    from encoders.errors import ConfigError

    for config, message in (
            (replace(SMALL_AGENT, slot_credit=True),
             "the RLlib module does not implement per-slot credit (AgentConfig.slot_credit=True): train it with "
             "slot_credit=False."),
            (replace(SMALL_AGENT, slate_policy="gaussian"),
             "the RLlib module supports slate_policy='plackett_luce', got 'gaussian'.")):
        with pytest.raises(ConfigError) as info:
            check_config(config)
        assert str(info.value) == message
