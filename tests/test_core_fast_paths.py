"""The array core's compiled rules (``envs.kernels``) against plain NumPy statements of the same rules, and
their shortcuts (no mask, one session, one shopper) against the general path, bit for bit where the arithmetic is
the same, on random inputs that include ties, padded candidates, empty slots, empty history and sessions
without clicks, so a kernel that drifts from its rule fails here.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from envs.core import ndcg, slate_positions
from envs.kernels import record_clicks
from simulators.shopper import SEGMENTS, ShopperConfig, sample_bank_rows, sample_traits, session_update


def _argsort_positions(scores: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
    """The slate rule in NumPy: valid candidates by descending score, ties in candidate order, -1 padded."""
    order = np.argsort(np.where(valid, -scores.astype(np.float64), np.inf), axis=1, kind="stable")[:, :n]
    return np.where(np.arange(n) < valid.sum(axis=1, keepdims=True), order, -1)


@pytest.mark.parametrize("seed", range(5))
def test_slate_positions_follow_the_stable_descending_order(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(-3, 3, size=(6, 20)).astype(np.float32)  # many ties: the stable order matters
    full = np.ones((6, 20), dtype=bool)
    assert np.array_equal(slate_positions(scores, None, 10), _argsort_positions(scores, full, 10))
    ints = rng.integers(0, 5, size=(6, 20))
    assert np.array_equal(slate_positions(ints, None, 10), slate_positions(ints, full, 10))
    valid = rng.random((6, 20)) < 0.4  # some rows with fewer than 10 valid candidates: empty slots
    valid[0] = False
    assert np.array_equal(slate_positions(scores, valid, 10), _argsort_positions(scores, valid, 10))
    assert np.all(slate_positions(scores, valid, 10)[0] == -1)
    bad = scores.copy()
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match="action contains NaN or infinite scores."):
        slate_positions(bad, None, 10)


def _ndcg_reference(utility, valid, positions, discounts):
    low = np.where(valid, utility, np.inf).min(axis=1, keepdims=True)
    gains = np.where(valid, utility - low, 0.0)
    picked = np.where(positions >= 0, np.take_along_axis(gains, np.maximum(positions, 0), axis=1), 0.0)
    dcg = picked @ discounts
    n = min(len(discounts), utility.shape[1])
    ideal = -np.sort(-gains, axis=1)[:, :n] @ discounts[:n]
    return np.divide(dcg, ideal, out=np.ones_like(dcg), where=ideal > 0)


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_equals_its_numpy_statement(seed):
    rng = np.random.default_rng(seed)
    utility = rng.normal(size=(5, 20))
    valid = rng.random((5, 20)) < 0.7
    valid[4] = False  # no valid candidate: every gain 0, NDCG 1
    positions = np.stack([rng.permutation(20)[:10] for _ in range(5)])
    positions[1, 6:] = -1  # empty slots
    discounts = 1.0 / np.log2(np.arange(2, 12))
    got = ndcg(utility, valid, positions, discounts)
    np.testing.assert_allclose(got, _ndcg_reference(utility, valid, positions, discounts), rtol=1e-12)
    assert got[4] == 1.0 and np.all((got >= 0) & (got <= 1 + 1e-12))
    ideal = np.argsort(-np.where(valid[0], utility[0], -np.inf), kind="stable")[:10]
    assert ndcg(utility[:1], valid[:1], ideal[None], discounts)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(10))
def test_click_history_per_session_equals_the_batched_push(seed):
    rng = np.random.default_rng(seed)
    h, n_products, f = int(rng.integers(1, 7)), 1000, 3
    fused = rng.normal(size=(n_products, f)).astype(np.float32)
    blocks = [np.full((4, h), -1, dtype=np.int64), np.zeros((4, h, f), dtype=np.float32),
              np.zeros((4, h), dtype=np.float32)]
    one = [x.copy() for x in blocks]
    for _ in range(6):
        clicked = np.where(rng.random((4, 10)) < 0.3, rng.integers(0, n_products, size=(4, 10)), -1)
        expected = [([i for i in blocks[0][b].tolist() + clicked[b].tolist() if i >= 0][-h:]) for b in range(4)]
        record_clicks(*blocks, np.arange(4), clicked, fused)
        for b in range(4):
            record_clicks(*one, np.array([b]), clicked[b:b + 1], fused)
            kept = expected[b]
            assert blocks[0][b].tolist() == kept + [-1] * (h - len(kept))
            np.testing.assert_array_equal(blocks[1][b, : len(kept)], fused[kept])
            assert np.all(blocks[1][b, len(kept):] == 0) and blocks[2][b].tolist() == [1.0] * len(kept) + [0.0] * (h - len(kept))
        for x, y in zip(blocks, one):
            assert np.array_equal(x, y)


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


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("expected", [False, True])
def test_settle_slates_equals_the_separate_rules(seed, expected):
    """``settle_slates`` (the env's side of a slate in one pass) gives the reward of ``RewardSpec.slate_rewards``,
    the NDCG of ``ndcg``, the click history of ``record_clicks`` and the counters, on slates with empty slots."""
    from envs.kernels import settle_slates
    from envs.reward import RewardSpec

    rng = np.random.default_rng(seed)
    b, n, k, h, f, n_products = 6, 10, 20, 5, 3, 300
    spec = RewardSpec(click=0.7, purchase=1.3, revenue=0.02, expected=expected)
    positions = np.stack([rng.permutation(k)[:n] for _ in range(b)])
    positions[2, 7:] = -1
    valid_rows = rng.random((b + 2, k)) < 0.9
    q = rng.permutation(b + 2)[:b]
    ids = np.where(valid_rows, rng.integers(0, n_products, size=(b + 2, k)), -1)
    slate = np.where(positions >= 0, ids[q[:, None], np.maximum(positions, 0)], -1)
    clicks = (rng.random((b, n)) < 0.3) & (slate >= 0)
    purchases = clicks & (rng.random((b, n)) < 0.5)
    click_prob, purchase_prob = rng.random((b, n)) * (slate >= 0), rng.random((b, n)) * 0.3 * (slate >= 0)
    prices = rng.uniform(5, 80, size=n_products)
    utility = rng.normal(size=(b, k))
    discounts = 1.0 / np.log2(np.arange(2, n + 2))
    fused = rng.normal(size=(n_products, f)).astype(np.float32)
    rows = np.array([5, 0, 3, 1, 4, 2])
    state = [rng.integers(0, 4, size=b), rng.random((b, 3)), np.zeros(b), np.full((b, h), -1, dtype=np.int64),
             np.zeros((b, h, f), dtype=np.float32), np.zeros((b, h), dtype=np.float32)]
    before = [x.copy() for x in state]
    parts, slots, reward, scores = settle_slates(spec.click, spec.purchase, spec.revenue, spec.expected, clicks,
                                                 purchases, click_prob, purchase_prob, prices, slate, utility,
                                                 valid_rows, q, positions, discounts, rows, *state, fused)
    slate_prices = np.where(slate >= 0, prices[np.maximum(slate, 0)], 0.0)
    want_parts, want_slots, want_reward = spec.slate_rewards(clicks, purchases, slate_prices)
    if expected:
        _, want_slots, want_reward = spec.slate_rewards(click_prob, purchase_prob, slate_prices)
    np.testing.assert_array_equal(parts, want_parts)
    np.testing.assert_array_equal(slots, want_slots)
    np.testing.assert_array_equal(reward, want_reward)
    np.testing.assert_array_equal(scores, ndcg(utility, valid_rows[q], positions, discounts))
    n_queries, totals, last_ctr, history, vectors, mask = state
    np.testing.assert_array_equal(n_queries[rows], before[0][rows] + 1)
    np.testing.assert_allclose(totals[rows], before[1][rows] + parts)
    np.testing.assert_array_equal(last_ctr[rows], parts[:, 0] / (slate >= 0).sum(axis=1))
    want = [x.copy() for x in before[3:]]
    record_clicks(*want, rows, np.where(clicks, slate, -1), fused)
    for got, expect in zip((history, vectors, mask), want):
        np.testing.assert_array_equal(got, expect)
    assert history[rows[0]].max() >= 0 or not clicks[0].any()
    empty = settle_slates(spec.click, spec.purchase, spec.revenue, spec.expected, clicks, purchases, click_prob,
                          purchase_prob, prices, slate, np.zeros((b, 0)), valid_rows, q, positions, discounts, rows,
                          *[x.copy() for x in before], fused)[3]
    assert np.all(np.isnan(empty))  # no privileged simulator: no NDCG


def test_pack_bits_sets_bit_j_of_word_j_over_64():
    from simulators.kernels import pack_bits

    rng = np.random.default_rng(0)
    flags = rng.random((3, 4, 130)) < 0.2
    bits = pack_bits(flags)
    assert bits.shape == (3, 4, 3) and bits.dtype == np.uint64
    for idx in np.ndindex(flags.shape):
        word, bit = divmod(idx[-1], 64)
        assert bool((int(bits[idx[:-1] + (word,)]) >> bit) & 1) == flags[idx]


def test_restart_writes_the_shoppers_sample_would_draw():
    """``BatchSimulator.restart`` of the default shopper writes, in place, the shoppers ``put(sample(...))``
    would, from the same draws, and leaves the generator where they leave it."""
    import gymnasium as gym

    import envs  # noqa: F401
    from envs import EnvConfig, WorldConfig

    env = gym.make("ShopRank-v0", config=EnvConfig(n_candidates=20, world=WorldConfig(text_encoder="hashing"))).unwrapped
    sim = env.core.batch
    state = sim.sample(7, np.random.default_rng(1))
    copy = sim.take(state, np.arange(7))
    idx = np.array([5, 1, 2])
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    restarted = sim.restart(state, idx, rng_a)
    put = sim.put(copy, idx, sim.sample(len(idx), rng_b))
    assert restarted is state
    for name in ("segment", "taste", "price_sensitivity", "profile_noise", "patience", "willingness_to_pay", "intent"):
        got, want = getattr(restarted, name), getattr(put, name)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), name
    assert rng_a.random() == rng_b.random()


@pytest.mark.parametrize("seed", range(3))
def test_slate_rewards_equal_their_numpy_statement(seed):
    """``RewardSpec.slate_rewards``: parts are the counts and the spend, each slot's share is its weighted click,
    purchase and spend, and the reward is ``total(parts)``; for sampled (bool) and expected (float) inputs."""
    from envs.reward import RewardSpec

    rng = np.random.default_rng(seed)
    spec = RewardSpec(click=0.5, purchase=2.0, revenue=0.03)
    prices = rng.uniform(1, 90, size=(4, 10))
    for click, purchase in (((c := rng.random((4, 10)) < 0.4), c & (rng.random((4, 10)) < 0.5)),
                            (rng.random((4, 10)), rng.random((4, 10)) * 0.2)):
        parts, slots, reward = spec.slate_rewards(click, purchase, prices)
        c, p = click.astype(float), purchase.astype(float)
        np.testing.assert_allclose(parts, np.stack([c.sum(1), p.sum(1), (p * prices).sum(1)], axis=1), rtol=1e-12)
        np.testing.assert_allclose(slots, 0.5 * c + 2.0 * p + 0.03 * prices * p, rtol=1e-12)
        assert reward.tobytes() == spec.total(parts).tobytes()
        np.testing.assert_allclose(slots.sum(axis=1), reward, rtol=1e-12)


def _env(**overrides):
    import gymnasium as gym

    import envs  # noqa: F401
    from envs import EnvConfig, WorldConfig

    return gym.make("ShopRank-v0", config=EnvConfig(n_candidates=20, world=WorldConfig(text_encoder="hashing"),
                                                    **overrides)).unwrapped


def test_a_pbm_subclass_with_its_own_sample_keeps_it():
    """The compiled PBM response is taken only when the model's ``sample`` and ``click_probs`` are PBM's own: a
    subclass that draws clicks its own way is called (here it never clicks: no click in 40 steps)."""
    import gymnasium as gym

    from simulators.click_models import PositionBasedModel, independent_examination_of
    from simulators.shopper import DefaultShopper

    class NeverClicks(PositionBasedModel):
        def sample(self, attractiveness, rng):
            rng.random(np.shape(attractiveness))
            return np.zeros(np.shape(attractiveness), dtype=bool)

    pbm = PositionBasedModel.geometric(10)
    assert independent_examination_of(pbm, 10) is not None
    assert independent_examination_of(NeverClicks(pbm.examination), 10) is None
    exam = pbm.independent_examination(10)
    with pytest.raises(ValueError):
        exam[0] = 0.5  # read-only: the frozen model's cached array
    base = _env()
    env = gym.make("ShopRank-v0", config=base.config, world=base.world, simulator=DefaultShopper(
        base.world.items, base.config.shopper, click_model=NeverClicks(pbm.examination), n_slots=10)).unwrapped
    env.reset(seed=0)
    clicks = 0
    for step in range(40):
        _, _, te, tr, info = env.step(np.random.default_rng(step).random(20).astype(np.float32))
        clicks += len(info["clicked_positions"])
        if te or tr:
            env.reset()
    assert clicks == 0


def test_a_batch_simulator_without_restart_gets_put_of_sample():
    """``BatchSimulator.restart`` is optional: without it the env puts freshly sampled shoppers (the same draws,
    the same episodes)."""
    envs_ = [_env(), _env()]
    envs_[1].core.core.sim.restart = None  # as a simulator written before the method existed
    rng = np.random.default_rng(0)
    outs = [e.reset(seed=2)[0] for e in envs_]
    for _ in range(30):
        action = rng.random(20).astype(np.float32)
        steps = [e.step(action) for e in envs_]
        for key in steps[0][0]:
            np.testing.assert_array_equal(steps[0][0][key], steps[1][0][key])
        assert steps[0][1:4] == steps[1][1:4]
        if steps[0][2] or steps[0][3]:
            outs = [e.reset()[0] for e in envs_]
            for key in outs[0]:
                np.testing.assert_array_equal(outs[0][key], outs[1][key])


def test_slate_order_takes_any_real_dtype_and_refuses_others():
    env = _env()
    env.reset(seed=0)
    scores = np.random.default_rng(0).random(20)
    half = env.slate_from_scores(scores.astype(np.float16))
    np.testing.assert_array_equal(half, env.slate_from_scores(scores.astype(np.float16).astype(np.float64)))
    np.testing.assert_array_equal(env.slate_from_scores((scores * 100).astype(np.int16)),
                                  env.slate_from_scores((scores * 100).astype(np.int16).astype(np.float64)))
    big_endian = env.slate_from_scores(scores.astype(">f8"))
    np.testing.assert_array_equal(big_endian, env.slate_from_scores(scores))
    env.step(scores.astype(np.float16))
    with pytest.raises(ValueError, match=re.escape("valid must have the shape of scores (1, 5), got (1, 3).")):
        slate_positions(np.zeros((1, 5)), np.ones((1, 3), dtype=bool), 3)
    from envs.vector_env import ShopRankVectorEnv

    vec = ShopRankVectorEnv(num_envs=2, config=env.config, world=env.world)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=re.escape("actions must be real scores (float or int), got dtype complex128.")):
        vec.step(np.zeros((2, 20), dtype=complex))


def test_transition_with_another_response_than_respond_gave_follows_that_response():
    """``respond`` computes the state after its own response; a ``transition`` called with a different response
    (same state and slate) moves the shopper by the response it is given."""
    env = _env()
    env.reset(seed=3)
    core = env.core.core
    sim, q = core.sim, core.sessions.query
    positions = core.slate_positions(np.random.default_rng(1).random((1, 20)).astype(np.float32))
    slate = core.table.ids[q[:, None], positions]
    state = sim.take(core.sessions.shopper, np.arange(1))
    twin = sim.take(core.sessions.shopper, np.arange(1))
    response = sim.respond(state, q, positions, slate, np.random.default_rng(5))
    assert response.clicks.any()  # so that the two responses move the shopper differently
    other = type(response)(np.zeros_like(response.clicks), np.zeros_like(response.purchases), response.dwell, None)
    sim.transition(state, q, positions, slate, other, np.random.default_rng(6))
    sim._pending = None  # the general path, for the same response
    sim.transition(twin, q, positions, slate, other, np.random.default_rng(6))
    for name in ("taste", "patience", "intent"):
        assert getattr(state, name).tobytes() == getattr(twin, name).tobytes(), name
