"""The array core's shortcuts for full slates, one session and one shopper give exactly the general path's results.

Each shortcut skips array calls that cannot change a value (masks that keep everything, size-1 draws); these tests
compare its output with the general path's, bit for bit, on random inputs that include ties, empty history and
sessions without clicks, so a shortcut that drifts from its rule fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from envs.core import ndcg, push_history, slate_positions
from simulators.shopper import SEGMENTS, ShopperConfig, sample_bank_rows, sample_traits, session_update


@pytest.mark.parametrize("seed", range(5))
def test_slate_positions_without_a_mask_equal_an_all_true_mask(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(-3, 3, size=(6, 20)).astype(np.float32)  # many ties: the stable order matters
    full = np.ones((6, 20), dtype=bool)
    assert np.array_equal(slate_positions(scores, None, 10), slate_positions(scores, full, 10))
    ints = rng.integers(0, 5, size=(6, 20))
    assert np.array_equal(slate_positions(ints, None, 10), slate_positions(ints, full, 10))


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_without_masks_equals_the_masked_path(seed):
    rng = np.random.default_rng(seed)
    utility = rng.normal(size=(5, 20))
    positions = np.stack([rng.permutation(20)[:10] for _ in range(5)])
    fast = ndcg(utility, None, positions, 1.0 / np.log2(np.arange(2, 12)))
    general = ndcg(utility, np.ones((5, 20), dtype=bool), positions, 1.0 / np.log2(np.arange(2, 12)),
                   np.ones((5, 10), dtype=bool))
    assert fast.tobytes() == general.tobytes()
    assert np.all((fast >= 0) & (fast <= 1))


@pytest.mark.parametrize("seed", range(10))
def test_one_session_history_push_equals_the_batched_rule(seed):
    rng = np.random.default_rng(seed)
    h = int(rng.integers(1, 7))
    history = np.full((4, h), -1, dtype=np.int64)
    for _ in range(6):
        clicked = np.where(rng.random((4, 10)) < 0.3, rng.integers(0, 1000, size=(4, 10)), -1)
        batched = push_history(history, clicked)
        for b in range(4):
            assert np.array_equal(push_history(history[b:b + 1], clicked[b:b + 1]), batched[b:b + 1])
        history = batched


@pytest.mark.parametrize("seed", range(5))
def test_session_update_without_a_shown_mask_equals_an_all_true_mask(seed):
    cfg = ShopperConfig()
    rng = np.random.default_rng(seed)
    b, n, v = 7, 10, 5
    taste = rng.normal(size=(b, v)).astype(np.float32)
    patience = rng.uniform(0.5, 3.0, size=b)
    rel = rng.random((b, n))
    visual = rng.normal(size=(b, n, v)).astype(np.float32)
    clicks = rng.random((b, n)) < 0.2
    purchases = clicks & (rng.random((b, n)) < 0.5)
    outs = [session_update(cfg, taste, patience, rel, visual, shown, clicks, purchases, np.random.default_rng(seed))
            for shown in (None, np.ones((b, n), dtype=bool))]
    for fast, general in zip(*outs):
        assert fast.dtype == general.dtype and fast.tobytes() == general.tobytes()
    one = session_update(cfg, taste[:1], patience[:1], rel[:1], visual[:1], None, clicks[:1], purchases[:1],
                         np.random.default_rng(seed))
    two = session_update(cfg, taste[:1], patience[:1], rel[:1], visual[:1], np.ones((1, n), dtype=bool), clicks[:1],
                         purchases[:1], np.random.default_rng(seed))
    assert all(x.tobytes() == y.tobytes() for x, y in zip(one, two))


@pytest.mark.parametrize("seed", range(20))
def test_one_shopper_draws_equal_the_batched_draws(seed):
    """The scalar integer draws of one shopper are the numbers (and leave the generator where) a size-1 draw does."""
    table = np.arange(3 * 50).reshape(3, 50)
    counts = np.array([50, 17, 3])
    fast_rng, array_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    for segment in (0, 1, 2, 1):
        fast = sample_bank_rows(table, counts, np.array([segment]), fast_rng)
        general = table[np.array([segment]), array_rng.integers(counts[np.array([segment])])]
        assert fast.dtype == general.dtype and np.array_equal(fast, general)
    cfg = ShopperConfig()
    fast = sample_traits(cfg, 1, 5, fast_rng)
    general = {"segment": array_rng.integers(len(SEGMENTS), size=1),
               "taste": array_rng.normal(size=(1, 5)).astype(np.float32),
               "price_sensitivity": array_rng.gamma(2.0, 0.5, size=1),
               "profile_noise": (cfg.profile_noise * array_rng.normal(size=(1, 6))).astype(np.float32),
               "willingness_to_pay": cfg.budget_mean + cfg.budget_std * array_rng.normal(size=1)}
    for key, value in general.items():
        assert fast[key].dtype == value.dtype and fast[key].tobytes() == value.tobytes(), key
    assert fast_rng.random() == array_rng.random()
