"""The world an environment runs in: catalog, product vectors, query encoder and retriever.

Building a world is the expensive part (encoding the catalog); it is cached on disk by the
:class:`~encoders.store.EmbeddingStore` and in memory per process by :func:`get_world`, so many
environments (and vector-env copies) share one world.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.errors import ConfigError
from encoders.catalog import Catalog
from encoders.csv_catalog import CatalogError, ColumnMapping, CsvCatalogConfig, load_csv_catalog
from encoders.protocols import ImageEncoder, TextEncoder
from encoders.registry import FUSIONS, IMAGE_ENCODERS, TEXT_ENCODERS, EncoderContext, resolve
from encoders.retriever import FaissRetriever
from encoders.variants import CollapsingRetriever, variant_similarity
from encoders.store import DEFAULT_CACHE, EmbeddingStore
from encoders.synthetic import SyntheticCatalogConfig, generate_catalog
from simulators.items import ItemTable
from simulators.validation import check_field_types

MAX_DIM = 4096
"""Largest ``fused_dim`` / ``query_dim``: the widths of every candidate row and query in an observation."""


@dataclass(frozen=True)
class WorldConfig:
    """What to build a world from.

    Attributes:
        catalog: ``"synthetic"`` for the built-in catalog, or a path to a CSV catalog folder/file.
        n_products: Size of the synthetic catalog.
        catalog_seed: Seed of the synthetic catalog.
        allow_missing_images: CSV catalogs: keep products without a readable photo (masked modality).
        catalog_columns: CSV catalogs: changes to the default column mapping, ``"field=column,..."``
            (``encoders.csv_catalog.ColumnMapping.from_spec``; ``""`` = the defaults, Luma's
            ``products.csv``). Luma's ``color_variants.csv``: ``"id=variant_id,colors=color,attributes=,
            group=parent_sku"``.
        collapse_variants: For a catalog with a group column (variants of one parent product): keep only
            the best-scoring variant of each group among a query's K candidates (``True``, the default),
            or every variant as its own candidate (``False``). No effect on a catalog without groups.
            Either way the shopper's boredom counts two variants of one group as near-duplicates.
        text_encoder: Name in :data:`TEXT_ENCODERS` or ``"module:attr"``.
        image_encoder: Name in :data:`IMAGE_ENCODERS` or ``"module:attr"``; ``""`` for text only.
        fusion: Name in :data:`FUSIONS` or ``"module:attr"``.
        encoder_seed: Seed of any encoder training.
        fused_dim: Width of the fused product vector the agent sees.
        image_weight: Weight of the image block in the fusion (0 = text only).
        query_dim: Width of the query vector in the observation.
        cache_dir: Embedding cache folder (``""`` disables the disk cache).
        progress: Progress bars while encoding.
    """

    catalog: str = "synthetic"
    n_products: int = 2000
    catalog_seed: int = 0
    allow_missing_images: bool = False
    catalog_columns: str = ""
    collapse_variants: bool = True
    text_encoder: str = "minilm"
    image_encoder: str = "pixel-stats"
    fusion: str = "block"
    encoder_seed: int = 0
    fused_dim: int = 32
    image_weight: float = 1.0
    query_dim: int = 32
    cache_dir: str = str(DEFAULT_CACHE)
    progress: bool = False

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.catalog_columns:
            if self.catalog == "synthetic":
                raise CatalogError("WorldConfig.catalog_columns applies to CSV catalogs only; the built-in "
                                   "'synthetic' catalog has no columns to map.")
            ColumnMapping.from_spec(self.catalog_columns)  # raises CatalogError naming a bad item
        if self.n_products < 1:
            raise ConfigError(f"WorldConfig.n_products must be >= 1, got {self.n_products}.")
        if self.encoder_seed < 0 or self.catalog_seed < 0:
            raise ConfigError(f"WorldConfig seeds must be >= 0, got encoder_seed={self.encoder_seed}, "
                             f"catalog_seed={self.catalog_seed}.")
        if self.fused_dim < 2:
            raise ConfigError(f"WorldConfig.fused_dim must be >= 2, got {self.fused_dim}.")
        if self.query_dim < 1:
            raise ConfigError(f"WorldConfig.query_dim must be >= 1, got {self.query_dim}.")
        for name in ("fused_dim", "query_dim"):  # every observation row carries these widths
            if getattr(self, name) > MAX_DIM:
                raise ConfigError(f"WorldConfig.{name} must be <= {MAX_DIM}, got {getattr(self, name)}.")
        if self.image_weight < 0:
            raise ConfigError(f"WorldConfig.image_weight must be >= 0, got {self.image_weight}.")


def load_catalog(config: WorldConfig) -> Catalog:
    """The built-in synthetic catalog or a CSV catalog, per ``config.catalog``."""
    if config.catalog == "synthetic":
        return generate_catalog(SyntheticCatalogConfig(n_products=config.n_products, seed=config.catalog_seed))
    return load_csv_catalog(CsvCatalogConfig(path=Path(config.catalog),
                                             mapping=ColumnMapping.from_spec(config.catalog_columns),
                                             allow_missing_images=config.allow_missing_images))


class ShopWorld:
    """Catalog + vectors + retriever, shared by environments.

    Attributes:
        catalog: The products.
        text_vectors: ``float32 (n, d_text)`` L2-normalised text vectors (the retrieval space).
        image_vectors: ``float32 (n, d_image)`` or ``None``.
        fused: ``float32 (n, fused_dim)`` the product vector agents see.
        items: Simulator-side catalog facts.
        retriever: Index over ``text_vectors``.
        text_encoder: Encoder of query text (same as the catalog's text encoder).
        query_basis: ``float32 (d_text, query_dim)`` projection of query vectors for observations.
    """

    def __init__(self, config: WorldConfig = WorldConfig(), catalog: Catalog | None = None,
                 text_encoder: TextEncoder | None = None, image_encoder: ImageEncoder | None = None,
                 store: EmbeddingStore | None = None) -> None:
        self.config = config
        self.catalog = catalog if catalog is not None else load_catalog(config)
        store = store or EmbeddingStore(Path(config.cache_dir) if config.cache_dir else None,
                                        progress=config.progress)
        self._store = store
        self.text_encoder = text_encoder or resolve(config.text_encoder, TEXT_ENCODERS, "text encoder")()
        self.text_vectors = store.text(self.catalog, self.text_encoder)
        modalities = {"text": self.text_vectors}
        present = {"text": np.ones(len(self.catalog), dtype=bool)}
        self.image_vectors = None
        if image_encoder is None and config.image_encoder and config.image_weight > 0:
            context = EncoderContext(self.catalog, self.text_vectors, store, config.encoder_seed, config.progress,
                                     text_encoder=self.text_encoder)
            image_encoder = resolve(config.image_encoder, IMAGE_ENCODERS, "image encoder")(context)
        if image_encoder is not None:
            self.image_vectors = store.image(self.catalog, image_encoder)
            modalities["image"] = self.image_vectors
            present["image"] = self.catalog.has_image
        self.fusion = resolve(config.fusion, FUSIONS, "fusion")(config.fused_dim, config.image_weight)
        self.fusion.fit(modalities, present)
        fused = self.fusion.fuse(modalities, present)
        self.fused = (fused / max(float(fused.std()), 1e-6)).astype(np.float32)
        groups = self.catalog.groups
        self.items = ItemTable.from_catalog(self.catalog, similarity=variant_similarity(self.text_vectors, groups))
        self.retriever = FaissRetriever(self.text_vectors)
        if groups is not None and config.collapse_variants:
            self.retriever = CollapsingRetriever(self.retriever, groups)
        centred = self.text_vectors - self.text_vectors.mean(axis=0)
        _, _, vt = np.linalg.svd(centred[: min(len(centred), 50_000)], full_matrices=False)
        basis = np.zeros((self.text_vectors.shape[1], config.query_dim), dtype=np.float32)
        k = min(config.query_dim, len(vt))
        basis[:, :k] = vt[:k].T
        self.query_basis = basis * np.sqrt(self.text_vectors.shape[1])
        self._query_cache: OrderedDict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._query_vectors: dict[str, np.ndarray] = {}

    @property
    def n_products(self) -> int:
        return len(self.catalog)

    def prewarm(self, texts: list[str], k: int, batch_size: int = 256) -> None:
        """Encode and retrieve many query texts in batches, filling the search cache.

        Query vectors are cached on disk next to the catalog's vectors (keyed by the texts' hash).
        """
        todo = sorted({t for t in texts if t not in self._query_cache or len(self._query_cache[t][0]) < k})
        if not todo:
            return
        key = hashlib.sha256("\x1f".join(todo).encode()).hexdigest()[:16]
        vectors = self._store.get_or_compute(
            self.catalog, f"queries-{key}", self.text_encoder.name,
            lambda rows: self.text_encoder.encode([todo[i] for i in rows]), n=len(todo))
        obs = (vectors @ self.query_basis).astype(np.float32)
        self._query_vectors.update(zip(todo, vectors.astype(np.float32)))
        for start in range(0, len(todo), batch_size):
            ids, scores = self.retriever.search(vectors[start:start + batch_size], k)
            for j in range(len(ids)):
                self._query_cache[todo[start + j]] = (ids[j].astype(np.int64), scores[j].astype(np.float32),
                                                      obs[start + j])

    def search(self, text: str, k: int, cache_size: int = 100_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Retrieve the top ``k`` products for a query text (memoised per text).

        Returns:
            ``(ids int64 (k,), scores float32 (k,), query_obs float32 (query_dim,))``; ids padded with -1.
        """
        hit = self._query_cache.get(text)
        if hit is not None and len(hit[0]) >= k:
            self._query_cache.move_to_end(text)
            return hit[0][:k], hit[1][:k], hit[2]
        qvec = self.text_encoder.encode([text]).astype(np.float32)
        self._query_vectors[text] = qvec[0]
        ids, scores = self.retriever.search(qvec, k)
        entry = (ids[0].astype(np.int64), scores[0].astype(np.float32), (qvec[0] @ self.query_basis).astype(np.float32))
        self._query_cache[text] = entry
        if len(self._query_cache) > cache_size:
            self._query_cache.popitem(last=False)
        return entry


    def personalized_search(self, text: str, history: list[int], weight: float, k: int
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Retrieve with the query vector moved toward the shopper's clicked products.

        ``q = normalise((1 - weight) * text(query) + weight * mean(text vectors of history))``; with an
        empty history or ``weight == 0`` this is :meth:`search`. Not memoised (it depends on the shopper).

        Returns:
            ``(ids int64 (k,), scores float32 (k,), query_obs float32 (query_dim,))``.
        """
        if weight <= 0 or not history:
            return self.search(text, k)
        if text not in self._query_vectors:
            self.search(text, k)
        qvec = (1.0 - weight) * self._query_vectors[text] + weight * self.text_vectors[history].mean(axis=0)
        qvec = (qvec / max(float(np.linalg.norm(qvec)), 1e-12)).astype(np.float32)[None, :]
        ids, scores = self.retriever.search(qvec, k)
        return ids[0].astype(np.int64), scores[0].astype(np.float32), (qvec[0] @ self.query_basis).astype(np.float32)


@functools.lru_cache(maxsize=8)
def get_world(config: WorldConfig = WorldConfig()) -> ShopWorld:
    """One shared :class:`ShopWorld` per config per process."""
    return ShopWorld(config)
