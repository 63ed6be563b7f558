"""Property-based tests (hypothesis) of the env invariants for random configs within the validated ranges.

For any ``EnvConfig`` the config classes accept (K, N, query budget, history, reward weights, shopper
parameters, query personalisation) and any action: every slate is a permutation of distinct valid
candidates (top N by score in ``ShopRank-v0``, the masked picks in ``ShopRankSeq-v0``), the shopper's
probabilities lie in [0, 1] (a purchase never more likely than its click), rewards and observations are
finite and inside the spaces, and the same seed gives the same trajectory (single and vector env).
The world (catalog and encoders) is fixed so that examples stay cheap; everything else is drawn.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import envs  # noqa: F401  (registers the ids)
from envs import EnvConfig, WorldConfig
from envs.reward import RewardSpec
from simulators.shopper import DefaultShopper, ShopperConfig

WORLD = WorldConfig(text_encoder="hashing")
# derandomized (CI runs the same examples every time) and no shrinking (a failure reports its example at once
# instead of spending minutes minimising it: each example builds envs)
FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True,
            phases=[Phase.explicit, Phase.generate])
FEW = settings(max_examples=12, **FAST)


def unit(low: float = 0.0, high: float = 1.0) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


@st.composite
def shopper_configs(draw) -> ShopperConfig:
    """Shopper parameters anywhere in the ranges ``ShopperConfig`` validates (bounded above for speed)."""
    return ShopperConfig(
        profile_noise=draw(unit(0, 3)), patience=draw(st.one_of(unit(0, 8), st.just(math.inf))),
        fatigue=draw(unit(0, 3)), no_click_penalty=draw(unit(0, 2)), p_continue_after_purchase=draw(unit()),
        drift=draw(unit()), boredom=draw(unit()), temperature=draw(unit(0, 5)), price_weight=draw(unit(0, 3)),
        buy_over_budget=draw(unit(0, 5)), budget_mean=draw(unit(-2, 2)), budget_std=draw(unit(0, 1)),
        relevance_weight=draw(unit(-5, 5)), visual_weight=draw(unit(-5, 5)), threshold=draw(unit(-5, 5)),
        buy_bias=draw(unit(-5, 5)))


@st.composite
def env_configs(draw, max_queries: int = 4) -> EnvConfig:
    k = draw(st.integers(1, 16))
    return EnvConfig(
        n_candidates=k, slate_size=draw(st.integers(1, k)), max_queries=draw(st.integers(1, max_queries)),
        history_size=draw(st.integers(1, 6)), personalize_query=draw(unit(0, 0.95)),
        reward=RewardSpec(click=draw(unit(-3, 3)), purchase=draw(unit(-3, 3)), revenue=draw(unit(-0.1, 0.1))),
        shopper=draw(shopper_configs()), world=WORLD)


def candidate_ids(env: gym.Env) -> np.ndarray:
    """``int64 (K,)`` catalog rows of the current query's candidates (``-1`` = padding)."""
    return np.asarray(env.unwrapped.core.candidates)


def check_obs(env: gym.Env, obs: dict) -> None:
    assert env.observation_space.contains(obs)
    assert all(np.isfinite(v).all() for v in obs.values())


def check_slate_outcome(info: dict, reward: float, n: int, valid: set[int]) -> None:
    shown = np.asarray(info["shown_ids"])
    assert shown.shape == (n,) and np.isfinite(reward)
    placed = shown[shown >= 0]
    assert len(set(placed.tolist())) == len(placed) and set(placed.tolist()) <= valid
    assert len(placed) == min(n, len(valid)) and np.all(shown[len(placed):] == -1)  # padding only at the end
    clicked = np.asarray(info["clicked_positions"])
    assert set(clicked.tolist()) <= set(range(len(placed))) and info["clicks"] == len(clicked)
    assert set(np.asarray(info["purchased_positions"]).tolist()) <= set(clicked.tolist())
    assert np.isnan(info["ndcg"]) or 0.0 <= info["ndcg"] <= 1.0 + 1e-9
    assert np.isfinite(info["position_rewards"]).all() and np.isfinite(info["revenue"])


