"""Ranking and session metrics of ShopRank evaluations.

Per query (one shown slate of ``N`` slots):

* **NDCG@N** — ``DCG@N / IDCG@N`` with linear gains ``g_j = u_j - min_valid u`` (the shopper's true
  utilities of the ``K`` candidates, shifted to be non-negative) and discounts ``1 / log2(rank + 1)``;
  the ideal ranks all ``K`` candidates. This is what the env reports as ``info["ndcg"]``.
* **MRR (click)** — ``1 / rank`` of the first clicked slot (rank 1 = top), 0 when nothing was clicked.
* **MRR (best)** — ``1 / rank`` of the candidate with the highest true utility, 0 when it was not shown
  (privileged; ``nan`` when the simulator exposes no utilities).
* **CTR@N** — clicks / filled slots.
* **Intra-list diversity** — ``1 - mean pairwise cosine`` of the shown products' fused vectors
  (``nan`` for fewer than two products).

Per session these are averaged over its queries; the session also gets its totals (``reward``,
``clicks``, ``purchases``, ``revenue``), ``session_length`` (queries), ``abandon_rate`` (1 when the
shopper left — ``info["left"]`` — after a slate without a purchase, i.e. left dissatisfied; 0 otherwise),
``zero_click_rate`` (fraction of its queries without a click: query abandonment in the IR sense) and
``ctr_pos_k`` (clicks at slot ``k`` / queries where slot ``k`` was filled). **Catalog coverage** —
distinct shown products / catalog size — is a property of many sessions, computed per agent × seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

SESSION_METRICS: tuple[str, ...] = (
    "reward", "clicks", "purchases", "revenue", "ctr", "ndcg", "mrr_click", "mrr_best", "diversity",
    "coverage", "abandon_rate", "zero_click_rate", "session_length")
"""Metrics summarised per agent (``coverage`` is filled in per agent × seed by the evaluator)."""


def discounts(n: int) -> np.ndarray:
    """``float (n,)`` DCG discounts ``1 / log2(rank + 1)`` for ranks ``1..n``."""
    return 1.0 / np.log2(np.arange(2, n + 2))


def ndcg_at_n(ranked_ids: np.ndarray, candidate_ids: np.ndarray, gains: np.ndarray, n: int) -> float:
    """NDCG@n of one ranked list against graded gains of the candidates.

    Args:
        ranked_ids: ``int (L,)`` shown ids, top first; ``-1`` = empty slot (gain 0). Only the first ``n`` count.
        candidate_ids: ``int (K,)`` ids that have a gain (``-1`` entries ignored).
        gains: ``float (K,)`` non-negative gains of ``candidate_ids``.
        n: Cut-off.

    Returns:
        NDCG in ``[0, 1]``; ``1.0`` when every gain is 0 (nothing to rank).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    candidate_ids = np.asarray(candidate_ids)
    gains = np.asarray(gains, dtype=np.float64)
    if gains.shape != candidate_ids.shape:
        raise ValueError(f"gains {gains.shape} and candidate_ids {candidate_ids.shape} must have the same shape.")
    if np.any(gains < 0):
        raise ValueError("gains must be non-negative (shift utilities by their minimum first).")
    valid = candidate_ids >= 0
    by_id = dict(zip(candidate_ids[valid].tolist(), gains[valid].tolist()))
    ranked = np.asarray(ranked_ids)[:n]
    got = np.array([by_id.get(int(i), 0.0) if i >= 0 else 0.0 for i in ranked], dtype=np.float64)
    dcg = float(got @ discounts(len(got))) if len(got) else 0.0
    ideal_gains = np.sort(gains[valid])[::-1][:n]
    idcg = float(ideal_gains @ discounts(len(ideal_gains))) if len(ideal_gains) else 0.0
    return dcg / idcg if idcg > 0 else 1.0


def utility_gains(utilities: np.ndarray, candidate_ids: np.ndarray) -> np.ndarray:
    """``float (K,)`` gains ``u - min u`` over valid candidates, 0 for padding (the env's NDCG gains)."""
    utilities = np.asarray(utilities, dtype=np.float64)
    valid = np.asarray(candidate_ids) >= 0
    if not valid.any():
        return np.zeros_like(utilities)
    return np.where(valid, utilities - utilities[valid].min(), 0.0)


def reciprocal_rank(ranked_ids: np.ndarray, relevant_ids: Iterable[int]) -> float:
    """``1 / rank`` of the first of ``relevant_ids`` in ``ranked_ids`` (rank 1 = top), 0 if none shown."""
    relevant = {int(i) for i in relevant_ids}
    for rank, item in enumerate(np.asarray(ranked_ids).tolist(), start=1):
        if item >= 0 and item in relevant:
            return 1.0 / rank
    return 0.0


def first_click_reciprocal_rank(clicked_positions: np.ndarray) -> float:
    """``1 / (first clicked slot + 1)``; 0 without clicks. ``clicked_positions``: ``int (c,)`` 0-based."""
    clicked = np.asarray(clicked_positions)
    return 1.0 / (int(clicked.min()) + 1) if clicked.size else 0.0


