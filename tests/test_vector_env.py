"""ShopRankVectorEnv: spaces, autoreset semantics, determinism, exact per-slate probabilities, exact
equivalence with the single env at B = 1, statistical equivalence with B single ``ShopRank-v0`` envs, and
``gymnasium.make_vec`` through the entry point.

Equivalence: both envs run one array core (``envs.core.EnvCore``). With B = 1 and the same seed the vector
env replays the single env exactly, episode after episode (``test_b1_replays_the_single_env``, for the
default shopper, a custom plug-in shopper, personalised retrieval and expected rewards). With B > 1 the
draws are shared among sessions, so the sessions differ from B single envs; what must agree is (a) the
shopper's probabilities for a given state and slate, exactly (``test_probabilities_match_default_shopper``),
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
from envs import EnvConfig, RewardSpec, WorldConfig, get_world
from envs.kernels import record_clicks
from envs.layout import FeatureLayout
from envs.vector_env import ShopRankVectorEnv

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


def test_custom_simulator_runs_batched(world):
    """A per-session plug-in shopper runs in the vector env (one call per session) with valid outcomes."""
    cfg = EnvConfig(n_candidates=20, slate_size=10, max_queries=6, world=WORLD,
                    simulator="experiments.examples.custom_shopper:make")
    env = ShopRankVectorEnv(num_envs=6, config=cfg, world=world)
    assert type(env.core.sim).__name__ == "LoopShopper"
    env.reset(seed=0)
    clicks = 0.0
    for t in range(12):
        obs, reward, term, trunc, info = env.step(np.random.default_rng(t).normal(size=(6, 20)).astype(np.float32))
        assert env.observation_space.contains(obs)
        assert np.all(np.isfinite(reward)) and reward.shape == (6,)
        shown = info["shown_ids"][info["_shown_ids"]]
        assert np.all((shown >= 0) | (shown == -1))
        clicks += info["clicks"].sum()
    assert clicks > 0
    assert env.privileged_utilities() is None  # the example shopper reveals no truth


@pytest.mark.parametrize("name, overrides", [
    ("default", {}),
    ("custom", {"simulator": "experiments.examples.custom_shopper:make"}),
    ("personalised", {"personalize_query": 0.5}),
    ("expected", {"reward": RewardSpec(expected=True)}),
])
def test_b1_replays_the_single_env(world, name, overrides):
    """Same seed, same actions: B = 1 gives the single env's observations, rewards, ends and slates exactly,
    across episodes (the vector env autoresets where the single env is reset without a seed)."""
    cfg = EnvConfig(n_candidates=20, slate_size=10, max_queries=6, world=WORLD, **overrides)
    single = gym.make("ShopRank-v0", config=cfg, world=world).unwrapped
    vec = ShopRankVectorEnv(num_envs=1, config=cfg, world=world)
    obs1, _ = single.reset(seed=3)
    obs2, _ = vec.reset(seed=3)
    rng = np.random.default_rng(0)
    pending, episodes = False, 0
    for _ in range(40):
        action = rng.normal(size=20).astype(np.float32)
        if pending:
            obs1, _ = single.reset()
            obs2, r2, _, _, info2 = vec.step(action[None])
            assert r2[0] == 0.0 and not info2["_clicks"][0]
            pending, episodes = False, episodes + 1
        else:
            obs1, r1, te1, tr1, info1 = single.step(action)
            obs2, r2, te2, tr2, info2 = vec.step(action[None])
            assert (r1, te1, tr1) == (r2[0], te2[0], tr2[0])
            np.testing.assert_array_equal(info1["shown_ids"], info2["shown_ids"][0])
            np.testing.assert_array_equal(info1["clicked_positions"], np.flatnonzero(info2["clicked"][0]))
            assert info1["ndcg"] == info2["ndcg"][0] or (np.isnan(info1["ndcg"]) and np.isnan(info2["ndcg"][0]))
            pending = te1 or tr1
        for key in obs1:
            np.testing.assert_array_equal(obs1[key], obs2[key][0], err_msg=f"{name}: obs[{key!r}]")
    assert episodes >= 2


def test_layout_names_the_columns(vec, world):
    """The vector env exposes the single env's FeatureLayout; names point at the features they claim."""
    single = gym.make("ShopRank-v0", config=CFG, world=world).unwrapped
    assert vec.layout == single.layout
    assert FeatureLayout.from_dict(vec.layout.to_dict()) == vec.layout
    obs, _ = vec.reset(seed=0)
    cand, mask = obs["candidates"], obs["mask"].astype(bool)
    rank = cand[..., vec.layout.column("retriever_rank")]
    np.testing.assert_allclose(rank[mask], np.broadcast_to(1.0 - np.arange(20) / 20, (8, 20))[mask], rtol=1e-6)
    assert set(np.unique(cand[..., vec.layout.column("has_photo")][mask])) <= {0.0, 1.0}
    assert vec.layout.columns("fused") == slice(0, world.fused.shape[1])


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
    assert np.all(env.core.sessions.n_queries[~env._needs_reset] < CFG.max_queries)


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


