"""Click models: closed-form marginals against Monte-Carlo frequencies, shapes, bad parameters."""

from __future__ import annotations

import re

import numpy as np
import pytest

from simulators.click_models import (
    CascadeModel,
    DependentClickModel,
    DynamicBayesianNetwork,
    MultinomialLogit,
    PositionBasedModel,
)
from simulators.protocols import ClickModel

ATTRACT = np.array([[0.9, 0.5, 0.3, 0.7, 0.1, 0.6],
                    [0.2, 0.2, 0.2, 0.2, 0.2, 0.2],
                    [0.05, 0.8, 0.4, 0.95, 0.3, 0.0],
                    [1.0, 0.6, 0.5, 0.4, 0.3, 0.2]])
SATISFACTION = np.array([[0.3, 0.6, 0.9, 0.2, 0.5, 0.4]] * 4)

MODELS = {
    "PBM": PositionBasedModel.geometric(6, 0.8),
    "cascade": CascadeModel(),
    "DCM": DependentClickModel((0.9, 0.7, 0.6, 0.5, 0.3)),
    "DBN": DynamicBayesianNetwork(persistence=0.85, satisfaction=0.4),
    "MNL": MultinomialLogit.log_decay(6, 0.8, sensitivity=3.0, no_click_utility=1.0),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_closed_form_matches_monte_carlo(name: str) -> None:
    # Each of the 4 slates is repeated R = 50,000 times; a click frequency then has standard error
    # sqrt(p (1 - p) / R) <= 0.0023. We allow 5 standard errors per cell: over the 5 models x 24 cells
    # (120 comparisons) a false alarm has probability about 120 * 5.7e-7 < 1e-4, while a wrong formula
    # (e.g. forgetting a factor of a continuation probability) shifts some cell by far more.
    model = MODELS[name]
    reps = 50_000
    batch = np.repeat(ATTRACT, reps, axis=0)
    rng = np.random.default_rng(20240601)
    clicks = model.sample(batch, rng).reshape(len(ATTRACT), reps, -1)
    freq = clicks.mean(axis=1)
    probs = model.click_probs(ATTRACT)
    se = np.sqrt(probs * (1 - probs) / reps)
    assert clicks.dtype == bool and probs.shape == ATTRACT.shape
    assert np.all(np.abs(freq - probs) <= 5 * se + 1e-12), np.abs(freq - probs) / np.maximum(se, 1e-12)


def test_dbn_per_item_satisfaction_matches_monte_carlo() -> None:
    # Same 5-standard-error argument as above, per-slot satisfaction instead of the scalar default.
    model = DynamicBayesianNetwork(persistence=0.9)
    reps = 50_000
    rng = np.random.default_rng(7)
    clicks = model.sample(np.repeat(ATTRACT, reps, axis=0), rng,
                          satisfaction=np.repeat(SATISFACTION, reps, axis=0)).reshape(len(ATTRACT), reps, -1)
    probs = model.click_probs(ATTRACT, satisfaction=SATISFACTION)
    se = np.sqrt(probs * (1 - probs) / reps)
    assert np.all(np.abs(clicks.mean(axis=1) - probs) <= 5 * se + 1e-12)


def test_closed_forms_by_hand() -> None:
    a = np.array([[0.5, 0.4, 0.2]])
    np.testing.assert_allclose(CascadeModel().click_probs(a), [[0.5, 0.5 * 0.4, 0.5 * 0.6 * 0.2]])
    # DCM: after slot 0, examined with 1 - a0 (1 - l0) = 1 - 0.5 * 0.2 = 0.9; then 0.9 (1 - 0.4 * 0.5) = 0.72.
    np.testing.assert_allclose(DependentClickModel((0.8, 0.5)).click_probs(a), [[0.5, 0.9 * 0.4, 0.72 * 0.2]])
    # DBN: P(E_1) = gamma (1 - a0 s) = 0.9 * 0.75, P(E_2) = P(E_1) 0.9 (1 - 0.4 * 0.5).
    e1 = 0.9 * 0.75
    np.testing.assert_allclose(DynamicBayesianNetwork(0.9, 0.5).click_probs(a), [[0.5, e1 * 0.4, e1 * 0.72 * 0.2]])
    w = np.exp([2 * 0.5, 2 * 0.4, 2 * 0.2, 0.0])
    np.testing.assert_allclose(MultinomialLogit(2.0, 0.0).click_probs(a), [w[:3] / w.sum()])


def test_special_cases_agree() -> None:
    a = np.random.default_rng(0).uniform(size=(5, 4))
    cascade = CascadeModel().click_probs(a)
    np.testing.assert_allclose(DependentClickModel((0.0, 0.0, 0.0)).click_probs(a), cascade)
    np.testing.assert_allclose(DynamicBayesianNetwork(1.0, 1.0).click_probs(a), cascade)
    np.testing.assert_allclose(DependentClickModel((1.0, 1.0, 1.0)).click_probs(a), a)  # examines everything
    assert DependentClickModel.constant(4, 0.3) == DependentClickModel((0.3, 0.3, 0.3))
    np.testing.assert_allclose(DependentClickModel(()).click_probs(a[:, :1]), a[:, :1])  # one-slot slates


@pytest.mark.parametrize("name", list(MODELS))
def test_protocol_shapes_and_determinism(name: str) -> None:
    model = MODELS[name]
    assert isinstance(model, ClickModel)
    a = np.random.default_rng(1).uniform(size=(3, 5))
    s1 = model.sample(a, np.random.default_rng(3))
    s2 = model.sample(a, np.random.default_rng(3))
    assert s1.shape == (3, 5) and s1.dtype == bool
    np.testing.assert_array_equal(s1, s2)
    assert np.all(model.sample(np.zeros((2, 5)), np.random.default_rng(0)) == 0) or name == "MNL"


def test_single_click_models_click_at_most_once() -> None:
    a = np.full((2000, 6), 0.9)
    rng = np.random.default_rng(0)
    assert CascadeModel().sample(a, rng).sum(axis=1).max() == 1
    assert MultinomialLogit().sample(a, rng).sum(axis=1).max() == 1
    np.testing.assert_allclose(MultinomialLogit().choice_probs(a).sum(axis=1), 1.0)


def test_pbm_api_kept() -> None:
    pbm = PositionBasedModel.geometric(3, 0.5)
    assert pbm.examination == (1.0, 0.5, 0.25)
    np.testing.assert_allclose(pbm.click_probs(np.ones((1, 3))), [[1.0, 0.5, 0.25]])


BAD = [
    (lambda: PositionBasedModel((1.0, 1.5)), "examination must be a non-empty sequence of probabilities, got (1.0, 1.5)."),
    (lambda: DependentClickModel((0.5, -0.1)),
     "continuation must hold probabilities in [0, 1], got -0.1 at index 1."),
    (lambda: DependentClickModel(((0.5,),)), "continuation must be a non-empty 1-D sequence of probabilities, got ((0.5,),)."),
    (lambda: DynamicBayesianNetwork(persistence=1.2), "persistence must be a probability in [0, 1], got 1.2."),
    (lambda: DynamicBayesianNetwork(satisfaction=float("nan")), "satisfaction must be a probability in [0, 1], got nan."),
    (lambda: MultinomialLogit(sensitivity=-1.0), "sensitivity must be a finite number >= 0, got -1.0."),
    (lambda: MultinomialLogit(no_click_utility=float("inf")), "no_click_utility must be finite, got inf."),
    (lambda: MultinomialLogit(position_bias=(0.0, float("nan"))),
     "position_bias must be a 1-D sequence of finite numbers, got (0.0, nan)."),
    (lambda: MultinomialLogit.log_decay(3, 0.0), "decay must be in (0, 1], got 0.0."),
    (lambda: CascadeModel().click_probs(np.array([[0.5, 1.5]])), "attractiveness must hold probabilities in [0, 1], got 1.5."),
    (lambda: CascadeModel().click_probs(np.float64(0.5)), "attractiveness must be an array of shape (B, N), got a scalar."),
    (lambda: DependentClickModel((0.5,)).click_probs(np.ones((1, 3))), "slate has 3 slots but the DCM knows 2 positions."),
    (lambda: PositionBasedModel((1.0,)).click_probs(np.ones((1, 2))), "slate has 2 slots but the PBM knows 1 positions."),
    (lambda: DynamicBayesianNetwork().click_probs(np.ones((2, 3)), satisfaction=np.ones((2, 2))),
     "satisfaction must have the shape of attractiveness (2, 3), got (2, 2)."),
    (lambda: MultinomialLogit(position_bias=(0.0,)).click_probs(np.ones((1, 2))),
     "slate has 2 slots but the multinomial logit knows 1 positions."),
]


@pytest.mark.parametrize("make, message", BAD)
def test_bad_parameters_raise_with_exact_message(make, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()
