"""Product variants: colour/size versions of one parent product, grouped by a parent (group) id.

Real shops list a parent product with variants (Luma's ``color_variants.csv``: one row per colour of a
parent ``sku``). Kept as separate rows, variants are near-duplicates that fill the top of a retrieved list
(their text differs by a colour word) and bore the shopper. Two tools, both no-ops for a catalog
without groups (``Catalog.groups is None``):

* :class:`CollapsingRetriever` wraps any retriever (``search(queries (B, d), k) -> ids (B, k), scores
  (B, k)``) and keeps at most one product per group in each result row: the group's best-scoring variant
  for that query, so the K candidates are K different parents.
* :func:`variant_similarity` gives the vectors the shopper's near-duplicate (boredom) test compares: each
  grouped product gets its group's mean vector, so any two variants of one parent count as near-duplicates
  (cosine 1) whatever their own text says.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from encoders.errors import CatalogError


class Retriever(Protocol):
    """What :class:`CollapsingRetriever` wraps (``encoders.retriever.FaissRetriever`` satisfies it)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def __len__(self) -> int: ...


def group_codes(parents: Sequence[str]) -> np.ndarray:
    """``int64 (n,)`` group code per product from its parent id (an empty parent: a group of its own).

    Codes are dense (``0 .. n_groups - 1``) in order of first appearance, so equal parents share a code.
    """
    codes = np.empty(len(parents), dtype=np.int64)
    index: dict[str, int] = {}
    for i, parent in enumerate(parents):
        key = str(parent).strip() or f"\x00row{i}"  # no parent: its own group
        codes[i] = index.setdefault(key, len(index))
    return codes


def check_groups(groups: np.ndarray, n: int) -> np.ndarray:
    """``groups`` as ``int64 (n,)`` with values >= 0.

    Raises:
        CatalogError: for another length, a non-integer dtype or a negative code.
    """
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise CatalogError(f"Catalog groups must have shape ({n},), got {groups.shape}.")
    if not np.issubdtype(groups.dtype, np.integer):
        raise CatalogError(f"Catalog groups must be integer group codes, got dtype {groups.dtype}.")
    if n and groups.min() < 0:
        raise CatalogError(f"Catalog groups must be >= 0, got {int(groups.min())}.")
    return groups.astype(np.int64, copy=False)


class CollapsingRetriever:
    """A retriever whose results hold at most one product per group (the best-scoring variant).

    It asks the wrapped retriever for ``2 k`` results and doubles the request until every row has ``k``
    distinct groups or the catalog is exhausted, so the result equals "the first ``k`` distinct groups of
    the full ranking" (exactly, for an exact index). Rows are padded with id ``-1`` / score ``-inf``.

    Args:
        retriever: The wrapped retriever.
        groups: ``int64 (n,)`` group code per catalog row.
    """

    def __init__(self, retriever: Retriever, groups: np.ndarray) -> None:
        self.retriever = retriever
        self.groups = check_groups(groups, len(retriever))
        self.n_groups = int(len(np.unique(self.groups)))

    def __len__(self) -> int:
        return len(self.retriever)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``ids int64 (B, k)``, ``scores float32 (B, k)``: the best variant of each of the top ``k`` groups."""
        n = len(self.retriever)
        fetch = min(n, 2 * k)
        while True:
            ids, scores = self.retriever.search(queries, fetch)
            out_ids, out_scores, complete = _first_per_group(np.asarray(ids), np.asarray(scores), self.groups, k)
            if complete or fetch >= n:
                return out_ids, out_scores
            fetch = min(n, 2 * fetch)


def _first_per_group(ids: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int
                     ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Keep each row's first hit per group, up to ``k``; ``complete`` is False when a row that came back
    full (no ``-1`` padding) still has fewer than ``k`` groups, so asking for more could add some."""
    batch = len(ids)
    out_ids = np.full((batch, k), -1, dtype=np.int64)
    out_scores = np.full((batch, k), -np.inf, dtype=np.float32)
    complete = True
    for b in range(batch):
        valid = ids[b] >= 0
        row = ids[b][valid]
        _, first = np.unique(groups[row], return_index=True)
        keep = np.sort(first)[:k]
        out_ids[b, : len(keep)] = row[keep]
        out_scores[b, : len(keep)] = scores[b][valid][keep]
        if len(keep) < k and valid.all():
            complete = False
    return out_ids, out_scores, complete


def variant_similarity(vectors: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """``float32 (n, d)`` vectors for the near-duplicate test: each product gets its group's mean vector.

    Args:
        vectors: ``(n, d)`` product vectors (e.g. text vectors).
        groups: ``int64 (n,)`` group codes, or ``None`` (``vectors`` returned unchanged).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if groups is None:
        return vectors
    groups = check_groups(groups, len(vectors))
    n_groups = int(groups.max()) + 1
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sums = np.zeros((n_groups, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, groups, unit)
    means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return means[groups].astype(np.float32)
