"""The conformance checker accepts good simulators and rejects each kind of broken one with a fix-it message."""

from __future__ import annotations

import re

import numpy as np
import pytest

from experiments.examples.custom_shopper import PopularityShopper
from simulators.conformance import ConformanceError, ConformanceReport, assert_conforms, check_simulator, default_items
from simulators.items import ItemTable
from simulators.protocols import ExpectedResponse, Query, Response
from simulators.shopper import DefaultShopper, ShopperConfig

from tests.broken_shoppers import BareTransition, FloatClicks, Raises, StringQuery, WrongProfile


@pytest.fixture(scope="module")
def items() -> ItemTable:
    return default_items()


def test_default_shopper_conforms(items: ItemTable) -> None:
    report = assert_conforms(lambda it, n: DefaultShopper(it, n_slots=n), items=items, n_sessions=30)
    assert isinstance(report, ConformanceReport) and report.privileged and report.name == "DefaultShopper"
    assert report.n_sessions == 30 and report.mean_queries >= 1 and 0 < report.ctr < 1


def test_endless_sessions_need_max_queries_none(items: ItemTable) -> None:
    endless = lambda it, n: DefaultShopper(it, ShopperConfig(query_bank_size=50).without_dynamics(), n_slots=n)  # noqa: E731
    with pytest.raises(ConformanceError, match=re.escape(
            "DefaultShopper does not conform to UserSimulator: session 0 did not end within 20 queries "
            "(transition never returned left=True). Fix: let the shopper leave")):
        check_simulator(endless, items=items, n_sessions=2, max_queries=20)
    assert check_simulator(endless, items=items, n_sessions=2, max_queries=None).mean_queries == 50


# -- broken plug-ins: one defect each -----------------------------------------------------------------


class ShortClicks(PopularityShopper):
    def respond(self, state, query, slate, rng):
        r = super().respond(state, query, slate, rng)
        return Response(clicks=r.clicks[:-1], purchases=r.purchases, dwell=r.dwell)


class ClicksEmptySlots(PopularityShopper):
    def respond(self, state, query, slate, rng):
        r = super().respond(state, query, slate, rng)
        clicks = np.ones(len(slate), dtype=bool)
        return Response(clicks=clicks, purchases=r.purchases & clicks, dwell=np.where(clicks, 1.0, 0.0))


class BuysWithoutClick(PopularityShopper):
    def respond(self, state, query, slate, rng):
        n = len(slate)
        return Response(clicks=np.zeros(n, bool), purchases=slate >= 0, dwell=np.zeros(n))


class DwellWithoutClick(PopularityShopper):
    def respond(self, state, query, slate, rng):
        r = super().respond(state, query, slate, rng)
        return Response(clicks=r.clicks, purchases=r.purchases, dwell=np.full(len(slate), 5.0))


class GlobalRandom(PopularityShopper):
    def transition(self, state, query, slate, response, rng):
        return state, bool(np.random.random() < 0.3)


class Stateful(PopularityShopper):
    """Grows more impatient with every session it has ever seen (state kept on the object)."""

    calls = 0

    def transition(self, state, query, slate, response, rng):
        self.calls += 1
        return state, bool(rng.random() < min(1.0, self.calls / 50))


class BadProbabilities(PopularityShopper):
    def expected_response(self, state, query, slate):
        n = len(slate)
        return ExpectedResponse(click_prob=np.full(n, 0.5), purchase_prob=np.full(n, 1.5), utility=np.zeros(n))


class BuyMoreThanClick(PopularityShopper):
    def expected_response(self, state, query, slate):
        n = len(slate)
        click = np.where(slate >= 0, 0.2, 0.0)
        return ExpectedResponse(click_prob=click, purchase_prob=click * 2, utility=np.zeros(n))


class MissingRespond:
    profile_dim = 0

    def reset(self, rng): ...
    def profile(self, state): ...
    def next_query(self, state, rng): ...
    def transition(self, state, query, slate, response, rng): ...