def test_history_keeps_newest_oldest_first():
    h = CFG.history_size
    history = np.full((8, h), -1, dtype=np.int64)
    history[0, :3] = [7, 8, 9]
    history[1, :h] = np.arange(h)
    clicked = np.full((8, 10), -1, dtype=np.int64)
    clicked[0, [1, 4, 6]] = [20, 21, 22]
    clicked[1, [0, 9]] = [30, 31]
    clicked[2, :] = np.arange(100, 110)
    fused = np.arange(200, dtype=np.float32)[:, None]
    vectors, mask = np.zeros((8, h, 1), dtype=np.float32), np.zeros((8, h), dtype=np.float32)
    record_clicks(history, vectors, mask, np.arange(8), clicked, fused)
    np.testing.assert_array_equal(vectors[..., 0], np.where(history >= 0, history, 0))
    np.testing.assert_array_equal(mask, history >= 0)
    assert history[0].tolist() == [8, 9, 20, 21, 22][-h:] + [-1] * max(0, h - 5)
    assert history[1].tolist() == (list(range(h)) + [30, 31])[-h:]
    assert history[2].tolist() == list(range(110 - h, 110))
    assert np.all(history[3:] == -1)


def test_probabilities_match_default_shopper(world):
    """Batched utilities, attractiveness and purchase probabilities equal DefaultShopper's for each row."""
    env = ShopRankVectorEnv(num_envs=12, config=CFG, world=world)
    env.reset(seed=5)
    sh, st, q = env.core.sim, env.core.sessions.shopper, env.core.sessions.query
    rng = np.random.default_rng(0)
    order = np.stack([rng.permutation(20)[:10] for _ in range(12)])
    attract, p_buy, _ = sh._slot_probabilities(st, q, order)
    util = env.privileged_utilities()
    for b in range(12):
        state, query = sh.state_of(st, b), sh.query_of(st, q, b)
        slate = env.core.table.ids[q[b], order[b]]
        a_ref, p_ref, u_ref = sh.user_simulator.item_probabilities(state, query.intent, slate)
        np.testing.assert_allclose(attract[b], a_ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(p_buy[b], p_ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(util[b, order[b]], u_ref, rtol=1e-5, atol=1e-6)


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
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(64)
    assert model.num_timesteps >= 64
    assert any(not np.allclose(a.numpy(), b.detach().numpy()) for a, b in zip(before, model.policy.parameters()))


def test_position_rewards_sum_to_the_reward(vec):
    vec.reset(seed=3)
    actions = np.random.default_rng(0).random((8, 20)).astype(np.float32)
    for _ in range(5):
        _, reward, _, _, info = vec.step(actions)
        stepped = info["_position_rewards"]
        assert info["position_rewards"].shape == (8, 10)
        np.testing.assert_allclose(info["position_rewards"][stepped].sum(axis=1), reward[stepped], rtol=1e-6)
        assert np.all(info["position_rewards"][~info["clicked"]] == 0.0)


class _OpaqueClicks:
    """A PBM behind a wrapper without ``independent_examination``: the default shopper then samples clicks through
    ``sample`` (the general path) instead of its one compiled call."""

    def __init__(self, model):
        self.model = model

    def click_probs(self, attractiveness):
        return self.model.click_probs(attractiveness)

    def sample(self, attractiveness, rng):
        return self.model.sample(attractiveness, rng)


@pytest.mark.parametrize("overrides", [{}, {"reward": RewardSpec(expected=True)}, {"n_candidates": 12}])
def test_compiled_response_equals_the_general_path(world, overrides):
    """With a PBM the default shopper responds and moves on in one compiled call; the same shopper whose click
    model hides that its slots are examined independently goes the general way (probabilities, the model's
    ``sample``, purchases, transition). Same seed, same actions: the same trajectory, bit for bit."""
    from simulators.click_models import PositionBasedModel
    from simulators.shopper import DefaultShopper

    cfg = EnvConfig(**{"n_candidates": 20, "slate_size": 10, "max_queries": 6, "world": WORLD, **overrides})
    pbm = PositionBasedModel.geometric(cfg.slate_size, 0.9)
    envs_ = [gym.make("ShopRank-v0", config=cfg, world=world, simulator=DefaultShopper(
        world.items, cfg.shopper, click_model=model, n_slots=cfg.slate_size)).unwrapped
             for model in (pbm, _OpaqueClicks(pbm))]
    assert envs_[0].core.batch._examination(cfg.slate_size) is not None
    assert envs_[1].core.batch._examination(cfg.slate_size) is None
    rng = np.random.default_rng(0)
    outs = [e.reset(seed=4) for e in envs_]
    clicks = 0
    for _ in range(60):
        action = rng.normal(size=cfg.n_candidates).astype(np.float32)
        steps = [e.step(action) for e in envs_]
        (obs1, r1, te1, tr1, info1), (obs2, r2, te2, tr2, info2) = steps
        assert (r1, te1, tr1) == (r2, te2, tr2)
        for key in ("shown_ids", "clicked_positions", "purchased_positions", "position_rewards"):
            np.testing.assert_array_equal(info1[key], info2[key])
        assert info1["ndcg"] == info2["ndcg"]
        for key in obs1:
            np.testing.assert_array_equal(obs1[key], obs2[key])
        clicks += len(info1["clicked_positions"])
        if te1 or tr1:
            for e in envs_:
                e.reset()
    assert clicks > 20
