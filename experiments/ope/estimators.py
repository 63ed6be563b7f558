"""Off-policy estimators for (position-aware) contextual bandits: DM, IPS, SNIPS, DR, SNDR, Switch-DR.

Notation (Open Bandit Pipeline's, Saito et al. 2021): ``n`` logged rounds; round ``i`` has context
``x_i``, the logged action ``a_i`` shown at position ``k_i`` (0 when there are no positions), reward
``r_i`` and the logging policy's propensity ``pi_b(a_i | x_i, k_i)``; the target (evaluation) policy gives
``pi_e(a | x_i, k)`` for every action and position, and a reward model ``q(x_i, a, k)`` estimates
``E[r | x, a, k]``. The importance weight is ``w_i = pi_e(a_i | x_i, k_i) / pi_b(a_i | x_i, k_i)``.
With positions, the estimated value is the mean reward per logged (round, position) row, as in OBP.

Every estimator is a small frozen dataclass with ``estimate(data, rng, bootstrap) -> OPEResult``: the
point estimate, a percentile bootstrap interval that recomputes the whole estimator (self-normalisation
included) on each resample of the rounds, and the effective sample size of the weights it uses.

References: Dudik, Langford & Li (ICML 2011, DR); Swaminathan & Joachims (NeurIPS 2015, SNIPS);
Wang, Agarwal & Dudik (ICML 2017, Switch); Saito et al., "Open Bandit Dataset and Pipeline" (2021).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from experiments.ope.core import (
    Bootstrap,
    OPEInputError,
    OPEResult,
    as_vector,
    check_finite,
    check_index,
    check_lengths,
    check_propensity,
    fmt,
    summarise,
)

SUM_TOLERANCE = 1e-6
"""How far ``sum_a pi_e(a | x, k)`` may be from 1."""


@dataclass(frozen=True, eq=False)
class BanditData:
    """Logged rounds plus the target policy's action distribution, checked on construction.

    Attributes:
        reward: ``float (n,)`` observed reward ``r_i``.
        action: ``int (n,)`` logged action ``a_i`` in ``[0, n_actions)``.
        action_dist: ``float (n, n_actions, len_list)`` target policy ``pi_e(a | x_i, k)``; each
            ``[i, :, k]`` sums to 1 (a deterministic policy is one-hot).
        pscore: ``float (n,)`` logging propensity ``pi_b(a_i | x_i, k_i)`` in ``(0, 1]``; ``None`` when
            unknown (then only DM can be used).
        position: ``int (n,)`` position ``k_i`` in ``[0, len_list)``; ``None`` means position 0.
        estimated_rewards: ``float (n, n_actions, len_list)`` reward model ``q(x_i, a, k)``; ``None`` when
            there is none (then DM and the doubly robust estimators cannot be used).
        cluster: ``(n,)`` rows that the bootstrap resamples together (e.g. the positions of one impression
            or session, whose rewards are not independent); ``None``: rounds are resampled one by one.

    Raises:
        OPEInputError: lengths that disagree, missing / zero / out-of-range propensities, actions or
            positions out of range, an action distribution that is not one, non-finite rewards.
    """

    reward: np.ndarray
    action: np.ndarray
    action_dist: np.ndarray
    pscore: np.ndarray | None = None
    position: np.ndarray | None = None
    estimated_rewards: np.ndarray | None = None
    cluster: np.ndarray | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        reward = as_vector("reward", self.reward)
        action = as_vector("action", self.action, np.int64)
        dist = np.asarray(self.action_dist, dtype=np.float64)
        if dist.ndim != 3:
            raise OPEInputError(f"action_dist must be (n_rounds, n_actions, len_list), got shape {dist.shape}.")
        pscore = None if self.pscore is None else as_vector("pscore", self.pscore)
        position = None if self.position is None else as_vector("position", self.position, np.int64)
        q = None if self.estimated_rewards is None else np.asarray(self.estimated_rewards, dtype=np.float64)
        cluster = None if self.cluster is None else np.asarray(self.cluster)
        check_lengths(reward=reward, action=action, action_dist=dist, pscore=pscore, position=position,
                      estimated_rewards=q, cluster=cluster)
        check_finite("reward", reward)
        check_index("action", action, dist.shape[1], "n_actions, action_dist's second axis")
        if position is None:
            position = np.zeros(len(reward), dtype=np.int64)
        check_index("position", position, dist.shape[2], "len_list, action_dist's third axis")
        if pscore is not None:
            check_propensity("pscore", pscore)
        _check_distribution(dist)
        if q is not None:
            if q.shape != dist.shape:
                raise OPEInputError(f"estimated_rewards must have action_dist's shape {dist.shape}, got {q.shape}.")
            check_finite("estimated_rewards", q)
        for name, value in (("reward", reward), ("action", action), ("action_dist", dist), ("pscore", pscore),
                            ("position", position), ("estimated_rewards", q), ("cluster", cluster)):
            set_(self, name, value)

    @property
    def n_rounds(self) -> int:
        return len(self.reward)

    def target_prob(self) -> np.ndarray:
        """``(n,)`` ``pi_e(a_i | x_i, k_i)``."""
        return self.action_dist[np.arange(self.n_rounds), self.action, self.position]

    def weights(self, who: str) -> np.ndarray:
        """``(n,)`` importance weights ``w_i``; OPEInputError when ``pscore`` is missing."""
        if self.pscore is None:
            raise OPEInputError(f"{who} needs the logging propensities (pscore); the data have none.")
        return self.target_prob() / self.pscore

    def model_terms(self, who: str) -> tuple[np.ndarray, np.ndarray]:
        """``(q(x_i, pi_e) (n,), q(x_i, a_i, k_i) (n,))``: the reward model's value of the target policy
        at each round's position and its prediction for the logged action."""
        if self.estimated_rewards is None:
            raise OPEInputError(f"{who} needs a reward model (estimated_rewards); the data have none.")
        rows = np.arange(self.n_rounds)
        q_pos = self.estimated_rewards[rows, :, self.position]
        pi_pos = self.action_dist[rows, :, self.position]
        return (q_pos * pi_pos).sum(axis=1), self.estimated_rewards[rows, self.action, self.position]


