"""Off-policy estimators for slates: standard slate IPS, independent (per-position) IPS and RIPS.

A logged slate ``s`` shows items ``a_{s,1..L}`` at positions ``1..L`` with rewards ``r_{s,k}``; the value
of a policy is the expected slate reward ``E[sum_k r_{s,k}]``. Rows of the data are (slate, position)
pairs. The three estimators are the same sum, ``V = (1/S) sum_s sum_k w_{s,k} r_{s,k}``, with a weight that
assumes less and less about how rewards arise (Saito et al., OBP ``estimators_slate.py``):

=================  ==========================================================================  ===============
estimator          weight ``w_{s,k}``                                                          unbiased if
=================  ==========================================================================  ===============
standard slate IPS ``pi_e(a_{s,1..L}) / pi_b(a_{s,1..L})`` (whole slate)                       always (support)
independent IPS    ``pi_e(a_{s,k} at k) / pi_b(a_{s,k} at k)`` (marginal of item at position)  ``r_k`` depends on
                                                                                               ``(a_k, k)`` only
RIPS               ``pi_e(a_{s,1..k}) / pi_b(a_{s,1..k})`` (the prefix down to ``k``)           ``r_k`` depends on
                                                                                               items above ``k``
=================  ==========================================================================  ===============

References: Li et al., "Offline Evaluation of Ranking Policies with Click Models" (KDD 2018, independent
IPS); McInerney et al., "Counterfactual Evaluation of Slate Recommendations with Sequential Reward
Interactions" (KDD 2020, RIPS); Swaminathan et al. (NeurIPS 2017) for the slate setting.
The bootstrap resamples slates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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


@dataclass(frozen=True, eq=False)
class SlatePropensities:
    """Logging and target probabilities of one kind, one per row.

    Attributes:
        behavior: ``float (m,)`` logging policy's probability, in ``(0, 1]``.
        target: ``float (m,)`` target policy's probability, in ``[0, 1]``.
    """

    behavior: np.ndarray
    target: np.ndarray


@dataclass(frozen=True, eq=False)
class SlateData:
    """Logged slates, one row per (slate, position), checked on construction.

    Attributes:
        slate_id: ``(m,)`` id of the row's slate (any hashable values; rows of a slate need not be adjacent).
        reward: ``float (m,)`` reward at the row's position.
        position: ``int (m,)`` position in ``[0, len_list)``, distinct within a slate.
        len_list: Slate length ``L``.
        slate: Propensities of the whole slate (same on every row of a slate): standard slate IPS.
        item_position: Marginal propensity of the row's item at its position: independent IPS.
        cascade: Propensity of the slate's prefix down to the row's position (non-increasing down the
            slate): RIPS.

    Raises:
        OPEInputError: lengths that disagree, positions out of range or repeated in a slate, missing /
            zero / out-of-range propensities, a slate propensity that varies within a slate, a cascade
            propensity that grows down a slate.
    """

    slate_id: np.ndarray
    reward: np.ndarray
    position: np.ndarray
    len_list: int
    slate: SlatePropensities | None = None
    item_position: SlatePropensities | None = None
    cascade: SlatePropensities | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not (isinstance(self.len_list, (int, np.integer)) and self.len_list >= 1):
            raise OPEInputError(f"len_list must be an integer >= 1, got {self.len_list!r}.")
        sid = np.asarray(self.slate_id)
        if sid.ndim != 1:
            raise OPEInputError(f"slate_id must be a 1-D array, got shape {sid.shape}.")
        reward = as_vector("reward", self.reward)
        position = as_vector("position", self.position, np.int64)
        check_lengths(slate_id=sid, reward=reward, position=position)
        check_finite("reward", reward)
        check_index("position", position, int(self.len_list), "len_list")
        _, group = np.unique(sid, return_inverse=True)
        group = group.ravel()
        order = np.lexsort((position, group))
        dup = np.flatnonzero((np.diff(group[order]) == 0) & (np.diff(position[order]) == 0))
        if dup.size:
            row = order[dup[0] + 1]
            raise OPEInputError(f"slate {fmt(sid[row])} has position {position[row]} twice (row {row}): positions "
                                "must be distinct within a slate.")
        set_(self, "reward", reward)
        set_(self, "position", position)
        set_(self, "slate_id", sid)
        set_(self, "_group", group)
        set_(self, "_order", order)
        for kind in ("slate", "item_position", "cascade"):
            props = getattr(self, kind)
            if props is None:
                continue
            b = as_vector(f"{kind} behavior propensity", props.behavior)
            t = as_vector(f"{kind} target propensity", props.target)
            check_lengths(reward=reward, **{f"{kind}_behavior": b, f"{kind}_target": t})
            check_propensity(f"{kind} behavior propensity", b)
            check_propensity(f"{kind} target propensity", t, allow_zero=True)
            set_(self, kind, SlatePropensities(b, t))
        if self.slate is not None:
            self._check_constant(self.slate.behavior, "slate behavior propensity")
            self._check_constant(self.slate.target, "slate target propensity")
        if self.cascade is not None:
            self._check_non_increasing(self.cascade.behavior, "cascade behavior propensity")
            self._check_non_increasing(self.cascade.target, "cascade target propensity")

    @property
    def n_slates(self) -> int:
        return int(self._group.max()) + 1

    def per_slate(self, values: np.ndarray) -> np.ndarray:
        """``(S,)`` sums of row ``values (m,)`` per slate (slates in sorted ``slate_id`` order)."""
        return np.bincount(self._group, weights=values, minlength=self.n_slates)

    def _check_constant(self, p: np.ndarray, name: str) -> None:
        g, o = self._group[self._order], p[self._order]
        bad = np.flatnonzero((np.diff(g) == 0) & (np.diff(o) != 0))
        if bad.size:
            row = self._order[bad[0] + 1]
            raise OPEInputError(f"{name} must be the same on every row of a slate; slate "
                                f"{fmt(self.slate_id[row])} has {fmt(o[bad[0]])} and {fmt(o[bad[0] + 1])}.")

    def _check_non_increasing(self, p: np.ndarray, name: str) -> None:
        g, o = self._group[self._order], p[self._order]
        bad = np.flatnonzero((np.diff(g) == 0) & (np.diff(o) > 1e-12))
        if bad.size:
            row = self._order[bad[0] + 1]
            raise OPEInputError(f"{name} is the probability of a slate's prefix, so it cannot grow down the "
                                f"slate; slate {fmt(self.slate_id[row])} goes from {fmt(o[bad[0]])} to {fmt(o[bad[0] + 1])} "
                                f"at position {self.position[row]}.")


class SlateEstimator(Protocol):
    """An off-policy estimator of a slate policy's expected slate reward."""

    name: str

    def estimate(self, data: SlateData, rng: np.random.Generator,
                 bootstrap: Bootstrap = Bootstrap()) -> OPEResult: ...


