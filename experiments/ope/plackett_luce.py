"""Plackett-Luce slate probabilities in NumPy, for logging policies and off-policy estimators.

A Plackett-Luce (PL) policy with logits ``s (K,)`` fills slot 1, 2, ... by drawing among the candidates not
yet placed with probability ``exp(s_i) / sum_{j remaining} exp(s_j)``. What the slate estimators need:

* the probability of a shown slate ``a_1..a_N``: ``prod_n exp(s_{a_n}) / sum_{j not in a_1..a_{n-1}} exp(s_j)``;
* of each prefix ``a_1..a_k`` (RIPS): the cumulative product of the same factors;
* the marginal ``P(candidate i at slot k)`` (independent IPS, and the per-slot bandit estimators): no
  closed form for ``k > 1``; :func:`position_marginals` estimates it by sampling.

Sampling is exact with the Gumbel-top-N trick (Kool, van Hoof & Welling 2019): add i.i.d. Gumbel noise to
the logits and keep the ``N`` largest. ``agents.distributions`` has the same maths in torch for PPO's
policy; this module is the array version the estimators and the simulator's logging use.
Masked candidates have logit ``-inf`` and are never drawn.
"""

from __future__ import annotations

import numpy as np


def sample_slates(logits: np.ndarray, n_slots: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one slate per row by Gumbel-top-N.

    Args:
        logits: ``float (B, K)`` PL logits (``-inf`` for masked candidates).
        n_slots: ``N <= K``, slots to fill.
        rng: Random generator.

    Returns:
        ``int64 (B, N)`` candidate index per slot, top slot first.
    """
    logits = np.asarray(logits, dtype=np.float64)
    keys = logits + rng.gumbel(size=logits.shape)
    top = np.argpartition(-keys, n_slots - 1, axis=1)[:, :n_slots] if n_slots < logits.shape[1] else \
        np.tile(np.arange(logits.shape[1]), (logits.shape[0], 1))
    order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1).astype(np.int64)


def slot_log_probs(logits: np.ndarray, slates: np.ndarray) -> np.ndarray:
    """Log of each slot's conditional PL probability given the slots above it.

    Args:
        logits: ``float (B, K)``.
        slates: ``int (B, N)`` candidate per slot (distinct within a row).

    Returns:
        ``float (B, N)``: ``log P(a_k | a_1..a_{k-1})``; its cumulative sum along slots is the log
        probability of each prefix, its total the log probability of the slate.
    """
    logits = np.asarray(logits, dtype=np.float64)
    b, n = slates.shape
    rows = np.arange(b)
    top = np.max(np.where(np.isfinite(logits), logits, -np.inf), axis=1, keepdims=True)
    expo = np.exp(logits - top)
    remaining = expo.sum(axis=1)
    out = np.empty((b, n))
    for k in range(n):
        chosen = expo[rows, slates[:, k]]
        with np.errstate(divide="ignore"):
            out[:, k] = np.log(chosen) - np.log(remaining)
        remaining = np.maximum(remaining - chosen, 0.0)
    return out


def position_marginals(logits: np.ndarray, n_slots: int, rng: np.random.Generator,
                       n_samples: int = 1000) -> np.ndarray:
    """Monte Carlo ``P(candidate i at slot k)`` under PL.

    Args:
        logits: ``float (B, K)``.
        n_slots: ``N``.
        rng: Random generator.
        n_samples: Slates drawn per row (standard error ``sqrt(p (1 - p) / n_samples)``).

    Returns:
        ``float (B, K, N)``; each ``[b, :, k]`` sums to 1.
    """
    logits = np.asarray(logits, dtype=np.float64)
    b, k = logits.shape
    counts = np.zeros(b * k * n_slots)
    chunk = max(1, 200_000 // n_samples)
    for start in range(0, b, chunk):
        rows = np.repeat(np.arange(start, min(start + chunk, b)), n_samples)
        slates = sample_slates(logits[rows], n_slots, rng)
        flat = (rows[:, None] * k + slates) * n_slots + np.arange(n_slots)[None, :]
        counts += np.bincount(flat.ravel(), minlength=counts.size)
    return counts.reshape(b, k, n_slots) / n_samples


def deterministic_marginals(slates: np.ndarray, n_candidates: int) -> np.ndarray:
    """One-hot ``P(candidate i at slot k)`` of a deterministic ranker that shows ``slates (B, N)``.

    Returns:
        ``float (B, K, N)``.
    """
    b, n = slates.shape
    out = np.zeros((b, n_candidates, n))
    out[np.arange(b)[:, None], slates, np.arange(n)[None, :]] = 1.0
    return out