def rollout(env: gym.Env, seed: int, actions: str) -> list:
    """Play one episode of ``ShopRank-v0`` with seeded actions, checking every step; returns the trajectory."""
    obs, _ = env.reset(seed=seed)
    check_obs(env, obs)
    rng = np.random.default_rng(seed)
    config = env.unwrapped.config
    trajectory, done = [], False
    while not done:
        k = config.n_candidates
        scores = {"random": lambda: rng.uniform(-10, 10, k), "ties": lambda: np.zeros(k),
                  "integers": lambda: rng.integers(-2, 3, k).astype(np.float64)}[actions]().astype(np.float32)
        ids = candidate_ids(env)
        valid = set(ids[ids >= 0].tolist())
        obs, reward, terminated, truncated, info = env.step(scores)
        check_slate_outcome(info, reward, config.slate_size, valid)
        if actions == "random":  # no ties: the slate is the top N candidates by score
            order = [i for i in np.argsort(-scores.astype(np.float64)) if ids[i] >= 0][: config.slate_size]
            np.testing.assert_array_equal(np.asarray(info["shown_ids"])[: len(order)], ids[order])
        check_obs(env, obs)
        trajectory.append((reward, np.asarray(info["shown_ids"]).tolist(), np.asarray(info["clicked_positions"]).tolist(),
                           {key: value.copy() for key, value in obs.items()}))
        done = terminated or truncated
    assert len(trajectory) <= config.max_queries
    return trajectory


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        ra == rb and sa == sb and ca == cb and all(np.array_equal(oa[k], ob[k]) for k in oa)
        for (ra, sa, ca, oa), (rb, sb, cb, ob) in zip(a, b))


@FEW
@given(config=env_configs(), seed=st.integers(0, 2**31 - 1), actions=st.sampled_from(["random", "ties", "integers"]))
def test_session_env_slates_rewards_and_determinism(config, seed, actions):
    env = gym.make("ShopRank-v0", config=config)
    first = rollout(env, seed, actions)
    assert same(first, rollout(env, seed, actions))  # same seed, same trajectory (on a used env, too)
    assert same(first, rollout(gym.make("ShopRank-v0", config=config), seed, actions))


@FEW
@given(config=env_configs(max_queries=2), seed=st.integers(0, 2**31 - 1))
def test_sequential_env_picks_only_masked_in_candidates(config, seed):
    env = gym.make("ShopRankSeq-v0", config=config)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    picks: list[int] = []
    done = False
    while not done:
        check_obs(env, obs)
        mask = env.unwrapped.action_masks()
        ids = candidate_ids(env)
        assert mask.dtype == bool and mask.any() and not mask[picks].any()
        action = int(rng.choice(np.flatnonzero(mask)))
        picks.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        assert np.isfinite(reward)
        if info["slate_done"]:
            valid = set(ids[ids >= 0].tolist())
            check_slate_outcome(info, reward, config.slate_size, valid)
            placed = np.asarray(info["shown_ids"])
            np.testing.assert_array_equal(placed[placed >= 0], ids[picks][ids[picks] >= 0])
            picks = []
        else:
            assert reward == 0.0
        done = terminated or truncated


@FEW
@given(config=env_configs(), seed=st.integers(0, 2**31 - 1))
def test_shopper_probabilities_lie_in_the_unit_interval(config, seed):
    env = gym.make("ShopRankStatic-v0", config=config)  # builds (and caches) the world's item table
    items = env.unwrapped.world.items
    n = config.slate_size
    sim = DefaultShopper(items, config.shopper, n_slots=n)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        state = sim.reset(rng)
        query = sim.next_query(state, rng)
        slate = rng.choice(len(items.prices), size=n, replace=False)
        slate[rng.integers(0, n + 1):] = -1  # padding at the end
        expected = sim.expected_response(state, query, slate)
        click, buy = np.asarray(expected.click_prob), np.asarray(expected.purchase_prob)
        assert click.shape == buy.shape == (n,)
        assert np.all((0 <= click) & (click <= 1)) and np.all((0 <= buy) & (buy <= click + 1e-12))
        assert np.all(click[slate < 0] == 0) and np.all(buy[slate < 0] == 0)
        response = sim.respond(state, query, slate, rng)
        assert not np.any(response.clicks[slate < 0]) and not np.any(response.purchases & ~response.clicks)


@settings(max_examples=6, **FAST)
@given(config=env_configs(), seed=st.integers(0, 2**31 - 1), n_envs=st.integers(1, 4))
def test_vector_env_rewards_finite_and_same_seed_same_trajectory(config, seed, n_envs):
    def play() -> list:
        venv = gym.make_vec("ShopRank-v0", num_envs=n_envs, vectorization_mode="vector_entry_point", config=config)
        obs, _ = venv.reset(seed=seed)
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(2 * config.max_queries + 1):  # crosses episode ends (autoreset)
            actions = rng.uniform(-10, 10, (n_envs, config.n_candidates)).astype(np.float32)
            obs, reward, terminated, truncated, info = venv.step(actions)
            assert reward.shape == (n_envs,) and np.isfinite(reward).all()
            assert venv.observation_space.contains(obs) and all(np.isfinite(v).all() for v in obs.values())
            out.append((reward.copy(), terminated.copy(), {key: value.copy() for key, value in obs.items()}))
        return out

    first, second = play(), play()
    for (ra, ta, oa), (rb, tb, ob) in zip(first, second):
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(ta, tb)
        for key in oa:
            np.testing.assert_array_equal(oa[key], ob[key])
