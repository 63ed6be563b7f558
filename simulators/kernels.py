"""Compiled (numba) kernels of the default shopper's formulas over ``B`` sessions.

One slate of one session costs a few dozen small NumPy calls when written with arrays; these kernels do
the same work in one compiled call each, for any ``B`` (the single env's ``B = 1`` and the vector env's
``B`` in the thousands run the same code, so they give the same numbers). They draw nothing: random numbers
are drawn by the caller from its ``np.random.Generator``, in the documented order, before or after a kernel.

The shopper's formulas (utility, attractiveness, purchase probability; see :mod:`simulators.shopper`'s module
docstring) are written once here and compiled both for the kernels and as NumPy ufuncs, which the per-session
``DefaultShopper`` calls (``simulators.shopper.combined_utility`` and friends).

Shapes: ``B`` sessions, ``N`` slots, ``K`` candidates per query, ``R`` query-table rows, ``V`` visual traits.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, vectorize

# Parameter vector of the slot-probability kernels (float64, in this order): see ``slot_parameters``.
P_RELEVANCE, P_VISUAL, P_PRICE, P_TEMPERATURE, P_THRESHOLD, P_BOREDOM = 0, 1, 2, 3, 4, 5
P_BUY_BIAS, P_BUY_RELEVANCE, P_BUY_PRICE, P_BUY_OVER_BUDGET, P_SQRT_V = 6, 7, 8, 9, 10
N_PARAMETERS = 11


def slot_parameters(cfg, visual_dim: int) -> np.ndarray:
    """``float64 (11,)`` the :class:`~simulators.shopper.ShopperConfig` numbers the kernels read."""
    return np.array([cfg.relevance_weight, cfg.visual_weight, cfg.price_weight, cfg.temperature, cfg.threshold,
                     cfg.boredom, cfg.buy_bias, cfg.buy_relevance, cfg.buy_price, cfg.buy_over_budget,
                     math.sqrt(visual_dim)], dtype=np.float64)


def _utility(rel, vis, price, relevance_weight, visual_weight, price_weight):
    """Utility of a product: ``relevance_weight * rel + visual_weight * vis - price_weight * price``."""
    return relevance_weight * rel + visual_weight * vis - price_weight * price


def _attract(util, duplicates_above, temperature, threshold, boredom):
    """Attractiveness: ``sigmoid(temperature * (util - threshold)) * (1 - boredom) ** duplicates_above``."""
    a = 1.0 / (1.0 + math.exp(-(temperature * (util - threshold))))
    if duplicates_above > 0:
        a *= (1.0 - boredom) ** duplicates_above
    return a


def _buy_probability(rel, vis, price, over_budget, buy_bias, buy_relevance, visual_weight, buy_price,
                     buy_over_budget):
    """``P(buy | click)``: sigmoid of ``buy_bias + buy_relevance * rel + visual_weight * vis - buy_price * price
    - buy_over_budget * over_budget``."""
    logit = buy_bias + buy_relevance * rel + visual_weight * vis - buy_price * price
    if buy_over_budget > 0:
        logit -= buy_over_budget * over_budget
    return 1.0 / (1.0 + math.exp(-logit))


# Each formula is written once (above) and compiled twice: for the kernels (scalars) and as a NumPy ufunc
# (arrays of any matching shape) for the per-session shopper, so both compute the same numbers.
utility_of = njit(cache=True)(_utility)
attract_of = njit(cache=True)(_attract)
buy_probability_of = njit(cache=True)(_buy_probability)
utility_ufunc = vectorize(["float64(float64, float64, float64, float64, float64, float64)"], cache=True)(_utility)
attract_ufunc = vectorize(["float64(float64, float64, float64, float64, float64)"], cache=True)(_attract)
buy_probability_ufunc = vectorize(["float64(float64, float64, float64, float64, float64, float64, float64, float64, "
                                   "float64)"], cache=True)(_buy_probability)


def pack_bits(flags: np.ndarray) -> np.ndarray:
    """``uint64 (..., ceil(M / 64))`` bit sets of ``bool (..., M)`` ``flags`` (bit ``j % 64`` of word ``j // 64``)."""
    m = flags.shape[-1]
    words = (m + 63) // 64
    padded = np.zeros(flags.shape[:-1] + (words * 64,), dtype=np.uint64)
    padded[..., :m] = flags
    weights = np.uint64(1) << np.arange(64, dtype=np.uint64)
    return (padded.reshape(flags.shape[:-1] + (words, 64)) * weights).sum(axis=-1, dtype=np.uint64)


@njit(cache=True)
def _bit_count(x):
    """Set bits of a ``uint64``."""
    n = 0
    while x:
        x &= x - np.uint64(1)
        n += 1
    return n


@njit(cache=True)
def _session_probabilities(p, r, positions, taste, price_sensitivity, willingness, rel, price_z, log_over_ref, visual,
                           dup, valid, attract, p_buy, util, vis, price, raw, shown_above):
    """One session's row of :func:`table_slot_probabilities`, written into ``attract, p_buy (N,)`` and ``util
    (K,)`` (zeros expected; ``vis``, ``price``, ``raw`` are ``(K,)`` scratch, ``shown_above`` ``uint64 (W,)``)."""
    k = rel.shape[1]
    s = np.float32(price_sensitivity)
    sqrt_v = np.float32(p[P_SQRT_V])
    shown_above[:] = 0
    for c in range(k):
        acc = np.float32(0.0)  # float32 sums, as the shopper's matmul
        for j in range(len(taste)):
            acc += visual[r, c, j] * taste[j]
        vis[c] = acc / sqrt_v
        price[c] = s * price_z[r, c]
        raw[c] = utility_of(rel[r, c], np.float64(vis[c]), np.float64(price[c]), p[P_RELEVANCE], p[P_VISUAL],
                            p[P_PRICE])
        if valid[r, c]:
            util[c] = raw[c]
    for i in range(len(positions)):
        c = positions[i]
        if c < 0:
            continue
        above = 0
        if p[P_BOREDOM] > 0:  # near-duplicates of c among the products shown above it
            for w in range(shown_above.shape[0]):
                above += _bit_count(dup[r, c, w] & shown_above[w])
            shown_above[c // 64] |= np.uint64(1) << np.uint64(c % 64)
        attract[i] = attract_of(raw[c], np.float64(above), p[P_TEMPERATURE], p[P_THRESHOLD], p[P_BOREDOM])
        over = max(0.0, log_over_ref[r, c] - willingness)
        p_buy[i] = buy_probability_of(rel[r, c], np.float64(vis[c]), np.float64(price[c]), over, p[P_BUY_BIAS],
                                      p[P_BUY_RELEVANCE], p[P_VISUAL], p[P_BUY_PRICE], p[P_BUY_OVER_BUDGET])


@njit(cache=True)
def table_slot_probabilities(p, q, positions, taste, price_sensitivity, willingness, rel, price_z, log_over_ref,
                             visual, dup, valid):
    """Every candidate's utility and each slot's attractiveness and purchase probability, from table rows.

    Args:
        p: ``float64 (11,)`` :func:`slot_parameters`.
        q: ``int64 (B,)`` table rows served; positions: ``int64 (B, N)`` candidate per slot, ``-1`` = empty.
        taste: ``float32 (B, V)``; price_sensitivity, willingness: ``float64 (B,)``.
        rel, log_over_ref: ``float64 (R, K)``; price_z: ``float32 (R, K)``; visual: ``float32 (R, K, V)``;
        dup: ``uint64 (R, K, W)`` near-duplicate pairs as bit sets (:func:`pack_bits`); valid: ``bool (R, K)``
            real candidates.

    Returns:
        ``(attract float64 (B, N), p_buy float64 (B, N), utility float64 (B, K))``: 0 on empty slots and
        padded candidates.
    """
    b_n, n = positions.shape
    k = rel.shape[1]
    attract = np.zeros((b_n, n))
    p_buy = np.zeros((b_n, n))
    util = np.zeros((b_n, k))
    vis = np.empty(k, dtype=np.float32)
    price = np.empty(k, dtype=np.float32)
    raw = np.empty(k)
    shown_above = np.empty(dup.shape[2], dtype=np.uint64)
    for b in range(b_n):
        _session_probabilities(p, q[b], positions[b], taste[b], price_sensitivity[b], willingness[b], rel, price_z,
                               log_over_ref, visual, dup, valid, attract[b], p_buy[b], util[b], vis, price, raw,
                               shown_above)
    return attract, p_buy, util


@njit(cache=True)
def table_slate_response(p, drift, fatigue, no_click_penalty, q, positions, taste, price_sensitivity, willingness,
                         patience, intent, rel, price_z, log_over_ref, visual, dup, valid, examination, uniforms,
                         dwell_draws, taste_after, patience_after, intent_after, left, ask):
    """A slate's whole effect on ``B`` default shoppers whose click model examines slots independently (PBM).

    The probabilities of :func:`table_slot_probabilities`; a slot is clicked when ``uniforms[0] < attract *
    examination`` (what ``PositionBasedModel.sample`` draws), bought and dwelt on as :func:`purchases_and_dwell`
    says; then each shopper after the slate as :func:`table_transition`, written into the ``*_after``, ``left``
    and ``ask`` arrays (the state passed in is left as it is: a caller commits it when the slate is done).

    Args:
        p: :func:`slot_parameters`; drift, fatigue, no_click_penalty: the transition's numbers.
        q, positions, taste, price_sensitivity, willingness, rel, price_z, log_over_ref, visual, dup, valid: as
            :func:`table_slot_probabilities`; patience: ``float64 (B,)``; intent: ``int64 (B,)``.
        examination: ``float64 (>= N,)`` per-slot examination probabilities.
        uniforms: ``float64 (2, B, N)``: the clicks' uniforms, then the purchases'; dwell_draws: ``float64 (B, N)``
            Gamma(2, 15) draws.
        taste_after: ``float32 (B, V)``, patience_after: ``float64 (B,)``, intent_after: ``int64 (B,)``, left,
            ask: ``bool (B,)``: written with the state after the slate (``ask``: bought and still patient; the
            caller draws whether they stay).

    Returns:
        ``(clicks bool (B, N), purchases bool (B, N), dwell float32 (B, N), utility float64 (B, K), n_ask)``.
    """
    b_n, n = positions.shape
    k = rel.shape[1]
    v = taste.shape[1]
    clicks = np.zeros((b_n, n), dtype=np.bool_)
    purchases = np.zeros((b_n, n), dtype=np.bool_)
    dwell = np.zeros((b_n, n), dtype=np.float32)
    util = np.zeros((b_n, k))
    taste_after[:] = taste
    intent_after[:] = intent
    n_ask = 0
    attract = np.zeros(n)
    p_buy = np.zeros(n)
    vis = np.empty(k, dtype=np.float32)
    price = np.empty(k, dtype=np.float32)
    raw = np.empty(k)
    shown_above = np.empty(dup.shape[2], dtype=np.uint64)
    slot_rel = np.zeros(n)
    slot_visual = np.zeros((n, v), dtype=np.float32)
    shown = np.zeros(n, dtype=np.bool_)
    look = np.empty(v, dtype=np.float32)
    for b in range(b_n):
        r = q[b]
        attract[:] = 0.0
        p_buy[:] = 0.0
        _session_probabilities(p, r, positions[b], taste[b], price_sensitivity[b], willingness[b], rel, price_z,
                               log_over_ref, visual, dup, valid, attract, p_buy, util[b], vis, price, raw,
                               shown_above)
        for i in range(n):
            clicks[b, i] = uniforms[0, b, i] < attract[i] * examination[i]
        _purchase_and_dwell(clicks[b], p_buy, uniforms[1, b], dwell_draws[b], purchases[b], dwell[b])
        _slot_terms(r, positions[b], rel, visual, slot_rel, slot_visual, shown)
        patience_after[b], left[b], bought = _after_slate(drift, fatigue, no_click_penalty, taste_after[b], patience[b],
                                                          slot_rel, slot_visual, shown, clicks[b], purchases[b], look)
        ask[b] = bought and not left[b]
        n_ask += ask[b]
        if bought:
            intent_after[b] = -1
    return clicks, purchases, dwell, util, n_ask


@njit(cache=True)
def _slot_terms(r, positions, rel, visual, slot_rel, slot_visual, shown):
    """Gather table row ``r``'s intent match and visual traits of the slots' candidates (``positions (N,)``) into
    ``slot_rel (N,)``, ``slot_visual (N, V)``, and ``shown (N,)``."""
    for i in range(len(positions)):
        c = positions[i]
        shown[i] = c >= 0
        if c >= 0:
            slot_rel[i] = rel[r, c]
            slot_visual[i] = visual[r, c]


@njit(cache=True)
def _purchase_and_dwell(clicks, p_buy, uniform, gamma, purchases, dwell):
    """One session's row of :func:`purchases_and_dwell`, written into ``purchases`` and ``dwell`` (``(N,)``)."""
    for i in range(len(clicks)):
        if clicks[i]:
            purchases[i] = uniform[i] < p_buy[i]
            dwell[i] = gamma[i] * (3.0 if purchases[i] else 1.0)


@njit(cache=True)
def _after_slate(drift, fatigue, no_click_penalty, taste, patience, rel, visual, shown, clicks, purchases, look):
    """One shopper after one slate (``taste float32 (V,)`` changed in place): ``(patience, left, bought)``.

    ``rel (N,)``, ``visual (N, V)``, ``shown, clicks, purchases (N,)`` per slot. Taste drifts toward the mean
    look of the clicked products; patience drops by ``fatigue`` times the share of irrelevant products shown
    (``rel < 0.5``; 1 when nothing was shown) and by ``no_click_penalty`` after a slate without a click; the
    shopper leaves when patience reaches 0. ``look float32 (V,)`` is scratch."""
    n = len(clicks)
    v = taste.shape[0]
    n_click = 0
    n_shown = 0
    n_irrelevant = 0
    bought = False
    look[:] = 0.0
    for i in range(n):
        if not shown[i]:
            continue
        n_shown += 1
        if rel[i] < 0.5:
            n_irrelevant += 1
        if clicks[i]:
            n_click += 1
            for j in range(v):
                look[j] += visual[i, j]
        if purchases[i]:
            bought = True
    if drift > 0 and n_click > 0:
        for j in range(v):
            taste[j] = np.float32((1.0 - drift) * taste[j] + drift * (look[j] / np.float32(n_click)))
    irrelevant = n_irrelevant / n_shown if n_shown > 0 else 1.0
    patience = patience - fatigue * irrelevant - no_click_penalty * (n_click == 0)
    return patience, patience <= 0, bought


@njit(cache=True)
def drift_and_fatigue(drift, fatigue, no_click_penalty, taste, patience, rel, visual, shown, clicks, purchases):
    """The deterministic part of a slate's effect on ``B`` shoppers (see ``simulators.shopper.session_update``).

    Args:
        drift, fatigue, no_click_penalty: :class:`~simulators.shopper.ShopperConfig` numbers.
        taste: ``float32 (B, V)``; patience: ``float64 (B,)``.
        rel: ``float (B, N)`` intent match per slot; visual: ``float32 (B, N, V)``; shown, clicks, purchases:
            ``bool (B, N)``.

    Returns:
        ``(taste float32 (B, V), patience float64 (B,), left bool (B,), ask bool (B,))``: ``ask`` marks
        shoppers who bought and still have patience (the caller draws whether they stay).
    """
    b_n = clicks.shape[0]
    taste = taste.copy()
    patience = patience.copy()
    left = np.zeros(b_n, dtype=np.bool_)
    ask = np.zeros(b_n, dtype=np.bool_)
    look = np.empty(taste.shape[1], dtype=np.float32)
    for b in range(b_n):
        patience[b], left[b], bought = _after_slate(drift, fatigue, no_click_penalty, taste[b], patience[b], rel[b],
                                                    visual[b], shown[b], clicks[b], purchases[b], look)
        ask[b] = bought and not left[b]
    return taste, patience, left, ask


@njit(cache=True)
def table_transition(drift, fatigue, no_click_penalty, q, positions, taste, patience, intent, rel, visual, clicks,
                     purchases):
    """:func:`drift_and_fatigue` of ``B`` sessions from table rows, in place, and a new intent after a purchase.

    Args:
        q: ``int64 (B,)`` table rows; positions: ``int64 (B, N)`` (``-1`` = empty slot).
        taste: ``float32 (B, V)``, patience: ``float64 (B,)``, intent: ``int64 (B,)`` (set to -1 after a
            purchase: a new one is drawn), all changed in place.
        rel: ``float64 (R, K)``; visual: ``float32 (R, K, V)``; clicks, purchases: ``bool (B, N)``.

    Returns:
        ``(left bool (B,), ask bool (B,), n_ask)`` as :func:`drift_and_fatigue`, and the number of ``ask``.
    """
    b_n, n = positions.shape
    v = taste.shape[1]
    left = np.zeros(b_n, dtype=np.bool_)
    ask = np.zeros(b_n, dtype=np.bool_)
    slot_rel = np.zeros(n)
    slot_visual = np.zeros((n, v), dtype=np.float32)
    shown = np.zeros(n, dtype=np.bool_)
    look = np.empty(v, dtype=np.float32)
    n_ask = 0
    for b in range(b_n):
        _slot_terms(q[b], positions[b], rel, visual, slot_rel, slot_visual, shown)
        patience[b], left[b], bought = _after_slate(drift, fatigue, no_click_penalty, taste[b], patience[b], slot_rel,
                                                    slot_visual, shown, clicks[b], purchases[b], look)
        ask[b] = bought and not left[b]
        n_ask += ask[b]
        if bought:
            intent[b] = -1
    return left, ask, n_ask


@njit(cache=True)
def purchases_and_dwell(clicks, p_buy, uniform, gamma):
    """``(purchases bool (B, N), dwell float32 (B, N))`` from clicks and the draws: a clicked slot is bought
    when ``uniform < p_buy``; a clicked slot's dwell is ``gamma`` seconds, tripled after a purchase."""
    b_n, n = clicks.shape
    purchases = np.zeros((b_n, n), dtype=np.bool_)
    dwell = np.zeros((b_n, n), dtype=np.float32)
    for b in range(b_n):
        _purchase_and_dwell(clicks[b], p_buy[b], uniform[b], gamma[b], purchases[b], dwell[b])
    return purchases, dwell


@njit(cache=True)
def profile_block(n_segments, segment, taste, price_sensitivity, profile_noise):
    """``float32 (B, S + V + 1)`` observable profiles: segment one-hot, noisy taste, noisy price sensitivity
    (see ``simulators.shopper.profile_rows``)."""
    b_n, v = taste.shape
    out = np.zeros((b_n, n_segments + v + 1), dtype=np.float32)
    for b in range(b_n):
        out[b, segment[b]] = 1.0
        for j in range(v):
            out[b, n_segments + j] = taste[b, j] + profile_noise[b, j]
        out[b, n_segments + v] = np.float32(price_sensitivity[b]) + profile_noise[b, v]
    return out


@njit(cache=True)
def traits_from_draws(taste_draws, rest, profile_noise, budget_mean, budget_std):
    """``(taste float32 (n, V), profile_noise float32 (n, V + 1), willingness_to_pay float64 (n,))`` of ``n``
    shoppers from standard normal draws ``taste_draws (n, V)`` and ``rest (n (V + 2),)`` (the noise's ``n (V +
    1)`` numbers, then the budget's ``n``), scaled as ``simulators.shopper.sample_traits`` documents."""
    n, v = taste_draws.shape
    taste = np.empty((n, v), dtype=np.float32)
    noise = np.empty((n, v + 1), dtype=np.float32)
    willingness = np.empty(n)
    for b in range(n):
        willingness[b] = _trait_row(taste_draws, rest, b, profile_noise, budget_mean, budget_std, taste[b], noise[b])
    return taste, noise, willingness


@njit(cache=True)
def restart_shoppers(rows, segment_draws, taste_draws, price_draws, rest, profile_noise, budget_mean, budget_std,
                     patience0, segment, taste, price_sensitivity, noise, patience, willingness, intent):
    """In place: the shoppers of sessions ``rows (n,)`` become the ``n`` new shoppers of the draws (as
    :func:`traits_from_draws`, with ``segment_draws``, ``price_draws (n,)``), with patience ``patience0`` and no
    intent (``-1``); the other arguments after ``patience0`` are the state's arrays."""
    for j in range(len(rows)):
        b = rows[j]
        segment[b] = segment_draws[j]
        price_sensitivity[b] = price_draws[j]
        willingness[b] = _trait_row(taste_draws, rest, j, profile_noise, budget_mean, budget_std, taste[b], noise[b])
        patience[b] = patience0
        intent[b] = -1


@njit(cache=True)
def _trait_row(taste_draws, rest, j, profile_noise, budget_mean, budget_std, taste, noise):
    """Shopper ``j`` of :func:`traits_from_draws` written into ``taste (V,)`` and ``noise (V + 1,)``; returns their
    willingness to pay."""
    n, v = taste_draws.shape
    for i in range(v):
        taste[i] = taste_draws[j, i]
    for i in range(v + 1):
        noise[i] = profile_noise * rest[j * (v + 1) + i]
    return budget_mean + budget_std * rest[n * (v + 1) + j]


@njit(cache=True)
def commit_state(taste, patience, intent, taste_after, patience_after, intent_after):
    """In place: the shoppers' ``taste (B, V)``, ``patience (B,)`` and ``intent (B,)`` become the ``*_after``
    arrays (what :func:`table_slate_response` wrote)."""
    taste[:] = taste_after
    patience[:] = patience_after
    intent[:] = intent_after
