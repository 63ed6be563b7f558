"""Clustered product vectors for catalogs of up to a million products, in bounded memory.

Real catalog embeddings are not uniform noise: products form topics (categories) and, inside each topic,
tighter groups of near-duplicates (the same item in several colours, the same brand's range). Retrieval
indexes behave very differently on such data (IVF lists are unbalanced, HNSW graphs have hubs), so
benchmarks and large-catalog environments use this two-level mixture of Gaussians instead:

* ``n_topics`` topic centroids ``t_j``: random unit vectors;
* ``subclusters_per_topic`` subcluster centroids per topic: ``s = normalise(t_j + topic_spread * g / sqrt(d))``;
* each product: ``x = normalise(s + point_spread * g / sqrt(d))`` around a subcluster drawn with Zipf-skewed
  popularity (some subclusters are much larger than others), with ``g ~ N(0, I_d)``.

``spread`` values are the expected norm of the noise added to a unit vector, so ``point_spread = 0.6``
puts a product at cosine ~0.86 from its subcluster centroid.

Rows are generated in fixed blocks of :data:`BLOCK_ROWS`, each from its own random stream derived from
``(seed, block index)``: the output is identical whichever way it is consumed (whole array, chunk
iterator, file on disk) and only one block (``BLOCK_ROWS * dim * 4`` bytes, 16 MiB at ``dim=64``) is held
at a time. No global random state is touched.

Example:
    >>> cfg = ClusteredVectorsConfig(n=1_000_000, dim=64, seed=0)
    >>> vectors = write_clustered_vectors("catalog_vectors.npy", cfg)   # np.memmap, (1_000_000, 64)
    >>> queries = sample_clustered_queries(cfg, n_queries=1000, seed=1)   # float32 (1000, 64)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from encoders.errors import ConfigError

BLOCK_ROWS = 65_536
"""Rows per generation block (fixed: changing it would change the generated vectors)."""

_STREAM_CENTROIDS = 0
_STREAM_BLOCKS = 1
_STREAM_QUERIES = 2


@dataclass(frozen=True)
class ClusteredVectorsConfig:
    """Settings of the clustered vector generator.

    Attributes:
        n: Number of product vectors, ``1 <= n <= 10_000_000``.
        dim: Vector width ``d`` (``>= 2``).
        n_topics: Top-level clusters (think categories). When ``labels`` are passed to the generator
            functions, label ``j`` selects topic ``j``, so it must be ``>= labels.max() + 1``.
        subclusters_per_topic: Tighter groups inside each topic (``n_topics * subclusters_per_topic``
            clusters in all).
        topic_spread: Noise norm of a subcluster centroid around its topic centroid (0 = subclusters
            collapse onto the topic).
        point_spread: Noise norm of a product around its subcluster centroid.
        size_skew: Zipf exponent of subcluster popularity: subcluster of popularity rank ``r`` (1-based)
            gets weight ``r ** -size_skew``; 0 gives equal sizes in expectation.
        seed: Seed; the same config gives the same vectors, byte for byte.
    """

    n: int = 1_000_000
    dim: int = 64
    n_topics: int = 64
    subclusters_per_topic: int = 32
    topic_spread: float = 0.8
    point_spread: float = 0.6
    size_skew: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n <= 10_000_000:
            raise ConfigError(f"n must be between 1 and 10,000,000, got {self.n}.")
        if self.dim < 2:
            raise ConfigError(f"dim must be >= 2, got {self.dim}.")
        if self.n_topics < 1:
            raise ConfigError(f"n_topics must be >= 1, got {self.n_topics}.")
        if self.subclusters_per_topic < 1:
            raise ConfigError(f"subclusters_per_topic must be >= 1, got {self.subclusters_per_topic}.")
        for name in ("topic_spread", "point_spread", "size_skew"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be finite and >= 0, got {value}.")

    @property
    def n_clusters(self) -> int:
        """Total number of subclusters, ``n_topics * subclusters_per_topic``."""
        return self.n_topics * self.subclusters_per_topic


@dataclass(frozen=True)
class ClusterModel:
    """The mixture the vectors are drawn from (derived deterministically from the config).

    Attributes:
        topics: ``float32 (n_topics, d)`` unit topic centroids.
        centroids: ``float32 (n_topics * subclusters_per_topic, d)`` unit subcluster centroids; rows
            ``j * S : (j + 1) * S`` belong to topic ``j`` (``S = subclusters_per_topic``).
        weights: ``float64 (n_topics, S)`` popularity of each subcluster within its topic, rows sum to 1.
        topic_weights: ``float64 (n_topics,)`` probability of each topic when no labels are given.
    """

    topics: np.ndarray
    centroids: np.ndarray
    weights: np.ndarray
    topic_weights: np.ndarray


def _normalise(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in place; ``float32 (m, d) -> float32 (m, d)``."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, np.float32(1e-12), out=norms)
    x /= norms
    return x


def cluster_model(config: ClusteredVectorsConfig) -> ClusterModel:
    """Draw the topic and subcluster centroids and the subcluster popularities of ``config``.

    Args:
        config: Generator settings.

    Returns:
        The :class:`ClusterModel` (a few MB at most), identical for identical configs.
    """
    rng = np.random.default_rng([config.seed, _STREAM_CENTROIDS])
    d, t, s = config.dim, config.n_topics, config.subclusters_per_topic
    topics = _normalise(rng.standard_normal((t, d), dtype=np.float32))
    noise = rng.standard_normal((t, s, d), dtype=np.float32) * np.float32(config.topic_spread / np.sqrt(d))
    centroids = _normalise((topics[:, None, :] + noise).reshape(t * s, d))
    # Zipf popularity over all subclusters, ranks shuffled so that big and small groups mix across topics.
    ranks = rng.permutation(t * s).reshape(t, s) + 1.0
    raw = ranks ** -config.size_skew
    topic_weights = raw.sum(axis=1) / raw.sum()
    weights = raw / raw.sum(axis=1, keepdims=True)
    return ClusterModel(topics=topics, centroids=centroids, weights=weights, topic_weights=topic_weights)


def _check_labels(config: ClusteredVectorsConfig, labels: np.ndarray | None) -> np.ndarray | None:
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.shape != (config.n,):
        raise ValueError(f"labels must have shape ({config.n},), got {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}.")
    if labels.size and (labels.min() < 0 or labels.max() >= config.n_topics):
        raise ValueError(f"labels must lie in [0, {config.n_topics}), got [{labels.min()}, {labels.max()}].")
    return labels


def _draw(
    model: ClusterModel,
    config: ClusteredVectorsConfig,
    rng: np.random.Generator,
    m: int,
    topics: np.ndarray | None,
    spread: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``m`` vectors: ``(float32 (m, d) unit rows, int64 (m,) subcluster ids)``."""
    s = config.subclusters_per_topic
    if topics is None:
        topics = rng.choice(config.n_topics, size=m, p=model.topic_weights)
    # Inverse-CDF sampling of the subcluster within each row's topic, vectorised over rows: topic j's CDF
    # is shifted to (j, j + 1], so one sorted array serves every topic.
    topics = topics.astype(np.int64)
    flat_cdf = (np.cumsum(model.weights, axis=1) + np.arange(config.n_topics)[:, None]).ravel()
    cluster = np.searchsorted(flat_cdf, topics + rng.random(m), side="right")
    np.clip(cluster, topics * s, topics * s + s - 1, out=cluster)  # guards float rounding at the edges
    noise = rng.standard_normal((m, config.dim), dtype=np.float32)
    noise *= np.float32(spread / np.sqrt(config.dim))
    noise += model.centroids[cluster]
    return _normalise(noise), cluster


