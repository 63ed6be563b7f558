"""The Plackett-Luce slate distribution (agents.distributions) and per-slot credit (agents.slate_ppo)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from agents.distributions import (PlackettLuceDistribution, order_from_action, rank_encoding, sample_order,
                                  slot_log_probs)
from agents.extractor import MASKED_SCORE


def _orders_with_prefix(k: int, prefix: tuple[int, ...]) -> torch.Tensor:
    rest = [i for i in range(k) if i not in prefix]
    return torch.tensor([list(prefix) + rest])


def test_top_n_log_probs_sum_to_one_over_all_ordered_prefixes():
    scores = torch.tensor([[0.3, -1.2, 2.0, 0.7]], dtype=torch.float64)
    total = sum(float(slot_log_probs(scores, _orders_with_prefix(4, prefix), 2).sum().exp())
                for prefix in itertools.permutations(range(4), 2))
    assert total == pytest.approx(1.0, abs=1e-12)


def test_log_prob_matches_the_hand_computed_plackett_luce_likelihood():
    s = np.array([0.3, -1.2, 2.0, 0.7])
    expected = np.log(np.exp(s[2]) / np.exp(s).sum()) + np.log(np.exp(s[0]) / np.exp(s[[0, 1, 3]]).sum())
    got = slot_log_probs(torch.tensor(s[None]), _orders_with_prefix(4, (2, 0)), 2).sum()
    assert float(got) == pytest.approx(expected, abs=1e-12)


def test_gumbel_top_k_sampling_frequencies_match_the_probabilities():
    scores = torch.tensor([[0.5, -0.5, 1.5, 0.0]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    draws = sample_order(scores.expand(40_000, 4), generator=gen)[:, :2]
    for prefix in itertools.permutations(range(4), 2):
        p = float(slot_log_probs(scores, _orders_with_prefix(4, prefix), 2).sum().exp())
        freq = float(((draws[:, 0] == prefix[0]) & (draws[:, 1] == prefix[1])).double().mean())
        assert freq == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / 40_000) + 1e-3), prefix


def test_log_prob_gradient_passes_torch_gradcheck():
    order = torch.tensor([[2, 0, 3, 1], [1, 3, 0, 2]])
    scores = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: slot_log_probs(s, order, 3), (scores,))


def test_masked_candidates_are_never_sampled_before_real_ones_and_add_nothing():
    scores = torch.tensor([[1.0, MASKED_SCORE, 0.0, MASKED_SCORE]])
    dist = PlackettLuceDistribution(4, 3).proba_distribution(scores)
    for _ in range(50):
        order = order_from_action(dist.sample())
        assert set(order[0, :2].tolist()) == {0, 2}
    action = rank_encoding(torch.tensor([[2, 0, 1, 3]]))
    terms = dist.slot_log_probs(action)
    assert terms[0, 2] == 0.0 and torch.isfinite(terms).all()
    assert float(dist.log_prob(action)) == pytest.approx(float(torch.log_softmax(torch.tensor([0.0, 1.0]), 0)[0]))


def test_rank_encoding_round_trips_and_mode_ranks_by_score():
    order = torch.tensor([[3, 1, 0, 2], [0, 1, 2, 3]])
    assert torch.equal(order_from_action(rank_encoding(order)), order)
    dist = PlackettLuceDistribution(4, 2).proba_distribution(torch.tensor([[0.1, 2.0, -1.0, 0.5]]))
    assert order_from_action(dist.mode())[0].tolist() == [1, 3, 0, 2]
    assert dist.mode().abs().max() <= 1.0


def test_per_slot_log_probs_sum_to_the_slate_log_prob_and_entropy_is_exact_for_one_slot():
    scores = torch.randn(3, 5, generator=torch.Generator().manual_seed(2))
    action = PlackettLuceDistribution(5, 3).proba_distribution(scores).sample()
    joint = PlackettLuceDistribution(5, 3).proba_distribution(scores).log_prob(action)
    per_slot = PlackettLuceDistribution(5, 3, per_slot=True).proba_distribution(scores).log_prob(action)
    assert per_slot.shape == (3, 3)
    assert torch.allclose(per_slot.sum(1), joint)
    single = PlackettLuceDistribution(5, 1).proba_distribution(scores).entropy()
    assert torch.allclose(single, torch.distributions.Categorical(logits=scores).entropy(), atol=1e-6)


def test_bad_slot_count_is_refused_by_message():
    with pytest.raises(ValueError, match=r"^PlackettLuceDistribution needs 1 <= n_slots <= n_candidates=4, got 5\.$"):
        PlackettLuceDistribution(4, 5)


def test_the_ope_numpy_plackett_luce_and_the_policys_torch_one_agree():
    """OPE keeps a float64 NumPy form (it draws from NumPy generators); both must be the same likelihood."""
    from experiments.ope.plackett_luce import slot_log_probs as numpy_slot_log_probs

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 9))
    orders = np.argsort(rng.random((6, 9)), axis=1)
    ours = slot_log_probs(torch.as_tensor(logits), torch.as_tensor(orders), 4).numpy()
    theirs = numpy_slot_log_probs(logits, orders[:, :4])
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
