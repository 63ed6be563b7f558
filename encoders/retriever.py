"""Vector retrieval over the catalog with faiss: exact for small catalogs, approximate for large ones.

:class:`FaissRetriever` answers ``search(queries (B, d), k) -> ids (B, k), scores (B, k)`` by inner
product on L2-normalised vectors (so scores are cosine similarities). Catalog rows and queries are
normalised on the way in (copies: the caller's arrays are never modified); an all-zero row stays zero and
scores 0 against everything.

Index kinds (``IndexConfig.kind``); memory per vector at ``d`` dimensions, ``M`` HNSW links:

============  ============================================  ================================  =========
kind          faiss index                                   bytes per vector                  exact
============  ============================================  ================================  =========
``flat``      ``IndexFlatIP``                               ``4 d``                           yes
``hnsw``      ``IndexHNSWFlat``                             ``4 d + ~8.5 M`` (graph)          no
``hnsw_sq8``  ``IndexHNSWSQ`` (8-bit scalar quantizer)      ``d + ~8.5 M``                    no
``ivf_flat``  ``IndexIVFFlat``                              ``4 d + 8`` (+ centroids)         no
``ivf_sq8``   ``IndexIVFScalarQuantizer`` (8-bit)           ``d + 8`` (+ centroids)           no
``ivf_pq``    ``IndexIVFPQ``                                ``pq_m * pq_nbits / 8 + 8``        no
============  ============================================  ================================  =========

``refine_factor > 0`` wraps an approximate index in ``IndexRefineFlat``: it fetches
``k * refine_factor`` candidates and re-scores them exactly, at the cost of also storing the raw vectors
(``+ 4 d`` bytes per vector).

``kind="auto"`` picks ``flat`` up to ``exact_max_size`` products and ``ivf_sq8`` above: at a million
clustered products (``d = 64``, one core) it met every target of ``benchmarks/bench_retrieval.py`` with
the widest margins: recall@100 0.97 vs exact, 75x exact's QPS at batch 1 and 105x at batch 256, memory
0.29x the raw vectors (``hnsw`` needs 2.06x; ``hnsw_sq8`` passes at 1.31x but builds 3x slower). See
``benchmarks/results/retrieval.md``.

Padding: when ``k`` exceeds the catalog size (or, for approximate indexes, when the probed part of the
index holds fewer than ``k`` vectors), the missing slots are filled with id ``-1`` and score ``-inf``,
always at the end of the row.

Threads: faiss parallelises with OpenMP. ``IndexConfig.n_threads`` (default 1) sets the thread count only
for the duration of this retriever's own calls (build, search) and restores the previous value after, so
other code using faiss sees no change. One thread is the default because environments search small
batches, where OpenMP's start-up and contention cost more than they save, and because RL runs parallelise
over environments (vector envs, worker processes) instead: on a 2-core machine shared with other work, an
exact single-query search over 100k products took 0.95 ms on 1 thread and 16 ms on 2. Raise it for large
batched searches or builds on idle cores; ``None`` uses faiss's process-wide setting (all cores unless
``faiss.omp_set_num_threads`` was called).
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator, Literal

import faiss
import numpy as np

from encoders.errors import CheckpointError, ConfigError, InputNotFoundError

IndexKind = Literal["auto", "flat", "hnsw", "hnsw_sq8", "ivf_flat", "ivf_sq8", "ivf_pq"]
_KINDS = ("auto", "flat", "hnsw", "hnsw_sq8", "ivf_flat", "ivf_sq8", "ivf_pq")
_ADD_CHUNK = 65_536
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class IndexConfig:
    """How the retriever indexes the catalog.

    Attributes:
        kind: Index type (see the module docstring), or ``"auto"``: ``"flat"`` when the catalog has at most
            ``exact_max_size`` products, ``"ivf_sq8"`` otherwise.
        exact_max_size: Largest catalog ``"auto"`` indexes exactly. Exact search costs ``O(n d)`` per
            query: about 1 ms per query at 100k products and ``d = 64`` on one core (measured), so about
            0.5 ms at the default threshold.
        hnsw_m: HNSW links per node (``M``): more links, better recall and more memory (``~8.5 M`` bytes per
            vector).
        ef_construction: HNSW candidate-list size while building: higher is slower to build, better graph.
        ef_search: HNSW candidate-list size while searching (raised to ``k`` when ``k`` is larger): the
            recall/speed knob of HNSW.
        nlist: IVF inverted lists (k-means cells). ``None``: the power of two nearest ``4 sqrt(n)``, capped
            at ``n // 39`` so k-means has enough training points (4096 at a million products).
        nprobe: IVF lists visited per query: the recall/speed knob of IVF (capped at ``nlist``); search cost
            grows about linearly with it. The benchmark's clustered vectors reach recall@100 >= 0.95 with 8
            of 4096 lists at 1M products and 16 of 1024 at 100k; the default 32 leaves a margin for real
            embeddings, which are less clustered. Tune it with :meth:`FaissRetriever.set_search_params`.
        pq_m: Product-quantizer sub-vectors for ``"ivf_pq"`` (must divide ``d``).
        pq_nbits: Bits per product-quantizer code.
        refine_factor: 0 to return the index's own scores; ``> 0`` re-scores ``k * refine_factor`` candidates
            with the exact vectors (``IndexRefineFlat``, adds ``4 d`` bytes per vector). Ignored by ``flat``.
        train_size: Vectors sampled (without replacement) to train IVF k-means / scalar quantizers.
            ``None``: ``min(n, 40 * nlist)`` for IVF (faiss wants >= 39 points per centroid), ``min(n, 65536)`` for ``hnsw_sq8``.
        kmeans_iters: k-means iterations when training the IVF coarse quantizer.
        n_threads: OpenMP threads for this retriever's calls (build and search), restored afterwards;
            ``None`` uses faiss's process-wide setting. See the module docstring for why 1 is the default.
        seed: Seed of the training sample and of faiss's k-means.
    """

    kind: IndexKind = "auto"
    exact_max_size: int = 50_000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nlist: int | None = None
    nprobe: int = 32
    pq_m: int = 16
    pq_nbits: int = 8
    refine_factor: int = 0
    train_size: int | None = None
    kmeans_iters: int = 10
    n_threads: int | None = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(f"kind must be one of {', '.join(_KINDS)}; got {self.kind!r}.")
        positive = ("hnsw_m", "ef_construction", "ef_search", "nprobe", "pq_m", "pq_nbits", "kmeans_iters")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("nlist", "train_size", "n_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be None or >= 1, got {value}.")
        if self.exact_max_size < 0:
            raise ConfigError(f"exact_max_size must be >= 0, got {self.exact_max_size}.")
        if self.refine_factor < 0:
            raise ConfigError(f"refine_factor must be >= 0, got {self.refine_factor}.")

    def resolve_kind(self, n: int) -> str:
        """The concrete index kind for a catalog of ``n`` products (applies the ``"auto"`` rule)."""
        if self.kind != "auto":
            return self.kind
        return "flat" if n <= self.exact_max_size else "ivf_sq8"

    def resolve_nlist(self, n: int) -> int:
        """The number of IVF lists used for ``n`` products (see ``nlist``)."""
        nlist = self.nlist if self.nlist is not None else 2 ** round(math.log2(4 * math.sqrt(n)))
        return max(1, min(nlist, n // 39))


@contextmanager
def faiss_threads(n_threads: int | None) -> Iterator[None]:
    """Run a block with faiss (OpenMP) using ``n_threads`` threads, then restore the previous count.

    Args:
        n_threads: Thread count; ``None`` changes nothing.
    """
    if n_threads is None:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n_threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _as_matrix(x: np.ndarray, name: str, dim: int | None) -> np.ndarray:
    """Check that ``x`` is a 2-D real matrix of width ``dim`` (if given); returns it uncast and uncopied."""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim != 2:
        letter = "B" if name == "queries" else "n"
        raise ValueError(f"{name} must be a 2-D array ({letter}, d), got shape {x.shape}.")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}.")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} have dimension {x.shape[1]}, but the index has dimension {dim}.")
    return x


def _normalised_copy(x: np.ndarray, name: str) -> np.ndarray:
    """``float32`` C-contiguous copy of ``x (m, d)`` with unit rows; raises on NaN/inf."""
    out = np.array(x, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contain NaN or infinite values.")
    faiss.normalize_L2(out)
    return out


def _build_empty(kind: str, d: int, n: int, config: IndexConfig) -> faiss.Index:
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexFlatIP(d)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, config.hnsw_m, ip)
    elif kind == "hnsw_sq8":
        index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, config.hnsw_m, ip)
    else:
        nlist = config.resolve_nlist(n)
        quantizer = faiss.IndexFlatIP(d)
        if kind == "ivf_flat":
            index = faiss.IndexIVFFlat(quantizer, d, nlist, ip)
        elif kind == "ivf_sq8":
            index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
        else:  # ivf_pq
            if d % config.pq_m:
                raise ConfigError(f"pq_m ({config.pq_m}) must divide the vector dimension ({d}).")
            index = faiss.IndexIVFPQ(quantizer, d, nlist, config.pq_m, config.pq_nbits, ip)
        index.cp.niter = config.kmeans_iters
        index.cp.seed = config.seed
        index.quantizer_trains_alone = 0
        # Keep the quantizer alive as long as the index (SWIG does not track the ownership otherwise).
        index.own_fields = True
        quantizer.this.disown()
    if kind in ("hnsw", "hnsw_sq8"):
        index.hnsw.efConstruction = config.ef_construction
    if config.refine_factor > 0:
        refined = faiss.IndexRefineFlat(index)
        refined.own_fields = True
        index.this.disown()
        return refined
    return index


class FaissRetriever:
    """Top-k inner-product search over L2-normalised catalog vectors.

    Args:
        vectors: ``float32 (n, d)`` catalog vectors (any real dtype is cast; an ``np.memmap`` is read in
            chunks of 65,536 rows, so the only full copy is the index itself). Rows are normalised.
        config: Index settings (default: ``IndexConfig()``, the ``"auto"`` rule).

    Raises:
        ValueError: if ``vectors`` is not a non-empty 2-D real array, or contains NaN/inf.

    Example:
        >>> retriever = FaissRetriever(product_vectors)              # float32 (n, d)
        >>> ids, scores = retriever.search(query_vectors, k=100)     # int64 (B, 100), float32 (B, 100)
    """

    def __init__(self, vectors: np.ndarray, config: IndexConfig | None = None) -> None:
        config = IndexConfig() if config is None else config
        vectors = _as_matrix(vectors, "vectors", None)
        n, d = vectors.shape
        if n == 0 or d == 0:
            raise ValueError(f"vectors must have at least one row and one column, got shape {vectors.shape}.")
        self._config = config
        self._kind = config.resolve_kind(n)
        with faiss_threads(config.n_threads):
            index = _build_empty(self._kind, d, n, config)
            if not index.is_trained:
                index.train(self._training_sample(vectors))
            for start in range(0, n, _ADD_CHUNK):
                index.add(_normalised_copy(vectors[start : start + _ADD_CHUNK], "vectors"))
        self._index = index
        self._apply_search_params()

    def _training_sample(self, vectors: np.ndarray) -> np.ndarray:
        """Normalised ``float32 (m, d)`` random rows for training (sorted, so a memmap is read forward)."""
        n = len(vectors)
        if self._config.train_size is not None:
            m = self._config.train_size
        elif self._kind.startswith("ivf"):
            m = 40 * self._config.resolve_nlist(n)
        else:
            m = 65_536
        m = min(m, n)
        rows = np.sort(np.random.default_rng(self._config.seed).choice(n, size=m, replace=False))
        return _normalised_copy(vectors[rows], "vectors")

    def _apply_search_params(self) -> None:
        """Push ``nprobe``/``ef_search``/``refine_factor`` from the config into the faiss index."""
        space = faiss.ParameterSpace()
        if self._kind.startswith("ivf"):
            nlist = faiss.extract_index_ivf(self._index).nlist
            space.set_index_parameter(self._index, "nprobe", min(self._config.nprobe, nlist))
        if self._kind.startswith("hnsw"):
            space.set_index_parameter(self._index, "efSearch", self._config.ef_search)
        if self._config.refine_factor > 0 and self._kind != "flat":
            space.set_index_parameter(self._index, "k_factor_rf", self._config.refine_factor)

    # ----------------------------------------------------------------------------------------- queries

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` catalog rows with the highest cosine similarity to each query.

        Args:
            queries: ``(B, d)`` query vectors (any real dtype; normalised internally, not modified).
                ``B = 0`` is allowed.
            k: Results per query, ``>= 1``; may exceed ``len(self)`` (see padding below).

        Returns:
            ``(ids, scores)``: ``int64 (B, k)`` catalog row indices and ``float32 (B, k)`` scores, each row
            sorted by decreasing score. Slots without a result (``k > len(self)``, or an approximate index
            whose probed lists hold fewer than ``k`` vectors) have id ``-1`` and score ``-inf``. Scores of
            ``sq8``/``pq`` kinds are computed on the compressed vectors unless ``refine_factor > 0``.

        Raises:
            ValueError: if ``k`` is not a positive integer, or ``queries`` is not 2-D, has the wrong
                dimension, or contains NaN/inf.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}.")
        k = int(k)
        queries = _normalised_copy(_as_matrix(queries, "queries", self.dim), "queries")
        k_index = min(k, len(self))
        with faiss_threads(self._config.n_threads):
            scores, ids = self._index.search(queries, k_index)
        if k_index < k:
            b = len(queries)
            ids = np.concatenate([ids, np.full((b, k - k_index), -1, dtype=np.int64)], axis=1)
            scores = np.concatenate([scores, np.full((b, k - k_index), -np.inf, dtype=np.float32)], axis=1)
        scores[ids < 0] = -np.inf
        return ids.astype(np.int64, copy=False), scores.astype(np.float32, copy=False)

    def set_search_params(
        self, *, nprobe: int | None = None, ef_search: int | None = None, n_threads: int | None = None
    ) -> None:
        """Change search-time settings without rebuilding (updates :attr:`config` too); ``None`` keeps one.

        Args:
            nprobe: New ``IndexConfig.nprobe`` (IVF kinds).
            ef_search: New ``IndexConfig.ef_search`` (HNSW kinds).
            n_threads: New ``IndexConfig.n_threads``.
        """
        given = (("nprobe", nprobe), ("ef_search", ef_search), ("n_threads", n_threads))
        self._config = replace(self._config, **{name: v for name, v in given if v is not None})
        self._apply_search_params()

    # ---------------------------------------------------------------------------------------- metadata

    def __len__(self) -> int:
        """Number of indexed products ``n``."""
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        """Vector width ``d``."""
        return int(self._index.d)

    @property
    def kind(self) -> str:
        """The concrete index kind (``"auto"`` resolved)."""
        return self._kind

    @property
    def config(self) -> IndexConfig:
        """The settings this retriever was built (and last tuned) with."""
        return self._config

    @property
    def nlist(self) -> int | None:
        """Number of IVF lists (``None`` for non-IVF kinds)."""
        return int(faiss.extract_index_ivf(self._index).nlist) if self._kind.startswith("ivf") else None

    @property
    def is_exact(self) -> bool:
        """True for the exact ``flat`` index."""
        return self._kind == "flat"

    def memory_bytes(self) -> int:
        """Size of the index in bytes, measured as its faiss serialisation (streamed, no copy is held).

        For every kind here this is the payload held in RAM (vectors or codes, ids, graph links,
        centroids) to within a few hundred bytes of headers; allocator slack is not counted.
        """
        total = 0

        def count(chunk: bytes) -> int:
            nonlocal total
            total += len(chunk)
            return len(chunk)

        faiss.write_index(self._index, faiss.PyCallbackIOWriter(count))
        return total

    def __repr__(self) -> str:
        return f"FaissRetriever(kind={self._kind!r}, n={len(self)}, dim={self.dim})"

    # ------------------------------------------------------------------------------------- persistence

    def save(self, path: str | Path) -> None:
        """Write the index to ``path`` (``faiss.write_index``) and its config to ``path + ".json"``.

        Args:
            path: Destination file; parent folders are created.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(path))
        meta = {"format_version": _FORMAT_VERSION, "kind": self._kind, "config": asdict(self._config)}
        _sidecar(path).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "FaissRetriever":
        """Read a retriever written by :meth:`save` (no pickle involved).

        Args:
            path: The index file given to :meth:`save` (its ``.json`` sidecar must sit next to it).

        Raises:
            FileNotFoundError: if the index file or its sidecar is missing.
        """
        path = Path(path)
        if not path.is_file():
            raise InputNotFoundError(f"No index file at {path}.")
        if not _sidecar(path).is_file():
            raise InputNotFoundError(f"No config sidecar at {_sidecar(path)} (written by FaissRetriever.save).")
        meta = json.loads(_sidecar(path).read_text())
        if meta.get("format_version") != _FORMAT_VERSION:
            raise CheckpointError(f"Unsupported retriever format version {meta.get('format_version')!r}.")
        return cls._from_index(faiss.read_index(str(path)), IndexConfig(**meta["config"]), meta["kind"])

    @classmethod
    def _from_index(cls, index: faiss.Index, config: IndexConfig, kind: str) -> "FaissRetriever":
        self = cls.__new__(cls)
        self._config, self._kind, self._index = config, kind, index
        self._apply_search_params()
        return self

    def __getstate__(self) -> dict:
        return {"config": self._config, "kind": self._kind, "index": faiss.serialize_index(self._index)}

    def __setstate__(self, state: dict) -> None:
        self._config, self._kind = state["config"], state["kind"]
        self._index = faiss.deserialize_index(state["index"])
        self._apply_search_params()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")
