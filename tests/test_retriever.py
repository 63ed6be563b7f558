"""FaissRetriever: exactness, padding, persistence, input validation, approximate recall; clustered vectors."""

from __future__ import annotations

import pickle
import re

import faiss
import numpy as np
import pytest

from encoders.large_catalog import (
    BLOCK_ROWS,
    ClusteredVectorsConfig,
    generate_clustered_vectors,
    iter_clustered_vectors,
    sample_clustered_queries,
    write_clustered_vectors,
)
from encoders.retriever import FaissRetriever, IndexConfig, faiss_threads

D = 16


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised catalog (300, D) and queries (7, D)."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((300, D)).astype(np.float32) * 3, rng.standard_normal((7, D)).astype(np.float32)


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    """Clustered catalog (8000, 32) and held-out queries (100, 32)."""
    cfg = ClusteredVectorsConfig(n=8000, dim=32, n_topics=16, subclusters_per_topic=8, seed=3)
    return generate_clustered_vectors(cfg), sample_clustered_queries(cfg, 100, seed=1)


def _recall(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(ids, truth)]))


# ------------------------------------------------------------------------------------------ exactness


def test_flat_matches_numpy_brute_force(small):
    vectors, queries = small
    retriever = FaissRetriever(vectors, IndexConfig(kind="flat"))
    ids, scores = retriever.search(queries, 10)
    sims = _unit(queries.astype(np.float64)) @ _unit(vectors.astype(np.float64)).T
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert ids.shape == scores.shape == (7, 10)
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(sims, expected, axis=1), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_inputs_are_not_modified_and_any_real_dtype_works(small):
    vectors, queries = small
    before_v, before_q = vectors.copy(), queries.copy()
    retriever = FaissRetriever(vectors.astype(np.float64))
    ids64, _ = retriever.search(queries.astype(np.float64), 5)
    ids32, _ = retriever.search(queries, 5)
    np.testing.assert_array_equal(vectors, before_v)
    np.testing.assert_array_equal(queries, before_q)
    np.testing.assert_array_equal(ids64, ids32)


def test_metadata_and_auto_rule(small):
    vectors, _ = small
    retriever = FaissRetriever(vectors)
    assert len(retriever) == 300 and retriever.dim == D
    assert retriever.kind == "flat" and retriever.is_exact and retriever.nlist is None
    assert retriever.memory_bytes() >= vectors.nbytes
    assert IndexConfig().resolve_kind(50_000) == "flat"
    assert IndexConfig().resolve_kind(50_001) == "ivf_sq8"
    assert IndexConfig().resolve_nlist(1_000_000) == 4096
    assert IndexConfig().resolve_nlist(1000) == 25  # capped at n // 39


def test_empty_query_batch(small):
    vectors, _ = small
    ids, scores = FaissRetriever(vectors).search(np.zeros((0, D), np.float32), 4)
    assert ids.shape == scores.shape == (0, 4)


# -------------------------------------------------------------------------------------------- padding


def test_k_larger_than_catalog_is_padded(small):
    vectors, queries = small
    retriever = FaissRetriever(vectors[:5])
    ids, scores = retriever.search(queries[:3], 8)
    assert ids.shape == scores.shape == (3, 8)
    assert np.all(ids[:, 5:] == -1) and np.all(np.isneginf(scores[:, 5:]))
    assert np.all(np.sort(ids[:, :5], axis=1) == np.arange(5))
    assert np.all(np.isfinite(scores[:, :5]))


@pytest.mark.parametrize("kind", ["hnsw", "ivf_flat"])
def test_padding_for_approximate_kinds(kind, small):
    vectors, queries = small
    retriever = FaissRetriever(vectors[:60], IndexConfig(kind=kind, nlist=1))
    ids, scores = retriever.search(queries, 64)
    assert np.all(ids[:, 60:] == -1) and np.all(np.isneginf(scores[:, 60:]))
    assert np.all(np.isneginf(scores[ids < 0]))


# -------------------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("kind", ["flat", "hnsw_sq8", "ivf_sq8"])
def test_save_load_and_pickle_round_trip(kind, clustered, tmp_path):
    vectors, queries = clustered
    retriever = FaissRetriever(vectors[:3000], IndexConfig(kind=kind, nprobe=7, ef_search=150))
    ids, scores = retriever.search(queries, 20)
    path = tmp_path / "sub" / "index.faiss"
    retriever.save(path)
    assert (tmp_path / "sub" / "index.faiss.json").is_file()
    for copy in (FaissRetriever.load(path), pickle.loads(pickle.dumps(retriever))):
        assert copy.kind == kind and copy.config == retriever.config and len(copy) == 3000
        ids2, scores2 = copy.search(queries, 20)
        np.testing.assert_array_equal(ids2, ids)
        np.testing.assert_array_equal(scores2, scores)


