"""Conformance kit: check that a :class:`~simulators.protocols.UserSimulator` plug-in keeps the protocol.

:func:`check_simulator` plays ``n_sessions`` sessions against the simulator with random slates (some with
empty ``-1`` slots) and checks, call by call, what the environments rely on:

* **protocol**: ``profile_dim``, ``reset``, ``profile``, ``next_query``, ``respond``, ``transition`` exist;
* **shapes and dtypes**: ``profile -> float (profile_dim,)`` finite; ``next_query -> Query(text=str)``;
  ``respond -> Response`` with ``clicks``/``purchases`` ``bool (N,)``, ``dwell`` finite ``>= 0`` ``(N,)``
  and 0 where not clicked; ``transition -> (state, bool)``;
* **consistency**: purchases are clicks; empty slots are never clicked; the slate is not modified;
* **probabilities** (when ``expected_response`` exists): ``click_prob``/``purchase_prob`` ``(N,)`` in
  ``[0, 1]``, ``purchase_prob <= click_prob``, 0 on empty slots; ``utility`` empty or ``(N,)``, finite;
* **determinism**: two runs with the same seed give identical sessions, even with the global
  ``np.random`` / ``random`` states changed in between (all randomness must come from the passed ``rng``);
* **termination**: every session ends (``transition`` returns ``left=True``) within ``max_queries``;
* **batched path**: the same sessions played interleaved through :class:`~simulators.batch.LoopShopper`
  (the adapter the vector env runs plug-ins with: all sessions' queries first, then all responses, then
  all transitions, each session with its own generator) give exactly the sessions played one at a time,
  so the simulator keeps no per-session state on itself; then one pass with all sessions in one call per
  method and one shared generator (the vector env's calls) must run and end every session.

The first violation raises :class:`ConformanceError` with a message naming the method, what it returned
and what to fix. Use :func:`assert_conforms` in a pytest test::

    from simulators.conformance import assert_conforms
    def test_my_shopper():
        assert_conforms("my_package.shopper:make")
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from encoders.errors import ConfigError
from encoders.errors import SimulatorError
from simulators.batch import LoopShopper
from simulators.items import ItemTable
from simulators.protocols import Query, UserSimulator

REQUIRED = ("profile_dim", "reset", "profile", "next_query", "respond", "transition")
_PROB_SLACK = 1e-6


class ConformanceError(AssertionError):
    """A simulator broke the ``UserSimulator`` protocol; the message says what to fix."""


@dataclass(frozen=True)
class ConformanceReport:
    """What a passing :func:`check_simulator` run saw.

    Attributes:
        name: Class name of the simulator.
        n_sessions: Sessions played.
        n_slates: Slates shown in all.
        mean_queries: Mean queries per session.
        ctr: Clicks per shown (non-empty) slot.
        purchases_per_click: Purchases per click (nan without clicks).
        privileged: Whether ``expected_response`` was present (and checked).
        batch_size: Sessions per call in the batched pass (0 = the batched path was not checked).
    """

    name: str
    n_sessions: int
    n_slates: int
    mean_queries: float
    ctr: float
    purchases_per_click: float
    privileged: bool
    batch_size: int = 0


def default_items(n_products: int = 300, seed: int = 0) -> ItemTable:
    """A small synthetic catalog's :class:`ItemTable` (hashing text vectors as near-duplicate similarity)."""
    from encoders.synthetic import SyntheticCatalogConfig, generate_catalog
    from encoders.text import HashingTextEncoder

    catalog = generate_catalog(SyntheticCatalogConfig(n_products=n_products, seed=seed))
    return ItemTable.from_catalog(catalog, similarity=HashingTextEncoder().encode(catalog.texts))


def _fail(name: str, problem: str, fix: str) -> ConformanceError:
    return ConformanceError(f"{name} does not conform to UserSimulator: {problem}. Fix: {fix}")


