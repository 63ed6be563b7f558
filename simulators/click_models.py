"""Click models: attractiveness in display order -> click probabilities and samples.

Every model here satisfies :class:`simulators.protocols.ClickModel`: ``click_probs(attractiveness)``
maps ``float (B, N)`` attractiveness (slot 0 = top, values in ``[0, 1]``) to the marginal click
probability of each slot, ``float (B, N)``, and ``sample(attractiveness, rng)`` draws ``bool (B, N)``
clicks from the caller's ``np.random.Generator``. Leading batch dimensions are free (``(..., N)``); the
models are vectorised over them and loop only over the ``N`` slots.

The models and their parameters follow Chuklin, Markov & de Rijke, *Click Models for Web Search*
(2015), with ``a_k`` the attractiveness of the result in slot ``k`` and ``E_k`` the event "slot ``k``
is examined":

==========================  ==========================================================================
model                       examination of the next slot
==========================  ==========================================================================
PBM                         independent: ``P(E_k) = examination[k]``
cascade                     ``E_0 = 1``; stop at the first click, otherwise go on
DCM                         ``E_0 = 1``; after a click in slot ``k`` go on with ``continuation[k]``
DBN                         ``E_0 = 1``; go on with ``persistence * (1 - satisfaction * click)``
multinomial logit           one choice among the slate and "no click" (no examination process)
==========================  ==========================================================================
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from encoders.errors import ConfigError, InputNotFoundError

_PROB_SLACK = 1e-9  # float round-off tolerated when checking that inputs are probabilities


def _check_probability_vector(name: str, values: tuple[float, ...], *, allow_empty: bool = False) -> np.ndarray:
    """``float (M,)`` from a tuple of probabilities, or ValueError naming the parameter."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or (len(arr) == 0 and not allow_empty):
        raise ValueError(f"{name} must be a non-empty 1-D sequence of probabilities, got {values!r}.")
    bad = ~((arr >= 0.0) & (arr <= 1.0))  # NaN-safe
    if np.any(bad):
        raise ValueError(f"{name} must hold probabilities in [0, 1], got {float(arr[bad][0])!r} "
                         f"at index {int(np.flatnonzero(bad)[0])}.")
    return arr