def test_load_without_sidecar_fails_clearly(small, tmp_path):
    vectors, _ = small
    path = tmp_path / "index.faiss"
    FaissRetriever(vectors).save(path)
    (tmp_path / "index.faiss.json").unlink()
    with pytest.raises(FileNotFoundError, match="No config sidecar"):
        FaissRetriever.load(path)


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (np.zeros(5, np.float32), "vectors must be a 2-D array (n, d), got shape (5,)."),
        (np.zeros((0, 4), np.float32), "vectors must have at least one row and one column, got shape (0, 4)."),
        (np.array([[1.0, np.nan]], np.float32), "vectors contain NaN or infinite values."),
        (np.array([["a", "b"]]), "vectors must hold real numbers, got dtype <U1."),
    ],
)
def test_bad_vectors(vectors, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        FaissRetriever(vectors)


@pytest.mark.parametrize(
    ("queries", "k", "message"),
    [
        (np.zeros((2, D + 1), np.float32), 3, f"queries have dimension {D + 1}, but the index has dimension {D}."),
        (np.zeros(D, np.float32), 3, f"queries must be a 2-D array (B, d), got shape ({D},)."),
        (np.full((1, D), np.inf, np.float32), 3, "queries contain NaN or infinite values."),
        (np.full((1, D), np.nan, np.float32), 3, "queries contain NaN or infinite values."),
        (np.ones((1, D), np.float32), 0, "k must be a positive integer, got 0."),
        (np.ones((1, D), np.float32), -2, "k must be a positive integer, got -2."),
        (np.ones((1, D), np.float32), 2.5, "k must be a positive integer, got 2.5."),
        (np.ones((1, D), np.float32), True, "k must be a positive integer, got True."),
    ],
)
def test_bad_queries(small, queries, k, message):
    retriever = FaissRetriever(small[0])
    with pytest.raises(ValueError, match=re.escape(message)):
        retriever.search(queries, k)


def test_bad_config():
    with pytest.raises(ValueError, match=re.escape("kind must be one of auto, flat, hnsw, hnsw_sq8, ivf_flat")):
        IndexConfig(kind="lsh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("nprobe must be >= 1, got 0.")):
        IndexConfig(nprobe=0)
    with pytest.raises(ValueError, match=re.escape("pq_m (5) must divide the vector dimension (16).")):
        FaissRetriever(np.ones((100, 16), np.float32), IndexConfig(kind="ivf_pq", pq_m=5))


# ---------------------------------------------------------------------------------- approximate recall


@pytest.mark.parametrize(
    ("config", "threshold"),
    [
        (IndexConfig(kind="hnsw", hnsw_m=16, ef_construction=40, ef_search=128), 0.95),
        (IndexConfig(kind="hnsw_sq8", hnsw_m=16, ef_construction=40, ef_search=128), 0.95),
        (IndexConfig(kind="ivf_flat", nprobe=16), 0.95),
        (IndexConfig(kind="ivf_sq8", nprobe=16), 0.95),
    ],
    ids=lambda c: c.kind if isinstance(c, IndexConfig) else str(c),
)
def test_approximate_recall_on_clustered_data(config, threshold, clustered):
    vectors, queries = clustered
    truth, _ = FaissRetriever(vectors, IndexConfig(kind="flat")).search(queries, 50)
    approx = FaissRetriever(vectors, config)
    ids, _ = approx.search(queries, 50)
    assert _recall(ids, truth) >= threshold
    assert approx.memory_bytes() > 0


def test_set_search_params_changes_recall(clustered):
    vectors, queries = clustered
    truth, _ = FaissRetriever(vectors, IndexConfig(kind="flat")).search(queries, 50)
    ivf = FaissRetriever(vectors, IndexConfig(kind="ivf_flat", nprobe=1))
    low = _recall(ivf.search(queries, 50)[0], truth)
    ivf.set_search_params(nprobe=ivf.nlist)  # all lists: exact
    assert ivf.config.nprobe == ivf.nlist
    assert _recall(ivf.search(queries, 50)[0], truth) == 1.0 > low


def test_threads_are_restored(small):
    before = faiss.omp_get_max_threads()
    FaissRetriever(small[0], IndexConfig(n_threads=1)).search(small[1], 3)
    assert faiss.omp_get_max_threads() == before
    with faiss_threads(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before


# ------------------------------------------------------------------------------------ clustered vectors


def test_clustered_vectors_deterministic_streamed_and_clustered(tmp_path):
    cfg = ClusteredVectorsConfig(n=BLOCK_ROWS + 1000, dim=8, n_topics=4, subclusters_per_topic=4, seed=5)
    full = generate_clustered_vectors(cfg)
    assert full.shape == (cfg.n, 8) and full.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-5)
    on_disk = write_clustered_vectors(tmp_path / "v.npy", cfg, progress=False)
    np.testing.assert_array_equal(np.asarray(on_disk), full)
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy", mmap_mode="r")[-3:], full[-3:])
    assert not np.array_equal(generate_clustered_vectors(ClusteredVectorsConfig(n=100, dim=8, seed=6)), full[:100])
    # Clustered, not uniform: products sit much closer to their own subcluster centre than to others.
    start, block, clusters = next(iter_clustered_vectors(cfg))
    assert start == 0 and len(block) == BLOCK_ROWS
    own = np.mean([block[clusters == c].mean(axis=0) @ block[clusters == c][0] for c in np.unique(clusters)[:5]])
    assert own > 0.7


def test_clustered_vectors_follow_labels():
    cfg = ClusteredVectorsConfig(n=400, dim=8, n_topics=3, subclusters_per_topic=2, seed=0)
    labels = np.repeat(np.arange(3), [100, 150, 150])[np.random.default_rng(0).permutation(400)]
    clusters = np.concatenate([c for _, _, c in iter_clustered_vectors(cfg, labels)])
    np.testing.assert_array_equal(clusters // 2, labels)
    with pytest.raises(ValueError, match=re.escape("labels must lie in [0, 3), got [0, 3].")):
        generate_clustered_vectors(cfg, np.arange(400) % 4)
