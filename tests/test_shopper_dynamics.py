"""Each dynamic effect of the default shopper moves behaviour in its documented direction.

Every test switches all dynamics off (``ShopperConfig.without_dynamics``) and turns one effect back on,
so the effect is measured alone; Monte-Carlo comparisons use a fixed seed and require the difference to
exceed several standard errors (the margins are stated next to each assertion).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from simulators.conformance import default_items
from simulators.items import ItemTable
from simulators.protocols import Query, Response
from simulators.shopper import DefaultShopper, ShopperConfig, ShopperState

N = 10
OFF = replace(ShopperConfig(), query_bank_size=300).without_dynamics()


@pytest.fixture(scope="module")
def items() -> ItemTable:
    return default_items(n_products=600, seed=1)


def _relevant_slate(shopper: DefaultShopper, query: Query) -> np.ndarray:
    rel = shopper.relevance(query.intent, np.arange(shopper.items.n))
    return np.argsort(-rel, kind="stable")[:N].astype(np.int64)


def _irrelevant_slate(shopper: DefaultShopper, query: Query) -> np.ndarray:
    rel = shopper.relevance(query.intent, np.arange(shopper.items.n))
    slate = np.argsort(rel, kind="stable")[:N].astype(np.int64)
    assert np.all(rel[slate] < 0.5)
    return slate


def _sessions(shopper: DefaultShopper, slate_fn, n: int, cap: int = 30, seed: int = 0):
    """Play ``n`` sessions of at most ``cap`` queries; returns lengths and per-slate (bought, left) pairs."""
    rng = np.random.default_rng(seed)
    lengths, after_purchase = [], []
    for _ in range(n):
        state, left, length = shopper.reset(rng), False, 0
        while not left and length < cap:
            query = shopper.next_query(state, rng)
            slate = slate_fn(shopper, query)
            response = shopper.respond(state, query, slate, rng)
            state, left = shopper.transition(state, query, slate, response, rng)
            length += 1
            if response.purchases.any():
                after_purchase.append(left)
        lengths.append(length)
    return np.array(lengths), np.array(after_purchase, dtype=bool)


# -- boredom ------------------------------------------------------------------------------------------
def _with_groups(items: ItemTable, slate: np.ndarray, same_group: bool) -> ItemTable:
    """``items`` whose similarity makes the slate's products near-duplicates (or all distinct)."""
    sim = np.eye(items.n, dtype=np.float32)  # every product distinct from every other
    if same_group:
        sim[slate] = sim[slate[0]]  # the slate's products share one vector: cosine 1
    return replace(items, similarity=sim)


@pytest.mark.parametrize("boredom", [0.3])
def test_boredom_near_duplicates_get_fewer_clicks_than_diverse_slate(items: ItemTable, boredom: float) -> None:
    # The same 10 products (equal relevance, taste and price terms in both arms); only whether they are
    # near-duplicates of each other differs.
    config = replace(OFF, boredom=boredom)
    rng = np.random.default_rng(0)
    dup_shopper = DefaultShopper(_with_groups(items, np.arange(N), True), config, n_slots=N)
    div_shopper = DefaultShopper(_with_groups(items, np.arange(N), False), config, n_slots=N)
    clicks = {"dup": 0, "div": 0}
    n_shoppers, reps = 200, 20
    for _ in range(n_shoppers):
        state = dup_shopper.reset(rng)
        query = dup_shopper.next_query(state, rng)
        slate = _relevant_slate(dup_shopper, query)
        for name, shopper in (("dup", DefaultShopper(_with_groups(items, slate, True), config, n_slots=N)),
                              ("div", DefaultShopper(_with_groups(items, slate, False), config, n_slots=N))):
            for _ in range(reps):
                clicks[name] += int(shopper.respond(state, query, slate, rng).clicks.sum())
    n = n_shoppers * reps
    mean_dup, mean_div = clicks["dup"] / n, clicks["div"] / n
    se = math.sqrt((mean_dup + mean_div) / n)  # Poisson-ish bound on the SE of the difference
    assert mean_div - mean_dup > 6 * se, (mean_dup, mean_div, se)
    # Closed form: the top slot is untouched, slot k keeps (1 - boredom) ** k of its attractiveness.
    state = div_shopper.reset(np.random.default_rng(1))
    query = div_shopper.next_query(state, np.random.default_rng(1))
    slate = np.arange(N, dtype=np.int64)
    a_dup, _, _ = dup_shopper.item_probabilities(state, query.intent, slate)
    a_div, _, _ = div_shopper.item_probabilities(state, query.intent, slate)
    np.testing.assert_allclose(a_dup, a_div * (1 - boredom) ** np.arange(N))


