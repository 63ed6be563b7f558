"""Compiled (numba) bodies of the array core's rules (:mod:`envs.core`), over ``B`` sessions each.

A slate of one session would cost dozens of small NumPy calls; each rule here is one compiled call for any
``B``, so the single env (``B = 1``) and the vector env run the same code and get the same numbers. The
documented, typed entry points are in :mod:`envs.core` and :class:`envs.reward.RewardSpec`; these take plain
arrays and numbers. Nothing here draws random numbers. Kernels that call each other live in one file: numba's
on-disk cache of a kernel is renewed when its own file changes, not when a function it calls in another file does.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def top_slots(scores, valid, rows, n):
    """``(positions int64 (B, n), finite bool)``: valid candidates by descending score, ties in candidate
    order, ``-1`` for slots left empty; ``finite`` is False when any score is NaN or infinite (then
    ``positions`` is meaningless).

    Args:
        scores: ``(B, K)`` numbers; valid: ``bool (R, K)``, row ``rows[b]`` for session ``b``; n: slots.
    """
    b_n, k = scores.shape
    out = np.full((b_n, n), -1, dtype=np.int64)
    best = np.empty(n, dtype=np.float64)
    for b in range(b_n):
        filled = 0
        for c in range(k):
            s = np.float64(scores[b, c])
            if not np.isfinite(s):
                return out, False
            if not valid[rows[b], c]:
                continue
            # insert c after every kept score >= s (earlier candidates win ties)
            j = filled
            while j > 0 and best[j - 1] < s:
                j -= 1
            if j >= n:
                continue
            last = min(filled, n - 1)
            for m in range(last, j, -1):
                best[m] = best[m - 1]
                out[b, m] = out[b, m - 1]
            best[j] = s
            out[b, j] = c
            if filled < n:
                filled += 1
    return out, True


@njit(cache=True)
def ndcg_of(utility, valid, positions, discounts):
    """``float64 (B,)`` NDCG@N of slates ``positions (B, N)`` against ``utility (B, K)`` over ``valid (B, K)``
    candidates (see :func:`envs.core.ndcg`)."""
    b_n, k = utility.shape
    out = np.ones(b_n)
    gains = np.empty(k)
    for b in range(b_n):
        out[b] = _ndcg_row(utility[b], valid[b], positions[b], discounts, gains)
    return out


@njit(cache=True)
def _ndcg_row(utility, valid, positions, discounts, best):
    """One slate's NDCG (``utility, valid (K,)``, ``positions (N,)``; ``best (>= min(N, K),)`` scratch for the
    largest gains, kept in descending order: the ideal DCG without sorting all ``K``)."""
    k = len(utility)
    m = min(len(discounts), k)
    low = np.inf
    for c in range(k):
        if valid[c] and utility[c] < low:
            low = utility[c]
    dcg = 0.0
    for i in range(len(positions)):
        c = positions[i]
        if c >= 0 and valid[c]:
            dcg += (utility[c] - low) * discounts[i]
    kept = 0
    for c in range(k):
        gain = utility[c] - low if valid[c] else 0.0
        if kept == m and gain <= best[m - 1]:
            continue
        j = min(kept, m - 1)  # insert after every kept gain >= this one
        while j > 0 and best[j - 1] < gain:
            best[j] = best[j - 1]
            j -= 1
        best[j] = gain
        kept = min(kept + 1, m)
    ideal = 0.0
    for i in range(kept):
        ideal += best[i] * discounts[i]
    return dcg / ideal if ideal > 0 else 1.0


@njit(cache=True)
def record_clicks(history, vectors, mask, rows, clicked, fused):
    """In place: session ``rows[j]``'s click history gets the products ``clicked[j]`` (slot order, ``-1`` =
    none); the newest ``H`` are kept, left-aligned, oldest first, with their fused vectors and mask.

    Args:
        history: ``int64 (B, H)``; vectors: ``float32 (B, H, F)``; mask: ``float32 (B, H)``.
        rows: ``int64 (n,)`` sessions; clicked: ``int64 (n, N)``; fused: ``float32 (n_products, F)``.
    """
    kept = np.empty(history.shape[1] + clicked.shape[1], dtype=np.int64)
    for j in range(len(rows)):
        b = rows[j]
        _record_row(history[b], vectors[b], mask[b], clicked[j], fused, kept)


@njit(cache=True)
def _record_row(history, vectors, mask, clicked, fused, kept):
    """One session's :func:`record_clicks` (``history (H,)``, ``vectors (H, F)``, ``mask (H,)``, ``clicked (N,)``;
    ``kept (H + N,)`` scratch)."""
    h = len(history)
    new = 0
    for i in range(len(clicked)):
        if clicked[i] >= 0:
            new += 1
    if new == 0:
        return
    size = 0
    for c in range(h):
        if history[c] >= 0:
            kept[size] = history[c]
            size += 1
    for i in range(len(clicked)):
        if clicked[i] >= 0:
            kept[size] = clicked[i]
            size += 1
    start = max(size - h, 0)
    for c in range(h):
        if start + c < size:
            item = kept[start + c]
            history[c] = item
            vectors[c] = fused[item]
            mask[c] = 1.0
        else:
            history[c] = -1
            vectors[c] = 0.0
            mask[c] = 0.0


@njit(cache=True)
def settle_slates(w_click, w_purchase, w_revenue, expected, clicks, purchases, click_prob, purchase_prob, price_table,
                  slate, utility, valid, q, positions, discounts, rows, n_queries, totals, last_ctr, history, vectors,
                  mask, fused):
    """The env's side of ``n`` shown slates in one pass: reward, NDCG and the sessions' bookkeeping.

    Reward: :func:`slate_reward_row` of the sampled ``clicks``/``purchases`` (the parts), and, when
    ``expected``, the reward and slot shares of ``click_prob``/``purchase_prob`` instead. NDCG: :func:`ndcg_of`
    (nan when ``utility`` has no columns: no privileged simulator). Bookkeeping, in place for session ``rows[j]``:
    one more query, the totals, the last CTR (clicks per shown product) and the click history
    (:func:`record_clicks`).

    Args:
        w_click, w_purchase, w_revenue: ``RewardSpec`` weights; expected: ``RewardSpec.expected``.
        clicks, purchases: ``bool (n, N)``; click_prob, purchase_prob: ``float (n, N)`` (read when ``expected``).
        price_table: ``(n_products,)`` prices; slate: ``int64 (n, N)`` catalog rows, ``-1`` = empty slot.
        utility: ``float (n, K)`` or ``(n, 0)``; valid: ``bool (R, K)`` table rows; q: ``int64 (n,)`` their rows.
        positions: ``int64 (n, N)``; discounts: ``float (N,)``.
        rows: ``int64 (n,)`` sessions; n_queries, totals, last_ctr, history, vectors, mask: the sessions' arrays
            (:class:`envs.core.Sessions`); fused: ``float32 (n_products, F)``.

    Returns:
        ``(parts float64 (n, 3), position_rewards float64 (n, N), reward float64 (n,), ndcg float64 (n,))``.
    """
    b_n, n = slate.shape
    parts = np.zeros((b_n, 3))
    slots = np.empty((b_n, n))
    reward = np.empty(b_n)
    scores = np.full(b_n, np.nan)
    prices = np.zeros(n)
    spare = np.zeros(3)
    clicked = np.empty(n, dtype=np.int64)
    gains = np.empty(max(utility.shape[1], 1))
    kept = np.empty(history.shape[1] + n, dtype=np.int64)
    for j in range(b_n):
        shown = 0
        for i in range(n):
            item = slate[j, i]
            prices[i] = price_table[item] if item >= 0 else 0.0
            clicked[i] = item if clicks[j, i] else -1
            shown += item >= 0
        reward[j] = slate_reward_row(w_click, w_purchase, w_revenue, clicks[j], purchases[j], prices, parts[j], slots[j])
        if expected:
            spare[:] = 0.0
            reward[j] = slate_reward_row(w_click, w_purchase, w_revenue, click_prob[j], purchase_prob[j], prices, spare,
                                         slots[j])
        if utility.shape[1] > 0:
            scores[j] = _ndcg_row(utility[j], valid[q[j]], positions[j], discounts, gains)
        b = rows[j]
        n_queries[b] += 1
        for c in range(3):
            totals[b, c] += parts[j, c]
        last_ctr[b] = parts[j, 0] / max(shown, 1)
        _record_row(history[b], vectors[b], mask[b], clicked, fused, kept)
    return parts, slots, reward, scores


@njit(cache=True)
def session_block(columns, width, n_queries, totals, last_ctr, max_queries):
    """``float32 (B, width)`` the ``session`` observation block (see :func:`envs.core.session_features`);
    ``columns``: the block's columns of queries used, clicks, purchases and last CTR (4 ints)."""
    b_n = len(n_queries)
    out = np.zeros((b_n, width), dtype=np.float32)
    for b in range(b_n):
        out[b, columns[0]] = n_queries[b] / max_queries
        out[b, columns[1]] = totals[b, 0] / 10.0
        out[b, columns[2]] = totals[b, 1] / 5.0
        out[b, columns[3]] = last_ctr[b]
    return out


