"""Ranking metrics against ranx on the same inputs; env NDCG consistency; diversity, coverage, accumulator."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs import WorldConfig, static_config
from experiments.evaluate import _truth
from experiments.metrics import (
    SessionAccumulator,
    catalog_coverage,
    first_click_reciprocal_rank,
    intra_list_diversity,
    ndcg_at_n,
    reciprocal_rank,
    utility_gains,
)

ranx = pytest.importorskip("ranx")


def _random_queries(n_queries: int = 60, k: int = 20, n: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    queries = []
    for q in range(n_queries):
        ids = rng.choice(1000, size=k, replace=False)
        if q % 7 == 0:  # padded candidate lists
            ids[-3:] = -1
        gains = rng.integers(0, 5, size=k).astype(float)  # ranx stores integer relevance
        gains[ids < 0] = 0
        gains[rng.integers(k - 3)] = 4  # at least one relevant valid candidate
        ranked = rng.permutation(ids[ids >= 0])[:n]
        queries.append((ids, gains, ranked))
    return queries


def test_ndcg_and_mrr_match_ranx():
    n = 10
    qrels, run, best_qrels = {}, {}, {}
    ours_ndcg, ours_mrr = [], []
    for q, (ids, gains, ranked) in enumerate(_random_queries(n=n)):
        valid = ids >= 0
        qrels[f"q{q:04d}"] = {f"d{i}": int(g) for i, g in zip(ids[valid], gains[valid]) if g > 0}
        run[f"q{q:04d}"] = {f"d{i}": float(n - r) for r, i in enumerate(ranked)}
        best = ids[valid][np.argmax(gains[valid])]
        best_qrels[f"q{q:04d}"] = {f"d{best}": 1}
        ours_ndcg.append(ndcg_at_n(ranked, ids, gains, n))
        ours_mrr.append(reciprocal_rank(ranked, [best]))
    per_query = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), f"ndcg@{n}", return_mean=False)
    np.testing.assert_allclose(ours_ndcg, per_query, rtol=1e-9, atol=1e-12)
    mrr = ranx.evaluate(ranx.Qrels(best_qrels), ranx.Run(run), "mrr", return_mean=False)
    np.testing.assert_allclose(ours_mrr, mrr, rtol=1e-12)


def test_env_ndcg_matches_metrics_and_ranx():
    env = gym.make("ShopRankStatic-v0", config=static_config(world=WorldConfig(text_encoder="hashing")))
    rng = np.random.default_rng(1)
    n = env.unwrapped.config.slate_size
    ours, theirs = [], []
    qrels, run = {}, {}
    for q in range(40):
        env.reset(seed=q)
        truth = _truth(env)
        _, _, _, _, info = env.step(rng.random(env.action_space.shape[0]).astype(np.float32))
        gains = utility_gains(truth.utilities, truth.candidate_ids)
        ours.append(ndcg_at_n(info["shown_ids"], truth.candidate_ids, gains, n))
        theirs.append(info["ndcg"])
        # float gains -> integers for ranx (NDCG is scale-invariant; rounding error ~1e-6)
        valid = truth.candidate_ids >= 0
        qrels[f"q{q:04d}"] = {f"d{i}": int(round(g * 1e6)) for i, g in zip(truth.candidate_ids[valid], gains[valid]) if g > 0}
        run[f"q{q:04d}"] = {f"d{i}": float(n - r) for r, i in enumerate(info["shown_ids"]) if i >= 0}
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)
    per_query = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), f"ndcg@{n}", return_mean=False)
    np.testing.assert_allclose(ours, per_query, atol=1e-5)


def test_small_metrics():
    assert first_click_reciprocal_rank(np.array([3, 1])) == 0.5
    assert first_click_reciprocal_rank(np.array([], dtype=int)) == 0.0
    assert reciprocal_rank(np.array([5, -1, 7]), [7]) == pytest.approx(1 / 3)
    assert reciprocal_rank(np.array([5, 6]), [7]) == 0.0
    assert intra_list_diversity(np.array([[1.0, 0.0], [0.0, 2.0]])) == pytest.approx(1.0)
    assert intra_list_diversity(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])) == pytest.approx(0.0)
    assert np.isnan(intra_list_diversity(np.ones((1, 3))))
    assert catalog_coverage([1, 2, 2, -1, 5], 10) == 0.3
    assert ndcg_at_n(np.array([1, 2]), np.array([1, 2, 3]), np.zeros(3), 2) == 1.0


def test_bad_metric_inputs():
    with pytest.raises(ValueError, match=re.escape("n must be >= 1, got 0.")):
        ndcg_at_n(np.array([1]), np.array([1]), np.array([1.0]), 0)
    with pytest.raises(ValueError, match=re.escape("gains (2,) and candidate_ids (3,) must have the same shape.")):
        ndcg_at_n(np.array([1]), np.array([1, 2, 3]), np.array([1.0, 2.0]), 2)
    with pytest.raises(ValueError, match=re.escape("gains must be non-negative (shift utilities by their minimum first).")):
        ndcg_at_n(np.array([1]), np.array([1, 2]), np.array([1.0, -2.0]), 2)
    with pytest.raises(ValueError, match=re.escape("catalog_size must be >= 1, got 0.")):
        catalog_coverage([1], 0)


def test_session_accumulator():
    acc = SessionAccumulator(slate_size=3, fused=np.eye(4))
    acc.add(2.0, {"clicks": 1.0, "purchases": 1.0, "revenue": 10.0, "clicked_positions": np.array([1]),
                  "shown_ids": np.array([0, 1, -1]), "ndcg": 0.5, "left": False})
    acc.add(0.0, {"clicks": 0.0, "purchases": 0.0, "revenue": 0.0, "clicked_positions": np.array([], dtype=int),
                  "shown_ids": np.array([2, 3, 0]), "ndcg": 0.7, "left": True})
    out = acc.result()
    assert out["reward"] == 2.0 and out["session_length"] == 2.0
    assert out["ctr"] == pytest.approx(1 / 5)
    assert out["ndcg"] == pytest.approx(0.6) and out["mrr_click"] == pytest.approx(0.25)
    assert out["abandon_rate"] == 1.0 and out["zero_click_rate"] == 0.5
    assert out["ctr_pos_1"] == 0.0 and out["ctr_pos_2"] == 0.5 and out["ctr_pos_3"] == 0.0
    assert out["diversity"] == pytest.approx(1.0)
    assert np.isnan(out["mrr_best"])
    assert sorted(set(acc.shown_ids)) == [0, 1, 2, 3]