def test_boredom_off_means_duplicates_do_not_matter(items: ItemTable) -> None:
    slate = np.arange(N, dtype=np.int64)
    dup = DefaultShopper(_with_groups(items, slate, True), OFF, n_slots=N)
    div = DefaultShopper(_with_groups(items, slate, False), OFF, n_slots=N)
    state = dup.reset(np.random.default_rng(2))
    query = dup.next_query(state, np.random.default_rng(2))
    np.testing.assert_array_equal(dup.expected_response(state, query, slate).click_prob,
                                  div.expected_response(state, query, slate).click_prob)


# -- drift --------------------------------------------------------------------------------------------
def test_drift_moves_taste_toward_clicked_products(items: ItemTable) -> None:
    rng = np.random.default_rng(3)
    shopper = DefaultShopper(items, replace(OFF, drift=0.2), n_slots=N)
    frozen = DefaultShopper(items, OFF, n_slots=N)
    bright = np.argsort(-items.visual_z[:, 0])  # lightest products first
    clicked, held_out = bright[:3], bright[3:40]  # click 3 light products; probe 37 other light ones
    slate = np.concatenate([clicked, bright[-7:]]).astype(np.int64)
    response = Response(clicks=np.arange(N) < 3, purchases=np.zeros(N, bool), dwell=np.zeros(N, np.float32))
    gains = []
    for _ in range(300):
        state = shopper.reset(rng)
        query = shopper.next_query(state, rng)
        after, _ = shopper.transition(state, query, slate, response, rng)
        target = items.visual_z[clicked].mean(axis=0)
        # exact: the distance to the clicked products' look shrinks by (1 - drift)
        np.testing.assert_allclose(np.linalg.norm(after.taste - target),
                                   0.8 * np.linalg.norm(state.taste - target), rtol=1e-5)
        assert np.array_equal(frozen.transition(state, query, slate, response, rng)[0].taste, state.taste)
        before_a = shopper.item_probabilities(state, query.intent, held_out)[0]
        after_a = shopper.item_probabilities(after, query.intent, held_out)[0]
        gains.append(float(np.mean(after_a - before_a)))
    gains = np.array(gains)
    # Behaviour: other light-coloured products became more attractive (t-statistic > 8).
    assert gains.mean() > 8 * gains.std(ddof=1) / math.sqrt(len(gains)), (gains.mean(), gains.std())


# -- fatigue ------------------------------------------------------------------------------------------
def test_fatigue_irrelevant_slates_shorten_sessions(items: ItemTable) -> None:
    tired = DefaultShopper(items, replace(OFF, patience=3.0, fatigue=1.0), n_slots=N)
    len_irr, _ = _sessions(tired, _irrelevant_slate, 100)
    len_rel, _ = _sessions(tired, _relevant_slate, 100)
    # all-irrelevant slates cost 1 patience each: exactly 3 queries; relevant ones cost (almost) nothing
    assert np.all(len_irr == 3)
    assert len_rel.mean() > 3 + 10, len_rel.mean()
    # fatigue off: irrelevant slates no longer end sessions (they run to the 30-query cap)
    rested = DefaultShopper(items, replace(OFF, patience=3.0, fatigue=0.0), n_slots=N)
    assert np.all(_sessions(rested, _irrelevant_slate, 50)[0] == 30)


def test_no_click_penalty_shortens_sessions_without_clicks(items: ItemTable) -> None:
    def empty(shopper: DefaultShopper, query: Query) -> np.ndarray:
        return np.full(N, -1, dtype=np.int64)

    penal = DefaultShopper(items, replace(OFF, patience=2.0, no_click_penalty=0.5), n_slots=N)
    assert np.all(_sessions(penal, empty, 20)[0] == 4)  # 2 / 0.5