def _check_distribution(dist: np.ndarray) -> None:
    bad = np.argwhere(~np.isfinite(dist) | (dist < 0) | (dist > 1))
    if bad.size:
        i, a, k = bad[0]
        raise OPEInputError(f"action_dist must hold probabilities in [0, 1]; found {fmt(dist[i, a, k])} at "
                            f"round {i}, action {a}, position {k}.")
    sums = dist.sum(axis=1)
    off = np.argwhere(np.abs(sums - 1.0) > SUM_TOLERANCE)
    if off.size:
        i, k = off[0]
        raise OPEInputError(f"action_dist must sum to 1 over actions at every round and position; round {i}, "
                            f"position {k} sums to {sums[i, k]:.6g}.")


class BanditEstimator(Protocol):
    """An off-policy estimator of a bandit policy's value."""

    name: str
    needs_pscore: ClassVar[bool]
    needs_model: ClassVar[bool]

    def estimate(self, data: BanditData, rng: np.random.Generator,
                 bootstrap: Bootstrap = Bootstrap()) -> OPEResult: ...


def _mean(means: np.ndarray) -> np.ndarray:
    return means[:, 0]


def _ratio(means: np.ndarray) -> np.ndarray:
    return means[:, 0] / means[:, 1]


def _dm_plus_ratio(means: np.ndarray) -> np.ndarray:
    return means[:, 0] + means[:, 1] / means[:, 2]


def _check_max_weight(name: str, value: float) -> None:
    if not value > 0:
        raise OPEInputError(f"{name} must be > 0, got {value!r}.")


@dataclass(frozen=True)
class DirectMethod:
    """DM: the reward model's value of the target policy.

    ``V_DM = (1/n) sum_i sum_a pi_e(a | x_i, k_i) q(x_i, a, k_i)``. Unbiased only if ``q`` is; no weights.
    """

    needs_pscore: ClassVar[bool] = False
    needs_model: ClassVar[bool] = True
    name: str = "DM"

    def estimate(self, data: BanditData, rng: np.random.Generator, bootstrap: Bootstrap = Bootstrap()) -> OPEResult:
        dm, _ = data.model_terms(self.name)
        return summarise(self.name, dm, _mean, None, rng, bootstrap, data.cluster)


@dataclass(frozen=True)
class InverseProbabilityWeighting:
    """IPS: ``V_IPS = (1/n) sum_i min(w_i, max_weight) r_i``.

    Unbiased when the logging policy gives every action the target policy takes a positive probability and
    ``max_weight`` is infinite (clipping trades bias for variance).

    Attributes:
        max_weight: Clip the weights at this value (``inf``: no clipping).
    """

    max_weight: float = np.inf
    needs_pscore: ClassVar[bool] = True
    needs_model: ClassVar[bool] = False
    name: str = "IPS"

    def __post_init__(self) -> None:
        _check_max_weight("max_weight", self.max_weight)

    def estimate(self, data: BanditData, rng: np.random.Generator, bootstrap: Bootstrap = Bootstrap()) -> OPEResult:
        w = np.minimum(data.weights(self.name), self.max_weight)
        return summarise(self.name, w * data.reward, _mean, w, rng, bootstrap, data.cluster)


