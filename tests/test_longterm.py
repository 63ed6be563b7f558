"""The long-term shopper (``simulators/longterm.py``): config checks, protocol, each dynamic's direction, the
planner's gain and its control.

Monte-Carlo comparisons use fixed seeds and require the difference to exceed several standard errors (the
margins are stated next to each assertion). Retrieval is a text-free stand-in: the ``K`` products that best
match the query's intent (ties by catalog row), so no world has to be built.
"""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest

from encoders.errors import ConfigError
from simulators.conformance import assert_conforms, default_items
from simulators.items import ItemTable
from simulators.longterm import (LongTermConfig, LongTermShopper, LongTermState, RewardWeights, candidate_terms,
                                 comeback_probability, engagement, estimate_visit_value, play, planner_scores,
                                 expected_return_probability, return_probability, trust_value)
from simulators.protocols import Response
from simulators.shopper import ShopperConfig

N, K = 10, 20
W = RewardWeights()


@pytest.fixture(scope="module")
def items() -> ItemTable:
    return default_items(n_products=600, seed=1)


@pytest.fixture(scope="module")
def sim(items: ItemTable) -> LongTermShopper:
    return LongTermShopper(items, n_slots=N)


def _retriever(sim: LongTermShopper):
    by_text = {sim.inner.query_text(intent): intent for intent in sim.inner.bank}
    everything = np.arange(sim.items.n)

    def retrieve(text: str) -> np.ndarray:
        rel = sim.inner.relevance(by_text[text], everything)
        return np.argsort(-rel, kind="stable")[:K].astype(np.int64)

    return retrieve


def _respond(n_clicks: int = 0, bought: tuple[int, ...] = ()) -> Response:
    clicks = np.zeros(N, dtype=bool)
    clicks[:n_clicks] = True
    purchases = np.zeros(N, dtype=bool)
    purchases[list(bought)] = True
    clicks |= purchases
    return Response(clicks=clicks, purchases=purchases, dwell=np.where(clicks, 10.0, 0.0).astype(np.float32))


# -- config ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, message", [
    ("gloss_weight", -1.0, "LongTermConfig.gloss_weight must be >= 0, got -1.0."),
    ("return_rate", -0.5, "LongTermConfig.return_rate must be >= 0, got -0.5."),
    ("trust_kept", -0.1, "LongTermConfig.trust_kept must be >= 0, got -0.1."),
    ("trust_returned", -0.1, "LongTermConfig.trust_returned must be >= 0, got -0.1."),
    ("trust_relevant", -0.1, "LongTermConfig.trust_relevant must be >= 0, got -0.1."),
    ("trust_wasted", -0.1, "LongTermConfig.trust_wasted must be >= 0, got -0.1."),
    ("trust_init_spread", -0.1, "LongTermConfig.trust_init_spread must be >= 0, got -0.1."),
    ("trust_init", 1.5, "LongTermConfig.trust_init must be in [0, 1], got 1.5."),
    ("engagement_floor", -0.2, "LongTermConfig.engagement_floor must be in [0, 1], got -0.2."),
    ("comeback_min", 1.2, "LongTermConfig.comeback_min must be in [0, 1], got 1.2."),
    ("comeback_max", 2.0, "LongTermConfig.comeback_max must be in [0, 1], got 2.0."),
    ("comeback_max", 0.1, "LongTermConfig.comeback_max must be >= comeback_min=0.3, got 0.1."),
    ("return_base", 1.0, "LongTermConfig.return_base must be in [0, 1), got 1.0."),
    ("quality_price", 1.5, "LongTermConfig.quality_price must be in [-1, 1], got 1.5."),
    ("max_visits", 0, "LongTermConfig.max_visits must be >= 1, got 0."),
    ("max_queries_per_visit", 0, "LongTermConfig.max_queries_per_visit must be >= 1, got 0."),
    ("mean_gap_days", 0.0, "LongTermConfig.mean_gap_days must be > 0, got 0.0."),
    ("latent_seed", -1, "LongTermConfig.latent_seed must be >= 0, got -1."),
    ("gloss_weight", "1", "LongTermConfig.gloss_weight must be a finite float, got '1'."),
    ("return_rate", float("nan"), "LongTermConfig.return_rate must be a finite float, got nan."),
    ("trust_init", float("inf"), "LongTermConfig.trust_init must be a finite float, got inf."),
    ("returns", 1, "LongTermConfig.returns must be a bool, got 1."),
    ("trust", "yes", "LongTermConfig.trust must be a bool, got 'yes'."),
    ("max_visits", 2.0, "LongTermConfig.max_visits must be an int, got 2.0."),
    ("latent_seed", True, "LongTermConfig.latent_seed must be an int, got True."),
])
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ConfigError) as err:
        LongTermConfig(**{field: value})
    assert str(err.value) == message


