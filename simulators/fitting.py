"""Fit click models to interaction logs (EM / MLE) and measure how well they predict held-out clicks.

Models and their parameters follow Chuklin, Markov & de Rijke, *Click Models for Web Search* (2015)
and PyClick: per-(query, item) attractiveness ``alpha_qd`` for every model, plus

=========  ==========================================================================================
model      other parameters
=========  ==========================================================================================
PBM        examination per position ``gamma_r`` (``gamma_0 = 1`` fixed: only ``gamma_r alpha_qd`` is
           identified)
cascade    none
DCM        continuation after a click per position ``lambda_r``
DBN        satisfaction per (query, item) ``sigma_qd`` and persistence ``gamma`` (one number)
=========  ==========================================================================================

All four are fitted by exact EM over the latent examination events ``E_r`` (and, for DBN, the latent
satisfaction ``S_r`` of the last click). Cascade, DCM and DBN are one family, a Markov examination
chain: slot 0 is examined; after an examined slot the shopper goes on with probability ``c_r`` after a
click and ``k_r`` after a skip (cascade ``c = 0, k = 1``; DCM ``c = lambda_r, k = 1``; DBN
``c = gamma (1 - sigma_qd), k = gamma``). One forward-backward pass over the positions, vectorised over
slates, gives the posteriors ``P(E_r = 1 | clicks)`` they all need.

Attractiveness (and satisfaction) are smoothed towards a prior mean with ``prior_strength``
pseudo-observations (a Beta prior: MAP-EM); (query, item) pairs never seen in training fall back to the
prior mean. Positions missing from a slate (gaps) are treated as not shown.

Held-out quality (:func:`evaluate`, :func:`fidelity_report`):

* log-likelihood per impression: ``sum_s log P(c_s) / #rows`` (joint probability of each slate's clicks);
* perplexity at position ``r``: ``2 ** (-mean_s [c_sr log2 q_sr + (1 - c_sr) log2 (1 - q_sr)])`` with
  ``q_sr`` the model's *marginal* click probability (no knowledge of other clicks); overall perplexity
  is the mean over positions (Chuklin et al., Sec. 4.2). 1 is perfect; a coin is 2.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Protocol

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from encoders.errors import ConfigError, LogSchemaError
from simulators.click_models import (
    CascadeModel,
    DependentClickModel,
    DynamicBayesianNetwork,
    PositionBasedModel,
    chain_click_probs,
    click_model_to_json,
)
from simulators.logs import validate_log

_EPS = 1e-6  # probabilities are clipped to [_EPS, 1 - _EPS] so that no log-likelihood is infinite
CASCADE_STOP_SLACK = 1e-6
"""Chance the fitted cascade goes on after a click: a slate with two clicks is merely very unlikely."""


# --------------------------------------------------------------------------------------------------
# Logs as padded arrays
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SlateArrays:
    """A log as padded arrays: ``S`` slates by ``P`` positions (``P`` = largest position + 1).

    Attributes:
        pair: ``int64 (S, P)`` index of the shown (query, item) pair in ``pairs``; ``-1`` where nothing was
            shown or the pair is not in ``pairs`` (unseen in training).
        shown: ``bool (S, P)`` a row of the log exists at this slot.
        clicks: ``bool (S, P)`` (False where not shown).
        pairs: the (query, item) vocabulary ``pair`` indexes (from the training log).
    """

    pair: np.ndarray
    shown: np.ndarray
    clicks: np.ndarray
    pairs: pd.MultiIndex

    @classmethod
    def from_log(cls, log: pd.DataFrame, pairs: pd.MultiIndex | None = None) -> "SlateArrays":
        """Arrays from a log (validated first).

        Args:
            log: An interaction log (see :mod:`simulators.logs`).
            pairs: Vocabulary of (query, item) pairs; ``None`` builds it from ``log`` (training).
        """
        df = validate_log(log)
        slate = df.groupby(["session", "slate"], sort=False).ngroup().to_numpy()
        n_slates = int(slate.max()) + 1 if len(df) else 0
        n_pos = int(df["position"].max()) + 1 if len(df) else 1
        keys = pd.MultiIndex.from_arrays([df["query"].to_numpy(), df["item"].to_numpy()], names=["query", "item"])
        if pairs is None:
            pairs = keys.unique()
        codes = pairs.get_indexer(keys)
        pos = df["position"].to_numpy()
        pair = np.full((n_slates, n_pos), -1, dtype=np.int64)
        shown = np.zeros((n_slates, n_pos), dtype=bool)
        clicks = np.zeros((n_slates, n_pos), dtype=bool)
        pair[slate, pos] = codes
        shown[slate, pos] = True
        clicks[slate, pos] = df["click"].to_numpy()
        return cls(pair=pair, shown=shown, clicks=clicks, pairs=pairs)

    @property
    def n_slates(self) -> int:
        return self.shown.shape[0]

    @property
    def n_positions(self) -> int:
        return self.shown.shape[1]

    def take(self, rows: np.ndarray) -> "SlateArrays":
        """The slates at ``rows`` (same vocabulary)."""
        return SlateArrays(self.pair[rows], self.shown[rows], self.clicks[rows], self.pairs)


@dataclass(frozen=True, eq=False)
class ParameterTable:
    """A probability per (query, item) pair, with a fallback for pairs never seen in training.

    Attributes:
        pairs: ``(K,)`` the (query, item) pairs.
        values: ``float (K,)`` the fitted probability of each pair.
        impressions: ``float (K,)`` how much evidence each value rests on (expected examinations for
            attractiveness, informative clicks for satisfaction).
        prior: Value used for unseen pairs (the prior mean the values are smoothed towards).
    """

    pairs: pd.MultiIndex
    values: np.ndarray
    impressions: np.ndarray
    prior: float

    def lookup(self, pair: np.ndarray) -> np.ndarray:
        """Values at pair indices ``pair`` (any shape); ``-1`` gives the prior."""
        return np.where(pair >= 0, self.values[np.maximum(pair, 0)], self.prior)

    def get(self, query: str, item: object) -> float:
        """The value of one (query, item) pair (the prior when unseen)."""
        idx = self.pairs.get_indexer(pd.MultiIndex.from_tuples([(query, item)]))[0]
        return float(self.values[idx]) if idx >= 0 else float(self.prior)

    def to_frame(self) -> pd.DataFrame:
        """Columns query, item, value, impressions."""
        out = self.pairs.to_frame(index=False)
        out["value"] = self.values
        out["impressions"] = self.impressions
        return out


# --------------------------------------------------------------------------------------------------
# Fitted models: what every one of them can do on held-out slates
# --------------------------------------------------------------------------------------------------
class FittedModel(Protocol):
    """A fitted click model (or baseline) that scores slates."""

    name: str

    def marginal_click_probs(self, data: SlateArrays) -> np.ndarray:
        """``float (S, P)`` predicted click probability per slot, not knowing the slate's other clicks."""
        ...

    def slate_log_likelihood(self, data: SlateArrays) -> np.ndarray:
        """``float (S,)`` natural log of the joint probability of each slate's observed clicks."""
        ...