def iter_clustered_vectors(
    config: ClusteredVectorsConfig,
    labels: np.ndarray | None = None,
    model: ClusterModel | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield the catalog vectors block by block.

    Args:
        config: Generator settings.
        labels: Optional ``int (n,)`` topic of each product (e.g. its category index:
            ``np.unique(catalog.categories, return_inverse=True)[1]``), values in ``[0, n_topics)``, so that
            vectors cluster the way the catalog does. Without labels topics are drawn by popularity.
        model: The mixture, if already computed by :func:`cluster_model` (recomputed otherwise).

    Yields:
        ``(start, vectors, clusters)``: rows ``start : start + len(vectors)`` as ``float32 (m, d)`` unit
        vectors and their ``int64 (m,)`` subcluster ids; ``m <= BLOCK_ROWS``.

    Raises:
        ValueError: if ``labels`` has the wrong shape, dtype or range.
    """
    labels = _check_labels(config, labels)
    model = cluster_model(config) if model is None else model
    for block, start in enumerate(range(0, config.n, BLOCK_ROWS)):
        stop = min(start + BLOCK_ROWS, config.n)
        rng = np.random.default_rng([config.seed, _STREAM_BLOCKS, block])
        topics = None if labels is None else labels[start:stop]
        vectors, clusters = _draw(model, config, rng, stop - start, topics, config.point_spread)
        yield start, vectors, clusters


def generate_clustered_vectors(
    config: ClusteredVectorsConfig, labels: np.ndarray | None = None
) -> np.ndarray:
    """All ``n`` vectors in memory (``n * d * 4`` bytes; use :func:`write_clustered_vectors` for big ``n``).

    Args:
        config: Generator settings.
        labels: Optional ``int (n,)`` topic per product (see :func:`iter_clustered_vectors`).

    Returns:
        ``float32 (n, d)`` unit rows, identical to what :func:`write_clustered_vectors` writes.
    """
    out = np.empty((config.n, config.dim), dtype=np.float32)
    for start, vectors, _ in iter_clustered_vectors(config, labels):
        out[start : start + len(vectors)] = vectors
    return out


def write_clustered_vectors(
    path: str | Path,
    config: ClusteredVectorsConfig,
    labels: np.ndarray | None = None,
    progress: bool = True,
) -> np.memmap:
    """Stream the vectors into a ``.npy`` file on disk, one block at a time.

    Peak memory is one block (``BLOCK_ROWS * d * 4`` bytes) plus the page cache the OS chooses to keep.
    The file is a regular ``.npy`` (``np.load(path, mmap_mode="r")`` reopens it without reading it).

    Args:
        path: Destination file (parent folders are created; an existing file is overwritten).
        config: Generator settings.
        labels: Optional ``int (n,)`` topic per product (see :func:`iter_clustered_vectors`).
        progress: Show a tqdm progress bar (rows written).

    Returns:
        The file opened read-only as an ``np.memmap`` of ``float32 (n, d)``.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(config.n, config.dim))
    with tqdm(total=config.n, unit="vec", unit_scale=True, desc="clustered vectors", disable=not progress) as bar:
        for start, vectors, _ in iter_clustered_vectors(config, labels):
            out[start : start + len(vectors)] = vectors
            bar.update(len(vectors))
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def sample_clustered_queries(
    config: ClusteredVectorsConfig,
    n_queries: int,
    seed: int,
    spread: float | None = None,
) -> np.ndarray:
    """Query vectors from the same mixture as the catalog (held out: a separate random stream).

    Args:
        config: The catalog's generator settings.
        n_queries: Number of queries ``B``.
        seed: Seed of the query stream (independent of the catalog rows for any value).
        spread: Noise norm around the subcluster centroid (default: ``config.point_spread``); larger
            values model vaguer queries.

    Returns:
        ``float32 (B, d)`` unit rows.
    """
    if n_queries < 0:
        raise ConfigError(f"n_queries must be >= 0, got {n_queries}.")
    spread = config.point_spread if spread is None else spread
    rng = np.random.default_rng([config.seed, _STREAM_QUERIES, seed])
    vectors, _ = _draw(cluster_model(config), config, rng, n_queries, None, spread)
    return vectors