def _instantiate(sim_or_factory: Any, items: ItemTable, n_slots: int) -> UserSimulator:
    """The simulator itself, or ``factory(items, n_slots)`` (a callable or a ``"module:factory"`` path)."""
    if isinstance(sim_or_factory, str):
        from encoders.registry import resolve

        try:
            sim_or_factory = resolve(sim_or_factory, {}, "simulator factory", callable_only=False)  # or an instance
        except ValueError as exc:
            raise ConformanceError(f"{exc}. Fix: give 'package.module:factory' of an importable factory.") from exc
    if hasattr(sim_or_factory, "respond"):
        sim = sim_or_factory
    elif callable(sim_or_factory):
        label = getattr(sim_or_factory, "__qualname__", repr(sim_or_factory))
        try:
            sim = sim_or_factory(items, n_slots)
        except Exception as exc:
            raise ConformanceError(
                f"simulator factory {label}(items, n_slots={n_slots}) raised {exc!r}. Fix: a factory must "
                "accept (items: ItemTable, n_slots: int) and return a UserSimulator.") from exc
    else:
        raise ConformanceError(f"expected a UserSimulator, a factory(items, n_slots) or 'module:factory', "
                               f"got {sim_or_factory!r}")
    name = type(sim).__name__
    missing = [m for m in REQUIRED if not hasattr(sim, m)]
    if missing:
        raise _fail(name, f"missing {missing}", "implement every member of simulators.protocols.UserSimulator: "
                    "profile_dim, reset, profile, next_query, respond, transition")
    dim = sim.profile_dim
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 0:
        raise _fail(name, f"profile_dim must be a non-negative int, got {dim!r}", "set profile_dim = <int>")
    return sim


def _call(name: str, sim: Any, method: str, *args: Any) -> Any:
    try:
        return getattr(sim, method)(*args)
    except ConformanceError:
        raise
    except Exception as exc:
        raise _fail(name, f"{method}(...) raised {exc!r}",
                    f"make {method} work for any state it returned and any slate of catalog rows (-1 = empty "
                    "slot); slates are read-only, do not modify them") from exc