def test_shopper_rejects_a_config_of_another_type(items):
    with pytest.raises(ConfigError) as err:
        LongTermShopper(items, config={"max_visits": 3})
    assert str(err.value) == "config must be a LongTermConfig, got dict."


def test_photo_features_must_have_one_row_per_product(items):
    with pytest.raises(ConfigError) as err:
        LongTermShopper(items, photo=np.zeros((3, 4)))
    assert str(err.value) == f"photo features must be ({items.n}, d) (one row per product), got (3, 4)."


def test_estimate_visit_value_rejects_no_shoppers(sim):
    with pytest.raises(ConfigError) as err:
        estimate_visit_value(sim, _retriever(sim), W, N, n_shoppers=0)
    assert str(err.value) == "n_shoppers must be >= 1, got 0."


# -- protocol ----------------------------------------------------------------------------------------------
def test_conforms_to_the_simulator_protocol(items):
    report = assert_conforms(lambda table, n_slots: LongTermShopper(table, n_slots=n_slots), items=items,
                             n_sessions=30, max_queries=LongTermConfig().max_visits * 10)
    assert report.privileged and report.n_slates > 30


def test_same_seed_same_relationship_and_state_pickles(sim):
    retrieve = _retriever(sim)
    rank = lambda state, query, candidates: candidate_terms(sim, state, query, candidates, W, N)[0]  # noqa: E731
    first = play(sim, rank, retrieve, W, N, np.random.default_rng(7))
    again = play(sim, rank, retrieve, W, N, np.random.default_rng(7))
    assert first == again and first["queries"] > 1
    state = sim.reset(np.random.default_rng(3))
    copy = pickle.loads(pickle.dumps(state))
    assert copy.trust == state.trust and np.array_equal(copy.shopper.taste, state.shopper.taste)
    twin = pickle.loads(pickle.dumps(sim))
    assert np.array_equal(twin.gloss, sim.gloss) and twin.config == sim.config


def test_visit_signals_show_what_the_shop_knows_but_not_trust(sim):
    state = sim.reset(np.random.default_rng(0))
    low, high = replace(state, trust=0.1), replace(state, trust=0.9)
    assert np.array_equal(sim.visit_signals(low), sim.visit_signals(high))
    later = replace(state, visit=2, days_since_last_visit=15.0, visit_queries=5, n_kept=1, n_returns=2)
    cfg = sim.config
    assert np.allclose(sim.visit_signals(later), [2 / cfg.max_visits, 0.5, 5 / cfg.max_queries_per_visit, 0.2, 0.4])


# -- gloss and returns -------------------------------------------------------------------------------------
def test_gloss_raises_click_and_purchase_probability(items):
    glossy, plain = (LongTermShopper(items, LongTermConfig(gloss_weight=w), n_slots=N) for w in (1.0, 0.0))
    state = glossy.reset(np.random.default_rng(1))
    query = glossy.next_query(state, np.random.default_rng(2))
    rows = np.arange(items.n)
    a1, b1, _ = glossy.item_probabilities(state, query.intent, rows, boredom=False)
    a0, b0, _ = plain.item_probabilities(state, query.intent, rows, boredom=False)
    up, down = glossy.gloss > 0.5, glossy.gloss < -0.5
    assert np.all(a1[up] > a0[up]) and np.all(b1[up] > b0[up])
    assert np.all(a1[down] < a0[down]) and np.all(b1[down] < b0[down])


