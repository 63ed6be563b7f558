"""ShopRankVectorEnv: spaces, autoreset semantics, determinism, exact per-slate probabilities and statistical
equivalence with B single ``ShopRank-v0`` envs, and ``gymnasium.make_vec`` through the entry point.

Equivalence: the vector env draws its random numbers in a different order than B single envs (one
``(B, N)`` array at a time), so the same seed does not give the same sessions. What must agree is (a)
the shopper's probabilities for a given state and slate, exactly (``test_probabilities_match_default_shopper``),
and (b) the distribution of outcomes, checked here by comparing mean episode return, mean episode length
and clicks per step under the retriever-order and the uniform-random policies: the difference of means must
lie within 4 standard errors (two-sample; false-alarm rate ~6e-5 per comparison; the seeds are fixed so
the test is deterministic).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import envs  # noqa: F401  (registers the ids)
from envs import EnvConfig, WorldConfig, get_world
from envs.vector_env import ShopRankVectorEnv
from simulators.shopper import ShopperState

WORLD = WorldConfig(text_encoder="hashing")
CFG = EnvConfig(n_candidates=20, slate_size=10, max_queries=6, world=WORLD)


@pytest.fixture(scope="module")
def world():
    return get_world(WORLD)


@pytest.fixture(scope="module")
def vec(world):
    return ShopRankVectorEnv(num_envs=8, config=CFG, world=world)


def test_spaces_and_shapes(vec):
    obs, info = vec.reset(seed=0)
    assert vec.observation_space.contains(obs)
    assert obs["candidates"].shape == (8, 20, vec.single_observation_space["candidates"].shape[1])
    assert vec.action_space.shape == (8, 20)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, reward, term, trunc, info = vec.step(vec.action_space.sample())
    assert vec.observation_space.contains(obs)
    assert reward.shape == term.shape == trunc.shape == (8,)
    assert info["shown_ids"].shape == info["clicked"].shape == (8, 10)
    assert info["_clicks"].all()
    assert np.all(info["clicks"] == info["clicked"].sum(axis=1))


def test_bad_actions_raise(vec):
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.zeros((8, 19), dtype=np.float32))
    bad = np.zeros((8, 20), dtype=np.float32)
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        vec.step(bad)


def test_custom_simulator_refused(world):
    cfg = EnvConfig(world=WORLD, simulator="experiments.examples.custom_shopper:make")
    with pytest.raises(ValueError, match="vectorization_mode='sync'"):
        ShopRankVectorEnv(num_envs=2, config=cfg, world=world)


def test_same_seed_same_numbers(world):
    def rollout(seed):
        env = ShopRankVectorEnv(num_envs=16, config=CFG, world=world)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(1)
        out = [obs["profile"].copy()]
        for _ in range(15):
            obs, r, te, tr, _ = env.step(rng.normal(size=(16, 20)).astype(np.float32))
            out += [obs["candidates"].sum(axis=(1, 2)), r, te, tr]
        return out

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_next_step_autoreset(world):
    env = ShopRankVectorEnv(num_envs=32, config=CFG, world=world)
    env.reset(seed=0)
    ones = np.ones((32, 20), dtype=np.float32)
    pending = np.zeros(32, dtype=bool)
    seen = 0
    for _ in range(30):
        obs, reward, term, trunc, info = env.step(ones)
        # rows that ended last step were reset now: reward 0, not done, first observation of a session
        assert np.all(reward[pending] == 0.0)
        assert not np.any((term | trunc)[pending])
        assert np.all(obs["session"][pending] == 0.0)
        assert np.all(obs["history_mask"][pending] == 0.0)
        assert not np.any(info["_clicks"][pending]) and np.all(info["_clicks"][~pending])
        seen += pending.sum()
        pending = term | trunc
        assert np.all(obs["session"][pending, 0] > 0)  # final observation, not a reset one
    assert seen > 0
    # truncation at the query budget
    assert np.all(env._n_queries[~env._needs_reset] < CFG.max_queries)


def test_same_step_autoreset(world):
    env = ShopRankVectorEnv(num_envs=32, config=CFG, world=world, autoreset_mode="SameStep")
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    env.reset(seed=0)
    done_any = False
    for _ in range(20):
        obs, reward, term, trunc, info = env.step(np.ones((32, 20), dtype=np.float32))
        done = term | trunc
        assert np.all(info["_clicks"])  # every row stepped
        if done.any():
            done_any = True
            assert np.array_equal(info["_final_obs"], done)
            assert np.all(info["final_obs"]["session"][done, 0] > 0)
            assert np.all(obs["session"][done] == 0.0)
        else:
            assert "final_obs" not in info
    assert done_any


def test_reset_mask(vec):
    vec.reset(seed=0)
    vec.step(np.ones((8, 20), dtype=np.float32))
    mask = np.zeros(8, dtype=bool)
    mask[[1, 5]] = True
    obs, info = vec.reset(options={"reset_mask": mask})
    assert np.all(obs["session"][mask] == 0.0)
    assert np.all(obs["session"][~mask, 0] > 0)


def test_history_keeps_newest_oldest_first(vec):
    vec.reset(seed=0)
    h = CFG.history_size
    vec._history[:] = -1
    vec._history[0, :3] = [7, 8, 9]
    vec._history[1, :h] = np.arange(h)
    clicked = np.full((8, 10), -1, dtype=np.int64)
    clicked[0, [1, 4, 6]] = [20, 21, 22]
    clicked[1, [0, 9]] = [30, 31]
    clicked[2, :] = np.arange(100, 110)
    vec._push_history(clicked)
    assert vec._history[0].tolist() == [8, 9, 20, 21, 22][-h:] + [-1] * max(0, h - 5)
    assert vec._history[1].tolist() == (list(range(h)) + [30, 31])[-h:]
    assert vec._history[2].tolist() == list(range(110 - h, 110))
    assert np.all(vec._history[3:] == -1)


def test_observation_matches_single_env(world):
    """For the same query text, the candidate block, query vector and mask equal the single env's."""
    single = gym.make("ShopRank-v0", config=CFG, world=world).unwrapped
    vec = ShopRankVectorEnv(num_envs=1, config=CFG, world=world)
    for seed in range(5):
        obs, info = single.reset(seed=seed)
        q = vec.query_texts.index(info["query"])
        sh = vec.shopper
        np.testing.assert_array_equal(obs["candidates"], sh.cand_obs[q])
        np.testing.assert_array_equal(obs["query"], sh.query_obs[q])
        np.testing.assert_array_equal(obs["mask"], sh.valid[q].astype(np.float32))