def _check_probability(name: str, value: float) -> None:
    """ValueError unless ``value`` is a probability."""
    if not (0.0 <= float(value) <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")


def _as_probabilities(name: str, values: np.ndarray) -> np.ndarray:
    """``float (..., N)`` ``values`` (read, never written) after checking it is a non-scalar array of
    probabilities; values within ``_PROB_SLACK`` of ``[0, 1]`` are clipped into it (a copy then)."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim and _in_unit_interval(arr.reshape(-1)):  # the common case in one compiled pass (NaN fails it)
        return arr
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array of shape (B, N), got a scalar.")
    bad = ~((arr >= -_PROB_SLACK) & (arr <= 1.0 + _PROB_SLACK))
    if np.any(bad):
        raise ValueError(f"{name} must hold probabilities in [0, 1], got {float(arr[bad][0])!r}.")
    return np.clip(arr, 0.0, 1.0)


@njit(cache=True)
def _in_unit_interval(values):
    """Whether every entry of ``float (M,)`` ``values`` is in ``[0, 1]`` (False for NaN)."""
    for v in values:
        if not (0.0 <= v <= 1.0):
            return False
    return True


@njit(cache=True)
def _examined(attract, exam):
    """``(attract * exam[:N], ok)`` for ``attract (M, N)``; ``ok`` is False when an entry is outside ``[0, 1]``."""
    m, n = attract.shape
    out = np.empty((m, n))
    for r in range(m):
        for i in range(n):
            a = attract[r, i]
            if not (0.0 <= a <= 1.0):
                return out, False
            out[r, i] = a * exam[i]
    return out, True


def _check_slots(model: str, n_slots: int, known: int) -> None:
    """ValueError when a slate is longer than the per-slot parameters cover."""
    if n_slots > known:
        raise ValueError(f"slate has {n_slots} slots but the {model} knows {known} positions.")


def chain_click_probs(attractiveness: np.ndarray, continue_after_click: np.ndarray,
                       continue_after_skip: np.ndarray) -> np.ndarray:
    """Marginal click probabilities of a Markov examination chain.

    ``P(E_0) = 1``, ``P(C_k) = P(E_k) a_k`` and, because the chain is Markov in (examined, clicked),
    ``P(E_{k+1}) = P(E_k) [a_k c_k + (1 - a_k) s_k]`` with ``c_k`` / ``s_k`` the probabilities of going
    on after a click / after a skip in slot ``k``.

    Args:
        attractiveness: ``float (..., N)``.
        continue_after_click: ``float (..., N)`` (broadcastable).
        continue_after_skip: ``float (..., N)`` (broadcastable).

    Returns:
        ``float (..., N)`` marginal click probabilities.
    """
    n = attractiveness.shape[-1]
    c = np.broadcast_to(continue_after_click, attractiveness.shape)
    s = np.broadcast_to(continue_after_skip, attractiveness.shape)
    probs = np.empty_like(attractiveness)
    examined = np.ones(attractiveness.shape[:-1])
    for k in range(n):
        a = attractiveness[..., k]
        probs[..., k] = examined * a
        examined = examined * (a * c[..., k] + (1.0 - a) * s[..., k])
    return probs


def _chain_sample(attractiveness: np.ndarray, continue_after_click: np.ndarray,
                  continue_after_skip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sample ``bool (..., N)`` clicks from the Markov examination chain of :func:`chain_click_probs`."""
    n = attractiveness.shape[-1]
    c = np.broadcast_to(continue_after_click, attractiveness.shape)
    s = np.broadcast_to(continue_after_skip, attractiveness.shape)
    u_click = rng.random(attractiveness.shape)
    u_next = rng.random(attractiveness.shape)
    clicks = np.zeros(attractiveness.shape, dtype=bool)
    examined = np.ones(attractiveness.shape[:-1], dtype=bool)
    for k in range(n):
        click = examined & (u_click[..., k] < attractiveness[..., k])
        clicks[..., k] = click
        go_on = np.where(click, c[..., k], s[..., k])
        examined = examined & (u_next[..., k] < go_on)
    return clicks


@dataclass(frozen=True)
class PositionBasedModel:
    """Position-based model (PBM): slot ``k`` is examined with probability ``examination[k]``,
    independently of the other slots, and an examined result is clicked with its attractiveness.

    ``P(click_k) = examination[k] * attractiveness_k``.

    Only the products ``examination[k] * a`` are identified from clicks; :mod:`simulators.fitting`
    fixes ``examination[0] = 1`` to pin the scale.

    Attributes:
        examination: ``float (N,)`` examination probability per slot, in ``[0, 1]``.
    """

    examination: tuple[float, ...]

    def __post_init__(self) -> None:
        exam = np.asarray(self.examination, dtype=float)
        if exam.ndim != 1 or len(exam) == 0 or np.any((exam < 0) | (exam > 1)) or np.any(np.isnan(exam)):
            raise ValueError(f"examination must be a non-empty sequence of probabilities, got {self.examination}.")

    @classmethod
    def geometric(cls, n_slots: int, decay: float = 0.85) -> "PositionBasedModel":
        """Examination ``decay ** k`` for slots ``k = 0 .. n_slots - 1``."""
        return cls(tuple(float(decay**k) for k in range(n_slots)))

    def click_probs(self, attractiveness: np.ndarray) -> np.ndarray:
        """``float (B, N)`` marginal click probabilities."""
        a = np.asarray(attractiveness, dtype=float)
        n = a.shape[-1] if a.ndim else 0
        exam = self.independent_examination(n)
        if a.ndim:
            probs, ok = _examined(a.reshape(-1, n), exam)  # the common case: one compiled pass
            if ok:
                return probs.reshape(a.shape)
        return _as_probabilities("attractiveness", a) * exam  # raises, or clips round-off

    def sample(self, attractiveness: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``bool (B, N)`` sampled clicks: one uniform per slot, clicked when below ``click_probs``."""
        probs = self.click_probs(attractiveness)
        return rng.random(probs.shape) < probs

    def independent_examination(self, n_slots: int) -> np.ndarray:
        """``float (n_slots,)`` examination per slot, independent of the other slots and of clicks: a sampler
        may draw slot ``k``'s click as ``uniform_k < attractiveness_k * examination_k`` itself (the numbers
        :meth:`sample` draws), e.g. inside a compiled kernel. Only models with this property define it."""
        _check_slots("PBM", n_slots, len(self.examination))
        exam = self.__dict__.get("_exam")
        if exam is None:  # the tuple as an array, once (a frozen dataclass: not a field), read-only
            exam = np.array(self.examination, dtype=float)
            exam.flags.writeable = False
            object.__setattr__(self, "_exam", exam)
        return exam[:n_slots]


def independent_examination_of(model: Any, n_slots: int) -> np.ndarray | None:
    """``float (n_slots,)`` ``model.independent_examination(n_slots)`` when the model has it and its ``sample`` and
    ``click_probs`` are those of the class that declares it (a subclass that changes how clicks are drawn or
    their probabilities keeps its own ``sample``), else ``None``."""
    cls = type(model)
    owner = next((c for c in cls.__mro__ if "independent_examination" in vars(c)), None)
    if owner is None or any(getattr(cls, name, None) is not getattr(owner, name, None)
                            for name in ("sample", "click_probs")):
        return None
    return model.independent_examination(n_slots)


@dataclass(frozen=True)
class CascadeModel:
    """Cascade model (Craswell et al., 2008): the shopper scans top-down, clicks an examined result with
    its attractiveness, and stops at the first click. At most one click per slate.

    ``P(C_k = 1) = a_k * prod_{j<k} (1 - a_j)``.

    The model has no parameters besides the attractiveness it is given.
    """

    def click_probs(self, attractiveness: np.ndarray) -> np.ndarray:
        """Marginal click probabilities.

        Args:
            attractiveness: ``float (B, N)`` in ``[0, 1]``, slot 0 first.

        Returns:
            ``float (B, N)``.
        """
        a = _as_probabilities("attractiveness", attractiveness)
        return chain_click_probs(a, np.zeros(1), np.ones(1))

    def sample(self, attractiveness: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sample ``bool (B, N)`` clicks (at most one ``True`` per row)."""
        a = _as_probabilities("attractiveness", attractiveness)
        return _chain_sample(a, np.zeros(1), np.ones(1), rng)


@dataclass(frozen=True)
class DependentClickModel:
    """Dependent click model (DCM; Guo, Liu & Wang, 2009): a cascade that may go on after a click.

    The shopper examines slot 0; after a skip in slot ``k`` they always examine slot ``k + 1``; after a
    click in slot ``k`` they go on with probability ``continuation[k]`` (``1 - continuation[k]`` is the
    chance the click satisfied them). Marginals, with ``l_k = continuation[k]``:

    ``P(E_0) = 1``, ``P(C_k) = P(E_k) a_k``, ``P(E_{k+1}) = P(E_k) (1 - a_k (1 - l_k))``.

    Attributes:
        continuation: ``float (M,)`` probability of going on after a click in slot ``k``, in ``[0, 1]``;
            covers slates of up to ``M + 1`` slots (what follows a click in the last slot is never seen).
    """

    continuation: tuple[float, ...]

    def __post_init__(self) -> None:
        _check_probability_vector("continuation", self.continuation, allow_empty=True)

    @classmethod
    def constant(cls, n_slots: int, continuation: float = 0.5) -> "DependentClickModel":
        """DCM for slates of ``n_slots`` slots with the same ``continuation`` after every click."""
        return cls(tuple(float(continuation) for _ in range(max(n_slots - 1, 0))))

    def _continuation(self, n: int) -> np.ndarray:
        """``float (N,)`` continuation per slot (the last slot's value is never used)."""
        _check_slots("DCM", n, len(self.continuation) + 1)
        return np.append(np.asarray(self.continuation[: max(n - 1, 0)], dtype=float), 1.0)[:n]

    def click_probs(self, attractiveness: np.ndarray) -> np.ndarray:
        """Marginal click probabilities.

        Args:
            attractiveness: ``float (B, N)`` in ``[0, 1]``, slot 0 first.

        Returns:
            ``float (B, N)``.
        """
        a = _as_probabilities("attractiveness", attractiveness)
        return chain_click_probs(a, self._continuation(a.shape[-1]), np.ones(1))

    def sample(self, attractiveness: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sample ``bool (B, N)`` clicks."""
        a = _as_probabilities("attractiveness", attractiveness)
        return _chain_sample(a, self._continuation(a.shape[-1]), np.ones(1), rng)


@dataclass(frozen=True)
class DynamicBayesianNetwork:
    """Dynamic Bayesian network model (DBN; Chapelle & Zhang, 2009).

    The shopper examines slot 0. An examined result is clicked with its attractiveness ``a_k``; a click
    satisfies them with probability ``s_k`` (the result's *satisfaction*), and a satisfied shopper stops.
    An unsatisfied shopper examines the next slot with probability ``persistence`` (``gamma``).
    Marginals:

    ``P(E_0) = 1``, ``P(C_k) = P(E_k) a_k``, ``P(E_{k+1}) = P(E_k) gamma (1 - a_k s_k)``.

    Satisfaction is a property of the result, like attractiveness: pass it per slot as
    ``satisfaction=float (B, N)``; without it every click satisfies with the scalar ``satisfaction``.

    Attributes:
        persistence: ``gamma``, probability of going on after an unsatisfying slot, in ``[0, 1]``.
        satisfaction: default satisfaction probability of a click, in ``[0, 1]``.
    """

    persistence: float = 0.9
    satisfaction: float = 0.5

    def __post_init__(self) -> None:
        _check_probability("persistence", self.persistence)
        _check_probability("satisfaction", self.satisfaction)

    def _satisfaction(self, a: np.ndarray, satisfaction: np.ndarray | None) -> np.ndarray:
        """``float (B, N)`` per-slot satisfaction, checked against the attractiveness shape."""
        if satisfaction is None:
            return np.full(a.shape, float(self.satisfaction))
        s = _as_probabilities("satisfaction", satisfaction)
        if s.shape != a.shape:
            raise ValueError(f"satisfaction must have the shape of attractiveness {a.shape}, got {s.shape}.")
        return s

    def click_probs(self, attractiveness: np.ndarray, satisfaction: np.ndarray | None = None) -> np.ndarray:
        """Marginal click probabilities.

        Args:
            attractiveness: ``float (B, N)`` in ``[0, 1]``, slot 0 first.
            satisfaction: optional ``float (B, N)`` satisfaction of each shown result.

        Returns:
            ``float (B, N)``.
        """
        a = _as_probabilities("attractiveness", attractiveness)
        s = self._satisfaction(a, satisfaction)
        g = float(self.persistence)
        return chain_click_probs(a, g * (1.0 - s), np.full(1, g))

    def sample(self, attractiveness: np.ndarray, rng: np.random.Generator,
               satisfaction: np.ndarray | None = None) -> np.ndarray:
        """Sample ``bool (B, N)`` clicks (``satisfaction`` as in :meth:`click_probs`)."""
        a = _as_probabilities("attractiveness", attractiveness)
        s = self._satisfaction(a, satisfaction)
        g = float(self.persistence)
        return _chain_sample(a, g * (1.0 - s), np.full(1, g), rng)


@dataclass(frozen=True)
class MultinomialLogit:
    """Multinomial logit choice with a no-click option (RecSim's ``MultinomialLogitChoiceModel`` shape):
    the shopper clicks at most one result, choosing slot ``k`` with probability

    ``P(C_k = 1) = exp(u_k) / (exp(no_click_utility) + sum_j exp(u_j))``,
    ``u_k = sensitivity * a_k + position_bias[k]``,

    and clicks nothing with the remaining probability. No closed form is needed: these are exact.

    Attributes:
        sensitivity: weight of attractiveness in the utility (``>= 0``; 0 ignores attractiveness).
        no_click_utility: utility of leaving without a click (finite).
        position_bias: ``float (M,)`` additive utility per slot (``M >= N``); empty means no position
            effect.
    """

    sensitivity: float = 5.0
    no_click_utility: float = 2.0
    position_bias: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not (np.isfinite(self.sensitivity) and self.sensitivity >= 0):
            raise ValueError(f"sensitivity must be a finite number >= 0, got {self.sensitivity!r}.")
        if not np.isfinite(self.no_click_utility):
            raise ValueError(f"no_click_utility must be finite, got {self.no_click_utility!r}.")
        bias = np.asarray(self.position_bias, dtype=float)
        if bias.ndim != 1 or not np.all(np.isfinite(bias)):
            raise ValueError(f"position_bias must be a 1-D sequence of finite numbers, got {self.position_bias!r}.")

    @classmethod
    def log_decay(cls, n_slots: int, decay: float = 0.85, **kwargs: float) -> "MultinomialLogit":
        """MNL whose slot ``k`` weight is ``decay ** k`` (``position_bias[k] = k log(decay)``)."""
        if not (0 < decay <= 1):
            raise ValueError(f"decay must be in (0, 1], got {decay!r}.")
        return cls(position_bias=tuple(float(k * np.log(decay)) for k in range(n_slots)), **kwargs)

    def choice_probs(self, attractiveness: np.ndarray) -> np.ndarray:
        """Choice distribution including the no-click option.

        Args:
            attractiveness: ``float (B, N)`` in ``[0, 1]``.

        Returns:
            ``float (B, N + 1)``: slots ``0 .. N - 1``, then "no click" last; rows sum to 1.
        """
        a = _as_probabilities("attractiveness", attractiveness)
        n = a.shape[-1]
        bias = np.zeros(n)
        if self.position_bias:
            _check_slots("multinomial logit", n, len(self.position_bias))
            bias = np.asarray(self.position_bias[:n], dtype=float)
        util = self.sensitivity * a + bias
        util = np.concatenate([util, np.full(a.shape[:-1] + (1,), float(self.no_click_utility))], axis=-1)
        util -= util.max(axis=-1, keepdims=True)
        w = np.exp(util)
        return w / w.sum(axis=-1, keepdims=True)

    def click_probs(self, attractiveness: np.ndarray) -> np.ndarray:
        """``float (B, N)`` click probability per slot (the no-click mass is dropped)."""
        return self.choice_probs(attractiveness)[..., :-1]

    def sample(self, attractiveness: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sample ``bool (B, N)`` clicks: one categorical draw per slate, at most one click."""
        probs = self.choice_probs(attractiveness)
        n = probs.shape[-1] - 1
        cum = np.cumsum(probs, axis=-1)
        u = rng.random(probs.shape[:-1] + (1,))
        choice = np.minimum((u >= cum).sum(axis=-1), n)  # index n = no click
        return choice[..., None] == np.arange(n)


# --------------------------------------------------------------------------------------------------
# Click models as JSON: what `shoprank fidelity` fits, what the env's shopper runs on
# --------------------------------------------------------------------------------------------------
CLICK_MODEL_FORMAT = "shoprank-click-model"
"""``format`` of a click-model JSON file."""
CLICK_MODEL_VERSION = 1
"""Newest ``format_version`` this module writes and reads."""

_COMMON_KEYS = ("format", "format_version", "model", "n_positions", "attractiveness_prior", "prior_strength",
                "examination_at_prior", "source", "note")
"""Keys every click-model file may hold; ``format``, ``model`` and ``n_positions`` are required. The
attractiveness prior, prior strength, examination at the prior, source and note describe the fit; the env
reads none of them (its shopper's attractiveness comes from its utility)."""


@dataclass(frozen=True)
class _ModelKind:
    """How one click-model class is written to and read from JSON.

    Attributes:
        cls: The :mod:`simulators.click_models` class.
        keys: Its parameter keys in the file.
        to_json: ``model -> {key: value}`` of its parameters.
        from_json: ``(params, n_positions, where) -> model`` (params already type-checked as floats / lists).
        per_position: True when the parameters cover at most ``n_positions`` slots (a longer slate is refused).
    """

    cls: type
    keys: tuple[str, ...]
    to_json: typing.Callable[[object], dict]
    from_json: typing.Callable[[dict, int, str], object]
    per_position: bool


def _probabilities(where: str, key: str, value: object, length: int) -> tuple[float, ...]:
    """``value`` as a tuple of ``length`` probabilities, or ConfigError naming the key."""
    if not isinstance(value, list) or len(value) != length:
        got = f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__
        raise ConfigError(f"{where}: '{key}' must be a list of {length} probabilities (one per position), got {got}.")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            raise ConfigError(f"{where}: '{key}'[{i}] must be a probability in [0, 1], got {v!r}.")
    return tuple(float(v) for v in value)


def _probability(where: str, key: str, value: object) -> float:
    """``value`` as one probability, or ConfigError naming the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{where}: '{key}' must be a probability in [0, 1], got {value!r:.80}.")
    return float(value)


def _pbm_from_json(params: dict, n_positions: int, where: str) -> PositionBasedModel:
    return PositionBasedModel(_probabilities(where, "examination", params["examination"], n_positions))


def _dcm_from_json(params: dict, n_positions: int, where: str) -> DependentClickModel:
    return DependentClickModel(_probabilities(where, "continuation", params["continuation"], n_positions - 1))


def _dbn_from_json(params: dict, n_positions: int, where: str) -> DynamicBayesianNetwork:
    return DynamicBayesianNetwork(persistence=_probability(where, "persistence", params["persistence"]),
                                  satisfaction=_probability(where, "satisfaction", params["satisfaction"]))


CLICK_MODEL_KINDS: dict[str, _ModelKind] = {
    "PBM": _ModelKind(PositionBasedModel, ("examination",),
                      lambda m: {"examination": list(m.examination)}, _pbm_from_json, per_position=True),
    "cascade": _ModelKind(CascadeModel, (), lambda m: {}, lambda p, n, w: CascadeModel(), per_position=False),
    "DCM": _ModelKind(DependentClickModel, ("continuation",),
                      lambda m: {"continuation": list(m.continuation)}, _dcm_from_json, per_position=True),
    "DBN": _ModelKind(DynamicBayesianNetwork, ("persistence", "satisfaction"),
                      lambda m: {"persistence": m.persistence, "satisfaction": m.satisfaction}, _dbn_from_json,
                      per_position=False),
}
"""Click models a JSON file can hold, by its ``model`` name (the names ``shoprank fidelity`` reports)."""


def click_model_to_json(model: object, n_positions: int, **fit: object) -> dict:
    """A click model as the JSON object :func:`load_click_model` reads.

    Args:
        model: A :class:`PositionBasedModel`, :class:`CascadeModel`, :class:`DependentClickModel` or
            :class:`DynamicBayesianNetwork`.
        n_positions: Positions it was fitted on (``P``).
        **fit: Optional description of the fit: ``attractiveness_prior``, ``prior_strength``,
            ``examination_at_prior`` (``(P,)`` chance each slot is examined when every result has the prior
            attractiveness), ``source``.

    Returns:
        ``{"format", "format_version", "model", "n_positions", <parameters>, <fit>}``.
    """
    kind = next((name for name, k in CLICK_MODEL_KINDS.items() if type(model) is k.cls), None)
    if kind is None:
        raise TypeError(f"no JSON form for click model {type(model).__name__}; known: {sorted(CLICK_MODEL_KINDS)}.")
    unknown = sorted(set(fit) - set(_COMMON_KEYS))
    if unknown:
        raise TypeError(f"unknown fit description key(s) {unknown}; known: {list(_COMMON_KEYS[4:])}.")
    return {"format": CLICK_MODEL_FORMAT, "format_version": CLICK_MODEL_VERSION, "model": kind,
            "n_positions": int(n_positions), **CLICK_MODEL_KINDS[kind].to_json(model), **fit}


def click_model_from_json(data: object, where: str = "click model") -> tuple[object, int]:
    """``(model, n_positions)`` from the JSON object of :func:`click_model_to_json`, checked key by key.

    Raises:
        ConfigError: naming the first missing, unknown or ill-typed key (``where`` starts the message).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a JSON object, got {type(data).__name__}.")
    if data.get("format") != CLICK_MODEL_FORMAT:
        raise ConfigError(f"{where}: not a ShopRank click model (format must be {CLICK_MODEL_FORMAT!r}, got "
                          f"{data.get('format')!r:.80}); write one with `shoprank fidelity`.")
    version = data.get("format_version", 1)
    if type(version) is not int or not 1 <= version <= CLICK_MODEL_VERSION:
        raise ConfigError(f"{where}: format_version {version!r:.80} is not one this ShopRank reads "
                          f"(1 .. {CLICK_MODEL_VERSION}).")
    name = data.get("model")
    if name not in CLICK_MODEL_KINDS:
        raise ConfigError(f"{where}: 'model' must be one of {sorted(CLICK_MODEL_KINDS)}, got {name!r:.80}.")
    kind = CLICK_MODEL_KINDS[name]
    n = data.get("n_positions")
    if type(n) is not int or n < 1:
        raise ConfigError(f"{where}: 'n_positions' must be an integer >= 1, got {n!r:.80}.")
    unknown = sorted(set(data) - set(_COMMON_KEYS) - set(kind.keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for a {name} model; known: "
                          f"{sorted(set(_COMMON_KEYS) | set(kind.keys))}.")
    missing = [k for k in kind.keys if k not in data]
    if missing:
        raise ConfigError(f"{where}: a {name} model needs {missing}.")
    return kind.from_json({k: data[k] for k in kind.keys}, n, where), n


def load_click_model(path: str | Path, n_slots: int) -> object:
    """The env click model in JSON file ``path`` (written by ``shoprank fidelity``) for slates of ``n_slots``.

    The file gives the position effects (examination, continuation, persistence, satisfaction); the env's
    shopper supplies the attractiveness of each shown product from its utility, as with any click model.

    Args:
        path: A ``<model>.json`` file.
        n_slots: The env's slate size ``N``; a per-position model (PBM, DCM) must cover it.

    Raises:
        InputNotFoundError: no such file.
        ConfigError: not valid JSON, a bad key, or a slate longer than the positions the model was fitted on.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"no click model file at {path}: write one with `shoprank fidelity --out DIR` "
                                 "(DIR/click_models/<model>.json).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    model, n_positions = click_model_from_json(data, str(path))
    if CLICK_MODEL_KINDS[data["model"]].per_position and n_slots > n_positions:
        raise ConfigError(f"{path}: the {data['model']} model was fitted on {n_positions} positions but the env "
                          f"shows {n_slots} (slate_size); set env.slate_size <= {n_positions} (e.g. --set "
                          f"env.slate_size={n_positions}).")
    return model