def _mean(means: np.ndarray) -> np.ndarray:
    return means[:, 0]


def _slate_ips(name: str, data: SlateData, props: SlatePropensities | None, what: str,
               rng: np.random.Generator, bootstrap: Bootstrap, per_slate_weight: bool) -> OPEResult:
    """``(1/S) sum_s sum_k w_{s,k} r_{s,k}`` with ``w = target / behavior`` of ``props``."""
    if props is None:
        raise OPEInputError(f"{name} needs the {what} propensities of the logging and target policies; the data "
                            "have none.")
    w = props.target / props.behavior
    totals = data.per_slate(w * data.reward)
    if per_slate_weight:
        counts = data.per_slate(np.ones_like(w))
        ess_weights = data.per_slate(w) / counts
    else:
        ess_weights = w
    return summarise(name, totals, _mean, ess_weights, rng, bootstrap)


@dataclass(frozen=True)
class SlateStandardIPS:
    """Standard slate IPS: ``V = (1/S) sum_s [pi_e(slate_s) / pi_b(slate_s)] sum_k r_{s,k}``.

    Unbiased whenever the logging policy covers the target's slates, but its weights are products over
    positions: with many candidates the effective sample size collapses. ESS is over slates.
    """

    name: str = "slate IPS"

    def estimate(self, data: SlateData, rng: np.random.Generator, bootstrap: Bootstrap = Bootstrap()) -> OPEResult:
        return _slate_ips(self.name, data, data.slate, "whole-slate", rng, bootstrap, per_slate_weight=True)


@dataclass(frozen=True)
class SlateIndependentIPS:
    """Independent (per-position) IPS: ``V = (1/S) sum_s sum_k [pi_e(a_{s,k} at k) / pi_b(a_{s,k} at k)] r_{s,k}``.

    Unbiased when the reward at a position depends only on the item there and the position (a
    position-based click model); biased when clicks interact (cascade, boredom). ESS is over rows.
    """

    name: str = "independent IPS"

    def estimate(self, data: SlateData, rng: np.random.Generator, bootstrap: Bootstrap = Bootstrap()) -> OPEResult:
        return _slate_ips(self.name, data, data.item_position, "item-position", rng, bootstrap,
                          per_slate_weight=False)


@dataclass(frozen=True)
class SlateRewardInteractionIPS:
    """RIPS: ``V = (1/S) sum_s sum_k [pi_e(a_{s,1..k}) / pi_b(a_{s,1..k})] r_{s,k}``.

    Unbiased when the reward at a position depends on the items at and above it (a cascade shopper), the
    middle ground between the other two. ESS is over rows.
    """

    name: str = "RIPS"

    def estimate(self, data: SlateData, rng: np.random.Generator, bootstrap: Bootstrap = Bootstrap()) -> OPEResult:
        return _slate_ips(self.name, data, data.cascade, "cascade (prefix)", rng, bootstrap, per_slate_weight=False)


def slate_estimators() -> tuple[SlateEstimator, ...]:
    """Standard slate IPS, independent IPS and RIPS."""
    return (SlateStandardIPS(), SlateIndependentIPS(), SlateRewardInteractionIPS())
