"""What every off-policy estimator shares: the result record, the bootstrap and the input checks.

An estimator reduces logged data to a per-unit table ``terms (n, k)`` (a unit is a logged round for the
bandit estimators, a slate for the slate estimators) and a function ``combine`` of the table's column
means: IPS is ``mean(r w)``, SNIPS ``mean(r w) / mean(w)``, SNDR ``mean(dm) + mean(w (r - q)) / mean(w)``.
Written that way, a bootstrap resample is a reweighting of the units (multinomial counts), and the whole
estimator -- its self-normalisation included -- is recomputed on each resample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from encoders.errors import ShopRankError

Combine = Callable[[np.ndarray], np.ndarray]
"""``means (B, k) -> values (B,)``: the estimate from the column means of an estimator's terms."""


class OPEInputError(ShopRankError, ValueError):
    """Logged data or a target policy that an off-policy estimator cannot use (the message says why)."""


@dataclass(frozen=True)
class OPEResult:
    """One estimate of a target policy's value.

    Attributes:
        estimator: Name of the estimator (row label in reports).
        estimate: The point estimate on the full data.
        ci_low, ci_high: Percentile bootstrap interval (``confidence`` coverage).
        ess: Effective sample size of the importance weights, ``(sum w)^2 / sum w^2`` over the units
            (``n`` for the direct method, which uses no weights).
        n: Units the estimate rests on (rounds, or slates for slate estimators).
        confidence: Nominal coverage of the interval.
    """

    estimator: str
    estimate: float
    ci_low: float
    ci_high: float
    ess: float
    n: int
    confidence: float = 0.95

    def as_row(self) -> dict[str, float | str | int]:
        """A flat dict (a row of the ``shoprank ope`` table)."""
        return {"estimator": self.estimator, "estimate": self.estimate, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "ess": self.ess, "n": self.n}


@dataclass(frozen=True)
class Bootstrap:
    """Percentile bootstrap over units.

    Attributes:
        n_resamples: Resamples (>= 10).
        confidence: Interval coverage in (0, 1).
        chunk: Resamples drawn at once (bounds memory at ``chunk * n`` counts).
    """

    n_resamples: int = 1000
    confidence: float = 0.95
    chunk: int = 64

    def __post_init__(self) -> None:
        if not (isinstance(self.n_resamples, (int, np.integer)) and self.n_resamples >= 10):
            raise OPEInputError(f"n_resamples must be an integer >= 10, got {self.n_resamples!r}.")
        if not 0 < self.confidence < 1:
            raise OPEInputError(f"confidence must be in (0, 1), got {self.confidence!r}.")

    def resample_means(self, terms: np.ndarray, rng: np.random.Generator,
                       cluster: np.ndarray | None = None) -> np.ndarray:
        """``(n_resamples, k)`` column means of ``terms (n, k)`` under multinomial resamples.

        Args:
            terms: ``float (n, k)``.
            rng: Random generator.
            cluster: ``int (n,)`` rows with the same value are drawn together (e.g. the slots of one
                session, which are not independent); ``None``: rows are drawn one by one.
        """
        sums, sizes = unit_sums(terms, cluster)
        return np.vstack([(counts @ sums) / (counts @ sizes)[:, None]
                          for counts in self._count_chunks(len(sums), rng)])

    def _count_chunks(self, n_units: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """``float (b, n_units)`` multinomial counts, ``n_resamples`` rows in all, ``chunk`` at a time."""
        p = np.full(n_units, 1.0 / n_units)
        left = self.n_resamples
        while left > 0:
            b = min(self.chunk, left)
            yield rng.multinomial(n_units, p, size=b).astype(np.float64)
            left -= b

    def shared(self, n_units: int, rng: np.random.Generator) -> "SharedBootstrap":
        """These settings with the resamples of ``n_units`` units drawn once, now, from ``rng``.

        Every estimator given the result recomputes itself on the same resamples (same units drawn the
        same number of times), so several estimators and target policies on one log cost one draw, and
        their intervals come from one joint bootstrap. The first estimate made with it equals the one
        :class:`Bootstrap` would make with the same ``rng``. Units are matched by index: rows (no
        ``cluster``), or clusters / slates in sorted id order (:func:`unit_sums`), so bandit data clustered
        by session and slate data keyed by the same session ids resample the same sessions.

        Args:
            n_units: Units of the data it will be used on (rounds, or clusters / slates).
            rng: Random generator (consumed as one :meth:`resample_means` call would).
        """
        counts = np.vstack([c.astype(np.int32) for c in self._count_chunks(n_units, rng)])
        return SharedBootstrap(self.n_resamples, self.confidence, self.chunk, counts=counts)

    def interval(self, terms: np.ndarray, combine: Combine, rng: np.random.Generator,
                 cluster: np.ndarray | None = None) -> tuple[float, float]:
        """``(low, high)`` percentile interval of ``combine`` over resamples of ``terms (n, k)``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            values = combine(self.resample_means(terms, rng, cluster))
        lo, hi = 50 * (1 - self.confidence), 50 * (1 + self.confidence)
        return float(np.nanpercentile(values, lo)), float(np.nanpercentile(values, hi))


@dataclass(frozen=True)
class SharedBootstrap(Bootstrap):
    """A :class:`Bootstrap` whose resamples were drawn once (:meth:`Bootstrap.shared`); its ``rng`` argument
    is not used.

    Attributes:
        counts: ``int (n_resamples, n_units)`` times each unit is drawn in each resample.
    """

    counts: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.counts is None or np.ndim(self.counts) != 2 or len(self.counts) != self.n_resamples:
            raise OPEInputError(f"counts must be an (n_resamples={self.n_resamples}, n_units) array of draws; "
                                "make them with Bootstrap.shared(n_units, rng).")

    def _count_chunks(self, n_units: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
        drawn = self.counts.shape[1]
        if n_units != drawn:
            raise OPEInputError(f"these resamples were drawn for {drawn} units but the data have {n_units}: "
                                "draw them with Bootstrap.shared(n_units, rng) for the data at hand.")
        for start in range(0, self.n_resamples, self.chunk):
            yield self.counts[start:start + self.chunk].astype(np.float64)


def unit_sums(terms: np.ndarray, cluster: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(sums (u, k), sizes (u,))``: ``terms (n, k)`` summed per unit and rows per unit.

    A unit is a row (``cluster`` None) or the rows sharing a ``cluster (n,)`` value, in sorted value order.
    """
    if cluster is None:
        return terms, np.ones(len(terms))
    _, idx = np.unique(cluster, return_inverse=True)
    idx = idx.ravel()
    sums = np.stack([np.bincount(idx, weights=terms[:, j]) for j in range(terms.shape[1])], axis=1)
    return sums, np.bincount(idx).astype(np.float64)


def summarise(name: str, terms: np.ndarray, combine: Combine, weights: np.ndarray | None,
              rng: np.random.Generator, bootstrap: Bootstrap, cluster: np.ndarray | None = None) -> OPEResult:
    """An :class:`OPEResult` from an estimator's per-unit ``terms (n, k)``.

    Args:
        name: Estimator name.
        terms: ``float (n, k)`` per-unit table.
        combine: Estimate from column means.
        weights: ``float (n,)`` importance weights for the effective sample size (``None``: ``n``).
        rng: Generator for the bootstrap.
        bootstrap: Resampling settings.
        cluster: ``(n,)`` rows resampled together (see :meth:`Bootstrap.resample_means`).
    """
    terms = np.asarray(terms, dtype=np.float64)
    if terms.ndim == 1:
        terms = terms[:, None]
    estimate = float(combine(terms.mean(axis=0)[None, :])[0])
    low, high = bootstrap.interval(terms, combine, rng, cluster)
    return OPEResult(name, estimate, low, high, effective_sample_size(weights, len(terms)), len(terms),
                     bootstrap.confidence)


def effective_sample_size(weights: np.ndarray | None, n: int) -> float:
    """``(sum w)^2 / sum w^2`` (Kish); ``n`` when ``weights`` is None; 0 when every weight is 0."""
    if weights is None:
        return float(n)
    w = np.asarray(weights, dtype=np.float64)
    sq = float(np.sum(w * w))
    return float(np.sum(w) ** 2 / sq) if sq > 0 else 0.0


# --------------------------------------------------------------------------------------------------
# Input checks shared by the bandit and slate estimators
# --------------------------------------------------------------------------------------------------
def fmt(value: object) -> str:
    """A value as error messages show it (numpy scalars as plain Python numbers)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def as_vector(name: str, values: object, dtype: type = np.float64) -> np.ndarray:
    """``values`` as a 1-D array, or OPEInputError naming ``name``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise OPEInputError(f"{name} must be a 1-D array, got shape {arr.shape}.")
    if dtype is np.int64:
        if arr.size and not (np.issubdtype(arr.dtype, np.integer)
                             or (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)))):
            raise OPEInputError(f"{name} must hold integers, got dtype {arr.dtype}.")
        return arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise OPEInputError(f"{name} must hold numbers, got dtype {arr.dtype}.")
    return arr.astype(np.float64)