# -- satisfaction after purchase ----------------------------------------------------------------------
@pytest.mark.parametrize("p_continue", [0.0, 0.5, 1.0])
def test_purchase_ends_or_continues_session_per_p_continue(items: ItemTable, p_continue: float) -> None:
    shopper = DefaultShopper(items, replace(OFF, p_continue_after_purchase=p_continue), n_slots=N)
    _, left_after_purchase = _sessions(shopper, _relevant_slate, 300, cap=10, seed=4)
    n = len(left_after_purchase)
    assert n > 200
    rate = left_after_purchase.mean()
    se = math.sqrt(max(p_continue * (1 - p_continue), 1e-12) / n)
    assert abs(rate - (1 - p_continue)) <= 4 * se + 1e-12, (rate, n)


def test_purchase_satisfies_intent_and_no_purchase_keeps_it(items: ItemTable) -> None:
    shopper = DefaultShopper(items, OFF, n_slots=N)
    rng = np.random.default_rng(5)
    state = shopper.reset(rng)
    query = shopper.next_query(state, rng)
    slate = _relevant_slate(shopper, query)
    bought = Response(clicks=np.arange(N) == 0, purchases=np.arange(N) == 0, dwell=np.zeros(N, np.float32))
    looked = Response(clicks=np.arange(N) == 0, purchases=np.zeros(N, bool), dwell=np.zeros(N, np.float32))
    assert shopper.transition(state, query, slate, bought, rng)[0].intent is None  # new intent next query
    kept = shopper.transition(state, query, slate, looked, rng)[0]
    assert kept.intent == query.intent and shopper.next_query(kept, rng).text == query.text


# -- patience -----------------------------------------------------------------------------------------
def test_patience_lower_patience_abandons_sooner(items: ItemTable) -> None:
    def mixed(shopper: DefaultShopper, query: Query) -> np.ndarray:  # half relevant, half not
        return np.concatenate([_relevant_slate(shopper, query)[:5], _irrelevant_slate(shopper, query)[:5]])

    means = {}
    for patience in (1.0, 3.0, math.inf):
        shopper = DefaultShopper(items, replace(OFF, patience=patience, fatigue=1.0, no_click_penalty=0.5),
                                 n_slots=N)
        means[patience] = _sessions(shopper, mixed, 100, seed=6)[0].mean()
    assert means[1.0] + 1 < means[3.0] < means[math.inf] == 30, means


# -- purchase funnel: price and willingness to pay ----------------------------------------------------
def _repriced(items: ItemTable, rows: np.ndarray, factor: float) -> ItemTable:
    """``items`` with the products ``rows`` priced ``factor`` times higher (rest of the catalog unchanged)."""
    prices = items.prices.astype(np.float64).copy()
    logp = np.log1p(prices)
    mean, std = logp.mean(), logp.std()
    prices[rows] *= factor
    price_z = ((np.log1p(prices) - mean) / std).astype(np.float32)
    return replace(items, prices=prices.astype(np.float32), price_z=price_z)


def test_higher_price_lowers_purchase_probability(items: ItemTable) -> None:
    rng = np.random.default_rng(7)
    config = OFF
    base = DefaultShopper(items, config, n_slots=N)
    buys = {1.0: [0, 0], 1.6: [0, 0]}  # factor -> [purchases, clicks]
    for _ in range(150):
        state = base.reset(rng)
        query = base.next_query(state, rng)
        slate = _relevant_slate(base, query)
        p_buy = {}
        for factor in buys:
            shopper = DefaultShopper(_repriced(items, slate, factor), config, n_slots=N)
            p_buy[factor] = shopper.item_probabilities(state, query.intent, slate)[1]
            for _ in range(20):
                resp = shopper.respond(state, query, slate, rng)
                buys[factor][0] += int(resp.purchases.sum())
                buys[factor][1] += int(resp.clicks.sum())
        assert np.all(p_buy[1.6] < p_buy[1.0])  # pointwise, for every shopper and product
    rate = {f: b / c for f, (b, c) in buys.items()}
    se = math.sqrt(sum(r * (1 - r) / buys[f][1] for f, r in rate.items()))
    assert rate[1.0] - rate[1.6] > 5 * se, (rate, se)


