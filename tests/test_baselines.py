"""Baselines: predict shapes and rank-coding, ordering on static sessions, LinUCB learns, checkpoints, bad inputs."""

from __future__ import annotations

import json
import re

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from agents.baselines import (
    BASELINES,
    BaselineConfig,
    LambdaMARTBaseline,
    LambdaMARTConfig,
    LinUCBBaseline,
    PopularityBaseline,
    baseline_factory,
    candidate_features,
    load_baseline,
    make_baseline,
    scores_to_action,
)
from agents.logging_policy import derive_seed, shown_candidates
from envs import WorldConfig, static_config
from experiments.evaluate import evaluate_agents

FAST = BaselineConfig(n_log_sessions=150, lambdamart=LambdaMARTConfig(n_estimators=40))


@pytest.fixture(scope="module")
def env() -> gym.Env:
    return gym.make("ShopRankStatic-v0", config=static_config(world=WorldConfig(text_encoder="hashing")))


@pytest.fixture(scope="module")
def obs(env) -> dict[str, np.ndarray]:
    observation, _ = env.reset(seed=123)
    return observation


@pytest.fixture(scope="module")
def sessions(env):
    """300 static sessions per agent with common random numbers (one seed)."""
    agents = {n: baseline_factory(n, FAST) for n in ("random", "retriever", "linucb", "lambdamart", "oracle",
                                                      "profile_oracle")}
    return evaluate_agents(agents, env=env, seeds=[0], n_sessions=300, progress=False)


def test_registry_names():
    assert sorted(BASELINES) == sorted(
        ["random", "retriever", "popularity", "price", "linucb", "thompson", "lambdamart", "oracle",
         "profile_oracle", "planner", "profile_planner", "profile_net"])
    assert all(cls.name == name for name, cls in BASELINES.items())


@pytest.mark.parametrize("name", sorted(set(BASELINES) - {"planner", "profile_planner", "profile_net"}))  # ShopRank-v1 only (test_longterm_env)
def test_predict_shapes_and_rank_coding(env, name):
    agent = make_baseline(name, env, seed=0, config=FAST)
    observation, _ = env.reset(seed=7)
    action, state = agent.predict(observation, deterministic=True)
    k = observation["mask"].shape[0]
    assert state is None
    assert action.shape == (k,) and action.dtype == np.float32
    assert env.action_space.contains(action)
    assert np.allclose(np.sort(action), np.linspace(-1, 1, k))
    batched = {key: np.stack([value, value]) for key, value in observation.items()}
    if agent.env_bound:
        with pytest.raises(ValueError, match=re.escape(
                f"{type(agent).__name__} reads its one env's state: batched observations must have batch size 1, got 2.")):
            agent.predict(batched)
    else:
        actions, _ = agent.predict(batched)
        assert actions.shape == (2, k)
    env.step(action)


def test_retriever_and_oracle_slates(env):
    observation, _ = env.reset(seed=11)
    retriever, oracle = make_baseline("retriever", env), make_baseline("oracle", env)
    action, _ = retriever.predict(observation)
    n = env.unwrapped.config.slate_size
    assert list(shown_candidates(action, observation["mask"], n)) == list(range(n))
    values = env.unwrapped.privileged_scores()
    top = shown_candidates(oracle.predict(observation)[0], observation["mask"], n)
    assert np.all(np.diff(values[top]) <= 0) and values[top[0]] == np.max(values)


def test_scores_to_action_ties_keep_retriever_order_and_padding_last():
    action = scores_to_action(np.array([0.0, 1.0, 0.0, 5.0]), np.array([1, 1, 1, 0]))
    assert list(np.argsort(-action, kind="stable")) == [1, 0, 2, 3]


def test_candidate_features_include_profile_interactions(obs):
    x = candidate_features(obs)
    k, c = obs["candidates"].shape
    p = obs["profile"].shape[0]
    assert x.shape == (k, 1 + c + p * c)
    np.testing.assert_allclose(x[:, 1 + c:].reshape(k, p, c), obs["profile"][None, :, None] * obs["candidates"][:, None, :])


