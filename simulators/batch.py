"""Shoppers over ``B`` sessions at once: the :class:`BatchSimulator` protocol and :class:`LoopShopper`.

The envs run every session through one array core (``envs.core.EnvCore``), which talks to a
:class:`BatchSimulator`: the default shopper has an array implementation (``envs.shoppers``), and any
per-session :class:`~simulators.protocols.UserSimulator` plug-in runs through :class:`LoopShopper`, which
calls the plug-in once per session and checks each result (a broken plug-in raises ``SimulatorError``
naming the method). So a custom shopper gets the batched (vector) env too. The conformance kit
(:mod:`simulators.conformance`) plays plug-ins through both the per-session calls and this adapter.

Draws come from the caller's generator in session order, so ``B = 1`` reproduces the per-session draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from encoders.errors import NoExpectedResponseError, SimulatorError
from simulators.protocols import PrivilegedSimulator, Query, UserSimulator


@dataclass
class BatchResponse:
    """Responses of ``B`` shoppers to one slate each.

    Attributes:
        clicks, purchases: ``bool (B, N)``.
        dwell: ``float32 (B, N)`` seconds on clicked products.
        abandoned: ``bool (B,)`` the shopper left during the slate, or ``None`` when no shopper of this simulator
            ever leaves during a slate (the default shopper leaves only in :meth:`BatchSimulator.transition`).
        raw: The per-session ``Response`` objects (:class:`LoopShopper`), else ``None``.
        utility: ``float (B, K)`` the true utility of every candidate before the slate, when the simulator
            computed it on the way (saves :meth:`BatchSimulator.utilities` a second pass), else ``None``.
    """

    clicks: np.ndarray
    purchases: np.ndarray
    dwell: np.ndarray
    abandoned: np.ndarray | None
    raw: list | None = None
    utility: np.ndarray | None = None


class BatchSimulator(Protocol):
    """A shopper population stepped over ``B`` sessions (``state`` is its hidden state of all of them).

    ``q`` is ``int64 (B,)`` rows of the queries served (the env's ``QueryTable`` rows), ``positions`` ``int64
    (B, N)`` candidate positions per slot and ``slate`` the matching catalog rows (``-1`` = empty slot).

    Attributes:
        profile_dim: Width of the observable profile.
        privileged: Whether :meth:`expected` and :meth:`utilities` reveal the truth.
        user_simulator: The per-session ``UserSimulator`` it batches.
        steps_ended_sessions: Optional (default False): stepping a session whose shopper has left is harmless,
            so the vector env may step all rows and discard the ended ones (cheaper than taking rows apart).
    """

    profile_dim: int
    privileged: bool
    user_simulator: Any

    def sample(self, n: int, rng: np.random.Generator) -> Any:
        """Hidden state of ``n`` new shoppers (no query yet)."""
        ...

    def put(self, state: Any, idx: np.ndarray, fresh: Any) -> Any:
        """``state`` with sessions ``idx`` (``int64 (n,)``) replaced by the ``n`` shoppers of ``fresh``."""
        ...

    def restart(self, state: Any, idx: np.ndarray, rng: np.random.Generator) -> Any:
        """``state`` with sessions ``idx`` given new shoppers: ``put(state, idx, sample(len(idx), rng))``, the
        same draws (an implementation may write them in place). Optional: the env falls back to that
        expression when a simulator does not have it."""
        ...

    def take(self, state: Any, idx: np.ndarray) -> Any:
        """The state of sessions ``idx`` alone (a copy, as :meth:`sample` would return it)."""
        ...

    def next_queries(self, state: Any, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``int64 (n,)`` table rows of the next queries of sessions ``idx``."""
        ...

    def refresh(self, state: Any, idx: np.ndarray, rows: np.ndarray) -> None:
        """Sessions ``idx`` now see the (re-retrieved) candidates of private table ``rows``."""
        ...

    def profile(self, state: Any) -> np.ndarray:
        """``float32 (B, profile_dim)``."""
        ...

    def respond(self, state: Any, q: np.ndarray, positions: np.ndarray, slate: np.ndarray,
                rng: np.random.Generator) -> BatchResponse:
        """Sample each shopper's clicks and purchases."""
        ...

    def expected(self, state: Any, q: np.ndarray, positions: np.ndarray, slate: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """``(click_prob (B, N), purchase_prob (B, N))`` under the true state (privileged)."""
        ...

    def utilities(self, state: Any, q: np.ndarray, candidates: np.ndarray) -> np.ndarray | None:
        """``float (B, K)`` true utility of every candidate (``candidates``: ``int64 (B, K)`` catalog rows of
        the rows ``q``; 0 where padded), or ``None`` without truth."""
        ...

    def transition(self, state: Any, q: np.ndarray, positions: np.ndarray, slate: np.ndarray,
                   response: BatchResponse, rng: np.random.Generator) -> np.ndarray:
        """Move the shoppers on after their slates (in place); ``bool (B,)`` who left."""
        ...

    def state_of(self, state: Any, b: int) -> Any:
        """Session ``b``'s hidden state as the per-session ``UserSimulator`` sees it."""
        ...

    def query_of(self, state: Any, q: np.ndarray, b: int) -> Query:
        """Session ``b``'s current ``Query``."""
        ...


@dataclass
class LoopState:
    """Per-session states and current queries of ``B`` sessions of a :class:`LoopShopper`."""

    states: list
    queries: list


def slate_free_utility(sim: Any) -> bool:
    """Whether ``sim.utility(state, intent, rows)`` scores any candidates in one call: its class (or a base)
    declares ``utility_is_slate_free`` and the class's ``utility``, ``item_probabilities`` and
    ``expected_response`` are still the declaring class's own (a subclass that overrides the probabilities
    keeps the generic per-chunk path through ``expected_response``)."""
    cls = type(sim)
    owner = next((c for c in cls.__mro__ if vars(c).get("utility_is_slate_free") is True), None)
    return owner is not None and all(
        getattr(cls, name, None) is getattr(owner, name, None) is not None
        for name in ("utility", "item_probabilities", "expected_response"))


_ALL_TRUE: dict[tuple[int, ...], np.ndarray] = {}


def all_true(shape: tuple[int, ...]) -> np.ndarray:
    """``bool`` all-True array of ``shape`` (cached, read-only): the mask of "every candidate is valid" or "every
    slot shows a product" for the compiled rules that always take a mask."""
    key = tuple(shape)
    out = _ALL_TRUE.get(key)
    if out is None:
        out = _ALL_TRUE[key] = np.ones(key, dtype=bool)
        out.flags.writeable = False
    return out


def expected_reward_refused(simulator_name: str) -> NoExpectedResponseError:
    """The error for ``RewardSpec(expected=True)`` with a simulator that has no ``expected_response``."""
    return NoExpectedResponseError(f"RewardSpec(expected=True) needs a simulator with expected_response; "
                                   f"{simulator_name} has none.")


class LoopShopper:
    """Any ``UserSimulator`` over ``B`` sessions: one call per session, each result checked.

    Args:
        sim: The per-session simulator.
        n_slots: ``N``.
        rows_of: Maps query texts to the ``int64`` rows (``q``) the caller indexes candidates by (the env's
            ``QueryTable.rows``: texts are retrieved on first sight).
    """

    def __init__(self, sim: UserSimulator, n_slots: int, rows_of: Callable[[list[str]], np.ndarray]) -> None:
        self.user_simulator, self.n_slots, self.rows_of = sim, n_slots, rows_of
        self.name = type(sim).__name__
        self.profile_dim = int(sim.profile_dim)
        self.privileged = isinstance(sim, PrivilegedSimulator)  # protocol isinstance is slow: once
        self._fast_utility = slate_free_utility(sim)

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.user_simulator, method)(*args)
        except SimulatorError:
            raise
        except Exception as exc:
            raise SimulatorError(f"{self.name}.{method} raised {exc!r}") from exc

    # -- sessions ---------------------------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator) -> LoopState:
        return LoopState([self._call("reset", rng) for _ in range(n)], [None] * n)

    def put(self, state: LoopState, idx: np.ndarray, fresh: LoopState) -> LoopState:
        for j, b in enumerate(idx):
            state.states[b], state.queries[b] = fresh.states[j], fresh.queries[j]
        return state

    def restart(self, state: LoopState, idx: np.ndarray, rng: np.random.Generator) -> LoopState:
        return self.put(state, idx, self.sample(len(idx), rng))

    def take(self, state: LoopState, idx: np.ndarray) -> LoopState:
        return LoopState([state.states[b] for b in idx], [state.queries[b] for b in idx])

    def next_queries(self, state: LoopState, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        texts = []
        for b in idx:
            query = self._call("next_query", state.states[b], rng)
            if not isinstance(query, Query) or not isinstance(query.text, str):
                raise SimulatorError(
                    f"{self.name}.next_query must return simulators.Query(text=str, ...), got {query!r}")
            state.queries[b] = query
            texts.append(query.text)
        return self.rows_of(texts)

    def refresh(self, state: LoopState, idx: np.ndarray, rows: np.ndarray) -> None:
        pass  # nothing cached per row

    def profile(self, state: LoopState) -> np.ndarray:
        out = np.empty((len(state.states), self.profile_dim), dtype=np.float32)
        for b, st in enumerate(state.states):
            profile = np.asarray(self._call("profile", st), dtype=np.float32)
            if profile.shape != (self.profile_dim,) or not np.all(np.isfinite(profile)):
                raise SimulatorError(f"{self.name}.profile must return finite float32 ({self.profile_dim},), "
                                     f"got shape {profile.shape}")
            out[b] = profile
        return out

    # -- response ---------------------------------------------------------------------------------------
    def respond(self, state, q, positions, slate, rng) -> BatchResponse:
        b_, n = slate.shape
        clicks, purchases = np.zeros((b_, n), dtype=bool), np.zeros((b_, n), dtype=bool)
        dwell, abandoned, raw = np.zeros((b_, n), dtype=np.float32), np.zeros(b_, dtype=bool), []
        for b in range(b_):
            row = slate[b]
            response = self._call("respond", state.states[b], state.queries[b], row, rng)
            for name in ("clicks", "purchases"):
                value = np.asarray(getattr(response, name, None))
                if value.shape != (n,) or value.dtype != bool:
                    raise SimulatorError(f"{self.name}.respond must return Response.{name} as bool ({n},), "
                                         f"got {value.dtype} {value.shape}")
            if np.any(response.purchases & ~response.clicks) or np.any(response.clicks & (row < 0)):
                raise SimulatorError(f"{self.name}.respond: purchases must be clicks, "
                                     "and empty slots (-1) cannot be clicked")
            clicks[b], purchases[b] = response.clicks, response.purchases
            dwell[b] = np.asarray(getattr(response, "dwell", 0.0), dtype=np.float32)
            abandoned[b] = bool(getattr(response, "abandoned", False))
            raw.append(response)
        return BatchResponse(clicks, purchases, dwell, abandoned, raw)

    def _need_truth(self) -> None:
        if not self.privileged:
            raise expected_reward_refused(self.name)

    def expected(self, state, q, positions, slate) -> tuple[np.ndarray, np.ndarray]:
        self._need_truth()
        out = [self.user_simulator.expected_response(state.states[b], state.queries[b], slate[b])
               for b in range(len(slate))]
        return (np.stack([np.asarray(e.click_prob) for e in out]),
                np.stack([np.asarray(e.purchase_prob) for e in out]))

    def utilities(self, state: LoopState, q: np.ndarray, candidates: np.ndarray) -> np.ndarray | None:
        if not self.privileged:
            return None
        rows = []
        for b in range(len(q)):
            util = self._session_utilities(state.states[b], state.queries[b], candidates[b])
            if util is None:
                return None
            rows.append(util)
        return np.stack(rows)

    def _session_utilities(self, st: Any, query: Query, candidates: np.ndarray) -> np.ndarray | None:
        sim = self.user_simulator
        if self._fast_utility:
            return np.asarray(sim.utility(st, query.intent, candidates), dtype=float)
        n = self.n_slots
        chunks = []
        for start in range(0, len(candidates), n):
            chunk = np.full(n, -1, dtype=np.int64)
            part = candidates[start:start + n]
            chunk[: len(part)] = part
            utility = np.asarray(sim.expected_response(st, query, chunk).utility, dtype=float)
            if len(utility) == 0:
                return None
            chunks.append(utility[: len(part)])
        return np.concatenate(chunks)

    def transition(self, state, q, positions, slate, response, rng) -> np.ndarray:
        left = np.zeros(len(slate), dtype=bool)
        for b in range(len(slate)):
            result = self._call("transition", state.states[b], state.queries[b], slate[b], response.raw[b], rng)
            if not (isinstance(result, tuple) and len(result) == 2):
                raise SimulatorError(f"{self.name}.transition must return (new_state, left: bool), "
                                     f"got {result!r:.200}")
            state.states[b], left[b] = result[0], bool(result[1])
        return left

    # -- per-session views ------------------------------------------------------------------------------
    def state_of(self, state: LoopState, b: int) -> Any:
        return state.states[b]

    def query_of(self, state: LoopState, q: np.ndarray, b: int) -> Query:
        return state.queries[b]
