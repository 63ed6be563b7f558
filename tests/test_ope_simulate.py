"""Plackett-Luce probabilities for OPE and the simulator-side policy adapters (no env needed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from experiments.ope.plackett_luce import position_marginals, sample_slates, slot_log_probs
from experiments.ope.simulate import DeterministicRanker, RankPlackettLuce, RewardTable, ranks, slate_action


def exact_slate_probs(logits: np.ndarray, n_slots: int) -> dict[tuple[int, ...], float]:
    """Every slate's PL probability by enumeration."""
    e = np.exp(logits)
    out = {}
    for slate in itertools.permutations(range(len(logits)), n_slots):
        p, left = 1.0, e.sum()
        for a in slate:
            p *= e[a] / left
            left -= e[a]
        out[slate] = p
    return out


def test_slot_log_probs_match_enumeration():
    logits = np.array([0.3, -1.0, 2.0, 0.0])
    probs = exact_slate_probs(logits, 3)
    slates = np.array(list(probs))
    lp = slot_log_probs(np.tile(logits, (len(slates), 1)), slates)
    np.testing.assert_allclose(np.exp(lp.sum(axis=1)), [probs[tuple(s)] for s in slates], rtol=1e-12)
    assert np.exp(lp.sum(axis=1)).sum() == pytest.approx(1.0)


def test_gumbel_sampling_and_marginals_follow_the_distribution():
    logits = np.array([1.0, 0.0, -0.5, 0.5])
    probs = exact_slate_probs(logits, 2)
    exact = np.zeros((4, 2))
    for (a, b), p in probs.items():
        exact[a, 0] += p
        exact[b, 1] += p
    est = position_marginals(logits[None, :], 2, np.random.default_rng(0), n_samples=200_000)[0]
    np.testing.assert_allclose(est, exact, atol=4e-3)
    np.testing.assert_allclose(est.sum(axis=0), 1.0)
    slates = sample_slates(np.tile(logits, (50_000, 1)), 2, np.random.default_rng(1))
    assert np.all(slates[:, 0] != slates[:, 1])
    freq = np.mean((slates[:, 0] == 0) & (slates[:, 1] == 3))
    assert freq == pytest.approx(probs[(0, 3)], abs=6e-3)
    same = sample_slates(np.tile(logits, (10, 1)), 2, np.random.default_rng(1))
    np.testing.assert_array_equal(same, sample_slates(np.tile(logits, (10, 1)), 2, np.random.default_rng(1)))


def _obs(scores: np.ndarray) -> dict:
    b, k = scores.shape
    cand = np.zeros((b, k, 5))
    cand[..., -3] = scores
    return {"candidates": cand, "mask": np.ones((b, k))}


def test_deterministic_ranker_probabilities():
    obs = _obs(np.array([[0.1, 0.9, 0.5, 0.3]]))
    pol = DeterministicRanker("r", lambda o: o["candidates"][..., -3])
    np.testing.assert_array_equal(pol.slates(obs, 2), [[1, 2]])
    m = pol.marginals(obs, 2)
    assert m[0, 1, 0] == 1 and m[0, 2, 1] == 1 and m.sum() == 2
    lp = pol.slot_log_probs(obs, np.array([[1, 2], [1, 3]]))
    assert lp[0].tolist() == [0.0, 0.0]
    assert lp[1].tolist() == [0.0, -np.inf]


def test_rank_plackett_luce_marginals_are_its_rank_table_permuted():
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [0.8, 0.2, 0.6, 0.4]])
    pol = RankPlackettLuce("pl", lambda o: o["candidates"][..., -3], temperature=1.0, n_table_samples=100_000)
    obs = _obs(scores)
    m = pol.marginals(obs, 2)
    table = pol.rank_table(4, 2)
    np.testing.assert_array_equal(ranks(scores), [[3, 0, 1, 2], [0, 3, 1, 2]])
    np.testing.assert_array_equal(m[0, 1], table[0])
    np.testing.assert_array_equal(m[1, 0], table[0])
    exact = exact_slate_probs(-np.arange(4.0), 2)
    assert table[0, 0] == pytest.approx(sum(p for s, p in exact.items() if s[0] == 0), abs=5e-3)
    lp = pol.slot_log_probs(obs, np.array([[1, 2], [0, 2]]))
    assert np.exp(lp.sum(axis=1))[0] == pytest.approx(exact[(0, 1)])


def test_slate_action_shows_the_slate_and_reward_table():
    a = slate_action(np.array([[3, 0, 2]]), 5)
    assert np.argsort(-a[0], kind="stable")[:3].tolist() == [3, 0, 2]
    t = RewardTable.fit(np.array([[0, 1], [0, 2]]), np.array([[1, 0], [0, 1]]), 3)
    assert t.table[0, 0] == 0.5 and t.table[2, 1] == 1.0 and t.table[1, 0] == pytest.approx(0.5)
