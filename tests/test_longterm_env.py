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
from agents.baselines import OracleBaseline, PlannerBaseline, ProfileNetBaseline, ProfilePlannerBaseline, make_baseline
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
    observable = totals(ProfilePlannerBaseline(env))
    assert observable.sum() > 1.05 * oracle.sum()  # planning on what a shop can see already beats the myopic truth


def test_profile_net_is_the_profile_planner_without_the_value_of_trust(env):
    from simulators.longterm import candidate_terms

    env.reset(seed=6)
    core = env.unwrapped.core.core
    net = ProfileNetBaseline(env).scores(None)
    assert np.array_equal(net, env.unwrapped.planner_scores(observable=True, value_trust=False))
    user, state = core.sim.user_simulator, core.state(0)
    query, candidates = env.unwrapped.core.query, env.unwrapped.core.candidates
    immediate, refund, _ = candidate_terms(user, user.observable_state(state), query, candidates, core._weights(),
                                           env.unwrapped.config.slate_size, observable=True)
    np.testing.assert_allclose(net, immediate - refund)  # the trust term is gone, the refund stays
    assert not np.allclose(net, env.unwrapped.planner_scores(observable=True))  # trust's value changes the scores


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


def test_returned_slots_name_the_slate_and_slot_that_sold_each_refunded_purchase(env):
    returny = gym.make("ShopRank-v1", config=RETURNY, world=env.unwrapped.world)
    spec, prices = RETURNY.reward, env.unwrapped.world.items.prices
    seen = 0
    for seed in range(4):
        returny.reset(seed=seed)
        history, done = [], False
        while not done:
            _, _, terminated, truncated, info = returny.step(np.linspace(1, -1, 20).astype(np.float32))
            history.append(info)
            rows = info["returned_slots"]
            assert rows.shape == (info["returns"], 3)
            for ago, slot, refund in rows:
                sold = history[-1 - int(ago)]
                assert int(slot) in sold["purchased_positions"]
                assert refund == pytest.approx(spec.purchase + spec.revenue * float(prices[sold["shown_ids"][int(slot)]]))
                seen += 1
            assert rows[:, 2].sum() == pytest.approx(spec.purchase * info["returns"] + spec.revenue * info["refund"])
            done = terminated or truncated
    assert seen >= 3


def test_sb3_vec_env_of_v1_is_the_v1_vector_env_and_its_infos_carry_the_relationship(env):
    from envs.vector_env import sb3_vec_env

    venv = sb3_vec_env(3, RETURNY, seed=0, env_id="ShopRank-v1", world=env.unwrapped.world)
    assert isinstance(venv.env, ShopRankVisitsVectorEnv)
    obs = venv.reset()
    assert obs["session"].shape == (3, 9)
    refunded = 0.0
    for _ in range(40):
        venv.step_async(np.tile(np.linspace(1, -1, 20, dtype=np.float32), (3, 1)))
        _, _, _, infos = venv.step_wait()
        for info in infos:
            assert {"returns", "refund", "trust", "visits", "returned_slots"} <= set(info)
            slots = info["returned_slots"]
            assert slots.shape == (RETURNY.longterm.max_queries_per_visit * RETURNY.slate_size, 3)
            assert (slots[:, 0] >= 0).sum() == info["returns"]
            refunded += slots[slots[:, 0] >= 0, 2].sum()
    assert refunded > 0


def test_every_box_id_has_a_sequential_twin_and_an_unknown_id_is_named():
    assert envs.sequential_id("ShopRank-v1") == "ShopRankSeq-v1" == envs.sequential_id("ShopRankSeq-v1")
    assert envs.sequential_id("ShopRank-v0") == "ShopRankSeq-v0"
    for box, seq in envs.SEQUENTIAL_IDS.items():
        assert box in gym.registry and seq in gym.registry
    from encoders.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        envs.sequential_id("CartPole-v1")
    assert str(err.value) == ("env 'CartPole-v1' has no sequential (one slot per step) form; ids that have one: "
                              "['ShopRank-v0', 'ShopRank-v1', 'ShopRankStatic-v0'].")


def test_sequential_agents_are_evaluated_in_shoprankseq_v1(env):
    from experiments.evaluate import evaluate_agents

    class FirstFree:
        sequential = True
        sessions: list[int] = []

        def predict(self, obs, deterministic=True, action_masks=None):
            self.sessions.append(obs["session"].shape[0])
            return int(np.flatnonzero(action_masks)[0]), None

    df = evaluate_agents({"first": lambda e, s: FirstFree()}, "ShopRank-v1", CONFIG, seeds=[0], n_sessions=2,
                         env=gym.make("ShopRank-v1", config=CONFIG, world=env.unwrapped.world), progress=False)
    assert len(df) == 2 and set(FirstFree.sessions) == {9}


