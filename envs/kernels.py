"""Compiled (numba) bodies of the array core's rules (:mod:`envs.core`), over ``B`` sessions each.

A slate of one session would cost dozens of small NumPy calls; each rule here is one compiled call for any
``B``, so the single env (``B = 1``) and the vector env run the same code and get the same numbers. The
documented, typed entry points are in :mod:`envs.core`; these take plain arrays and numbers. Nothing here
draws random numbers.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def top_slots(scores, valid, n):
    """``(positions int64 (B, n), finite bool)``: valid candidates by descending score, ties in candidate
    order, ``-1`` for slots left empty; ``finite`` is False when any score is NaN or infinite (then
    ``positions`` is meaningless).

    Args:
        scores: ``(B, K)`` numbers; valid: ``bool (B, K)``; n: slots.
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
            if not valid[b, c]:
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
    n = positions.shape[1]
    m = min(len(discounts), k)
    out = np.ones(b_n)
    gains = np.empty(k)
    for b in range(b_n):
        low = np.inf
        for c in range(k):
            if valid[b, c] and utility[b, c] < low:
                low = utility[b, c]
        for c in range(k):
            gains[c] = utility[b, c] - low if valid[b, c] else 0.0
        dcg = 0.0
        for i in range(n):
            c = positions[b, i]
            if c >= 0:
                dcg += gains[c] * discounts[i]
        ranked = np.sort(gains)
        ideal = 0.0
        for i in range(m):
            ideal += ranked[k - 1 - i] * discounts[i]
        if ideal > 0:
            out[b] = dcg / ideal
    return out


@njit(cache=True)
def record_clicks(history, vectors, mask, rows, clicked, fused):
    """In place: session ``rows[j]``'s click history gets the products ``clicked[j]`` (slot order, ``-1`` =
    none); the newest ``H`` are kept, left-aligned, oldest first, with their fused vectors and mask.

    Args:
        history: ``int64 (B, H)``; vectors: ``float32 (B, H, F)``; mask: ``float32 (B, H)``.
        rows: ``int64 (n,)`` sessions; clicked: ``int64 (n, N)``; fused: ``float32 (n_products, F)``.
    """
    h = history.shape[1]
    n = clicked.shape[1]
    kept = np.empty(h + n, dtype=np.int64)
    for j in range(len(rows)):
        b = rows[j]
        new = 0
        for i in range(n):
            if clicked[j, i] >= 0:
                new += 1
        if new == 0:
            continue
        size = 0
        for c in range(h):
            if history[b, c] >= 0:
                kept[size] = history[b, c]
                size += 1
        for i in range(n):
            if clicked[j, i] >= 0:
                kept[size] = clicked[j, i]
                size += 1
        start = max(size - h, 0)
        for c in range(h):
            if start + c < size:
                item = kept[start + c]
                history[b, c] = item
                vectors[b, c] = fused[item]
                mask[b, c] = 1.0
            else:
                history[b, c] = -1
                vectors[b, c] = 0.0
                mask[b, c] = 0.0


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
def after_slate(n_queries, totals, last_ctr, rows, parts, positions):
    """In place: sessions ``rows[j]`` showed ``positions[j]`` and earned ``parts[j]`` (clicks, purchases,
    revenue): one more query, the totals, and the clicks per shown product of this slate."""
    n = positions.shape[1]
    for j in range(len(rows)):
        b = rows[j]
        shown = 0
        for i in range(n):
            if positions[j, i] >= 0:
                shown += 1
        n_queries[b] += 1
        for c in range(3):
            totals[b, c] += parts[j, c]
        last_ctr[b] = parts[j, 0] / max(shown, 1)


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
