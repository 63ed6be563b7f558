"""``ShopRank-v1`` / ``ShopRankSeq-v1`` and the v1 vector env: registration, checkers, determinism, pickling,
refunds in the reward, what the observation shows, the planner baseline and the TensorBoard keys."""

from __future__ import annotations

import pickle
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.logger import KVWriter, Logger

import envs  # noqa: F401  (registers the ids)
from agents.baselines import OracleBaseline, PlannerBaseline, make_baseline
from agents.callbacks import ShopMetricsCallback
from envs import WorldConfig
from envs.visits_env import ShopRankVisitsVectorEnv, v1_config
from simulators.longterm import VISIT_SIGNALS, LongTermConfig

WORLD = WorldConfig(text_encoder="hashing", n_products=600)
CONFIG = v1_config(world=WORLD)
RETURNY = v1_config(world=WORLD, longterm=LongTermConfig(return_base=0.6))  # most purchases come back


def _play(env: gym.Env, seed: int, policy=None, max_steps: int = 200) -> list[tuple]:
    """``(reward, returns, refund, visits, trust, session obs)`` per step of one episode."""
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(max_steps):
        action = policy(env) if policy else np.linspace(1, -1, env.action_space.shape[0]).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((reward, info["returns"], info["refund"], info["visits"], info["trust"], obs["session"].tolist()))
        if terminated or truncated:
            break
    return out


@pytest.fixture(scope="module")
def env() -> gym.Env:
    return gym.make("ShopRank-v1", config=CONFIG)


def test_v1_is_registered_and_v0_is_unchanged(env):
    assert env.observation_space["session"].shape == (4 + len(VISIT_SIGNALS),)
    assert env.unwrapped.layout.session[4:] == VISIT_SIGNALS
    v0 = gym.make("ShopRank-v0", config=replace(CONFIG, max_queries=10), world=env.unwrapped.world)
    assert v0.observation_space["session"].shape == (4,)
    assert gym.spec("ShopRank-v1").kwargs["config"].max_queries == 80
    assert "v1:" in type(env.unwrapped).__doc__ and "v0: initial release" in type(env.unwrapped).__doc__


@pytest.mark.parametrize("env_id", ["ShopRank-v1", "ShopRankSeq-v1"])
def test_checkers_pass(env, env_id):
    made = gym.make(env_id, config=CONFIG, world=env.unwrapped.world)
    gym_check_env(made.unwrapped, skip_render_check=True)
    sb3_check_env(made.unwrapped, warn=False)


def test_same_seed_same_relationship_and_pickled_env_continues_identically(env):
    first, again = _play(env, 3), _play(env, 3)
    assert first == again and first[-1][3] >= 1
    env.reset(seed=5)
    env.step(np.linspace(1, -1, 20).astype(np.float32))
    twin = pickle.loads(pickle.dumps(env.unwrapped))
    action = np.linspace(-1, 1, 20).astype(np.float32)
    a, b = env.unwrapped.step(action), twin.step(action)
    assert a[1] == b[1] and np.array_equal(a[0]["session"], b[0]["session"]) and a[4]["trust"] == b[4]["trust"]


def test_returns_take_the_purchase_back_at_visit_end(env):
    returny = gym.make("ShopRank-v1", config=RETURNY, world=env.unwrapped.world)
    spec = RETURNY.reward
    seen = 0
    for seed in range(6):
        returny.reset(seed=seed)
        done = False
        while not done:
            _, reward, terminated, truncated, info = returny.step(np.linspace(1, -1, 20).astype(np.float32))
            slate = spec.click * info["clicks"] + spec.purchase * info["purchases"] + spec.revenue * info["revenue"]
            penalty = spec.purchase * info["returns"] + spec.revenue * info["refund"]
            assert reward == pytest.approx(slate - penalty)
            seen += info["returns"] > 0
            assert info["returns"] == 0 or info["left"] or returny.unwrapped.core.state.visit_queries == 0
            done = terminated or truncated
    assert seen >= 3


def test_observation_shows_visits_never_trust(env):
    obs, _ = env.reset(seed=11)
    sim, cols = env.unwrapped.core.sim, [env.unwrapped.layout.session_column(n) for n in VISIT_SIGNALS]
    for _ in range(30):
        assert np.allclose(obs["session"][cols], sim.visit_signals(env.unwrapped.core.state))
        obs, _, terminated, truncated, info = env.step(np.linspace(1, -1, 20).astype(np.float32))
        if terminated or truncated:
            break
    assert set(obs) == {"query", "profile", "session", "history", "history_mask", "candidates", "mask"}