def test_return_probability_grows_with_the_shortfall_and_returns_switch_off():
    cfg = LongTermConfig()
    p = return_probability(cfg, np.array([0.0, 0.5, 1.0, 3.0]))
    assert p[0] == pytest.approx(cfg.return_base) and np.all(np.diff(p) > 0)
    assert np.all(return_probability(replace(cfg, returns=False), np.array([0.0, 3.0])) == 0)


def test_gloss_is_a_direction_of_the_photo_features(items):
    photo = np.random.default_rng(0).normal(size=(items.n, 12))
    sim = LongTermShopper(items, photo=photo)
    fit, *_ = np.linalg.lstsq(np.column_stack([photo, np.ones(items.n)]), sim.gloss, rcond=None)
    residual = sim.gloss - np.column_stack([photo, np.ones(items.n)]) @ fit
    assert np.abs(residual).max() < 1e-9  # exactly linear in the photo features
    assert abs(np.corrcoef(sim.gloss, sim.quality)[0, 1]) < 0.15  # the photo does not reveal quality


def _end_visit(sim: LongTermShopper, state: LongTermState, bought: tuple[int, ...], seed: int):
    """One query that buys the slate positions ``bought`` and then ends the visit (query budget spent)."""
    state = replace(state, visit_queries=sim.config.max_queries_per_visit - 1)
    query = sim.next_query(state, np.random.default_rng(seed))
    slate = np.arange(N, dtype=np.int64) + 10 * seed % (sim.items.n - N)
    return sim.transition(state, query, slate, _respond(N, bought), np.random.default_rng(seed))


def test_returns_happen_at_visit_end_and_lower_trust(items):
    cfg = LongTermConfig(return_base=0.5, return_rate=0.0, trust_relevant=0.0)  # every purchase: 50% return
    sim = LongTermShopper(items, cfg, ShopperConfig(p_continue_after_purchase=1.0), n_slots=N)
    start = replace(sim.reset(np.random.default_rng(0)), trust=0.5)
    query = sim.next_query(start, np.random.default_rng(0))
    mid, _ = sim.transition(start, query, np.arange(N, dtype=np.int64), _respond(N, (0, 1)), np.random.default_rng(0))
    assert mid.returned == () and len(mid.pending) == 2  # nothing comes back during the visit
    n_returned, deltas = 0, []
    for seed in range(200):
        end, _ = _end_visit(sim, start, (0, 1, 2), seed)
        n_returned += len(end.returned)
        deltas.append((end.trust - start.trust, len(end.returned)))
        assert end.n_returns == len(end.returned) and end.n_kept == 3 - len(end.returned)
    assert 0.4 < n_returned / 600 < 0.6  # 600 purchases at p = 0.5: 0.1 is 5 standard errors
    for delta, r in deltas:  # kept purchases raise trust, returns lower it, by the configured steps
        assert delta == pytest.approx((3 - r) * cfg.trust_kept - r * cfg.trust_returned)
    off = LongTermShopper(items, replace(cfg, returns=False), n_slots=N)
    assert all(_end_visit(off, start, (0, 1, 2), seed)[0].returned == () for seed in range(20))


# -- trust and retention -----------------------------------------------------------------------------------
def test_trust_scales_engagement_and_coming_back(sim):
    state = sim.reset(np.random.default_rng(4))
    query = sim.next_query(state, np.random.default_rng(4))
    slate = np.arange(N, dtype=np.int64)
    low = sim.expected_response(replace(state, trust=0.1), query, slate)
    high = sim.expected_response(replace(state, trust=0.9), query, slate)
    shown = low.click_prob > 0
    assert np.all(high.click_prob[shown] > low.click_prob[shown])
    assert high.purchase_prob.sum() > low.purchase_prob.sum()
    assert comeback_probability(sim.config, 0.9) > comeback_probability(sim.config, 0.1)
    cfg = replace(sim.config, trust_kept=0.0, trust_returned=0.0, trust_relevant=0.0)
    fixed = LongTermShopper(sim.items, cfg, n_slots=N)
    back = {t: np.mean([not _end_visit(fixed, replace(state, trust=t), (), s)[1] for s in range(400)])
            for t in (0.1, 0.9)}
    for t, rate in back.items():  # 400 visit ends: SE <= 0.025, so 0.08 is over 3 SE
        assert abs(rate - comeback_probability(cfg, t)) < 0.08
    assert back[0.9] - back[0.1] > 0.3