@njit(cache=True)
def slate_rows(ids, q, positions):
    """``int64 (B, N)`` catalog rows shown: ``ids[q[b], positions[b, i]]`` (``ids (R, K)`` table rows), ``-1``
    for empty slots."""
    b_n, n = positions.shape
    out = np.full((b_n, n), -1, dtype=np.int64)
    for b in range(b_n):
        for i in range(n):
            if positions[b, i] >= 0:
                out[b, i] = ids[q[b], positions[b, i]]
    return out


@njit(cache=True)
def clear_sessions(rows, n_queries, totals, last_ctr, history, vectors, mask):
    """In place: sessions ``rows`` start afresh (no query shown, zero totals and CTR, empty click history)."""
    for b in rows:
        n_queries[b] = 0
        totals[b] = 0.0
        last_ctr[b] = 0.0
        history[b] = -1
        vectors[b] = 0.0
        mask[b] = 0.0


@njit(cache=True)
def slate_rewards_of(w_click, w_purchase, w_revenue, click, purchase, prices):
    """:meth:`envs.reward.RewardSpec.slate_rewards`, compiled (the weights as numbers)."""
    b_n, n = click.shape
    parts = np.zeros((b_n, 3))
    slots = np.empty((b_n, n))
    reward = np.empty(b_n)
    for b in range(b_n):
        reward[b] = slate_reward_row(w_click, w_purchase, w_revenue, click[b], purchase[b], prices[b], parts[b], slots[b])
    return parts, slots, reward


@njit(cache=True)
def slate_reward_row(w_click, w_purchase, w_revenue, click, purchase, prices, parts, slots):
    """One slate's reward (returned) with its parts added into ``parts (3,)`` and each slot's share written into
    ``slots (N,)``; ``click``, ``purchase`` and ``prices`` are ``(N,)`` (see :meth:`envs.reward.RewardSpec.slate_rewards`). The
    reward is the weighted sum of the parts, summed as :meth:`envs.reward.RewardSpec.total` sums."""
    for i in range(len(click)):
        c = np.float64(click[i])
        p = np.float64(purchase[i])
        spend = np.float64(prices[i]) * p
        parts[0] += c
        parts[1] += p
        parts[2] += spend
        slots[i] = w_click * c + w_purchase * p + w_revenue * spend
    return w_click * parts[0] + w_purchase * parts[1] + w_revenue * parts[2]