BROKEN = [
    (FloatClicks, "respond(...).clicks must be a bool array, got dtype float64. Fix: return "
                  "np.asarray(clicks, dtype=bool)"),
    (ShortClicks, "respond(...).clicks must have shape (10,) (one entry per slot), got shape (9,)"),
    (ClicksEmptySlots, "respond clicked an empty slot"),
    (BuysWithoutClick, "respond returned a purchase without a click at the same position. Fix: sample purchases "
                       "among clicks only"),
    (DwellWithoutClick, "respond(...).dwell is non-zero on a slot that was not clicked. Fix: dwell = "
                        "np.where(clicks, seconds, 0.0)"),
    (Raises, "respond(...) raised KeyError('no such item'). Fix: make respond work"),
    (WrongProfile, "profile must return finite floats of shape (1,) (profile_dim), got float32 (3,)"),
    (StringQuery, "next_query must return simulators.protocols.Query with non-empty text, got 'red dress'"),
    (BareTransition, "transition must return (new_state, left: bool), got True. Fix: return new_state, bool(left)"),
    (GlobalRandom, "two runs with the same seed differ (first at session 0, query"),
    (Stateful, "two runs with the same seed differ"),
    (BadProbabilities, "expected_response(...).purchase_prob must be probabilities in [0, 1], got [1.5,"),
    (BuyMoreThanClick, "expected_response(...).purchase_prob exceeds click_prob. Fix: purchase_prob = click_prob"),
    (MissingRespond, "MissingRespond does not conform to UserSimulator: missing ['respond']. Fix: implement every "
                     "member"),
]


@pytest.mark.parametrize("cls, message", BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_broken_simulator_fails_with_fix_it_message(items: ItemTable, cls: type, message: str) -> None:
    factory = (lambda it, n: cls()) if cls is MissingRespond else (lambda it, n: cls(it, n))
    with pytest.raises(ConformanceError, match=re.escape(message)):
        check_simulator(factory, items=items, n_sessions=10)
    assert issubclass(ConformanceError, AssertionError)  # pytest reports it as a plain failure


def test_factory_problems_are_reported(items: ItemTable) -> None:
    def bad_factory(it, n):
        raise RuntimeError("boom")

    with pytest.raises(ConformanceError, match=re.escape(
            "raised RuntimeError('boom'). Fix: a factory must accept (items: ItemTable, n_slots: int)")):
        check_simulator(bad_factory, items=items)
    with pytest.raises(ConformanceError, match="cannot import simulator factory 'nowhere.module:make'"):
        check_simulator("nowhere.module:make", items=items)
    with pytest.raises(ConformanceError, match="expected a UserSimulator, a factory"):
        check_simulator(42, items=items)


def test_checker_leaves_global_random_state_alone(items: ItemTable) -> None:
    np.random.seed(7)
    expected = np.random.get_state()[1].copy()
    np.random.seed(7)
    check_simulator(lambda it, n: PopularityShopper(it, n), items=items, n_sessions=5)
    assert np.array_equal(np.random.get_state()[1], expected)


def test_query_type_is_protocol_query() -> None:
    assert Query("x").intent is None


# -- the batched path (the vector env's LoopShopper) ----------------------------------------------------------------


class RemembersQuery(PopularityShopper):
    """Conforms when sessions run one at a time, but keeps the last query on itself: interleaved sessions
    (the vector env) respond to another session's query."""

    def next_query(self, state, rng):
        self._last = super().next_query(state, rng)
        return self._last

    def respond(self, state, query, slate, rng):
        return super().respond(state, self._last, slate, rng)


def test_batched_path_is_checked(items: ItemTable) -> None:
    report = assert_conforms(lambda it, n: PopularityShopper(it, n_slots=n), items=items, n_sessions=12)
    assert report.batch_size == 12


def test_state_kept_on_the_simulator_fails_the_batched_path(items: ItemTable) -> None:
    with pytest.raises(ConformanceError, match=re.escape(
            "RemembersQuery does not conform to UserSimulator: sessions played interleaved (as the vector env "
            "plays them, through simulators.batch.LoopShopper) differ from the same sessions played one at a "
            "time (first at session 0, query")):
        check_simulator(lambda it, n: RemembersQuery(it, n_slots=n), items=items, n_sessions=12)