@dataclass(frozen=True)
class SelfNormalizedIPS:
    """SNIPS: ``V_SNIPS = sum_i w_i r_i / sum_i w_i``.

    Biased but consistent; bounded by the reward range, so far less variable than IPS when weights are large.
    """

    needs_pscore: ClassVar[bool] = True
    needs_model: ClassVar[bool] = False
    name: str = "SNIPS"

    def estimate(self, data: BanditData, rng: np.random.Generator, bootstrap: Bootstrap = Bootstrap()) -> OPEResult:
        w = data.weights(self.name)
        return summarise(self.name, np.column_stack([w * data.reward, w]), _ratio, w, rng, bootstrap, data.cluster)


@dataclass(frozen=True)
class DoublyRobust:
    """DR: ``V_DR = (1/n) sum_i [ q(x_i, pi_e) + min(w_i, max_weight) (r_i - q(x_i, a_i, k_i)) ]``
    with ``q(x_i, pi_e) = sum_a pi_e(a | x_i, k_i) q(x_i, a, k_i)``.

    Unbiased if either the propensities or the reward model are right (and no clipping).

    Attributes:
        max_weight: Clip the weights at this value (``inf``: no clipping).
    """

    max_weight: float = np.inf
    needs_pscore: ClassVar[bool] = True
    needs_model: ClassVar[bool] = True
    name: str = "DR"

    def __post_init__(self) -> None:
        _check_max_weight("max_weight", self.max_weight)

    def estimate(self, data: BanditData, rng: np.random.Generator, bootstrap: Bootstrap = Bootstrap()) -> OPEResult:
        w = np.minimum(data.weights(self.name), self.max_weight)
        dm, q_logged = data.model_terms(self.name)
        return summarise(self.name, dm + w * (data.reward - q_logged), _mean, w, rng, bootstrap, data.cluster)


@dataclass(frozen=True)
class SelfNormalizedDR:
    """SNDR: ``V_SNDR = (1/n) sum_i q(x_i, pi_e) + sum_i w_i (r_i - q(x_i, a_i, k_i)) / sum_i w_i``."""

    needs_pscore: ClassVar[bool] = True
    needs_model: ClassVar[bool] = True
    name: str = "SNDR"

    def estimate(self, data: BanditData, rng: np.random.Generator, bootstrap: Bootstrap = Bootstrap()) -> OPEResult:
        w = data.weights(self.name)
        dm, q_logged = data.model_terms(self.name)
        terms = np.column_stack([dm, w * (data.reward - q_logged), w])
        return summarise(self.name, terms, _dm_plus_ratio, w, rng, bootstrap, data.cluster)


@dataclass(frozen=True)
class SwitchDR:
    """Switch-DR: the DR correction only where the weight is at most ``threshold``.

    ``V_Switch = (1/n) sum_i [ q(x_i, pi_e) + 1{w_i <= threshold} w_i (r_i - q(x_i, a_i, k_i)) ]``
    (OBP's form of Wang et al. 2017: rounds with larger weights fall back to the reward model).
    ``threshold = inf`` is DR; ``threshold = 0`` is DM.

    Attributes:
        threshold: Largest weight whose correction is kept (``tau``, >= 0).
    """

    threshold: float = np.inf
    needs_pscore: ClassVar[bool] = True
    needs_model: ClassVar[bool] = True
    name: str = "Switch-DR"

    def __post_init__(self) -> None:
        if not self.threshold >= 0:
            raise OPEInputError(f"threshold must be >= 0, got {self.threshold!r}.")

    def estimate(self, data: BanditData, rng: np.random.Generator, bootstrap: Bootstrap = Bootstrap()) -> OPEResult:
        w = data.weights(self.name)
        used = w * (w <= self.threshold)
        dm, q_logged = data.model_terms(self.name)
        return summarise(self.name, dm + used * (data.reward - q_logged), _mean, used, rng, bootstrap, data.cluster)


def standard_estimators(switch_threshold: float = np.inf) -> tuple[BanditEstimator, ...]:
    """DM, IPS, SNIPS, DR, SNDR and Switch-DR with default settings."""
    return (DirectMethod(), InverseProbabilityWeighting(), SelfNormalizedIPS(), DoublyRobust(),
            SelfNormalizedDR(), SwitchDR(threshold=switch_threshold))


def run_all(estimators: tuple[BanditEstimator, ...], data: BanditData, seed: int = 0,
            bootstrap: Bootstrap = Bootstrap()) -> list[OPEResult]:
    """Every estimator on ``data``; those needing what the data lack (pscore, a reward model) are skipped.

    Each estimator's bootstrap gets its own generator spawned from ``seed`` (same seed, same intervals).
    """
    seeds = np.random.SeedSequence(seed).spawn(len(estimators))
    out = []
    for est, ss in zip(estimators, seeds):
        if (est.needs_model and data.estimated_rewards is None) or (est.needs_pscore and data.pscore is None):
            continue
        out.append(est.estimate(data, np.random.default_rng(ss), bootstrap))
    return out