def intra_list_diversity(vectors: np.ndarray) -> float:
    """``1 - mean pairwise cosine similarity`` of ``float (n, d)`` vectors; ``nan`` when ``n < 2``."""
    vectors = np.asarray(vectors, dtype=np.float64)
    n = len(vectors)
    if n < 2:
        return float("nan")
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    return float(1.0 - (sim.sum() - np.trace(sim)) / (n * (n - 1)))


def catalog_coverage(shown_ids: Iterable[int], catalog_size: int) -> float:
    """Distinct shown products (``>= 0``) / ``catalog_size``."""
    if catalog_size < 1:
        raise ValueError(f"catalog_size must be >= 1, got {catalog_size}.")
    ids = np.unique(np.asarray(list(shown_ids), dtype=np.int64))
    return float(np.sum(ids >= 0)) / catalog_size


@dataclass
class Truth:
    """Privileged truth of one query, captured before the step (metrics only, never shown to agents).

    Attributes:
        candidate_ids: ``int64 (K,)`` catalog rows of the candidates (``-1`` = padding).
        utilities: ``float (K,)`` the shopper's true utilities of them.
    """

    candidate_ids: np.ndarray
    utilities: np.ndarray


@dataclass
class SessionAccumulator:
    """Collects one session's steps and turns them into its metrics.

    Args:
        slate_size: ``N``.
        fused: ``float (n_products, F)`` product vectors for diversity (``None`` → ``nan``).
    """

    slate_size: int
    fused: np.ndarray | None = None
    reward: float = 0.0
    totals: dict[str, float] = field(default_factory=lambda: {"clicks": 0.0, "purchases": 0.0, "revenue": 0.0})
    shown_slots: int = 0
    per_query: dict[str, list[float]] = field(
        default_factory=lambda: {"ndcg": [], "mrr_click": [], "mrr_best": [], "diversity": [], "zero_click": []})
    clicks_by_pos: np.ndarray | None = None
    filled_by_pos: np.ndarray | None = None
    shown_ids: list[int] = field(default_factory=list)
    left: bool = False
    last_purchased: bool = False

    def __post_init__(self) -> None:
        self.clicks_by_pos = np.zeros(self.slate_size)
        self.filled_by_pos = np.zeros(self.slate_size)

    def add(self, reward: float, info: Mapping[str, Any], truth: Truth | None = None) -> None:
        """Record one step.

        Args:
            reward: The step's reward.
            info: The env's step info (``clicks``, ``purchases``, ``revenue``, ``clicked_positions``,
                ``shown_ids (N,)``, ``ndcg``, ``left``).
            truth: Candidate utilities captured before the step, for MRR (best).
        """
        shown = np.asarray(info["shown_ids"], dtype=np.int64)
        clicked = np.asarray(info["clicked_positions"], dtype=np.int64)
        self.reward += float(reward)
        for key in self.totals:
            self.totals[key] += float(info.get(key, 0.0))
        filled = shown >= 0
        self.shown_slots += int(filled.sum())
        self.filled_by_pos[: len(shown)] += filled
        np.add.at(self.clicks_by_pos, clicked[clicked < self.slate_size], 1.0)
        self.shown_ids.extend(shown[filled].tolist())
        self.per_query["ndcg"].append(float(info.get("ndcg", np.nan)))
        self.per_query["mrr_click"].append(first_click_reciprocal_rank(clicked))
        self.per_query["zero_click"].append(float(clicked.size == 0))
        if truth is not None and np.any(truth.candidate_ids >= 0):
            valid = truth.candidate_ids >= 0
            best = truth.candidate_ids[valid][int(np.argmax(np.asarray(truth.utilities)[valid]))]
            self.per_query["mrr_best"].append(reciprocal_rank(shown, [best]))
        else:
            self.per_query["mrr_best"].append(float("nan"))
        vectors = self.fused[shown[filled]] if self.fused is not None else np.zeros((0, 1))
        self.per_query["diversity"].append(intra_list_diversity(vectors))
        self.left = bool(info.get("left", False))
        self.last_purchased = float(info.get("purchases", 0.0)) > 0

    def result(self) -> dict[str, float]:
        """The session's metrics (see the module docstring); ``coverage`` is left to the evaluator."""
        n_queries = len(self.per_query["ndcg"])

        def mean(values: list[float]) -> float:
            arr = np.asarray(values, dtype=np.float64)
            return float(np.nanmean(arr)) if arr.size and not np.all(np.isnan(arr)) else float("nan")

        out = {"reward": self.reward, **self.totals,
               "ctr": self.totals["clicks"] / self.shown_slots if self.shown_slots else 0.0,
               "ndcg": mean(self.per_query["ndcg"]), "mrr_click": mean(self.per_query["mrr_click"]),
               "mrr_best": mean(self.per_query["mrr_best"]), "diversity": mean(self.per_query["diversity"]),
               "abandon_rate": float(self.left and not self.last_purchased),
               "zero_click_rate": mean(self.per_query["zero_click"]), "session_length": float(n_queries)}
        with np.errstate(invalid="ignore", divide="ignore"):
            ctr_pos = np.where(self.filled_by_pos > 0, self.clicks_by_pos / self.filled_by_pos, np.nan)
        out.update({f"ctr_pos_{k + 1}": float(v) for k, v in enumerate(ctr_pos)})
        return out
