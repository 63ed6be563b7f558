"""The plug-in kit: the documented custom shopper runs in both envs by import path and passes the
conformance checker; broken plug-ins surface as ``SimulatorError`` with exact messages."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the envs)
from envs import EnvConfig, WorldConfig, get_world
from envs.session import SimulatorError
from experiments.examples import custom_shopper
from experiments.examples.custom_shopper import PopularityShopper
from simulators.conformance import assert_conforms
from simulators.protocols import Response

from tests.broken_shoppers import BareTransition, FloatClicks, Raises, StringQuery, WrongProfile

ROOT = Path(__file__).resolve().parents[1]
FAST = WorldConfig(text_encoder="hashing")
PATH = "experiments.examples.custom_shopper:make"


def test_docs_show_the_tested_code_and_it_is_at_most_30_lines() -> None:
    doc = (ROOT / "docs" / "custom_simulator.md").read_text()
    block = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    code = (ROOT / "experiments" / "examples" / "custom_shopper.py").read_text()
    assert block == code
    assert len(code.splitlines()) <= 30


def test_custom_shopper_passes_conformance() -> None:
    report = assert_conforms(PATH, n_sessions=50)
    assert report.name == "PopularityShopper" and not report.privileged
    assert 1 < report.mean_queries < 10 and 0 < report.ctr < 0.5


@pytest.mark.parametrize("env_id", ["ShopRank-v0", "ShopRankSeq-v0"])
def test_custom_shopper_runs_in_env_by_import_path(env_id: str) -> None:
    env = gym.make(env_id, config=EnvConfig(world=FAST, simulator=PATH))
    assert isinstance(env.unwrapped.core.sim, PopularityShopper)
    assert env.observation_space["profile"].shape == (1,)
    clicks, steps = 0.0, 0
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        assert info["query"] in env.unwrapped.world.items.facets["type"]
        done = False
        while not done:
            obs, reward, term, trunc, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs)
            clicks += info.get("clicks", 0.0)
            steps += 1
            done = term or trunc
    assert steps > 5 and clicks > 0
    with pytest.raises(SimulatorError, match="has no expected_response: no oracle possible"):
        env.unwrapped.privileged_scores()


# -- broken plug-ins: clear SimulatorError, never an opaque traceback -----------------------------------


class ShortPurchases(PopularityShopper):
    def respond(self, state, query, slate, rng):
        r = super().respond(state, query, slate, rng)
        return Response(clicks=r.clicks, purchases=r.purchases[:3], dwell=r.dwell)


class BuysWithoutClick(PopularityShopper):
    def respond(self, state, query, slate, rng):
        n = len(slate)
        return Response(clicks=np.zeros(n, bool), purchases=np.ones(n, bool), dwell=np.zeros(n, np.float32))


BROKEN = [
    (FloatClicks, "FloatClicks.respond must return Response.clicks as bool (10,), got float64 (10,)"),
    (ShortPurchases, "ShortPurchases.respond must return Response.purchases as bool (10,), got bool (3,)"),
    (BuysWithoutClick, "BuysWithoutClick.respond: purchases must be clicks, and empty slots (-1) cannot "
                       "be clicked"),
    (Raises, "Raises.respond raised KeyError('no such item')"),
    (WrongProfile, "WrongProfile.profile must return finite float32 (1,), got shape (3,)"),
    (StringQuery, "StringQuery.next_query must return simulators.Query(text=str, ...), got 'red dress'"),
]


@pytest.mark.parametrize("env_id", ["ShopRank-v0", "ShopRankSeq-v0"])
@pytest.mark.parametrize("cls, message", BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_broken_plugin_gives_simulator_error_with_exact_message(env_id: str, cls: type, message: str) -> None:
    world = get_world(FAST)
    env = gym.make(env_id, config=EnvConfig(world=FAST), simulator=cls(world.items, 10))
    with pytest.raises(SimulatorError) as err:
        env.reset(seed=0)
        for _ in range(10):  # the per-slot env needs N steps before the shopper responds
            env.step(env.action_space.sample())
    assert str(err.value) == message
    if cls is Raises:  # the plug-in's own exception is chained, not swallowed
        assert isinstance(err.value.__cause__, KeyError)


def test_broken_factories_by_import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(items, n_slots):
        raise RuntimeError("boom")

    class NoRespond:
        profile_dim = 0

        def reset(self, rng): ...
        def profile(self, state): ...
        def next_query(self, state, rng): ...
        def transition(self, state, query, slate, response, rng): ...

    monkeypatch.setattr(custom_shopper, "boom", boom, raising=False)
    monkeypatch.setattr(custom_shopper, "no_respond", lambda items, n: NoRespond(), raising=False)
    with pytest.raises(SimulatorError, match=re.escape(
            "simulator factory 'experiments.examples.custom_shopper:boom' failed: RuntimeError('boom')")):
        gym.make("ShopRankSeq-v0", config=EnvConfig(world=FAST, simulator="experiments.examples.custom_shopper:boom"))
    with pytest.raises(SimulatorError, match=re.escape(
            "simulator 'experiments.examples.custom_shopper:no_respond' does not satisfy UserSimulator: "
            "missing ['respond'].")):
        gym.make("ShopRank-v0", config=EnvConfig(world=FAST, simulator="experiments.examples.custom_shopper:no_respond"))
    with pytest.raises(ValueError, match=re.escape(
            "cannot import simulator 'experiments.examples.custom_shopper:nothing_here'")):
        gym.make("ShopRank-v0", config=EnvConfig(world=FAST, simulator="experiments.examples.custom_shopper:nothing_here"))


def test_transition_with_wrong_return_gives_simulator_error() -> None:
    env = gym.make("ShopRank-v0", config=EnvConfig(world=FAST), simulator=BareTransition(get_world(FAST).items, 10))
    env.reset(seed=0)
    with pytest.raises(SimulatorError, match=r"BareTransition\.transition must return \(new_state, left: bool\)"):
        env.step(env.action_space.sample())