def _per_position(values: np.ndarray, n_pos: int) -> np.ndarray:
    """``(n_pos,)`` from per-position ``values``; positions beyond the fitted ones reuse the last value."""
    values = np.asarray(values, dtype=float)
    if n_pos <= len(values):
        return values[:n_pos]
    return np.concatenate([values, np.full(n_pos - len(values), values[-1])])


def _bernoulli_ll(p: np.ndarray, clicks: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """``(S,)`` sum over shown slots of ``log p`` or ``log (1 - p)``."""
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.where(shown, np.where(clicks, np.log(p), np.log1p(-p)), 0.0).sum(axis=1)


@dataclass(frozen=True, eq=False)
class CTRBaseline:
    """Clicks independent of everything but (optionally) the position: ``P(C_r) = ctr[r]``.

    Attributes:
        name: Row label in reports.
        ctr: ``float (P,)`` click-through rate per position (all equal for the constant baseline).
    """

    name: str
    ctr: np.ndarray

    def marginal_click_probs(self, data: SlateArrays) -> np.ndarray:
        return np.broadcast_to(_per_position(self.ctr, data.n_positions), data.shown.shape) * data.shown

    def slate_log_likelihood(self, data: SlateArrays) -> np.ndarray:
        return _bernoulli_ll(self.marginal_click_probs(data), data.clicks, data.shown)


@dataclass(frozen=True, eq=False)
class FittedPBM:
    """A fitted position-based model.

    Attributes:
        name: Row label in reports.
        model: The :class:`PositionBasedModel` with the fitted examination per position.
        attractiveness: Fitted ``alpha_qd``.
        log_likelihood_trace: Training log-likelihood per impression after each EM iteration.
    """

    name: str
    model: PositionBasedModel
    attractiveness: ParameterTable
    log_likelihood_trace: tuple[float, ...] = ()

    def marginal_click_probs(self, data: SlateArrays) -> np.ndarray:
        exam = _per_position(np.asarray(self.model.examination), data.n_positions)
        return self.attractiveness.lookup(data.pair) * exam * data.shown

    def slate_log_likelihood(self, data: SlateArrays) -> np.ndarray:
        return _bernoulli_ll(self.marginal_click_probs(data), data.clicks, data.shown)


@dataclass(frozen=True, eq=False)
class FittedChainModel:
    """A fitted cascade, DCM or DBN: a Markov examination chain over the slots.

    After an examined slot ``r`` showing pair ``d`` the shopper goes on with probability
    ``after_click[r] * (1 - satisfaction_d)`` after a click and ``persistence`` after a skip.

    Attributes:
        name: Row label in reports.
        model: The fitted :mod:`simulators.click_models` object (cascade, DCM or DBN).
        attractiveness: Fitted ``alpha_qd``.
        after_click: ``float (P,)`` factor of going on after a click per position (cascade ~0, DCM
            ``lambda_r``, DBN ``gamma``).
        persistence: Probability of going on after a skip (DBN ``gamma``; 1 otherwise).
        satisfaction: Fitted ``sigma_qd`` (DBN only).
        log_likelihood_trace: Training log-likelihood per impression after each EM iteration.
    """

    name: str
    model: CascadeModel | DependentClickModel | DynamicBayesianNetwork
    attractiveness: ParameterTable
    after_click: np.ndarray
    persistence: float = 1.0
    satisfaction: ParameterTable | None = None
    log_likelihood_trace: tuple[float, ...] = ()

    def chain(self, data: SlateArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(alpha, go_on_after_click, go_on_after_skip)``, each ``float (S, P)``; slots not shown pass
        examination through unchanged (alpha 0, going on 1)."""
        return _chain_arrays(data, self.attractiveness.lookup(data.pair),
                             _per_position(self.after_click, data.n_positions),
                             None if self.satisfaction is None else self.satisfaction.lookup(data.pair),
                             self.persistence)

    def marginal_click_probs(self, data: SlateArrays) -> np.ndarray:
        return chain_click_probs(*self.chain(data))

    def slate_log_likelihood(self, data: SlateArrays) -> np.ndarray:
        return np.log(np.maximum(_chain_posterior(*self.chain(data), data.clicks).likelihood, 1e-300))


def _chain_arrays(data: SlateArrays, alpha: np.ndarray, after_click: np.ndarray, sigma: np.ndarray | None,
                  persistence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-slot chain probabilities; see :meth:`FittedChainModel.chain`."""
    shown = data.shown
    alpha = np.where(shown, np.clip(alpha, _EPS, 1 - _EPS), 0.0)
    go_click = np.broadcast_to(after_click, shown.shape) * (1.0 if sigma is None else 1.0 - sigma)
    go_click = np.where(shown, go_click, 1.0)
    go_skip = np.where(shown, persistence, 1.0)
    return alpha, go_click, go_skip


@dataclass(frozen=True, eq=False)
class ChainPosterior:
    """Forward-backward output of the examination chain for ``S`` slates by ``P`` slots.

    Attributes:
        examined: ``float (S, P)`` ``P(E_r = 1 | clicks)``.
        examined_next: ``float (S, P)`` ``P(E_{r+1} = 1 | clicks)`` (0 past the last slot).
        likelihood: ``float (S,)`` ``P(clicks)``.
    """

    examined: np.ndarray
    examined_next: np.ndarray
    likelihood: np.ndarray


def _chain_posterior(alpha: np.ndarray, go_click: np.ndarray, go_skip: np.ndarray,
                     clicks: np.ndarray) -> ChainPosterior:
    """Exact posteriors of the examination chain.

    With ``e_r = P(c_r | E_r = 1)`` and ``g_r`` the chance of going on after slot ``r`` given its click:
    forward ``f_{r+1} = f_r e_r g_r`` (``f_0 = 1``) is ``P(E_r = 1, c_{<r})``; backward
    ``b_r = e_r (g_r b_{r+1} + (1 - g_r) z_{r+1})`` is ``P(c_{>=r} | E_r = 1)``, with ``z_r`` = "no click
    at or after ``r``" (the only way an unexamined tail fits the data). Then ``P(c) = b_0`` and
    ``P(E_r = 1 | c) = f_r b_r / b_0``.

    Args:
        alpha, go_click, go_skip: ``float (S, P)``.
        clicks: ``bool (S, P)``.
    """
    n_s, n_p = alpha.shape
    emit = np.where(clicks, alpha, 1.0 - alpha)
    go = np.where(clicks, go_click, go_skip)
    fwd = np.ones((n_s, n_p + 1))
    for r in range(n_p):
        fwd[:, r + 1] = fwd[:, r] * emit[:, r] * go[:, r]
    no_click_after = np.ones((n_s, n_p + 1), dtype=bool)
    no_click_after[:, :n_p] = np.flip(np.cumsum(np.flip(clicks, axis=1), axis=1), axis=1) == 0
    bwd = np.ones((n_s, n_p + 1))
    for r in range(n_p - 1, -1, -1):
        bwd[:, r] = emit[:, r] * (go[:, r] * bwd[:, r + 1] + (1.0 - go[:, r]) * no_click_after[:, r + 1])
    like = np.maximum(bwd[:, 0], 1e-300)
    post = fwd * bwd / like[:, None]
    return ChainPosterior(examined=post[:, :n_p], examined_next=post[:, 1:], likelihood=bwd[:, 0])


# --------------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------------
class Estimator(Protocol):
    """Fits one model family to training slates."""

    name: str

    def fit(self, data: SlateArrays, *, progress: bool = False) -> FittedModel:
        """Fit to ``data`` (its ``pairs`` become the model's vocabulary)."""
        ...


def _check_em_settings(max_iter: int, tol: float, prior_strength: float) -> None:
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise ConfigError(f"max_iter must be an integer >= 1, got {max_iter!r}.")
    if not (tol > 0):
        raise ConfigError(f"tol must be > 0, got {tol!r}.")
    if not (prior_strength >= 0 and np.isfinite(prior_strength)):
        raise ConfigError(f"prior_strength must be a finite number >= 0, got {prior_strength!r}.")


def _smoothed_ratio(pair: np.ndarray, numer: np.ndarray, denom: np.ndarray, n_pairs: int,
                    strength: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-pair ``(sum numer + m mu) / (sum denom + m)`` with ``mu = sum numer / sum denom`` (MAP under a
    Beta prior of mean ``mu`` and ``m`` pseudo-observations).

    Args:
        pair: ``int (S, P)`` pair index, ``-1`` ignored.
        numer, denom: ``float (S, P)`` expected counts.

    Returns:
        ``(values (K,), evidence (K,), mu)``.
    """
    ok = pair >= 0
    num = np.bincount(pair[ok], weights=numer[ok], minlength=n_pairs)
    den = np.bincount(pair[ok], weights=denom[ok], minlength=n_pairs)
    mu = float(np.clip(num.sum() / max(den.sum(), 1e-12), _EPS, 1 - _EPS))
    values = (num + strength * mu) / np.maximum(den + strength, 1e-12)
    values = np.where(den + strength > 0, values, mu)
    return np.clip(values, _EPS, 1 - _EPS), den, mu


def _progress(n: int, name: str, enabled: bool) -> tqdm:
    return tqdm(range(n), desc=f"EM {name}", disable=not enabled, leave=False)


def _converged(old: list[np.ndarray], new: list[np.ndarray], tol: float) -> bool:
    return max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(old, new)) < tol


@dataclass(frozen=True)
class ConstantCTR:
    """Baseline: every shown item is clicked with the training CTR."""

    name: str = "constant CTR"

    def fit(self, data: SlateArrays, *, progress: bool = False) -> CTRBaseline:
        ctr = np.clip(data.clicks.sum() / max(data.shown.sum(), 1), _EPS, 1 - _EPS)
        return CTRBaseline(self.name, np.full(data.n_positions, ctr))


@dataclass(frozen=True)
class PositionCTR:
    """Baseline: the training CTR of each position (positions never shown get the overall CTR)."""

    name: str = "position CTR"

    def fit(self, data: SlateArrays, *, progress: bool = False) -> CTRBaseline:
        overall = data.clicks.sum() / max(data.shown.sum(), 1)
        n = data.shown.sum(axis=0)
        ctr = np.where(n > 0, data.clicks.sum(axis=0) / np.maximum(n, 1), overall)
        return CTRBaseline(self.name, np.clip(ctr, _EPS, 1 - _EPS))


@dataclass(frozen=True)
class PBMEstimator:
    """EM for the position-based model ``P(C_r) = gamma_r alpha_qd`` (``gamma_0 = 1`` fixed).

    E-step: ``P(E_r = 1 | c = 0) = gamma_r (1 - alpha) / (1 - gamma_r alpha)`` (1 after a click).
    M-step: ``alpha_qd = (sum c + m mu) / (sum P(E) + m)``; ``gamma_r = mean over slot r of P(E)``.

    Attributes:
        max_iter: EM iterations at most.
        tol: Stop when no parameter moves by more than this.
        prior_strength: ``m``, pseudo-observations pulling ``alpha_qd`` towards the mean.
        name: Row label in reports.
    """

    max_iter: int = 500
    tol: float = 1e-6
    prior_strength: float = 1.0
    name: str = "PBM"

    def __post_init__(self) -> None:
        _check_em_settings(self.max_iter, self.tol, self.prior_strength)

    def fit(self, data: SlateArrays, *, progress: bool = False) -> FittedPBM:
        n_pairs = len(data.pairs)
        shown, clicks, pair = data.shown, data.clicks, data.pair
        n_rows = max(int(shown.sum()), 1)
        per_pos = np.maximum(shown.sum(axis=0), 1)
        gamma = np.full(data.n_positions, 0.5)  # gamma = 1 everywhere would be a fixed point of EM
        gamma[0] = 1.0
        alpha = np.full(n_pairs, 0.5)
        prior = 0.5
        trace: list[float] = []
        for _ in _progress(self.max_iter, self.name, progress):
            a = np.where(pair >= 0, alpha[np.maximum(pair, 0)], prior)
            p_click = np.clip(gamma * a, _EPS, 1 - _EPS)
            exam = np.where(clicks, 1.0, gamma * (1 - a) / (1 - p_click)) * shown
            new_alpha, evidence, prior = _smoothed_ratio(pair, clicks.astype(float), exam, n_pairs,
                                                         self.prior_strength)
            new_gamma = np.clip(exam.sum(axis=0) / per_pos, _EPS, 1.0)
            new_gamma[0] = 1.0
            trace.append(float(_bernoulli_ll(p_click * shown, clicks, shown).sum() / n_rows))
            done = _converged([alpha, gamma], [new_alpha, new_gamma], self.tol)
            alpha, gamma = new_alpha, new_gamma
            if done:
                break
        table = ParameterTable(data.pairs, alpha, evidence, prior)
        return FittedPBM(self.name, PositionBasedModel(tuple(float(g) for g in gamma)), table, tuple(trace))


@dataclass(frozen=True)
class _ChainEstimator:
    """Shared EM loop of the chain models; subclasses say which parameters are free."""

    max_iter: int = 500
    tol: float = 1e-6
    prior_strength: float = 1.0
    name: str = "chain"

    def __post_init__(self) -> None:
        _check_em_settings(self.max_iter, self.tol, self.prior_strength)

    # Subclass hooks ---------------------------------------------------------------------------------
    def _initial(self, n_pos: int) -> tuple[np.ndarray, float, bool]:
        """``(after_click (P,), persistence, fits_satisfaction)`` to start from."""
        raise NotImplementedError

    def _update_after_click(self, after_click: np.ndarray, data: SlateArrays, post: ChainPosterior,
                            informative: np.ndarray) -> np.ndarray:
        """New ``after_click`` (default: fixed)."""
        return after_click

    def _model(self, after_click: np.ndarray, persistence: float, sigma_prior: float) -> object:
        raise NotImplementedError

    # EM ---------------------------------------------------------------------------------------------
    def fit(self, data: SlateArrays, *, progress: bool = False) -> FittedChainModel:
        n_pairs, n_pos = len(data.pairs), data.n_positions
        shown, clicks, pair = data.shown, data.clicks, data.pair
        n_rows = max(int(shown.sum()), 1)
        # A slot informs the "go on?" parameters only if some slot is shown after it.
        later = np.flip(np.cumsum(np.flip(shown, axis=1), axis=1), axis=1) - shown
        informative = shown & (later > 0)
        after_click, persistence, fits_sigma = self._initial(n_pos)
        alpha, alpha_prior = np.full(n_pairs, 0.5), 0.5
        sigma, sigma_prior = (np.full(n_pairs, 0.5), 0.5) if fits_sigma else (None, 0.0)
        alpha_ev = sigma_ev = np.zeros(n_pairs)
        trace: list[float] = []
        for _ in _progress(self.max_iter, self.name, progress):
            a = np.where(pair >= 0, alpha[np.maximum(pair, 0)], alpha_prior)
            s = None if sigma is None else np.where(pair >= 0, sigma[np.maximum(pair, 0)], sigma_prior)
            chain = _chain_arrays(data, a, after_click, s, persistence)
            post = _chain_posterior(*chain, clicks)
            trace.append(float(np.log(np.maximum(post.likelihood, 1e-300)).sum() / n_rows))
            exam = post.examined * shown
            new_alpha, alpha_ev, alpha_prior = _smoothed_ratio(pair, clicks.astype(float), exam, n_pairs,
                                                               self.prior_strength)
            new_after = self._update_after_click(after_click, data, post, informative)
            new_sigma, new_persistence = sigma, persistence
            if sigma is not None:
                new_sigma, new_persistence, sigma_ev, sigma_prior = self._dbn_step(
                    data, post, informative, s, persistence, n_pairs)
                new_after = np.full(n_pos, new_persistence)  # DBN goes on after a click with gamma (1 - sigma)
            old = [alpha, after_click, np.atleast_1d(persistence)] + ([] if sigma is None else [sigma])
            new = [new_alpha, new_after, np.atleast_1d(new_persistence)] + ([] if sigma is None else [new_sigma])
            alpha, after_click, sigma, persistence = new_alpha, new_after, new_sigma, new_persistence
            if _converged(old, new, self.tol):
                break
        table = ParameterTable(data.pairs, alpha, alpha_ev, alpha_prior)
        sat = None if sigma is None else ParameterTable(data.pairs, sigma, sigma_ev, sigma_prior)
        return FittedChainModel(self.name, self._model(after_click, persistence, sigma_prior), table,
                                after_click, float(persistence), sat, tuple(trace))

    def _dbn_step(self, data: SlateArrays, post: ChainPosterior, informative: np.ndarray, sigma_slot: np.ndarray,
                  persistence: float, n_pairs: int) -> tuple[np.ndarray, float, np.ndarray, float]:
        """M-step of DBN's satisfaction and persistence.

        A click at an informative slot ``r`` is followed by a stop with posterior
        ``P(E_r) - P(E_{r+1})``; a stop after a click is satisfaction with probability
        ``sigma / (sigma + (1 - sigma)(1 - gamma))``. ``gamma`` = expected continuations over expected
        unsatisfied examined slots.
        """
        clicks = data.clicks & informative
        stop = np.clip(post.examined - post.examined_next, 0.0, 1.0)
        denom = sigma_slot + (1 - sigma_slot) * (1 - persistence)
        p_sat = np.where(clicks, stop * sigma_slot / np.maximum(denom, 1e-12), 0.0)
        sigma, evidence, prior = _smoothed_ratio(data.pair, p_sat, clicks.astype(float), n_pairs,
                                                 self.prior_strength)
        opportunities = np.where(informative, post.examined - p_sat, 0.0).sum()
        went_on = np.where(informative, post.examined_next, 0.0).sum()
        gamma = float(np.clip(went_on / max(opportunities, 1e-12), _EPS, 1 - _EPS))
        return sigma, gamma, evidence, prior


@dataclass(frozen=True)
class CascadeEstimator(_ChainEstimator):
    """Cascade: ``alpha_qd`` = clicks / examinations, examination running to the (last) click.

    Strictly the cascade allows one click per slate; the fitted chain goes on after a click with
    probability ``CASCADE_STOP_SLACK`` so that logs with several clicks get a (very low) finite
    likelihood instead of zero.
    """

    name: str = "cascade"

    def _initial(self, n_pos: int) -> tuple[np.ndarray, float, bool]:
        return np.full(n_pos, CASCADE_STOP_SLACK), 1.0, False

    def _model(self, after_click: np.ndarray, persistence: float, sigma_prior: float) -> CascadeModel:
        return CascadeModel()


@dataclass(frozen=True)
class DCMEstimator(_ChainEstimator):
    """DCM: ``alpha_qd`` and continuation after a click per position ``lambda_r``.

    M-step: ``lambda_r`` = expected examinations of the next slot after clicks at ``r`` / clicks at ``r``
    (clicks in a slate's last slot say nothing about going on and are left out).
    """

    name: str = "DCM"

    def _initial(self, n_pos: int) -> tuple[np.ndarray, float, bool]:
        return np.full(n_pos, 0.5), 1.0, False

    def _update_after_click(self, after_click: np.ndarray, data: SlateArrays, post: ChainPosterior,
                            informative: np.ndarray) -> np.ndarray:
        clicked = data.clicks & informative
        n = clicked.sum(axis=0)
        went_on = np.where(clicked, post.examined_next, 0.0).sum(axis=0)
        return np.where(n > 0, np.clip(went_on / np.maximum(n, 1), 0.0, 1.0), after_click)

    def _model(self, after_click: np.ndarray, persistence: float, sigma_prior: float) -> DependentClickModel:
        return DependentClickModel(tuple(float(x) for x in after_click[:-1]))


@dataclass(frozen=True)
class DBNEstimator(_ChainEstimator):
    """DBN: ``alpha_qd``, satisfaction ``sigma_qd`` and persistence ``gamma`` (see :meth:`_dbn_step`)."""

    name: str = "DBN"

    def _initial(self, n_pos: int) -> tuple[np.ndarray, float, bool]:
        return np.full(n_pos, 0.8), 0.8, True

    def _model(self, after_click: np.ndarray, persistence: float, sigma_prior: float) -> DynamicBayesianNetwork:
        return DynamicBayesianNetwork(persistence=float(persistence), satisfaction=float(sigma_prior))


def default_estimators(prior_strength: float = 1.0, max_iter: int = 500, tol: float = 1e-6) -> tuple[Estimator, ...]:
    """The two baselines then PBM, cascade, DCM and DBN, with shared EM settings."""
    em = {"prior_strength": prior_strength, "max_iter": max_iter, "tol": tol}
    return (ConstantCTR(), PositionCTR(), PBMEstimator(**em), CascadeEstimator(**em), DCMEstimator(**em),
            DBNEstimator(**em))


DEFAULT_ESTIMATORS: tuple[Estimator, ...] = default_estimators()
"""What :func:`fidelity_report` compares by default (baselines first)."""


# --------------------------------------------------------------------------------------------------
# Choosing the prior strength by cross-validation on the training slates
# --------------------------------------------------------------------------------------------------
PRIOR_ONLY = 1e9
"""A prior strength so large that every (query, item) parameter stays at the prior mean: the fall-back when
the data cannot support per-item parameters (the model keeps only its per-position / global ones)."""

PRIOR_GRID: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0, PRIOR_ONLY)
"""Prior strengths :func:`choose_prior_strength` tries by default."""

CV_MAX_ITER = 100
"""EM iterations at most for each cross-validation fit (the final fit uses the estimator's own)."""


@dataclass(frozen=True)
class PriorChoice:
    """The outcome of :func:`choose_prior_strength`.

    Attributes:
        strength: The chosen prior strength (:data:`PRIOR_ONLY` when falling back to the prior).
        cv_log_likelihood: Cross-validated log-likelihood per impression of each strength tried.
        constant_cv_log_likelihood: The same for the constant-CTR baseline.
    """

    strength: float
    cv_log_likelihood: dict[float, float]
    constant_cv_log_likelihood: float

    @property
    def fell_back(self) -> bool:
        """True when per-item parameters did not help in cross-validation (the prior alone won)."""
        return self.strength == PRIOR_ONLY

    @property
    def worse_than_constant(self) -> bool:
        """True when even the chosen strength predicts held-out folds worse than a constant click rate."""
        return self.cv_log_likelihood[self.strength] < self.constant_cv_log_likelihood

    @property
    def note(self) -> str:
        """One sentence for the report."""
        if self.fell_back:
            text = ("the data cannot support per-item parameters (cross-validation prefers the prior): every item "
                    "gets the prior mean")
        else:
            text = f"prior strength {self.strength:g} chosen by cross-validation"
        if self.worse_than_constant:
            text += ("; even so it predicts held-out folds worse than a constant click rate, so the report shows "
                     "the constant click rate for it")
        return text


def _cv_log_likelihood(estimator: Estimator, data: SlateArrays, fold: np.ndarray) -> float:
    """Held-out log-likelihood per impression, pooled over the folds (fit on the others)."""
    total, rows = 0.0, 0.0
    for f in np.unique(fold):
        test = data.take(np.flatnonzero(fold == f))
        model = estimator.fit(data.take(np.flatnonzero(fold != f)))
        total += float(model.slate_log_likelihood(test).sum())
        rows += float(test.shown.sum())
    return total / max(rows, 1.0)


def choose_prior_strength(estimator: Estimator, data: SlateArrays, grid: tuple[float, ...] = PRIOR_GRID,
                          n_folds: int = 3, seed: int = 0) -> PriorChoice:
    """Pick ``estimator``'s ``prior_strength`` by ``n_folds``-fold cross-validation over training slates.

    Pairs absent from a fold's training part get the prior mean, as unseen pairs do at test time, so the
    criterion rewards strengths that generalise to new and rarely seen items. Ties go to the stronger prior.
    Each fold's fit runs at most :data:`CV_MAX_ITER` EM iterations.

    Args:
        estimator: An EM estimator with a ``prior_strength`` field.
        data: Training slates (the test log is never looked at).
        grid: Strengths to try (each finite and >= 0).
        n_folds: Folds (>= 2; at most the number of slates).
        seed: Seed of the fold assignment.
    """
    if not hasattr(estimator, "prior_strength"):
        raise ConfigError(f"{estimator.name} has no prior_strength to choose.")
    if not (isinstance(n_folds, (int, np.integer)) and 2 <= n_folds <= data.n_slates):
        raise ConfigError(f"n_folds must be an integer in [2, {data.n_slates}] (the training slates), got {n_folds!r}.")
    if not grid:
        raise ConfigError("the prior-strength grid is empty.")
    fold = np.random.default_rng(seed).permutation(np.arange(data.n_slates) % n_folds)
    iters = min(estimator.max_iter, CV_MAX_ITER)
    scores = {float(s): _cv_log_likelihood(replace(estimator, prior_strength=float(s), max_iter=iters), data, fold)
              for s in grid}
    best = max(sorted(scores, reverse=True), key=lambda s: scores[s])
    return PriorChoice(best, scores, _cv_log_likelihood(ConstantCTR(), data, fold))


# --------------------------------------------------------------------------------------------------
# Fitting and scoring logs
# --------------------------------------------------------------------------------------------------
def fit_click_model(log: pd.DataFrame, estimator: Estimator, *, progress: bool = False) -> FittedModel:
    """Fit one model to a log.

    Args:
        log: Training interaction log.
        estimator: e.g. ``DBNEstimator()``.
        progress: Show a tqdm bar over EM iterations.

    Returns:
        The fitted model; its ``attractiveness`` (where it has one) is the per-(query, item) table.
    """
    return estimator.fit(SlateArrays.from_log(log), progress=progress)


def fit_all(log: pd.DataFrame, estimators: tuple[Estimator, ...] = DEFAULT_ESTIMATORS, *,
            progress: bool = False) -> dict[str, FittedModel]:
    """Fit several models to one log; keys are the estimators' names (which must be distinct)."""
    names = [e.name for e in estimators]
    if len(set(names)) != len(names):
        raise ConfigError(f"estimator names must be distinct, got {names}.")
    data = SlateArrays.from_log(log)
    return {e.name: e.fit(data, progress=progress) for e in estimators}


@dataclass(frozen=True, eq=False)
class SlateScores:
    """Per-slate pieces of the held-out metrics, so that bootstrap resamples are weighted sums.

    Attributes:
        log_likelihood: ``float (S,)`` log joint probability of each slate's clicks.
        n_shown: ``float (S,)`` rows per slate.
        log2_terms: ``float (S, P)`` ``c log2 q + (1 - c) log2 (1 - q)`` per shown slot (0 elsewhere).
        shown: ``float (S, P)``.
    """

    log_likelihood: np.ndarray
    n_shown: np.ndarray
    log2_terms: np.ndarray
    shown: np.ndarray


def score_slates(model: FittedModel, data: SlateArrays) -> SlateScores:
    """Per-slate log-likelihood and per-slot perplexity terms of ``model`` on ``data``."""
    q = np.clip(model.marginal_click_probs(data), _EPS, 1 - _EPS)
    terms = np.where(data.shown, np.where(data.clicks, np.log2(q), np.log2(1 - q)), 0.0)
    return SlateScores(model.slate_log_likelihood(data), data.shown.sum(axis=1).astype(float), terms,
                       data.shown.astype(float))


def _metrics(scores: SlateScores, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics for each row of slate ``weights (B, S)``: ``log_likelihood (B,)``, ``perplexity (B,)``,
    ``perplexity_per_position (B, P)`` (NaN where a resample has no row at a position)."""
    ll = weights @ scores.log_likelihood / np.maximum(weights @ scores.n_shown, 1e-12)
    count = weights @ scores.shown
    with np.errstate(invalid="ignore", divide="ignore"):
        per_pos = np.where(count > 0, np.exp2(-(weights @ scores.log2_terms) / count), np.nan)
    present = scores.shown.sum(axis=0) > 0
    overall = np.nanmean(np.where(present, per_pos, np.nan), axis=1) if present.any() else np.full(len(ll), np.nan)
    return {"log_likelihood": ll, "perplexity": overall, "perplexity_per_position": per_pos}


def evaluate(model: FittedModel, log: pd.DataFrame | SlateArrays) -> dict[str, object]:
    """Held-out log-likelihood per impression and perplexity (overall and per position).

    Args:
        model: A fitted model.
        log: Test log (pairs are matched to the model's training vocabulary) or prepared arrays.

    Returns:
        ``{"log_likelihood": float, "perplexity": float, "perplexity_per_position": float (P,)}``.
    """
    data = log if isinstance(log, SlateArrays) else SlateArrays.from_log(log, _vocabulary(model))
    out = _metrics(score_slates(model, data), np.ones((1, data.n_slates)))
    return {"log_likelihood": float(out["log_likelihood"][0]), "perplexity": float(out["perplexity"][0]),
            "perplexity_per_position": out["perplexity_per_position"][0]}


def _vocabulary(model: FittedModel) -> pd.MultiIndex | None:
    table = getattr(model, "attractiveness", None)
    return None if table is None else table.pairs


def fidelity_report(train_log: pd.DataFrame, test_log: pd.DataFrame, *,
                    estimators: tuple[Estimator, ...] = DEFAULT_ESTIMATORS, n_bootstrap: int = 200,
                    confidence: float = 0.95, seed: int = 0, progress: bool = False,
                    prior_grid: tuple[float, ...] | None = PRIOR_GRID, cv_folds: int = 3,
                    fitted: dict[str, FittedModel] | None = None) -> pd.DataFrame:
    """Fit every estimator on ``train_log`` and compare them on ``test_log``.

    Each EM estimator's prior strength is first chosen by ``cv_folds``-fold cross-validation on the
    training slates (:func:`choose_prior_strength`; the test log plays no part); when per-item parameters
    do not help, the model falls back to the prior, and when even that predicts the training folds worse
    than a constant click rate, to the constant click rate; the ``note`` column says which.

    Confidence intervals are percentile bootstraps over test slates (``n_bootstrap`` resamples, the same
    resamples for every model, so the gain over the constant-CTR baseline is a paired difference).

    Args:
        train_log: Log to fit on.
        test_log: Held-out log; (query, item) pairs unseen in training get each model's prior.
        estimators: Models to compare (names distinct).
        n_bootstrap: Bootstrap resamples (>= 10).
        confidence: Interval coverage, in (0, 1).
        seed: Seed of the bootstrap generator.
        progress: tqdm bars over EM iterations.
        prior_grid: Prior strengths to cross-validate; ``None`` keeps each estimator's own.
        cv_folds: Folds of that cross-validation.
        fitted: When given, filled with each model's fit on ``train_log`` by name (the EM model at the chosen
            prior strength, also where the report shows the constant click rate for it), e.g. for
            :func:`fitted_model_json`.

    Returns:
        One row per model: ``model``, ``prior_strength`` (NaN for the baselines), ``note``,
        ``log_likelihood`` (per impression), ``ll_gain_vs_constant``,
        ``perplexity`` and ``perplexity@r`` for positions ``r = 1 ..`` (1-based), each with ``_low`` and
        ``_high`` interval columns. ``attrs`` holds ``n_train_slates``, ``n_test_slates``, ``confidence``.
    """
    if not (isinstance(n_bootstrap, (int, np.integer)) and n_bootstrap >= 10):
        raise ConfigError(f"n_bootstrap must be an integer >= 10, got {n_bootstrap!r}.")
    if not (0 < confidence < 1):
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}.")
    train = SlateArrays.from_log(train_log)
    test = SlateArrays.from_log(test_log, train.pairs)
    if train.n_slates == 0 or test.n_slates == 0:
        raise LogSchemaError(f"train and test logs must be non-empty, got {train.n_slates} and {test.n_slates} slates.")
    names = [e.name for e in estimators]
    if len(set(names)) != len(names):
        raise ConfigError(f"estimator names must be distinct, got {names}.")
    rng = np.random.default_rng(seed)
    weights = np.vstack([np.ones(test.n_slates),
                         rng.multinomial(test.n_slates, np.full(test.n_slates, 1 / test.n_slates), size=n_bootstrap)])
    lo_q, hi_q = 50 * (1 - confidence), 50 * (1 + confidence)
    baseline = _metrics(score_slates(ConstantCTR().fit(train), test), weights)["log_likelihood"]
    rows = []
    for est in estimators:
        note, fit_with = "", est
        if prior_grid is not None and hasattr(est, "prior_strength"):
            choice = choose_prior_strength(est, train, prior_grid, cv_folds, seed)
            est, note = replace(est, prior_strength=choice.strength), choice.note
            fit_with = ConstantCTR(name=est.name) if choice.worse_than_constant else est
        model = fit_with.fit(train, progress=progress)
        if fitted is not None:  # the click model itself, also where the report shows the constant click rate
            fitted[est.name] = model if fit_with is est else est.fit(train, progress=progress)
        m = _metrics(score_slates(model, test), weights)
        row: dict[str, object] = {"model": est.name, "prior_strength": float(getattr(est, "prior_strength", np.nan)),
                                  "note": note}
        cols = {"log_likelihood": m["log_likelihood"], "ll_gain_vs_constant": m["log_likelihood"] - baseline,
                "perplexity": m["perplexity"]}
        cols.update({f"perplexity@{r + 1}": m["perplexity_per_position"][:, r] for r in range(test.n_positions)})
        for key, values in cols.items():
            row[key] = float(values[0])
            row[f"{key}_low"] = float(np.nanpercentile(values[1:], lo_q))
            row[f"{key}_high"] = float(np.nanpercentile(values[1:], hi_q))
        rows.append(row)
    report = pd.DataFrame(rows)
    report.attrs.update(n_train_slates=train.n_slates, n_test_slates=test.n_slates, confidence=confidence)
    return report


# --------------------------------------------------------------------------------------------------
# A fitted model as the env's click model (JSON)
# --------------------------------------------------------------------------------------------------
def fitted_model_json(fitted: FittedModel, n_positions: int, prior_strength: float | None = None,
                      source: str | None = None, note: str | None = None) -> dict | None:
    """The position effects of a fitted click model as the JSON the env's shopper runs on
    (``ShopperConfig.click_model``; see :func:`simulators.click_models.load_click_model`).

    A fitted model is an env :class:`~simulators.click_models.ClickModel` (``fitted.model``: PBM examination
    per position, DCM continuation per position, DBN persistence and the satisfaction prior) plus per-(query,
    item) tables that name the log's own items. The tables stay behind: in the env attractiveness comes from
    the shopper's utility. The file also records the attractiveness prior (the mean the tables are smoothed
    towards), the prior strength, the source, and ``examination_at_prior``: ``(P,)`` the chance each slot is
    examined when every shown result has the prior attractiveness (PBM: the examination itself).

    Args:
        fitted: A model fitted by :class:`PBMEstimator`, :class:`CascadeEstimator`, :class:`DCMEstimator` or
            :class:`DBNEstimator`.
        n_positions: ``P``, positions of the log it was fitted on.
        prior_strength: The prior strength it was fitted with.
        source: Where the log came from (a path), for the record.
        note: The fidelity report's note on the model (e.g. that it predicts held-out clicks no better than a
            constant click rate), for the record.

    Returns:
        The JSON object, or ``None`` for a baseline (:class:`CTRBaseline`: no click model to run).
    """
    model = getattr(fitted, "model", None)
    if model is None:
        return None
    prior = float(fitted.attractiveness.prior)
    at_prior = model.click_probs(np.full((1, n_positions), prior))[0] / max(prior, _EPS)
    fit: dict[str, object] = {"attractiveness_prior": prior, "examination_at_prior": [float(x) for x in at_prior]}
    if prior_strength is not None:
        fit["prior_strength"] = float(prior_strength)
    if source is not None:
        fit["source"] = str(source)
    if note:
        fit["note"] = str(note)
    return click_model_to_json(model, n_positions, **fit)


# --------------------------------------------------------------------------------------------------
# Logs for checks: simulate from a known model, split
# --------------------------------------------------------------------------------------------------
def simulate_log(model: object, attractiveness: np.ndarray, n_sessions: int, rng: np.random.Generator, *,
                 n_slots: int | None = None, satisfaction: np.ndarray | None = None) -> pd.DataFrame:
    """A log of ``n_sessions`` one-slate sessions drawn from a click model with known parameters.

    Each session picks a query uniformly, shows its ``D`` items in a uniformly random order (so every
    item visits every position: the log is informative about position effects) and samples clicks.

    Args:
        model: A click model (``sample(attractiveness (B, N), rng[, satisfaction=...])``).
        attractiveness: ``float (Q, D)`` true ``alpha`` of item ``d`` for query ``q`` (query text
            ``f"q{q}"``, item id ``d``).
        n_sessions: Number of slates.
        rng: Random generator.
        n_slots: Slots shown (top ``n_slots`` of the shuffled items; default ``D``).
        satisfaction: ``float (Q, D)`` true DBN ``sigma`` (passed to ``model.sample``).

    Returns:
        A validated log; ``propensity`` is ``1 / D`` (the chance of an item at a given position).
    """
    attractiveness = np.asarray(attractiveness, dtype=float)
    if attractiveness.ndim != 2:
        raise ValueError(f"attractiveness must be a (Q, D) array, got shape {attractiveness.shape}.")
    n_q, n_d = attractiveness.shape
    n_slots = n_d if n_slots is None else n_slots
    if not 1 <= n_slots <= n_d:
        raise ValueError(f"n_slots must be in [1, {n_d}], got {n_slots}.")
    query = rng.integers(n_q, size=n_sessions)
    order = rng.permuted(np.tile(np.arange(n_d), (n_sessions, 1)), axis=1)[:, :n_slots]
    kwargs = {} if satisfaction is None else {"satisfaction": np.asarray(satisfaction, float)[query[:, None], order]}
    clicks = model.sample(attractiveness[query[:, None], order], rng, **kwargs)
    return validate_log(pd.DataFrame({
        "session": np.repeat(np.arange(n_sessions), n_slots),
        "query": np.char.add("q", query.astype(str)).repeat(n_slots),
        "position": np.tile(np.arange(n_slots), n_sessions),
        "item": order.ravel(),
        "click": clicks.ravel(),
        "purchase": np.zeros(n_sessions * n_slots, dtype=bool),
        "propensity": np.full(n_sessions * n_slots, 1.0 / n_d)}))


def split_log(log: pd.DataFrame, test_fraction: float, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a log by session (all slates of a session land on one side).

    Returns:
        ``(train, test)`` logs.
    """
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
    df = validate_log(log)
    sessions = df["session"].unique()
    test_ids = sessions[rng.random(len(sessions)) < test_fraction]
    in_test = df["session"].isin(test_ids).to_numpy()
    return df[~in_test].reset_index(drop=True), df[in_test].reset_index(drop=True)


def parameter_recovery(true_model: object, fitted: FittedPBM | FittedChainModel, attractiveness: np.ndarray,
                       satisfaction: np.ndarray | None = None) -> pd.DataFrame:
    """Compare a fit of a :func:`simulate_log` log with the parameters that generated it.

    Compared: every per-position / global field of the click model (``examination``, ``continuation``,
    ``persistence``; DBN's scalar ``satisfaction`` only when no per-item ``satisfaction`` is given), then
    ``alpha[q, d]`` and, for DBN, ``sigma[q, d]``.

    Args:
        true_model: The click model that generated the log (same class as ``fitted.model``).
        fitted: Its fit.
        attractiveness: ``float (Q, D)`` true ``alpha`` (query ``f"q{q}"``, item ``d``).
        satisfaction: ``float (Q, D)`` true DBN ``sigma``, if any.

    Returns:
        Columns ``parameter``, ``true``, ``fitted``, ``abs_error``.
    """
    if type(true_model) is not type(fitted.model):
        raise ValueError(f"true model is a {type(true_model).__name__} but the fit is a "
                         f"{type(fitted.model).__name__}.")
    rows: list[tuple[str, float, float]] = []
    for f in fields(true_model):
        if f.name == "satisfaction" and satisfaction is not None:
            continue
        truth, est = np.atleast_1d(getattr(true_model, f.name)), np.atleast_1d(getattr(fitted.model, f.name))
        scalar = np.ndim(getattr(true_model, f.name)) == 0
        rows += [(f.name if scalar else f"{f.name}[{i}]", float(t), float(e))
                 for i, (t, e) in enumerate(zip(truth, est))]
    tables = [("alpha", fitted.attractiveness, attractiveness)]
    if satisfaction is not None and getattr(fitted, "satisfaction", None) is not None:
        tables.append(("sigma", fitted.satisfaction, satisfaction))
    for name, table, truth in tables:
        truth = np.asarray(truth, dtype=float)
        rows += [(f"{name}[q{q},{d}]", float(truth[q, d]), table.get(f"q{q}", d))
                 for q in range(truth.shape[0]) for d in range(truth.shape[1])]
    out = pd.DataFrame(rows, columns=["parameter", "true", "fitted"])
    out["abs_error"] = (out["fitted"] - out["true"]).abs()
    return out