def test_relevant_results_raise_trust_and_wasted_queries_lower_it(sim):
    state = replace(sim.reset(np.random.default_rng(5)), trust=0.5)
    query = sim.next_query(state, np.random.default_rng(5))
    rel = sim.inner.relevance(query.intent, np.arange(sim.items.n))
    relevant = np.argsort(-rel, kind="stable")[:N].astype(np.int64)
    irrelevant = np.argsort(rel, kind="stable")[:N].astype(np.int64)
    rng = np.random.default_rng(0)
    after_good, _ = sim.transition(state, query, relevant, _respond(n_clicks=2), rng)
    after_wasted, _ = sim.transition(state, query, irrelevant, _respond(n_clicks=0), rng)
    assert after_good.trust == pytest.approx(0.5 + sim.config.trust_relevant * np.mean(rel[relevant] >= 0.5))
    assert after_wasted.trust == pytest.approx(0.5 - sim.config.trust_wasted)
    frozen = sim.with_trust_fixed()
    assert frozen.transition(state, query, irrelevant, _respond(), rng)[0].trust == 0.5


def test_no_return_ends_the_relationship_and_max_visits_caps_it(items):
    never = LongTermShopper(items, LongTermConfig(comeback_min=0.0, comeback_max=0.0), n_slots=N)
    state = never.reset(np.random.default_rng(0))
    end, left = _end_visit(never, state, (), 1)
    assert left and end.visit == 0
    always = LongTermShopper(items, LongTermConfig(comeback_min=1.0, comeback_max=1.0, max_visits=2), n_slots=N)
    state = always.reset(np.random.default_rng(0))
    second, left = _end_visit(always, state, (), 1)
    assert not left and second.visit == 1 and second.visit_queries == 0 and second.days_since_last_visit > 0
    assert second.shopper.patience == always.inner.config.patience and second.shopper.intent is None
    _, left = _end_visit(always, second, (), 2)
    assert left


# -- the planner -------------------------------------------------------------------------------------------
def test_trust_value_is_positive_and_zero_without_trust_or_future():
    cfg = LongTermConfig()
    assert trust_value(cfg, 0.5, 3, 20.0) > trust_value(cfg, 0.5, 1, 20.0) > 0
    assert trust_value(cfg, 0.5, 0, 20.0) == 0 and trust_value(replace(cfg, trust=False), 0.5, 3, 20.0) == 0


def test_planner_reduces_to_the_myopic_value_without_the_dynamics(items):
    off = LongTermShopper(items, LongTermConfig().without_dynamics(), n_slots=N)
    state = off.reset(np.random.default_rng(3))
    query = off.next_query(state, np.random.default_rng(3))
    candidates = _retriever(off)(query.text)
    immediate, refund, d_trust = candidate_terms(off, state, query, candidates, W, N)
    assert np.all(refund == 0) and np.all(d_trust == 0) and np.isfinite(immediate).all()
    assert np.array_equal(planner_scores(off, state, query, candidates, W, 25.0, N), immediate)


def _compare(sim: LongTermShopper, n: int) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    retrieve = _retriever(sim)
    value = estimate_visit_value(sim, retrieve, W, N, n_shoppers=32)
    myopic = lambda s, q, c: candidate_terms(sim, s, q, c, W, N)[0]  # noqa: E731
    planner = lambda s, q, c: planner_scores(sim, s, q, c, W, value, N)  # noqa: E731
    runs = {name: [play(sim, rank, retrieve, W, N, np.random.default_rng([i, 11])) for i in range(n)]
            for name, rank in (("myopic", myopic), ("planner", planner))}
    rate = sum(r["returns"] for r in runs["myopic"]) / sum(r["purchases"] for r in runs["myopic"])
    return (np.array([r["reward"] for r in runs["myopic"]]), np.array([r["reward"] for r in runs["planner"]]),
            {"myopic_return_rate": rate})