def check_lengths(**arrays: np.ndarray | None) -> int:
    """The common length of the given 1-D / N-D arrays (first axis); OPEInputError when they disagree."""
    present = [(k, len(v)) for k, v in arrays.items() if v is not None]
    first_name, n = present[0]
    for name, length in present[1:]:
        if length != n:
            raise OPEInputError(f"{first_name} has {n} rows but {name} has {length}: every array must have "
                                "one entry per logged row.")
    if n == 0:
        raise OPEInputError("the logged data are empty: an estimate needs at least one row.")
    return n


def check_propensity(name: str, p: np.ndarray, *, allow_zero: bool = False) -> None:
    """Propensities in ``(0, 1]`` (``[0, 1]`` with ``allow_zero``, for a target policy's); no NaN."""
    missing = np.flatnonzero(np.isnan(p))
    if missing.size:
        raise OPEInputError(f"{name} is missing (NaN) at row {missing[0]}: off-policy estimators need the "
                            "probability the logging policy gave each logged action.")
    low = (p < 0) if allow_zero else (p <= 0)
    bad = np.flatnonzero(low | (p > 1))
    if bad.size:
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise OPEInputError(f"{name} must be in {interval}; found {fmt(p[bad[0]])} at row {bad[0]}.")


def check_finite(name: str, x: np.ndarray) -> None:
    """No NaN / inf in ``x``."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(x, dtype=np.float64).reshape(len(x), -1)).all(axis=1))
    if bad.size:
        raise OPEInputError(f"{name} must be finite; found a NaN or inf at row {bad[0]}.")


def check_index(name: str, idx: np.ndarray, size: int, what: str) -> None:
    """``0 <= idx < size``; ``what`` names where ``size`` comes from."""
    bad = np.flatnonzero((idx < 0) | (idx >= size))
    if bad.size:
        raise OPEInputError(f"{name} must be in [0, {size}) ({what}); found {fmt(idx[bad[0]])} at row {bad[0]}.")