def test_willingness_to_pay_budget(items: ItemTable) -> None:
    shopper = DefaultShopper(items, OFF, n_slots=N)
    state = shopper.reset(np.random.default_rng(8))
    query = shopper.next_query(state, np.random.default_rng(8))
    slate = _relevant_slate(shopper, query)
    rich, poor = replace(state, willingness_to_pay=2.0), replace(state, willingness_to_pay=-1.0)
    p_rich = shopper.item_probabilities(rich, query.intent, slate)[1]
    p_poor = shopper.item_probabilities(poor, query.intent, slate)[1]
    assert np.all(p_poor < p_rich)
    # budget in currency: type median price * exp(w); a rich shopper's budget covers every shown price
    assert np.all(shopper.budget(rich, slate) > items.prices[slate])
    # no budget (w = inf) or buy_over_budget = 0: the budget term vanishes
    free = replace(state, willingness_to_pay=math.inf)
    off = DefaultShopper(items, replace(OFF, buy_over_budget=0.0), n_slots=N)
    np.testing.assert_allclose(shopper.item_probabilities(free, query.intent, slate)[1],
                               off.item_probabilities(poor, query.intent, slate)[1])
    # attractiveness (clicks) does not depend on the budget: it acts after the click
    np.testing.assert_array_equal(shopper.item_probabilities(rich, query.intent, slate)[0],
                                  shopper.item_probabilities(poor, query.intent, slate)[0])


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError, match=r"ShopperConfig.boredom must be in \[0, 1\], got 1.5"):
        ShopperConfig(boredom=1.5)
    with pytest.raises(ValueError, match=r"ShopperConfig.buy_over_budget must be >= 0, got -1"):
        ShopperConfig(buy_over_budget=-1)
    cfg = ShopperConfig().without_dynamics()
    assert (cfg.drift, cfg.boredom, cfg.fatigue, cfg.no_click_penalty, cfg.patience,
            cfg.p_continue_after_purchase) == (0.0, 0.0, 0.0, 0.0, math.inf, 1.0)
    assert isinstance(ShopperState(0, np.zeros(2, np.float32), 1.0, np.zeros(3, np.float32), 1.0)
                      .willingness_to_pay, float)


def test_utility_matches_item_probabilities(items):
    shopper = DefaultShopper(items, OFF, n_slots=N)
    rng = np.random.default_rng(3)
    state = shopper.reset(rng)
    query = shopper.next_query(state, rng)
    rows = np.array([5, -1, 17, 3, 599], dtype=np.int64)
    np.testing.assert_allclose(shopper.utility(state, query.intent, rows),
                               shopper.item_probabilities(state, query.intent, rows)[2], rtol=1e-12)


def test_observable_state_depends_only_on_what_the_profile_shows(items):
    shopper = DefaultShopper(items, ShopperConfig(query_bank_size=300), n_slots=N)
    state = shopper.reset(np.random.default_rng(0))
    # another shopper with different hidden traits but the same observed profile
    shift = np.full(items.visual_dim, 0.7, dtype=np.float32)
    twin = replace(state, taste=state.taste + shift, profile_noise=state.profile_noise - np.append(shift, 0.4),
                   price_sensitivity=state.price_sensitivity + 0.4, willingness_to_pay=2.0)
    np.testing.assert_allclose(shopper.profile(twin), shopper.profile(state), atol=1e-6)
    a, b = shopper.observable_state(state), shopper.observable_state(twin)
    np.testing.assert_allclose(a.taste, b.taste, atol=1e-6)
    assert a.price_sensitivity == pytest.approx(b.price_sensitivity, abs=1e-6)
    assert a.willingness_to_pay == b.willingness_to_pay == shopper.config.budget_mean
    noise_var = shopper.config.profile_noise ** 2  # posterior mean of N(0, I) taste seen through the noise
    np.testing.assert_allclose(a.taste, shopper.profile(state)[3:-1] / (1 + noise_var), rtol=1e-6)


