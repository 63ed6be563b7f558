"""What the simulator knows about products: facets (for intent matching), prices and visual traits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encoders.catalog import Catalog

INTENT_FACETS = ("type", "gender", "colour", "pattern", "material")
"""Attribute keys a shopper's intent can name, in the order a query states them (``type`` last)."""


@dataclass
class ItemTable:
    """Catalog facts in the arrays the simulator reads.

    Attributes:
        n: Number of products.
        prices: ``float32 (n,)``.
        price_z: ``float32 (n,)`` z-score of ``log1p(price)`` over the catalog.
        visual_z: ``float32 (n, V)`` visual traits, z-scored per trait (what visual taste is over).
        facets: ``facet -> value -> bool (n,)`` membership (multi-valued attributes split on ``|``).
        item_facets: ``(n,)`` object array of ``dict[facet, tuple[str, ...]]`` (values per product).
        similarity: ``float32 (n, S)`` L2-normalised vectors for near-duplicate detection (optional).
    """

    n: int
    prices: np.ndarray
    price_z: np.ndarray
    visual_z: np.ndarray
    facets: dict[str, dict[str, np.ndarray]]
    item_facets: np.ndarray
    similarity: np.ndarray | None = None

    @property
    def visual_dim(self) -> int:
        return self.visual_z.shape[1]

    @classmethod
    def from_catalog(cls, catalog: Catalog, similarity: np.ndarray | None = None) -> "ItemTable":
        """Index ``catalog``; ``similarity`` is an optional ``(n, S)`` matrix (e.g. text vectors)."""
        n = len(catalog)
        item_facets = np.empty(n, dtype=object)
        facets: dict[str, dict[str, np.ndarray]] = {f: {} for f in INTENT_FACETS}
        for i, attrs in enumerate(catalog.attributes):
            mine = {}
            for f in INTENT_FACETS:
                raw = attrs.get(f, "")
                values = tuple(v.strip().lower() for v in str(raw).split("|") if v.strip())
                mine[f] = values
                for v in values:
                    if v not in facets[f]:  # not setdefault: it would allocate an (n,) array per call
                        facets[f][v] = np.zeros(n, dtype=bool)
                    facets[f][v][i] = True
            item_facets[i] = mine
        logp = np.log1p(np.asarray(catalog.prices, dtype=np.float64))
        price_z = ((logp - logp.mean()) / max(logp.std(), 1e-6)).astype(np.float32)
        visual = np.asarray(catalog.visual, dtype=np.float32)
        visual_z = (visual - visual.mean(0)) / np.maximum(visual.std(0), 1e-6)
        if similarity is not None:
            similarity = similarity / np.maximum(np.linalg.norm(similarity, axis=1, keepdims=True), 1e-12)
            similarity = similarity.astype(np.float32)
        return cls(n=n, prices=np.asarray(catalog.prices, dtype=np.float32), price_z=price_z,
                   visual_z=visual_z.astype(np.float32), facets=facets, item_facets=item_facets,
                   similarity=similarity)