def test_probabilities_match_default_shopper(world):
    """Batched utilities, attractiveness and purchase probabilities equal DefaultShopper's for each row."""
    env = ShopRankVectorEnv(num_envs=12, config=CFG, world=world)
    env.reset(seed=5)
    sh, st = env.shopper, env._state
    rng = np.random.default_rng(0)
    order = np.stack([rng.permutation(20)[:10] for _ in range(12)])
    util, vis, price = sh.utilities(st)
    attract, p_buy = sh.item_probabilities(st, order, util, vis, price)
    for b in range(12):
        state = ShopperState(segment=int(st.segment[b]), taste=st.taste[b], price_sensitivity=float(st.price_sensitivity[b]),
                             profile_noise=st.profile_noise[b], patience=float(st.patience[b]),
                             willingness_to_pay=float(st.willingness_to_pay[b]))
        intent = sh.sim.bank[st.query[b]]
        slate = sh.ids[st.query[b], order[b]]
        a_ref, p_ref, u_ref = sh.sim.item_probabilities(state, intent, slate)
        np.testing.assert_allclose(attract[b], a_ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(p_buy[b], p_ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(util[b, order[b]], u_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(env.privileged_utilities()[b], util[b])


def _policy(name: str, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    if name == "retriever":
        return np.broadcast_to(1.0 - np.arange(shape[-1]) / shape[-1], shape).astype(np.float32)
    return rng.random(shape).astype(np.float32)


def _single_stats(world, name: str, episodes: int) -> dict[str, np.ndarray]:
    env = gym.make("ShopRank-v0", config=CFG, world=world).unwrapped
    rng = np.random.default_rng(11)
    returns, lengths, clicks = [], [], []
    for ep in range(episodes):
        env.reset(seed=1000 + ep)
        total, steps, done = 0.0, 0, False
        while not done:
            _, r, te, tr, info = env.step(_policy(name, rng, (20,)))
            total += r
            steps += 1
            clicks.append(info["clicks"])
            done = te or tr
        returns.append(total)
        lengths.append(steps)
    return {"return": np.array(returns), "length": np.array(lengths, dtype=float), "clicks": np.array(clicks)}


def _vector_stats(world, name: str, episodes: int) -> dict[str, np.ndarray]:
    env = ShopRankVectorEnv(num_envs=256, config=CFG, world=world)
    env.reset(seed=7)
    rng = np.random.default_rng(12)
    running, steps = np.zeros(256), np.zeros(256)
    returns, lengths, clicks = [], [], []
    while len(returns) < episodes:
        _, r, te, tr, info = env.step(_policy(name, rng, (256, 20)))
        stepped = info["_clicks"]
        running += r
        steps += stepped
        clicks.extend(info["clicks"][stepped].tolist())
        done = te | tr
        returns.extend(running[done].tolist())
        lengths.extend(steps[done].tolist())
        running[done], steps[done] = 0.0, 0.0
    return {"return": np.array(returns), "length": np.array(lengths), "clicks": np.array(clicks)}


@pytest.mark.parametrize("policy", ["retriever", "random"])
def test_statistically_equivalent_to_single_env(world, policy):
    single = _single_stats(world, policy, 300)
    batched = _vector_stats(world, policy, 3000)
    for key in ("return", "length", "clicks"):
        a, b = single[key], batched[key]
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        assert abs(a.mean() - b.mean()) < 4 * se, (
            f"{policy} {key}: single {a.mean():.3f} vs vector {b.mean():.3f} (4 SE = {4 * se:.3f})")


@pytest.mark.parametrize("env_id", ["ShopRank-v0", "ShopRankStatic-v0"])
def test_make_vec_entry_point(env_id):
    vec = gym.make_vec(env_id, num_envs=4, vectorization_mode="vector_entry_point",
                       config=EnvConfig(**{**CFG.__dict__, "max_queries": 1} if env_id.endswith("Static-v0")
                                        else CFG.__dict__))
    assert isinstance(vec.unwrapped, ShopRankVectorEnv)
    obs, _ = vec.reset(seed=0)
    obs, r, te, tr, _ = vec.step(np.ones((4, 20), dtype=np.float32))
    assert vec.observation_space.contains(obs)
    if env_id == "ShopRankStatic-v0":
        assert np.all(te | tr)
    default_static = gym.make_vec("ShopRankStatic-v0", num_envs=2, vectorization_mode="vector_entry_point",
                                  config=EnvConfig(max_queries=1, world=WORLD))
    assert default_static.unwrapped.config.max_queries == 1


def test_sb3_adapter_learns_a_rollout(world):
    from stable_baselines3 import PPO

    from envs.vector_env import sb3_vec_env

    venv = sb3_vec_env(4, CFG, seed=0, world=world)
    obs = venv.reset()
    assert obs["candidates"].shape[0] == 4
    saw_done = False
    for _ in range(12):
        obs, rewards, dones, infos = venv.step(np.ones((4, 20), dtype=np.float32))
        assert rewards.shape == (4,) and len(infos) == 4 and "clicked_positions" in infos[0]
        for d, info in zip(dones, infos):
            if d:
                saw_done = True
                assert "terminal_observation" in info and "TimeLimit.truncated" in info
    assert saw_done
    model = PPO("MultiInputPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, device="cpu", seed=0)
    model.learn(64)


def test_position_rewards_sum_to_the_reward(vec):
    vec.reset(seed=3)
    actions = np.random.default_rng(0).random((8, 20)).astype(np.float32)
    for _ in range(5):
        _, reward, _, _, info = vec.step(actions)
        stepped = info["_position_rewards"]
        assert info["position_rewards"].shape == (8, 10)
        np.testing.assert_allclose(info["position_rewards"][stepped].sum(axis=1), reward[stepped], rtol=1e-6)
        assert np.all(info["position_rewards"][~info["clicked"]] == 0.0)