def test_ordering_on_static_sessions(sessions):
    mean = sessions.groupby("agent")[["reward", "ndcg"]].mean()
    assert mean.loc["oracle", "reward"] > mean.loc["lambdamart", "reward"] > mean.loc["retriever", "reward"]
    assert mean.loc["oracle", "reward"] > mean.loc["linucb", "reward"] > mean.loc["random", "reward"]
    assert mean.loc["retriever", "ndcg"] > mean.loc["random", "ndcg"]
    assert mean.loc["oracle", "ndcg"] > 0.95
    # knowing the equations but only the observed profile: below the truth, above what is learnt from clicks
    assert mean.loc["oracle", "reward"] > mean.loc["profile_oracle", "reward"] > mean.loc["lambdamart", "reward"]


def test_linucb_learns(sessions):
    half = sessions.assign(late=sessions.session >= 150).groupby(["agent", "late"])["ndcg"].mean()
    linucb_gain = half["linucb", True] - half["linucb", False]
    retriever_gain = half["retriever", True] - half["retriever", False]  # same shoppers: controls for drift
    assert linucb_gain > retriever_gain + 0.01
    late = sessions[sessions.session >= 150].groupby("agent")["reward"].mean()
    assert late["linucb"] > late["random"]


@pytest.mark.parametrize("name", ["random", "popularity", "linucb", "thompson", "lambdamart", "retriever", "oracle"])
def test_save_load_gives_identical_actions(env, tmp_path, name):
    agent = make_baseline(name, env, seed=3, config=FAST)
    for i in range(20):  # some online learning / RNG draws before saving
        observation, _ = env.reset(seed=derive_seed(9, i))
        action, _ = agent.predict(observation)
        _, _, _, _, info = env.step(action)
        agent.update(observation, action, info)
    folder = agent.save(tmp_path / name)
    assert not any(p.suffix in (".pkl", ".pickle") for p in folder.iterdir())
    loaded = load_baseline(folder, env)
    assert type(loaded) is type(agent)
    for i in range(5):
        observation, _ = env.reset(seed=derive_seed(10, i))
        np.testing.assert_array_equal(agent.predict(observation)[0], loaded.predict(observation)[0])


def test_bad_inputs_exact_messages(env, obs, tmp_path):
    with pytest.raises(ValueError, match=re.escape(
            "unknown baseline 'greedy'; choose from ['lambdamart', 'linucb', 'oracle', 'planner', 'popularity', 'price', "
            "'profile_net', 'profile_oracle', 'profile_planner', 'random', 'retriever', 'thompson'].")):
        make_baseline("greedy", env)
    with pytest.raises(KeyError, match=re.escape(
            "RetrieverBaseline.predict: observation is missing keys ['mask']; a ShopRank observation has "
            "['candidates', 'mask'] and more.")):
        make_baseline("retriever", env).predict({"candidates": obs["candidates"]})
    with pytest.raises(TypeError, match=re.escape("RandomBaseline.predict expects a dict observation, got ndarray.")):
        make_baseline("random", env).predict(obs["candidates"])
    with pytest.raises(ValueError, match=re.escape("LinUCBBaseline: alpha must be >= 0, got -1.0.")):
        LinUCBBaseline(alpha=-1.0)
    with pytest.raises(ValueError, match=re.escape(
            "PopularityBaseline: counts must have shape (2000,) (catalog size), got (3,).")):
        PopularityBaseline(env, counts=np.zeros(3))
    with pytest.raises(RuntimeError, match=re.escape(
            "LambdaMARTBaseline is not trained: call LambdaMARTBaseline.fit(env, ...) or load a checkpoint.")):
        LambdaMARTBaseline().predict(obs)
    with pytest.raises(ValueError, match=re.escape("OracleBaseline needs the environment it ranks for: pass env=...")):
        BASELINES["oracle"]()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path} is not a baseline checkpoint: baseline.json not found.")):
        load_baseline(tmp_path)
    (tmp_path / "baseline.json").write_text(json.dumps({"format": "shoprank-baseline", "version": 99, "name": "random"}))
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'baseline.json'}: unsupported checkpoint format 'shoprank-baseline' version 99 "
            "(expected 'shoprank-baseline' version 1).")):
        load_baseline(tmp_path)
