"""Warm-start logs gathered in a vector env (``collect_logs(n_envs > 1)``, ``AgentConfig.pretrain_envs``): whole
sessions in order, the single env's shopper distribution, refunds taken back per slot, seeded, and clear errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from agents.factory import AgentConfig
from agents.pretrain import collect_click_logs, collect_logs
from encoders.errors import ConfigError
from envs import EnvConfig, WorldConfig
from envs.shoprank_env import ShopRankEnv
from envs.visits_env import v1_config
from simulators.longterm import LongTermConfig

WORLD = WorldConfig(text_encoder="hashing", n_products=600)
SESSIONS = EnvConfig(world=WORLD, max_queries=4)
RETURNY = v1_config(world=WORLD, longterm=LongTermConfig(return_base=0.6))  # most purchases come back


@pytest.fixture(scope="module")
def session_env() -> gym.Env:
    return gym.make("ShopRank-v0", config=SESSIONS)


def test_batched_logs_hold_whole_sessions_in_the_order_they_started(session_env):
    obs, shown, outcomes = collect_logs(session_env, 40, seed=3, outcomes=("reward", "clicks"), n_envs=8)
    used = obs["session"][:, session_env.unwrapped.layout.session_column("queries_used")]
    starts = np.flatnonzero(used == 0)  # a session's first query has used none
    assert len(starts) == 40 and starts[0] == 0
    assert len(shown) == len(outcomes["reward"]) == len(outcomes["clicks"]) == len(obs["mask"])
    lengths = np.diff(np.append(starts, len(shown)))
    assert lengths.min() >= 1 and lengths.max() <= SESSIONS.max_queries
    within = np.concatenate([np.arange(n) for n in lengths]) / SESSIONS.max_queries
    assert np.allclose(used, within)  # each session's queries in order, none missing
    for row in range(len(shown)):  # the shown slate is the top of the valid candidates, no repeats
        assert len(set(shown[row].tolist())) == shown.shape[1] and obs["mask"][row, shown[row]].all()
    assert np.all(outcomes["reward"][outcomes["clicks"] == 0] == 0)  # a slot earns only what it was clicked for
    assert outcomes["clicks"].sum() > 0


def test_batched_logs_follow_the_single_envs_shopper_distribution():
    env = gym.make("ShopRankStatic-v0", config=EnvConfig(world=WORLD, max_queries=1))
    _, _, single = collect_logs(env, 1500, seed=0, outcomes=("clicks",))
    _, _, batched = collect_logs(env, 1500, seed=0, outcomes=("clicks",), n_envs=64)
    a, b = single["clicks"].mean(axis=0), batched["clicks"].mean(axis=0)  # click rate per slot
    se = np.sqrt(a * (1 - a) / len(single["clicks"]) + b * (1 - b) / len(batched["clicks"]))
    assert not np.array_equal(single["clicks"], batched["clicks"])  # other draws ...
    assert np.all(np.abs(a - b) < 4 * se + 1e-9)  # ... of the same click rates at every slot
    assert abs(a.sum() - b.sum()) < 0.1 * a.sum()


def test_batched_logs_are_seeded(session_env):
    first = collect_logs(session_env, 12, seed=5, outcomes=("reward",), n_envs=4)
    again = collect_logs(session_env, 12, seed=5, outcomes=("reward",), n_envs=4)
    other = collect_logs(session_env, 12, seed=6, outcomes=("reward",), n_envs=4)
    for key in first[0]:
        assert np.array_equal(first[0][key], again[0][key])
    assert np.array_equal(first[1], again[1]) and np.array_equal(first[2]["reward"], again[2]["reward"])
    assert not np.array_equal(first[0]["query"], other[0]["query"][: len(first[0]["query"])]) or \
        len(first[1]) != len(other[1])


def test_batched_net_reward_logs_take_each_refund_back_from_the_slot_that_sold_it():
    returny = gym.make("ShopRank-v1", config=RETURNY)
    _, shown, gross = collect_click_logs(returny, 6, seed=0, target="reward", n_envs=3)
    _, shown_again, net = collect_click_logs(returny, 6, seed=0, target="net_reward", n_envs=3)
    assert np.array_equal(shown, shown_again)
    cut = net < gross
    assert cut.sum() >= 3 and (net <= gross).all()
    assert np.allclose(net[cut], RETURNY.reward.click)  # the refund takes back the purchase, the click stays


def test_bad_batched_logging_settings_are_refused_with_clear_messages(session_env):
    with pytest.raises(ConfigError) as err:
        collect_logs(session_env, 4, seed=0, n_envs=0)
    assert str(err.value) == "n_envs must be an int >= 1, got 0."
    with pytest.raises(ConfigError) as err:
        collect_logs(session_env, 4, seed=0, n_envs=2.5)
    assert str(err.value) == "n_envs must be an int >= 1, got 2.5."
    with pytest.raises(ConfigError) as err:
        collect_logs(ShopRankEnv(SESSIONS), 4, seed=0, n_envs=2)
    assert str(err.value) == ("collect_logs(n_envs > 1) builds the vector env registered for the env's id: make "
                              "the env with gymnasium.make (or pass n_envs=1).")
    with pytest.raises(ConfigError) as err:
        AgentConfig(pretrain_envs=0)
    assert str(err.value) == "AgentConfig.pretrain_envs must be > 0, got 0."
