"""The later cost of a return, estimated from logged relationships, and the ``trust_reward`` warm-start target."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registers the ids)
from agents.extractor import CandidateSetExtractor
from agents.pretrain import PretrainConfig, collect_logs, pretrain_scores
from agents.return_cost import estimate_return_cost
from encoders.errors import ConfigError

from envs.visits_env import v1_config
from simulators.longterm import LongTermConfig

from tests.test_longterm_env import RETURNY, WORLD  # RETURNY: most purchases come back


def _synthetic_logs(cost: float, n_relationships: int, seed: int):
    """Relationships of 3 visits x 2 slates x 4 slots whose visit reward falls by ``cost`` per earlier return.

    A return at visit ``v`` lowers each of the ``2 - v`` later visits by ``cost``, so the pooled regression
    over visits 0, 1 and 2 has slope ``-cost * (2 + 1 + 0) / 3 = -cost``.
    """
    rng = np.random.default_rng(seed)
    session, visit, reward, returned, purchased, clicked = [], [], [], [], [], []
    for r in range(n_relationships):
        earlier_returns = 0.0
        for v in range(3):
            bought = rng.random((2, 4)) < 0.4
            back = bought & (rng.random((2, 4)) < 0.3)
            clicks = bought | (rng.random((2, 4)) < 0.3)
            visit_reward = 5.0 + 2.0 * (bought & ~back).sum() - cost * earlier_returns + rng.normal(0, 1.0)
            for row in range(2):
                session.append(r)
                visit.append(v / 8)
                reward.append(visit_reward / 2)
                returned.append(back[row])
                purchased.append(bought[row])
                clicked.append(clicks[row])
            earlier_returns += back.sum()
    return (np.array(session), np.array(visit), np.array(reward), np.array(returned, dtype=np.float32),
            np.array(purchased, dtype=np.float32), np.array(clicked, dtype=np.float32))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_regression_recovers_a_known_cost_of_returns(seed):
    estimate = estimate_return_cost(*_synthetic_logs(cost=3.0, n_relationships=3000, seed=seed))
    assert estimate.visits == 9000
    assert abs(estimate.coefficient + 3.0) < 4 * estimate.stderr and estimate.stderr < 0.1
    assert estimate.cost == pytest.approx(-estimate.coefficient)


def test_returns_that_cost_nothing_later_get_no_cost():
    estimate = estimate_return_cost(*_synthetic_logs(cost=0.0, n_relationships=3000, seed=0))
    assert abs(estimate.coefficient) < 4 * estimate.stderr
    assert estimate.cost == max(-estimate.coefficient, 0.0)


def test_bad_inputs_are_refused_with_clear_messages():
    session, visit, reward, returned, purchased, clicked = _synthetic_logs(1.0, 2, seed=0)
    with pytest.raises(ConfigError) as err:
        estimate_return_cost(session, visit[:-1], reward, returned, purchased, clicked)
    assert str(err.value) == "estimate_return_cost: visit has 11 rows, session has 12."
    with pytest.raises(ConfigError) as err:
        estimate_return_cost(session, visit, reward, returned, purchased, clicked)
    assert str(err.value) == ("estimate_return_cost needs more logged visits than regressors (7); got 6 (log more "
                              "relationships).")


@pytest.mark.parametrize("n_envs", [1, 3])
def test_trust_reward_is_the_net_reward_less_one_estimated_cost_per_returned_slot(n_envs):
    env = gym.make("ShopRank-v1", config=RETURNY)
    _, shown, logged = collect_logs(env, 60, seed=0, outcomes=("net_reward", "trust_reward", "purchases"),
                                    n_envs=n_envs)
    cost = env.unwrapped.last_return_cost
    assert cost.cost > 0 and cost.visits >= 60
    cut = logged["trust_reward"] < logged["net_reward"]
    assert cut.sum() >= 10
    assert np.allclose(logged["net_reward"][cut] - logged["trust_reward"][cut], cost.cost, atol=1e-4)
    assert (logged["purchases"][cut] == 1).all()  # only bought slots come back
    assert np.array_equal(logged["trust_reward"][~cut], logged["net_reward"][~cut])


def test_trust_reward_needs_a_visit_index():
    with pytest.raises(ConfigError) as err:
        collect_logs(gym.make("ShopRankStatic-v0"), 3, seed=0, outcomes=("trust_reward",))
    assert str(err.value) == ("target 'trust_reward' needs an env whose observation has a visit index (ShopRank-v1); "
                              "this one's session features are ['queries_used', 'clicks', 'purchases', 'last_ctr'].")


def test_the_squared_fit_ranks_by_a_signed_target():
    """Products priced above average earn -1 wherever shown, the others +1: the fit must score the dear ones below."""
    env = gym.make("ShopRank-v1", config=RETURNY)
    observations, shown, _ = collect_logs(env, 20, seed=0, outcomes=("clicks",))
    price = observations["candidates"][..., env.unwrapped.layout.column("price_z")]  # (M, K)
    dear = np.take_along_axis(price, np.maximum(shown, 0), axis=1) > 0
    target = (np.where(dear, -1.0, 1.0) * (shown >= 0)).astype(np.float32)
    extractor = CandidateSetExtractor(env.observation_space, hidden=16, heads=2)
    k = env.action_space.shape[0]
    losses = pretrain_scores(extractor, k, observations, shown, target,
                             PretrainConfig(sessions=20, target="trust_reward", epochs=30, learning_rate=3e-3), seed=0)
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        scores = extractor({key: torch.as_tensor(v) for key, v in observations.items()})[:, :k].numpy()
    valid = observations["mask"] > 0
    assert scores[valid & (price > 0.5)].mean() < -0.5 < 0.5 < scores[valid & (price < -0.5)].mean()


@pytest.mark.parametrize("trust", [True, False])
def test_returns_cost_later_reward_only_where_trust_carries_them(trust):
    """On the real long-term shopper: with trust on, a return costs the rest of the relationship (the
    coefficient is several standard errors below zero); with trust off nothing links a return to later visits."""
    config = v1_config(world=WORLD, longterm=LongTermConfig(trust=trust))
    env = gym.make("ShopRank-v1", config=config)
    collect_logs(env, 400, seed=0, outcomes=("trust_reward",))
    cost = env.unwrapped.last_return_cost
    if trust:
        assert cost.coefficient < -3 * cost.stderr and cost.cost > 2.0
    else:
        assert abs(cost.coefficient) < 3 * cost.stderr


def test_the_warm_start_reports_its_return_cost_and_the_cache_keeps_it(tmp_path):
    """``train_agent``'s trust_reward warm start keeps what it estimated (``model.warm_start_report``, written to
    ``train.json`` by ``shoprank train``); a second agent loading the cached fit reports the same estimate."""
    from agents.factory import AgentConfig, train_agent
    from experiments.train import warm_start_record

    config = RETURNY
    agent = AgentConfig(n_steps=16, batch_size=16, n_epochs=1, hidden=16, heads=2, n_envs=1, layers=0,
                        slot_credit=True, pretrain_sessions=120, pretrain_epochs=1, pretrain_target="trust_reward")
    fitted = train_agent("ppo", config, 16, seed=0, config=agent, env_id="ShopRank-v1", warm_cache=tmp_path)
    report = fitted.warm_start_report
    assert not report["cached"] and report["fit_seconds"] > 0 and len(report["loss_per_epoch"]) == 1
    cost = report["return_cost"]
    assert set(cost) == {"cost", "coefficient", "stderr", "visits"} and cost["visits"] > 0
    assert cost["cost"] == max(-cost["coefficient"], 0.0)
    loaded = train_agent("ppo", config, 16, seed=0, config=agent, env_id="ShopRank-v1", warm_cache=tmp_path)
    assert loaded.warm_start_report["cached"] and loaded.warm_start_report["return_cost"] == cost
    assert warm_start_record(loaded)["warm_start"]["return_cost"] == cost
    json.dumps(warm_start_record(fitted))                                   # train.json can hold it
    assert "return_cost" not in train_agent("ppo", config, 16, seed=0, env_id="ShopRank-v1",
                                            config=AgentConfig(**{**agent.__dict__, "pretrain_target": "net_reward"})
                                            ).warm_start_report