def test_planner_beats_the_myopic_ranker_and_default_returns_are_15_to_30_percent(sim):
    myopic, planner, stats = _compare(sim, 150)
    diff = planner - myopic
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    assert diff.mean() > 2.5 * se  # the long-term gain is real (measured: 3.4 SE, ratio 1.29)
    assert planner.mean() > 1.15 * myopic.mean()
    assert 0.15 <= stats["myopic_return_rate"] <= 0.30


def test_the_planning_gain_disappears_with_the_dynamics_off(items):
    off = LongTermShopper(items, LongTermConfig().without_dynamics(), n_slots=N)
    myopic, planner, _ = _compare(off, 40)
    assert np.array_equal(myopic, planner)  # same scores, same draws: the same relationships
    assert engagement(off.config, 0.5) < 1  # trust still scales engagement; it just never moves


def test_expected_return_probability_is_the_mean_over_hidden_quality_given_gloss_and_price():
    cfg = LongTermConfig()
    rng = np.random.default_rng(5)
    gloss, price_z = rng.normal(size=6), rng.normal(size=6)
    quality = cfg.quality_price * price_z[:, None] + np.sqrt(1 - cfg.quality_price ** 2) * rng.normal(size=(6, 100_000))
    monte_carlo = return_probability(cfg, np.maximum(0.0, gloss[:, None] - quality)).mean(axis=1)
    np.testing.assert_allclose(expected_return_probability(cfg, gloss, price_z), monte_carlo, atol=2e-3)
    exact = replace(cfg, quality_price=1.0)  # quality = price: nothing hidden, the true probability
    np.testing.assert_allclose(expected_return_probability(exact, gloss, price_z),
                               return_probability(exact, np.maximum(0.0, gloss - price_z)))
    assert np.all(expected_return_probability(replace(cfg, returns=False), gloss, price_z) == 0.0)


def test_observable_planner_reads_no_hidden_state(sim):
    """Two shoppers who differ only in hidden traits (taste, trust) get the same observable plan, not the same
    privileged one; the observable plan uses the expected, not the true, return probabilities."""
    retrieve = _retriever(sim)
    rng = np.random.default_rng(2)
    state = sim.reset(rng)
    query = sim.next_query(state, rng)
    candidates = retrieve(query.text)
    shift = np.linspace(-0.5, 0.5, len(state.shopper.taste)).astype(np.float32)
    noise = state.shopper.profile_noise.copy()
    noise[: len(shift)] -= shift  # the same profile (taste + noise), another taste: hidden traits differ
    other = replace(state, trust=1.0 - state.trust,
                    shopper=replace(state.shopper, taste=state.shopper.taste + shift, profile_noise=noise))
    np.testing.assert_allclose(sim.profile(other), sim.profile(state), atol=1e-6)
    weights = RewardWeights(1.0, 1.0, 0.02)
    plan = lambda s, observable: planner_scores(sim, s, query, candidates, weights, 5.0, 10, observable)  # noqa: E731
    np.testing.assert_allclose(plan(state, True), plan(other, True), rtol=1e-5)
    assert not np.allclose(plan(state, False), plan(other, False))
    assert not np.allclose(sim.p_return_observable, sim.p_return)


def test_utility_scores_all_candidates_in_one_call_as_the_slate_response_does(sim):
    from simulators.batch import LoopShopper, slate_free_utility

    rng = np.random.default_rng(4)
    state = sim.reset(rng)
    query = sim.next_query(state, rng)
    candidates = rng.choice(len(sim.items.prices), size=2 * N, replace=False)
    candidates[3] = -1
    chunked = np.concatenate([sim.expected_response(state, query, candidates[i:i + N]).utility
                              for i in range(0, len(candidates), N)])
    assert np.array_equal(sim.utility(state, query.intent, candidates), chunked)
    assert slate_free_utility(sim) and LoopShopper(sim, N, lambda texts: None)._fast_utility

    class Overridden(LongTermShopper):  # other probabilities: the generic per-chunk path
        def item_probabilities(self, state, intent, slate, boredom=True):
            return super().item_probabilities(state, intent, slate, boredom)

    assert not slate_free_utility(Overridden(sim.items, n_slots=N))
    assert not slate_free_utility(object())