def test_vector_env_with_one_session_replays_the_single_env(env):
    vec = ShopRankVisitsVectorEnv(num_envs=1, config=CONFIG, world=env.unwrapped.world)
    single = _play(env, 21)
    vec.reset(seed=21)
    for reward, returns, refund, visits, trust, session in single:
        obs, r, _, _, info = vec.step(np.linspace(1, -1, 20, dtype=np.float32)[None])
        assert r[0] == pytest.approx(reward) and info["returns"][0] == returns and info["refund"][0] == refund
        assert info["visits"][0] == visits and info["trust"][0] == trust
        assert np.allclose(obs["session"][0], session)


def test_vector_env_steps_many_relationships_and_made_by_make_vec(env):
    vec = gym.make_vec("ShopRank-v1", num_envs=4, vectorization_mode="vector_entry_point", config=CONFIG,
                       world=env.unwrapped.world)
    obs, _ = vec.reset(seed=0)
    total_returns = 0.0
    for _ in range(60):
        obs, reward, terminated, truncated, info = vec.step(np.tile(np.linspace(1, -1, 20, dtype=np.float32), (4, 1)))
        assert obs["session"].shape == (4, 9) and np.all(np.isfinite(reward))
        total_returns += info["returns"][info["_returns"]].sum()
    assert total_returns > 0


def test_planner_baseline_runs_on_v1_and_names_what_v0_lacks(env):
    agent = make_baseline("planner", env)
    obs, _ = env.reset(seed=0)
    action, _ = agent.predict(obs)
    assert action.shape == (20,) and np.allclose(np.sort(action), np.linspace(-1, 1, 20))
    with pytest.raises(ValueError) as batched:
        agent.predict({key: np.stack([value, value]) for key, value in obs.items()})
    assert "batched observations must have batch size 1, got 2." in str(batched.value)
    v0 = gym.make("ShopRank-v0", config=replace(CONFIG, max_queries=10), world=env.unwrapped.world)
    with pytest.raises(TypeError) as err:
        PlannerBaseline(v0)
    assert str(err.value) == "PlannerBaseline needs an env with planner_scores() (ShopRank-v1); ShopRankEnv has none."


def test_the_oracles_batched_values_equal_the_generic_ones(env):
    from envs.session import SessionCore

    env.reset(seed=4)
    core = env.unwrapped.core
    for observable in (False, True):
        assert np.allclose(core.candidate_values(observable), SessionCore.candidate_values(core, observable))


def test_planner_beats_the_myopic_oracle_on_v1(env):
    def totals(agent) -> np.ndarray:
        rank = lambda e: agent.predict(e.unwrapped.core.observation())[0]  # noqa: E731
        return np.array([sum(r for r, *_ in _play(env, 1000 + s, rank)) for s in range(12)])

    oracle, planner = totals(OracleBaseline(env)), totals(PlannerBaseline(env))
    assert planner.sum() > 1.1 * oracle.sum()  # same shoppers (common seeds); the full measurement is in the README


def test_tensorboard_logs_returns_trust_and_visits():
    class Collect(KVWriter):
        def __init__(self) -> None:
            self.dumps: list[dict] = []

        def write(self, key_values, key_excluded, step=0):
            self.dumps.append({k: v for k, v in key_values.items() if k.startswith("shop/")})

        def close(self):
            pass

    out = Collect()

    class Model:
        logger = Logger(folder=None, output_formats=[out])
        num_timesteps = 0

        def get_env(self):
            return None

    cb = ShopMetricsCallback()
    cb.init_callback(Model())
    base = {"shown_ids": np.array([1, 2]), "clicked_positions": np.array([0]), "clicks": 1.0, "purchases": 1.0,
            "revenue": 10.0, "ndcg": 0.5, "left": False, "refund": 0.0}
    steps = [({**base, "returns": 0.0, "trust": 0.6, "visits": 1.0}, False),
             ({**base, "returns": 2.0, "trust": 0.4, "visits": 2.0}, True)]
    for info, done in steps:
        cb.locals = {"infos": [info], "rewards": np.array([1.0]), "dones": np.array([done])}
        cb.on_step()
    Model.logger.dump(1)
    logged = out.dumps[0]
    assert logged["shop/returns"] == 2.0 and logged["shop/trust"] == 0.4 and logged["shop/visits"] == 2.0