def _array(name: str, what: str, value: Any, n: int, fix: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise _fail(name, f"{what} must have shape ({n},) (one entry per slot), got shape {arr.shape}", fix)
    return arr


def _check_response(name: str, response: Any, slate: np.ndarray) -> dict[str, Any]:
    n = len(slate)
    for attr in ("clicks", "purchases", "dwell"):
        if not hasattr(response, attr):
            raise _fail(name, f"respond returned {type(response).__name__} without .{attr}",
                        "return simulators.protocols.Response(clicks=..., purchases=..., dwell=...)")
    out = {}
    for attr in ("clicks", "purchases"):
        arr = _array(name, f"respond(...).{attr}", getattr(response, attr), n,
                     f"return one bool per slot: np.zeros({n}, dtype=bool) style arrays")
        if arr.dtype != bool:
            raise _fail(name, f"respond(...).{attr} must be a bool array, got dtype {arr.dtype}",
                        f"return np.asarray({attr}, dtype=bool) (e.g. rng.random(N) < p)")
        out[attr] = arr
    if np.any(out["clicks"] & (slate < 0)):
        raise _fail(name, f"respond clicked an empty slot (slate {slate.tolist()}, clicks "
                    f"{out['clicks'].astype(int).tolist()})", "set click probability 0 where slate == -1")
    if np.any(out["purchases"] & ~out["clicks"]):
        raise _fail(name, "respond returned a purchase without a click at the same position",
                    "sample purchases among clicks only: purchases = clicks & (rng.random(N) < p_buy)")
    dwell = _array(name, "respond(...).dwell", response.dwell, n, "return float seconds per slot, 0 where not clicked")
    if not np.issubdtype(dwell.dtype, np.number) or not np.all(np.isfinite(dwell)) or np.any(dwell < 0):
        raise _fail(name, f"respond(...).dwell must be finite and >= 0, got {dwell.tolist()}",
                    "return non-negative float seconds per slot")
    if np.any((dwell != 0) & ~out["clicks"]):
        raise _fail(name, "respond(...).dwell is non-zero on a slot that was not clicked",
                    "dwell = np.where(clicks, seconds, 0.0)")
    abandoned = getattr(response, "abandoned", False)
    if not isinstance(abandoned, (bool, np.bool_)):
        raise _fail(name, f"respond(...).abandoned must be a bool, got {abandoned!r}", "abandoned=bool(...)")
    out["dwell"] = dwell.astype(np.float64)
    out["abandoned"] = bool(abandoned)
    return out


def _check_expected(name: str, sim: Any, state: Any, query: Query, slate: np.ndarray) -> None:
    n = len(slate)
    exp = _call(name, sim, "expected_response", state, query, slate)
    probs = {}
    for attr in ("click_prob", "purchase_prob"):
        if not hasattr(exp, attr):
            raise _fail(name, f"expected_response returned {type(exp).__name__} without .{attr}",
                        "return simulators.protocols.ExpectedResponse(click_prob=..., purchase_prob=..., utility=...)")
        arr = _array(name, f"expected_response(...).{attr}", getattr(exp, attr), n,
                     "return one probability per slot").astype(np.float64)
        if not np.all((arr >= -_PROB_SLACK) & (arr <= 1 + _PROB_SLACK)):
            raise _fail(name, f"expected_response(...).{attr} must be probabilities in [0, 1], got {arr.tolist()}",
                        "clip or squash the values into [0, 1] (e.g. a sigmoid), and no NaN")
        if np.any(arr[slate < 0] > _PROB_SLACK):
            raise _fail(name, f"expected_response(...).{attr} is non-zero on an empty slot (slate {slate.tolist()})",
                        "set probabilities to 0 where slate == -1")
        probs[attr] = arr
    if np.any(probs["purchase_prob"] > probs["click_prob"] + _PROB_SLACK):
        raise _fail(name, "expected_response(...).purchase_prob exceeds click_prob",
                    "purchase_prob = click_prob * P(buy | click)")
    utility = np.asarray(getattr(exp, "utility", np.zeros(0)), dtype=np.float64)
    if utility.shape not in ((0,), (n,)) or not np.all(np.isfinite(utility)):
        raise _fail(name, f"expected_response(...).utility must be empty or finite with shape ({n},), got "
                    f"shape {utility.shape}", "return the true utility of each slot's product (or leave it empty)")


def _random_slate(rng: np.random.Generator, n_items: int, n_slots: int, i: int) -> np.ndarray:
    """Distinct catalog rows; every third slate has trailing empty slots, one in 17 is all empty."""
    if i % 17 == 16:
        filled = 0
    elif i % 3 == 2:
        filled = int(rng.integers(1, n_slots + 1))
    else:
        filled = n_slots
    filled = min(filled, n_items)
    slate = np.full(n_slots, -1, dtype=np.int64)
    slate[:filled] = rng.choice(n_items, size=filled, replace=False)
    slate.setflags(write=False)
    return slate


def _session_slate(items: ItemTable, n_slots: int, seed: int, session: int, n_q: int) -> np.ndarray:
    """The random slate of query ``n_q`` of ``session`` (the same in every pass)."""
    return _random_slate(np.random.default_rng([seed, 1, session, n_q]), items.n, n_slots, 5 * session + n_q)


def _batched_fail(name: str, exc: SimulatorError, how: str) -> ConformanceError:
    return _fail(name, f"played {how} through simulators.batch.LoopShopper (the vector env's path): {exc}",
                 "keep everything a session needs in its state (never on the simulator object), and make every "
                 "method work for any state it returned, in any order of sessions")


def _play_interleaved(sim: Any, items: ItemTable, n_sessions: int, n_slots: int, seed: int, cap: int) -> list:
    """Play all sessions round by round through :class:`LoopShopper`, each with its own generator; the trace
    is in the format of :func:`_play` (sorted by session)."""
    name = type(sim).__name__
    texts: dict[str, int] = {}
    loop = LoopShopper(sim, n_slots, lambda ts: np.array([texts.setdefault(t, len(texts)) for t in ts], dtype=np.int64))
    rngs = [np.random.default_rng([seed, 0, s]) for s in range(n_sessions)]
    one = np.zeros(1, dtype=np.int64)
    try:
        states = [loop.sample(1, rng) for rng in rngs]
        alive, n_q, traces = list(range(n_sessions)), [0] * n_sessions, [[] for _ in range(n_sessions)]
        while alive:
            rows = {}
            profiles = {s: loop.profile(states[s])[0] for s in alive}
            for s in alive:
                rows[s] = loop.next_queries(states[s], one, rngs[s])
            slates = {s: _session_slate(items, n_slots, seed, s, n_q[s])[None, :] for s in alive}
            resps = {s: loop.respond(states[s], rows[s], slates[s], slates[s], rngs[s]) for s in alive}
            for s in list(alive):
                left = bool(loop.transition(states[s], rows[s], slates[s], slates[s], resps[s], rngs[s])[0]
                            or resps[s].abandoned[0])
                r = resps[s]
                traces[s].append((s, states[s].queries[0].text, profiles[s].astype(np.float64).tolist(),
                                  slates[s][0].tolist(), r.clicks[0].tolist(), r.purchases[0].tolist(),
                                  r.dwell[0].astype(np.float64).tolist(), left))
                n_q[s] += 1
                if left or n_q[s] >= cap:
                    alive.remove(s)
    except SimulatorError as exc:
        raise _batched_fail(name, exc, "interleaved, session by session") from exc
    return [step for trace in traces for step in trace]


def _play_batched(sim: Any, items: ItemTable, n_sessions: int, n_slots: int, seed: int, cap: int) -> None:
    """All sessions in one call per method with one generator (as the vector env calls a plug-in)."""
    name = type(sim).__name__
    texts: dict[str, int] = {}
    loop = LoopShopper(sim, n_slots, lambda ts: np.array([texts.setdefault(t, len(texts)) for t in ts], dtype=np.int64))
    rng = np.random.default_rng([seed, 2])
    try:
        state = loop.sample(n_sessions, rng)
        idx = np.arange(n_sessions)
        q = loop.next_queries(state, idx, rng)
        for n_q in range(cap):
            sub = loop.take(state, idx)
            loop.profile(sub)
            slate = np.stack([_session_slate(items, n_slots, seed, int(s), n_q) for s in idx])
            resp = loop.respond(sub, q[idx], slate, slate, rng)
            if loop.privileged:
                loop.expected(sub, q[idx], slate, slate)
                loop.utilities(sub, q[idx], slate)
            left = loop.transition(sub, q[idx], slate, slate, resp, rng) | resp.abandoned
            state = loop.put(state, idx, sub)
            idx = idx[~left]
            if not len(idx):
                return
            q[idx] = loop.next_queries(state, idx, rng)
    except SimulatorError as exc:
        raise _batched_fail(name, exc, f"{n_sessions} sessions at once") from exc


def _play(sim: Any, items: ItemTable, n_sessions: int, n_slots: int, seed: int, max_queries: int | None,
          privileged: bool) -> tuple[list, dict[str, float]]:
    """Play the sessions; returns a trace (for the determinism check) and counters."""
    name = type(sim).__name__
    trace: list = []
    counts = {"slates": 0, "queries": 0, "shown": 0, "clicks": 0, "purchases": 0}
    cap = max_queries if max_queries is not None else 50
    for session in range(n_sessions):
        rng = np.random.default_rng([seed, 0, session])
        state = _call(name, sim, "reset", rng)
        left = False
        n_q = 0
        while not left and n_q < cap:
            profile = np.asarray(_call(name, sim, "profile", state))
            if profile.shape != (sim.profile_dim,) or not np.issubdtype(profile.dtype, np.number) \
                    or not np.all(np.isfinite(profile)):
                raise _fail(name, f"profile must return finite floats of shape ({sim.profile_dim},) (profile_dim), "
                            f"got {profile.dtype} {profile.shape}",
                            "return np.asarray(..., dtype=np.float32) of length profile_dim, without NaN/inf")
            query = _call(name, sim, "next_query", state, rng)
            if not isinstance(query, Query) or not isinstance(query.text, str) or not query.text.strip():
                raise _fail(name, f"next_query must return simulators.protocols.Query with non-empty text, "
                            f"got {query!r}", "return Query(text='red dress', intent=...)")
            slate = _session_slate(items, n_slots, seed, session, n_q)
            if privileged:
                _check_expected(name, sim, state, query, slate)
            response = _call(name, sim, "respond", state, query, slate, rng)
            resp = _check_response(name, response, slate)
            result = _call(name, sim, "transition", state, query, slate, response, rng)
            if not isinstance(result, tuple) or len(result) != 2 or not isinstance(result[1], (bool, np.bool_)):
                raise _fail(name, f"transition must return (new_state, left: bool), got {result!r:.200}",
                            "return new_state, bool(left)")
            state, left = result[0], bool(result[1]) or resp["abandoned"]
            n_q += 1
            counts["slates"] += 1
            counts["shown"] += int((slate >= 0).sum())
            counts["clicks"] += int(resp["clicks"].sum())
            counts["purchases"] += int(resp["purchases"].sum())
            trace.append((session, query.text, profile.astype(np.float64).tolist(), slate.tolist(),
                          resp["clicks"].tolist(), resp["purchases"].tolist(), resp["dwell"].tolist(), left))
        if not left and max_queries is not None:
            raise _fail(name, f"session {session} did not end within {max_queries} queries (transition never "
                        "returned left=True)", "let the shopper leave: lose patience per query, or leave with some "
                        "probability each query / after a purchase (or pass max_queries=None if endless sessions "
                        "are intended)")
        counts["queries"] += n_q
    return trace, counts


def check_simulator(sim_or_factory: UserSimulator | Callable[[ItemTable, int], UserSimulator] | str,
                    items: ItemTable | None = None, n_sessions: int = 50, n_slots: int = 10, seed: int = 0,
                    max_queries: int | None = 100) -> ConformanceReport:
    """Check a user simulator against the ``UserSimulator`` protocol (see the module docstring).

    Args:
        sim_or_factory: A simulator, a ``factory(items, n_slots)`` or a ``"package.module:factory"`` path.
        items: Catalog facts to build slates from (default: :func:`default_items`, 300 synthetic products).
        n_sessions: Sessions to play (per run; the determinism check plays them twice).
        n_slots: Slate size ``N``.
        seed: Seed of the sessions and the random slates.
        max_queries: A session must end within this many queries; ``None`` skips the termination check
            (sessions are then cut at 50 queries).

    Returns:
        A :class:`ConformanceReport` of what was played.

    Raises:
        ConformanceError: on the first violation, saying what to fix.
    """
    if n_sessions < 1 or n_slots < 1:
        raise ConfigError(f"n_sessions and n_slots must be >= 1, got {n_sessions} and {n_slots}.")
    items = items if items is not None else default_items()
    sim = _instantiate(sim_or_factory, items, n_slots)
    name = type(sim).__name__
    privileged = callable(getattr(sim, "expected_response", None))
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        np.random.seed(12345)
        random.seed(12345)
        first, counts = _play(sim, items, n_sessions, n_slots, seed, max_queries, privileged)
        np.random.seed(54321)
        random.seed(54321)
        second, _ = _play(sim, items, n_sessions, n_slots, seed, max_queries, privileged)
        cap = max_queries if max_queries is not None else 50
        interleaved = _play_interleaved(sim, items, n_sessions, n_slots, seed, cap) if first == second else None
        if interleaved is not None:
            _play_batched(sim, items, n_sessions, n_slots, seed, cap)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    if first != second:
        where = next(i for i, (a, b) in enumerate(zip(first + [None], second + [None])) if a != b)
        step = first[where] if where < len(first) else second[where]
        raise _fail(name, f"two runs with the same seed differ (first at session {step[0]}, query {step[1]!r})",
                    "draw all randomness from the rng argument (never np.random.* / random.*), and keep no "
                    "mutable state on the simulator object: everything a session needs lives in its state")
    if interleaved != first:
        where = next(i for i, (a, b) in enumerate(zip(first + [None], interleaved + [None])) if a != b)
        step = first[where] if where < len(first) else interleaved[where]
        raise _fail(name, f"sessions played interleaved (as the vector env plays them, through "
                    f"simulators.batch.LoopShopper) differ from the same sessions played one at a time (first at "
                    f"session {step[0]}, query {step[1]!r})",
                    "keep no per-session data on the simulator object (e.g. the last query or slate): everything "
                    "a session needs lives in the state that reset/transition return")
    return ConformanceReport(
        name=name, n_sessions=n_sessions, n_slates=counts["slates"],
        mean_queries=counts["queries"] / n_sessions,
        ctr=counts["clicks"] / max(counts["shown"], 1),
        purchases_per_click=counts["purchases"] / counts["clicks"] if counts["clicks"] else float("nan"),
        privileged=privileged, batch_size=n_sessions)


def assert_conforms(sim_or_factory: UserSimulator | Callable[[ItemTable, int], UserSimulator] | str,
                    **kwargs: Any) -> ConformanceReport:
    """Pytest helper: :func:`check_simulator`, failing the test with the fix-it message.

    ``ConformanceError`` is an ``AssertionError``, so pytest reports it as a plain test failure; the
    traceback is trimmed to this call.
    """
    __tracebackhide__ = True
    try:
        return check_simulator(sim_or_factory, **kwargs)
    except ConformanceError as exc:
        raise ConformanceError(str(exc)) from None