def test_posterior_samples_centre_on_the_plug_in_estimate_and_use_only_the_profile(items):
    shopper = DefaultShopper(items, ShopperConfig(query_bank_size=300), n_slots=N)
    state = shopper.reset(np.random.default_rng(0))
    draws = shopper.posterior_samples(state, 4000, np.random.default_rng(1))
    assert len(draws) == 4000
    tastes = np.stack([d.taste for d in draws])
    plug_in = shopper.observable_state(state)
    noise_var = shopper.config.profile_noise ** 2
    np.testing.assert_allclose(tastes.mean(axis=0), plug_in.taste, atol=0.03)
    np.testing.assert_allclose(tastes.var(axis=0), noise_var / (1 + noise_var), rtol=0.1)
    wtp = np.array([d.willingness_to_pay for d in draws])
    assert wtp.mean() == pytest.approx(shopper.config.budget_mean, abs=0.02)
    assert wtp.std() == pytest.approx(shopper.config.budget_std, rel=0.1)
    assert min(d.price_sensitivity for d in draws) >= 0
    # the same observed profile gives the same draws, whatever the hidden traits behind it
    shift = np.full(items.visual_dim, 0.7, dtype=np.float32)
    twin = replace(state, taste=state.taste + shift, profile_noise=state.profile_noise - np.append(shift, 0.4),
                   price_sensitivity=state.price_sensitivity + 0.4, willingness_to_pay=2.0)
    again = shopper.posterior_samples(twin, 4000, np.random.default_rng(1))
    np.testing.assert_allclose(np.stack([d.taste for d in again]), tastes, atol=1e-5)


def test_posterior_samples_are_the_truth_without_profile_noise(items):
    shopper = DefaultShopper(items, ShopperConfig(query_bank_size=300, profile_noise=0.0), n_slots=N)
    state = shopper.reset(np.random.default_rng(0))
    for draw in shopper.posterior_samples(state, 3, np.random.default_rng(1)):
        np.testing.assert_allclose(draw.taste, state.taste, atol=1e-6)
        assert draw.price_sensitivity == pytest.approx(state.price_sensitivity, abs=1e-6)
    with pytest.raises(ValueError, match=r"^n must be >= 1, got 0\.$"):
        shopper.posterior_samples(state, 0, np.random.default_rng(1))


# -- the batched formulas the array core uses are the per-session shopper's own -------------------------------------


def test_batched_session_update_equals_one_shopper_at_a_time(items: ItemTable) -> None:
    """``session_update`` over B rows gives each row what it gives that row alone (drift, fatigue, no-click
    penalty; leaving after a purchase is switched off so no draw depends on the row order)."""
    from simulators.shopper import session_update

    cfg = replace(ShopperConfig(), p_continue_after_purchase=1.0)
    rng = np.random.default_rng(0)
    b, n, v = 6, 10, items.visual_dim
    taste = rng.normal(size=(b, v)).astype(np.float32)
    patience = rng.uniform(0.5, 3.0, size=b)
    rel = rng.random((b, n))
    visual = rng.normal(size=(b, n, v)).astype(np.float32)
    shown = rng.random((b, n)) < 0.8
    shown[0] = False  # an empty slate: everything irrelevant, no click
    clicks = (rng.random((b, n)) < 0.3) & shown
    purchases = clicks & (rng.random((b, n)) < 0.5)
    all_taste, all_patience, all_left = session_update(cfg, taste, patience, rel, visual, shown, clicks, purchases,
                                                       np.random.default_rng(1))
    for i in range(b):
        t, p, left = session_update(cfg, taste[i:i + 1], patience[i:i + 1], rel[i:i + 1], visual[i:i + 1],
                                    shown[i:i + 1], clicks[i:i + 1], purchases[i:i + 1], np.random.default_rng(1))
        np.testing.assert_array_equal(all_taste[i], t[0])
        assert all_patience[i] == p[0] and all_left[i] == left[0]
    assert all_patience[0] == patience[0] - cfg.fatigue - cfg.no_click_penalty
    moved = clicks.any(axis=1)
    assert np.all(np.any(all_taste[moved] != taste[moved], axis=1)) and np.all(all_taste[~moved] == taste[~moved])


def test_profile_rows_follow_the_profile_formula(items: ItemTable) -> None:
    from simulators.shopper import profile_rows

    shopper = DefaultShopper(items)
    rng = np.random.default_rng(3)
    states = [shopper.reset(rng) for _ in range(5)]
    rows = profile_rows(np.array([s.segment for s in states]), np.stack([s.taste for s in states]),
                        np.array([s.price_sensitivity for s in states]), np.stack([s.profile_noise for s in states]))
    for state, row in zip(states, rows):  # segment one-hot, noisy taste, noisy price sensitivity (float32 sums)
        assert row[:3].tolist() == [float(state.segment == i) for i in range(3)]
        np.testing.assert_array_equal(row[3:-1], state.taste + state.profile_noise[:-1])
        assert row[-1] == np.float32(state.price_sensitivity) + state.profile_noise[-1]
        np.testing.assert_array_equal(shopper.profile(state), row)
