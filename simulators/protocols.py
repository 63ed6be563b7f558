"""The seams of the simulated shopper (RecSim's user / choice-model split, without global state).

Every call is a pure function of its arguments: the state goes in and (a new) state comes out, and all
randomness comes from the caller's ``np.random.Generator``. Nothing is remembered between calls, so one
simulator object serves many sessions (and many environments) at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Query:
    """One search query of a session.

    Attributes:
        text: The query as the shopper types it (what the retriever sees).
        intent: Hidden, simulator-specific description of what the shopper wants (never shown to agents).
    """

    text: str
    intent: Any = None


@dataclass(frozen=True)
class Response:
    """The shopper's reaction to one slate of ``N`` positions (index 0 = top).

    Attributes:
        clicks: ``bool (N,)``.
        purchases: ``bool (N,)``; a purchase implies a click at the same position.
        dwell: ``float32 (N,)`` seconds spent on each clicked product (0 where not clicked).
        abandoned: True when the shopper left during or right after this slate.
    """

    clicks: np.ndarray
    purchases: np.ndarray
    dwell: np.ndarray
    abandoned: bool = False


@dataclass(frozen=True)
class ExpectedResponse:
    """Privileged ground truth for one slate (oracle baselines and metrics only).

    Attributes:
        click_prob: ``float (N,)`` marginal click probability per position.
        purchase_prob: ``float (N,)`` marginal purchase probability per position.
        utility: ``float (N,)`` the shopper's true utility of each shown product (for NDCG).
    """

    click_prob: np.ndarray
    purchase_prob: np.ndarray
    utility: np.ndarray = field(default_factory=lambda: np.zeros(0))


@runtime_checkable
class UserSimulator(Protocol):
    """A population of shoppers. ``slate`` is always ``int64 (N,)`` catalog rows, ``-1`` for an empty slot.

    Attributes:
        profile_dim: Width of the observable shopper profile vector.
    """

    profile_dim: int

    def reset(self, rng: np.random.Generator) -> Any:
        """Sample a new shopper and return their initial (hidden) state."""
        ...

    def profile(self, state: Any) -> np.ndarray:
        """Observable profile of the shopper, ``float32 (profile_dim,)`` (noisy signals of taste)."""
        ...

    def next_query(self, state: Any, rng: np.random.Generator) -> Query:
        """The query the shopper types next, given their state."""
        ...

    def respond(self, state: Any, query: Query, slate: np.ndarray, rng: np.random.Generator) -> Response:
        """Sample clicks and purchases on ``slate`` shown in answer to ``query``."""
        ...

    def transition(self, state: Any, query: Query, slate: np.ndarray, response: Response,
                   rng: np.random.Generator) -> tuple[Any, bool]:
        """Next state after the response; the bool is True when the shopper has left (session over)."""
        ...


@runtime_checkable
class PrivilegedSimulator(UserSimulator, Protocol):
    """A simulator that also reveals the truth (optional: enables the myopic oracle and true NDCG)."""

    def expected_response(self, state: Any, query: Query, slate: np.ndarray) -> ExpectedResponse:
        """Marginal click / purchase probabilities and true utilities of the products in ``slate``."""
        ...


@runtime_checkable
class ClickModel(Protocol):
    """Attractiveness in display order to clicks, vectorised over a batch of ``B`` slates of ``N`` slots.

    Models with satisfaction (cascade, DCM, DBN) read ``attractiveness`` as the probability that an
    examined result is clicked; a click may end the examination.

    Optional: ``independent_examination(n_slots) -> float (n_slots,)`` for a model that examines each slot
    independently of the others and of clicks and draws slot ``k``'s click as ``uniform_k < attractiveness_k *
    examination_k``, one uniform per slot in slot order (PBM). The default shopper then draws those uniforms
    itself and computes its whole response in one compiled call (the same numbers as ``sample``); a subclass
    that overrides ``sample`` or ``click_probs`` is always called through them
    (:func:`simulators.click_models.independent_examination_of`).
    """

    def click_probs(self, attractiveness: np.ndarray) -> np.ndarray:
        """Marginal click probability per slot, ``float (B, N)`` from ``float (B, N)`` in ``[0, 1]``."""
        ...

    def sample(self, attractiveness: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sample clicks ``bool (B, N)``."""
        ...