def test_return_credit_moves_each_refund_to_the_slot_that_sold_it(env):
    import torch

    from agents.slate_ppo import SlotCreditRolloutBuffer

    def buffer(credit: bool) -> SlotCreditRolloutBuffer:
        buf = SlotCreditRolloutBuffer(4, env.observation_space, env.action_space, n_envs=1, gamma=0.99,
                                      gae_lambda=1.0, n_slots=3, return_credit=credit)
        slots = np.array([[1.0, 0, 0], [3.0, 1.0, 0], [1.0, 0, 0], [0, 0, 0]])
        refunds = {2: np.array([[1, 0, 2.0], [-1, -1, -1]]), 3: np.array([[4, 1, 0.5]])}
        for t in range(4):  # as PPO.collect_rollouts: the step's infos, then its transition
            buf.record_slot_rewards([{"position_rewards": slots[t], "returned_slots": refunds.get(t)}])
            env_reward = slots[t].sum() - (refunds[t][refunds[t][:, 0] >= 0, 2].sum() if t in refunds else 0.0)
            buf.rewards[t], buf.episode_starts[t], buf.pos = env_reward, float(t == 0), t + 1
        buf.full = True
        buf.compute_returns_and_advantage(torch.zeros(1), np.ones(1, dtype=bool))
        return buf

    plain, credited = buffer(False), buffer(True)
    assert np.allclose(plain.rewards[:, 0], [1.0, 4.0, -1.0, -0.5])
    assert np.allclose(credited.rewards[:, 0], [1.0, 2.0, 1.0, -0.5])       # step 2's refund moved to step 1
    assert np.allclose(credited.slot_rewards[1, 0], [1.0, 1.0, 0.0])        # ... and to its slot 0
    assert np.allclose(credited.slot_rewards[3, 0], [0.0, 0.0, 0.0])        # sold before the rollout: kept
    assert credited.rewards.sum() == pytest.approx(plain.rewards.sum())
    assert credited.returns[0, 0] == pytest.approx(plain.returns[0, 0] - 2.0 * (0.99 - 0.99 ** 2), rel=1e-5)


def test_ppo_longterm_trains_on_the_v1_vector_env(tmp_path, env):
    from agents.factory import AGENT_PRESETS, train_agent

    config = replace(AGENT_PRESETS["ppo_longterm"].config, n_steps=32, batch_size=32, n_epochs=1, n_envs=2,
                     pretrain_sessions=0)
    model = train_agent("ppo", CONFIG, 64, seed=0, run_dir=tmp_path, config=config, env_id="ShopRank-v1")
    assert model.rollout_buffer.return_credit and model.get_env().num_envs == 2
    assert model.observation_space["session"].shape == (9,)
    from agents.checkpoint import META_FILE, load_agent, read_checkpoint

    loaded = load_agent(tmp_path / "checkpoint")              # rebuilt in ShopRank-v1's spaces
    assert read_checkpoint(tmp_path / "checkpoint").env_id == "ShopRank-v1"
    obs, _ = env.reset(seed=0)
    assert np.array_equal(loaded.predict(obs)[0], model.predict(obs, deterministic=True)[0])
    meta_path = tmp_path / "checkpoint" / META_FILE
    meta_path.write_text(meta_path.read_text().replace('"env_id": "ShopRank-v1"', '"env_id": "ShopRankSeq-v1"'))
    from encoders.errors import CheckpointError

    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path / "checkpoint")
    assert str(err.value) == (f"{meta_path}: env_id must be one of ['ShopRank-v0', 'ShopRank-v1', "
                              "'ShopRankStatic-v0'], got a string 'ShopRankSeq-v1'.")


def test_net_reward_logs_take_each_refund_back_from_the_slot_that_sold_it(env):
    from agents.pretrain import collect_click_logs

    returny = gym.make("ShopRank-v1", config=RETURNY, world=env.unwrapped.world)
    _, shown, gross = collect_click_logs(returny, 3, seed=0, target="reward")
    _, shown_again, net = collect_click_logs(returny, 3, seed=0, target="net_reward")
    assert np.array_equal(shown, shown_again)
    cut = net < gross
    assert cut.sum() >= 3 and (net <= gross).all()
    assert np.allclose(net[cut], RETURNY.reward.click)   # the refund takes back the purchase, the click stays
