"""Off-policy estimators: hand-worked values, bootstrap intervals, effective sample size, and bad input
(each error checked by its exact message)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from experiments.ope.core import Bootstrap, OPEInputError, SharedBootstrap, effective_sample_size
from experiments.ope.estimators import (
    BanditData,
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    SelfNormalizedDR,
    SelfNormalizedIPS,
    SwitchDR,
    run_all,
    standard_estimators,
)
from experiments.ope.slate import (
    SlateData,
    SlateIndependentIPS,
    SlatePropensities,
    SlateRewardInteractionIPS,
    SlateStandardIPS,
)


def small() -> BanditData:
    """Four rounds, two actions, no positions; target always plays action 1."""
    dist = np.zeros((4, 2, 1))
    dist[:, 1, 0] = 1.0
    q = np.tile(np.array([0.2, 0.6])[None, :, None], (4, 1, 1))
    return BanditData(reward=np.array([1.0, 0.0, 1.0, 1.0]), action=np.array([1, 1, 0, 1]), action_dist=dist,
                      pscore=np.array([0.5, 0.25, 0.5, 0.5]), estimated_rewards=q)


def test_hand_worked_values():
    data, rng = small(), np.random.default_rng(0)
    # weights: 1/0.5, 1/0.25, 0 (action 0 never played by the target), 1/0.5 -> (2, 4, 0, 2)
    assert InverseProbabilityWeighting().estimate(data, rng).estimate == pytest.approx((2 + 0 + 0 + 2) / 4)
    assert SelfNormalizedIPS().estimate(data, rng).estimate == pytest.approx(4 / 8)
    assert DirectMethod().estimate(data, rng).estimate == pytest.approx(0.6)
    # DR: 0.6 + mean(w (r - q_logged)) = 0.6 + (2*0.4 + 4*(-0.6) + 0 + 2*0.4) / 4
    assert DoublyRobust().estimate(data, rng).estimate == pytest.approx(0.6 + (0.8 - 2.4 + 0.8) / 4)
    assert SelfNormalizedDR().estimate(data, rng).estimate == pytest.approx(0.6 + (0.8 - 2.4 + 0.8) / 8)
    # Switch at 3 drops the round with weight 4
    assert SwitchDR(threshold=3.0).estimate(data, rng).estimate == pytest.approx(0.6 + 1.6 / 4)
    assert SwitchDR(threshold=0.0).estimate(data, rng).estimate == pytest.approx(0.6)
    assert InverseProbabilityWeighting(max_weight=2.0).estimate(data, rng).estimate == pytest.approx((2 + 0 + 0 + 2) / 4)


def test_effective_sample_size():
    assert effective_sample_size(np.ones(7), 7) == pytest.approx(7.0)
    assert effective_sample_size(np.array([2.0, 4.0, 0.0, 2.0]), 4) == pytest.approx(64 / 24)
    assert effective_sample_size(None, 5) == 5.0
    assert effective_sample_size(np.zeros(3), 3) == 0.0
    assert InverseProbabilityWeighting().estimate(small(), np.random.default_rng(0)).ess == pytest.approx(64 / 24)


def test_bootstrap_same_seed_same_interval_and_contains_estimate():
    rng = np.random.default_rng(5)
    n = 400
    dist = rng.dirichlet(np.ones(3), size=n)[:, :, None]
    data = BanditData(reward=rng.binomial(1, 0.4, n), action=rng.integers(3, size=n), action_dist=dist,
                      pscore=np.full(n, 1 / 3))
    a = SelfNormalizedIPS().estimate(data, np.random.default_rng(1), Bootstrap(200))
    b = SelfNormalizedIPS().estimate(data, np.random.default_rng(1), Bootstrap(200))
    c = SelfNormalizedIPS().estimate(data, np.random.default_rng(2), Bootstrap(200))
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert a.ci_low < a.estimate < a.ci_high


def test_shared_resamples_equal_a_first_bootstrap_and_are_reused():
    """Bootstrap.shared draws the resamples once: the first estimate matches Bootstrap with the same rng,
    and every estimator (and later call) given it sees the same resampled units."""
    rng = np.random.default_rng(5)
    n_sessions, n_slots = 150, 3
    n = n_sessions * n_slots
    dist = rng.dirichlet(np.ones(3), size=n)[:, :, None]
    q = rng.uniform(size=(n, 3, 1))
    cluster = np.repeat(np.arange(n_sessions), n_slots)
    data = BanditData(reward=rng.binomial(1, 0.4, n), action=rng.integers(3, size=n), action_dist=dist,
                      pscore=np.full(n, 1 / 3), estimated_rewards=q, cluster=cluster)
    for est in standard_estimators():
        plain = est.estimate(data, np.random.default_rng(1), Bootstrap(200))
        shared = est.estimate(data, np.random.default_rng(99), Bootstrap(200).shared(n_sessions, np.random.default_rng(1)))
        assert (shared.estimate, shared.ci_low, shared.ci_high) == (plain.estimate, plain.ci_low, plain.ci_high)
    shared = Bootstrap(50, chunk=16).shared(n_sessions, np.random.default_rng(3))
    assert shared.counts.shape == (50, n_sessions)
    np.testing.assert_array_equal(shared.counts.sum(axis=1), n_sessions)
    a = DoublyRobust().estimate(data, np.random.default_rng(0), shared)
    b = DoublyRobust().estimate(data, np.random.default_rng(1), shared)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    # the interval is the percentile of the estimator on exactly these resamples
    w = data.weights("DR")
    dm, q_logged = data.model_terms("DR")
    per_session = np.bincount(cluster, weights=dm + w * (data.reward - q_logged)) / n_slots
    values = shared.counts @ per_session / n_sessions
    assert (a.ci_low, a.ci_high) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])), rel=1e-12)
    with pytest.raises(OPEInputError, match=re.escape("these resamples were drawn for 150 units but the data "
                                                      "have 450: draw them with Bootstrap.shared(n_units, rng) "
                                                      "for the data at hand.")):
        SelfNormalizedIPS().estimate(BanditData(data.reward, data.action, data.action_dist, pscore=data.pscore),
                                     np.random.default_rng(0), shared)
    with pytest.raises(OPEInputError, match=re.escape("counts must be an (n_resamples=20, n_units) array of draws; "
                                                      "make them with Bootstrap.shared(n_units, rng).")):
        SharedBootstrap(20, counts=np.ones((10, 5), dtype=np.int32))


def test_interval_covers_the_truth_about_95_percent_of_the_time():
    """Uniform logging over 4 actions, target = a fixed distribution; true value known in closed form."""
    means = np.array([0.1, 0.3, 0.5, 0.7])
    target = np.array([0.1, 0.2, 0.3, 0.4])
    truth = float(means @ target)
    rng = np.random.default_rng(11)
    hits = {"IPS": 0, "SNIPS": 0}
    reps, n = 120, 300
    for _ in range(reps):
        action = rng.integers(4, size=n)
        data = BanditData(reward=rng.binomial(1, means[action]), action=action,
                          action_dist=np.tile(target[None, :, None], (n, 1, 1)), pscore=np.full(n, 0.25))
        for est in (InverseProbabilityWeighting(), SelfNormalizedIPS()):
            r = est.estimate(data, rng, Bootstrap(200))
            hits[est.name] += r.ci_low <= truth <= r.ci_high
    for name, h in hits.items():
        assert 0.88 <= h / reps <= 0.995, (name, h)


def test_run_all_skips_what_the_data_cannot_support():
    data = small()
    no_model = BanditData(data.reward, data.action, data.action_dist, pscore=data.pscore)
    names = [r.estimator for r in run_all(standard_estimators(), no_model, seed=0, bootstrap=Bootstrap(20))]
    assert names == ["IPS", "SNIPS"]
    full = run_all(standard_estimators(), data, seed=3, bootstrap=Bootstrap(20))
    assert [r.estimator for r in full] == ["DM", "IPS", "SNIPS", "DR", "SNDR", "Switch-DR"]
    again = run_all(standard_estimators(), data, seed=3, bootstrap=Bootstrap(20))
    assert [r.ci_low for r in full] == [r.ci_low for r in again]


# ---------------------------------------------------------------------------------------------------
# Bad input, exact messages
# ---------------------------------------------------------------------------------------------------
def _kw(**over):
    dist = np.full((3, 2, 2), 0.5)
    kw = dict(reward=np.array([1.0, 0.0, 1.0]), action=np.array([0, 1, 1]), action_dist=dist,
              pscore=np.array([0.5, 0.5, 0.5]), position=np.array([0, 1, 0]))
    kw.update(over)
    return kw


@pytest.mark.parametrize("over, message", [
    ({"pscore": np.array([0.5, 0.0, 0.5])}, "pscore must be in (0, 1]; found 0.0 at row 1."),
    ({"pscore": np.array([0.5, 1.5, 0.5])}, "pscore must be in (0, 1]; found 1.5 at row 1."),
    ({"pscore": np.array([0.5, 0.5, np.nan])},
     "pscore is missing (NaN) at row 2: off-policy estimators need the probability the logging policy gave "
     "each logged action."),
    ({"pscore": np.array([0.5, 0.5])},
     "reward has 3 rows but pscore has 2: every array must have one entry per logged row."),
    ({"action": np.array([0, 1])},
     "reward has 3 rows but action has 2: every array must have one entry per logged row."),
    ({"position": np.array([0, 2, 0])},
     "position must be in [0, 2) (len_list, action_dist's third axis); found 2 at row 1."),
    ({"position": np.array([0, -1, 0])},
     "position must be in [0, 2) (len_list, action_dist's third axis); found -1 at row 1."),
    ({"action": np.array([0, 5, 1])},
     "action must be in [0, 2) (n_actions, action_dist's second axis); found 5 at row 1."),
    ({"action": np.array([0.0, 0.5, 1.0])}, "action must hold integers, got dtype float64."),
    ({"reward": np.array([1.0, np.inf, 0.0])}, "reward must be finite; found a NaN or inf at row 1."),
    ({"action_dist": np.full((3, 2), 0.5)}, "action_dist must be (n_rounds, n_actions, len_list), got shape (3, 2)."),
    ({"action_dist": np.full((3, 2, 2), 0.4)},
     "action_dist must sum to 1 over actions at every round and position; round 0, position 0 sums to 0.8."),
    ({"action_dist": np.tile(np.array([1.5, -0.5])[None, :, None], (3, 1, 2))},
     "action_dist must hold probabilities in [0, 1]; found 1.5 at round 0, action 0, position 0."),
    ({"estimated_rewards": np.zeros((3, 2, 1))},
     "estimated_rewards must have action_dist's shape (3, 2, 2), got (3, 2, 1)."),
    ({"reward": np.zeros(0), "action": np.zeros(0, int), "action_dist": np.zeros((0, 2, 2)), "pscore": np.zeros(0),
      "position": np.zeros(0, int)}, "the logged data are empty: an estimate needs at least one row."),
])
def test_bad_bandit_input(over, message):
    with pytest.raises(OPEInputError, match=f"^{re.escape(message)}$"):
        BanditData(**_kw(**over))


def test_missing_pieces_and_bad_settings():
    data = BanditData(**_kw(pscore=None))
    with pytest.raises(OPEInputError, match=re.escape("IPS needs the logging propensities (pscore); the data have none.")):
        InverseProbabilityWeighting().estimate(data, np.random.default_rng(0))
    with pytest.raises(OPEInputError, match=re.escape("DR needs a reward model (estimated_rewards); the data have none.")):
        DoublyRobust().estimate(BanditData(**_kw()), np.random.default_rng(0))
    with pytest.raises(OPEInputError, match=re.escape("threshold must be >= 0, got -1.0.")):
        SwitchDR(threshold=-1.0)
    with pytest.raises(OPEInputError, match=re.escape("max_weight must be > 0, got 0.0.")):
        InverseProbabilityWeighting(max_weight=0.0)
    with pytest.raises(OPEInputError, match=re.escape("n_resamples must be an integer >= 10, got 5.")):
        Bootstrap(5)
    with pytest.raises(OPEInputError, match=re.escape("confidence must be in (0, 1), got 1.0.")):
        Bootstrap(100, confidence=1.0)


# ---------------------------------------------------------------------------------------------------
# Slates
# ---------------------------------------------------------------------------------------------------
def _slates(**over):
    kw = dict(slate_id=np.array([7, 7, 9, 9]), reward=np.array([1.0, 0.0, 0.0, 1.0]), position=np.array([0, 1, 0, 1]),
              len_list=2,
              slate=SlatePropensities(np.array([0.1, 0.1, 0.2, 0.2]), np.array([0.2, 0.2, 0.1, 0.1])),
              item_position=SlatePropensities(np.array([0.5, 0.5, 0.25, 0.5]), np.array([1.0, 0.0, 0.5, 0.25])),
              cascade=SlatePropensities(np.array([0.5, 0.1, 0.5, 0.2]), np.array([1.0, 0.2, 0.5, 0.1])))
    kw.update(over)
    return kw


def test_slate_hand_worked_values():
    data, rng = SlateData(**_slates()), np.random.default_rng(0)
    # standard: slate 7 weight 2 x reward 1; slate 9 weight 0.5 x reward 1 -> (2 + 0.5) / 2
    assert SlateStandardIPS().estimate(data, rng).estimate == pytest.approx(1.25)
    # independent: row weights (2, 0, 2, 0.5) -> (2*1 + 0 + 0 + 0.5*1) / 2
    assert SlateIndependentIPS().estimate(data, rng).estimate == pytest.approx(1.25)
    # RIPS: row weights (2, 2, 1, 0.5) -> (2 + 0 + 0 + 0.5) / 2
    assert SlateRewardInteractionIPS().estimate(data, rng).estimate == pytest.approx(1.25)
    assert SlateStandardIPS().estimate(data, rng).n == 2
    assert SlateStandardIPS().estimate(data, rng).ess == pytest.approx(2.5 ** 2 / 4.25)


@pytest.mark.parametrize("over, message", [
    ({"position": np.array([0, 1, 0, 2])}, "position must be in [0, 2) (len_list); found 2 at row 3."),
    ({"position": np.array([0, 0, 0, 1])},
     "slate 7 has position 0 twice (row 1): positions must be distinct within a slate."),
    ({"reward": np.array([1.0, 0.0, 0.0])},
     "slate_id has 4 rows but reward has 3: every array must have one entry per logged row."),
    ({"len_list": 0}, "len_list must be an integer >= 1, got 0."),
    ({"slate": SlatePropensities(np.array([0.1, 0.1, 0.0, 0.0]), np.ones(4))},
     "slate behavior propensity must be in (0, 1]; found 0.0 at row 2."),
    ({"slate": SlatePropensities(np.array([0.1, 0.2, 0.2, 0.2]), np.ones(4) * 0.5)},
     "slate behavior propensity must be the same on every row of a slate; slate 7 has 0.1 and 0.2."),
    ({"item_position": SlatePropensities(np.array([0.5, np.nan, 0.5, 0.5]), np.ones(4))},
     "item_position behavior propensity is missing (NaN) at row 1: off-policy estimators need the probability "
     "the logging policy gave each logged action."),
    ({"item_position": SlatePropensities(np.ones(4), np.array([1.0, 1.0, 2.0, 1.0]))},
     "item_position target propensity must be in [0, 1]; found 2.0 at row 2."),
    ({"cascade": SlatePropensities(np.array([0.5, 0.6, 0.5, 0.2]), np.full(4, 0.1))},
     "cascade behavior propensity is the probability of a slate's prefix, so it cannot grow down the slate; "
     "slate 7 goes from 0.5 to 0.6 at position 1."),
    ({"cascade": SlatePropensities(np.ones(3), np.ones(3))},
     "reward has 4 rows but cascade_behavior has 3: every array must have one entry per logged row."),
])
def test_bad_slate_input(over, message):
    with pytest.raises(OPEInputError, match=f"^{re.escape(message)}$"):
        SlateData(**_slates(**over))


def test_slate_estimator_without_its_propensities():
    data = SlateData(**_slates(cascade=None))
    with pytest.raises(OPEInputError, match=re.escape(
            "RIPS needs the cascade (prefix) propensities of the logging and target policies; the data have none.")):
        SlateRewardInteractionIPS().estimate(data, np.random.default_rng(0))
