"""The one array core of the ShopRank envs: ``B`` sessions' state and rules as batched array functions.

Every rule of a session is defined here once, over ``B`` sessions at a time; the single env
(``ShopRank-v0``, :class:`~envs.shoprank_env.ShopRankEnv`) runs it with ``B = 1``, the vector env
(:class:`~envs.vector_env.ShopRankVectorEnv`) with ``B > 1``, and the sequential env
(``ShopRankSeq-v0``) with ``B = 1`` once per completed slate:

* shopper sampling, query sampling, the shopper's response and transition: a :class:`BatchSimulator`
  (:mod:`envs.shoppers`; the default shopper in arrays, any per-session ``UserSimulator`` through a loop);
* retrieval and the candidate features: :class:`QueryTable` and :func:`candidate_features`;
* session features: :func:`session_features`; the click history and the session counters:
  :func:`envs.kernels.settle_slates` (with the reward and NDCG);
* the slate from scores: :func:`slate_positions`;
* reward through :class:`~envs.reward.RewardSpec`; NDCG: :func:`ndcg`;
* the episode end: :func:`episode_end`.

:class:`EnvCore` ties them together: :meth:`EnvCore.start` (new sessions), :meth:`EnvCore.observation`,
:meth:`EnvCore.show` (a slate per session -> :class:`SlateResult`) and :meth:`EnvCore.next_queries`.
Randomness is drawn from the caller's generator in a fixed order (shoppers; query; per slate: response,
transition, then next query), so with ``B = 1`` the vector env with one seed replays the single env with
the same seed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.attributes import attribute_ids
from envs.kernels import clear_sessions, ndcg_of, session_block, settle_slates, slate_rows, top_slots
from envs.layout import CANDIDATE_EXTRAS, SESSION_FEATURES, FeatureLayout
from envs.reward import RewardSpec
from simulators.batch import all_true, expected_reward_refused

N_EXTRA = len(CANDIDATE_EXTRAS)
"""Per-candidate numeric features after the fused vector (see :data:`envs.layout.CANDIDATE_EXTRAS`)."""
N_SESSION = len(SESSION_FEATURES)
"""Session features (see :data:`envs.layout.SESSION_FEATURES`)."""
SCORE_BOUND = 10.0
"""Bound of the ``Box`` score actions; only the order of the scores matters (see ``ShopRankEnv``)."""


_INDEX_CACHE: dict[tuple[str, int], np.ndarray] = {}
_KERNEL_SCORES = (np.dtype(np.float32), np.dtype(np.float64))
"""Score dtypes the slate-order kernel takes as they are (any other real dtype is converted to float64)."""


def row_numbers(b: int) -> np.ndarray:
    """``int64 (b,)`` row numbers ``0 .. b-1`` (cached, read-only): session ``j`` reads row ``j`` of a ``(B, ...)``
    table."""
    out = _INDEX_CACHE.get(("rows", b))
    if out is None:
        out = _INDEX_CACHE[("rows", b)] = np.arange(b)
        out.flags.writeable = False
    return out


# -- pure array functions ------------------------------------------------------------------------------------
def episode_end(left, n_queries, max_queries: int):
    """Gymnasium's ``(terminated, truncated)`` after a slate, for scalars or ``(B,)`` arrays.

    ``terminated``: the shopper left, or the episode is a one-query bandit (``max_queries == 1``: the
    query is the whole task, nothing follows it, so there is nothing to bootstrap). ``truncated``: the
    query budget of a multi-query session ran out while the shopper was still there.
    """
    if isinstance(left, bool):  # one session (Python scalars): the same rule without array calls
        terminated = left or max_queries == 1
        return terminated, not terminated and int(n_queries) >= max_queries
    terminated = np.logical_or(left, max_queries == 1)
    truncated = np.logical_and(~terminated, np.asarray(n_queries) >= max_queries)
    return terminated, truncated


def candidate_features(layout: FeatureLayout, fused: np.ndarray, price_z: np.ndarray, has_photo: np.ndarray,
                       ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The ``candidates`` observation block of retrieved candidates.

    Args:
        layout: Where each feature goes.
        fused: ``float32 (n_products, F)`` product vectors; price_z: ``(n_products,)``; has_photo: ``(n_products,)``.
        ids: ``int64 (R, K)`` catalog rows, ``-1`` padded; scores: ``float (R, K)`` retriever scores.

    Returns:
        ``float32 (R, K, F + 4)``, all zero on padded candidates.
    """
    r, k = ids.shape
    valid = ids >= 0
    rows = np.where(valid, ids, 0)
    out = np.zeros((r, k, layout.candidate_width), dtype=np.float32)
    out[..., layout.columns("fused")] = fused[rows]
    out[..., layout.column("retriever_score")] = np.where(valid, scores, 0.0)
    out[..., layout.column("retriever_rank")] = (1.0 - np.arange(k) / k).astype(np.float32)
    out[..., layout.column("price_z")] = price_z[rows]
    out[..., layout.column("has_photo")] = has_photo[rows]
    out[~valid] = 0.0
    return out


def session_features(layout: FeatureLayout, n_queries: np.ndarray, totals: np.ndarray, last_ctr: np.ndarray,
                     max_queries: int) -> np.ndarray:
    """``float32 (B, S)`` the ``session`` block from counters ``n_queries (B,)``, ``totals (B, 3)`` (clicks,
    purchases, revenue so far) and ``last_ctr (B,)``: queries used / ``max_queries``, clicks / 10, purchases / 5
    and the last CTR in their :data:`~envs.layout.SESSION_FEATURES` columns (zeros in any further column)."""
    return session_block(layout.session_columns, len(layout.session), n_queries, totals, last_ctr, max_queries)


def slate_positions(scores: np.ndarray, valid: np.ndarray | None, n: int) -> np.ndarray:
    """``int64 (B, N)`` candidate positions shown in slots ``0 .. N-1``: valid candidates by descending score
    (ties keep the retriever's order), ``-1`` for empty slots. ``scores``: ``(B, K)`` finite numbers; ``valid``:
    ``bool (B, K)``, or ``None`` when every candidate is valid (then every slot is filled). A NaN or infinite
    score raises ``ValueError``."""
    scores = np.asarray(scores)
    if valid is not None and np.shape(valid) != scores.shape:
        raise ValueError(f"valid must have the shape of scores {scores.shape}, got {np.shape(valid)}.")
    return _top_slots(scores, all_true(scores.shape) if valid is None else np.asarray(valid, dtype=bool),
                      row_numbers(len(scores)), n)


def _top_slots(scores: np.ndarray, valid: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """:func:`slate_positions` with ``valid (R, K)`` read at row ``rows[b]`` for session ``b``."""
    if scores.dtype not in _KERNEL_SCORES:  # float16, long double, big-endian, ints: as float64 (exact for ints)
        if scores.dtype.kind not in "fiu":
            raise ValueError(f"scores must be real numbers (float or int), got dtype {scores.dtype}.")
        scores = scores.astype(np.float64)
    positions, finite = top_slots(scores, valid, rows, n)
    if not finite:
        raise ValueError("action contains NaN or infinite scores.")
    return positions


def ndcg(utility: np.ndarray, valid: np.ndarray, positions: np.ndarray, discounts: np.ndarray) -> np.ndarray:
    """NDCG@N of each slate against the shopper's true utilities of the ``K`` candidates.

    Gains are utilities shifted to be non-negative over the valid candidates (``u - min u``); a slate of
    sessions without any positive gain scores 1.

    Args:
        utility: ``float (B, K)``; valid: ``bool (B, K)`` real candidates.
        positions: ``int64 (B, N)`` candidate positions per slot, ``-1`` = empty.
        discounts: ``float (N,)`` ``1 / log2(rank + 1)``.

    Returns:
        ``float64 (B,)``.
    """
    return ndcg_of(utility, valid, positions, discounts)


def observation_space(layout: FeatureLayout) -> spaces.Dict:
    """The flat ``Dict`` observation space of the per-query envs (fixed shapes, float32)."""
    unit = ("history_mask", "mask")

    def box(key: str, shape: tuple[int, ...]) -> spaces.Box:
        if key in unit:
            return spaces.Box(0.0, 1.0, shape=shape, dtype=np.float32)
        if key == "attributes":  # hashed ids (envs.attributes); the upper bound tells a network the table size
            return spaces.Box(0.0, float(layout.attribute_buckets - 1), shape=shape, dtype=np.float32)
        return spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32)

    return spaces.Dict({key: box(key, shape) for key, shape in layout.blocks})


# -- retrieval table -------------------------------------------------------------------------------------------
class QueryTable:
    """Retrieval results and candidate blocks per query text, grown as texts appear.

    Rows ``0 .. B-1`` are private scratch rows, one per session (personalised retrieval writes there);
    shared rows follow, one per query text, in the order the texts were first added.

    Attributes:
        ids: ``int64 (R, K)`` candidate catalog rows, ``-1`` padded.
        valid: ``bool (R, K)``; mask: the same as ``float32`` (the observation's ``mask``).
        scores: ``float32 (R, K)`` retriever scores.
        query_obs: ``float32 (R, D)`` query observation.
        cand: ``float32 (R, K, F + 4)`` candidate blocks (:func:`candidate_features`).
        attr: ``float32 (R, K, A)`` hashed attribute ids of the candidates (``A = 0`` without attribute features).
        texts: ``list[str]`` texts of the shared rows (row ``n_private + i`` is ``texts[i]``).
        full: Every row written so far has ``K`` valid candidates (then no candidate mask is needed: the
            built-in catalog's case, where every query returns ``K`` results).
    """

    def __init__(self, world: Any, layout: FeatureLayout, n_candidates: int, n_private: int,
                 attribute_ids: np.ndarray | None = None) -> None:
        self.world, self.layout, self.k, self.n_private = world, layout, n_candidates, n_private
        self._attribute_ids = (attribute_ids if attribute_ids is not None
                               else np.zeros((len(world.items.price_z), 0), dtype=np.int64)).astype(np.float32)
        self._price_z = world.items.price_z
        self._has_photo = world.catalog.has_image.astype(np.float32)
        self.texts: list[str] = []
        self._row: dict[str, int] = {}
        self._size = n_private
        self.full = True
        self._alloc(max(n_private + 16, 1))

    def _alloc(self, capacity: int) -> None:
        k, d = self.k, self.world.query_basis.shape[1]
        old = getattr(self, "ids", None)
        new = {"ids": np.full((capacity, k), -1, dtype=np.int64), "scores": np.zeros((capacity, k), dtype=np.float32),
               "query_obs": np.zeros((capacity, d), dtype=np.float32),
               "cand": np.zeros((capacity, k, self.layout.candidate_width), dtype=np.float32),
               "attr": np.zeros((capacity, k, self._attribute_ids.shape[1]), dtype=np.float32)}
        if old is not None:
            for key, arr in new.items():
                arr[: self._size] = getattr(self, key)[: self._size]
        for key, arr in new.items():
            setattr(self, key, arr)
        self.valid = self.ids >= 0
        self.mask = self.valid.astype(np.float32)

    def _write(self, rows: np.ndarray, ids: np.ndarray, scores: np.ndarray, qobs: np.ndarray) -> None:
        self.ids[rows], self.scores[rows], self.query_obs[rows] = ids, scores, qobs
        valid = ids >= 0
        self.valid[rows] = valid
        self.mask[rows] = valid
        self.full = self.full and bool(valid.all())
        self.cand[rows] = candidate_features(self.layout, self.world.fused, self._price_z, self._has_photo, ids, scores)
        self.attr[rows] = np.where((ids >= 0)[..., None], self._attribute_ids[np.where(ids >= 0, ids, 0)], 0.0)

    def rows(self, texts: list[str]) -> np.ndarray:
        """``int64 (n,)`` shared rows of ``texts``, retrieving (and adding) the ones not seen yet."""
        new = [t for t in dict.fromkeys(texts) if t not in self._row]
        if new:
            if len(new) > 1:
                self.world.prewarm(new, self.k)
            hits = [self.world.search(t, self.k) for t in new]
            start = self._size
            if start + len(new) > len(self.ids):
                self._alloc(max(2 * len(self.ids), start + len(new)))
            self._size += len(new)
            rows = np.arange(start, start + len(new))
            self._write(rows, np.stack([h[0] for h in hits]), np.stack([h[1] for h in hits]),
                        np.stack([h[2] for h in hits]))
            for row, text in zip(rows, new):
                self._row[text] = int(row)
                self.texts.append(text)
        return np.array([self._row[t] for t in texts], dtype=np.int64)

    def text(self, row: int) -> str:
        """The query text of ``row`` (a private row holds its session's current text)."""
        return self._private_text[row] if row < self.n_private else self.texts[row - self.n_private]

    def personalise(self, session: int, text: str, history: list[int], weight: float) -> int:
        """Retrieve ``text`` moved toward the clicked products ``history`` into ``session``'s private row."""
        ids, scores, qobs = self.world.personalized_search(text, history, weight, self.k)
        self._write(np.array([session]), ids[None], scores[None], qobs[None])
        if not hasattr(self, "_private_text"):
            self._private_text = [""] * self.n_private
        self._private_text[session] = text
        return session


# -- sessions ---------------------------------------------------------------------------------------------------
@dataclass
class Sessions:
    """What the env keeps of ``B`` sessions (the shopper's hidden state is the simulator's).

    Attributes:
        shopper: The :class:`BatchSimulator`'s hidden state of the ``B`` shoppers.
        query: ``int64 (B,)`` :class:`QueryTable` row of the query being served.
        n_queries: ``int64 (B,)`` slates shown so far.
        totals: ``float64 (B, 3)`` clicks, purchases and revenue so far.
        last_ctr: ``float64 (B,)`` clicks per shown product of the last slate.
        history: ``int64 (B, H)`` last clicked catalog rows, oldest first, ``-1`` padded.
        history_vectors: ``float32 (B, H, F)`` the fused vectors of ``history`` (zeros where ``-1``), the
            observation's ``history`` block, kept up to date by :class:`EnvCore` whenever ``history`` changes.
        history_mask: ``float32 (B, H)`` 1 where ``history`` holds a product.
    """

    shopper: Any
    query: np.ndarray
    n_queries: np.ndarray
    totals: np.ndarray
    last_ctr: np.ndarray
    history: np.ndarray
    history_vectors: np.ndarray
    history_mask: np.ndarray


@dataclass
class SlateResult:
    """What ``B`` shown slates produced (arrays over ``B``).

    Attributes:
        slate: ``int64 (B, N)`` catalog rows shown, ``-1`` = empty slot.
        positions: ``int64 (B, N)`` candidate positions shown, ``-1`` = empty slot.
        clicks, purchases: ``bool (B, N)``; dwell: ``float32 (B, N)``.
        parts: ``float64 (B, 3)`` sampled clicks, purchases, revenue (:data:`envs.reward.PARTS`).
        reward: ``float64 (B,)`` (expected reward when ``RewardSpec.expected``).
        position_rewards: ``float64 (B, N)`` each slot's share of ``reward``.
        ndcg: ``float64 (B,)`` (nan without a privileged simulator).
        left: ``bool (B,)`` the shopper left.
        responses: The simulator's per-session ``Response`` objects when it has them (else ``None``).
    """

    slate: np.ndarray
    positions: np.ndarray
    clicks: np.ndarray
    purchases: np.ndarray
    dwell: np.ndarray
    parts: np.ndarray
    reward: np.ndarray
    position_rewards: np.ndarray
    ndcg: np.ndarray
    left: np.ndarray
    responses: list | None = None

    def expand(self, idx: np.ndarray, n: int) -> "SlateResult":
        """This result of sessions ``idx`` as rows of ``n`` sessions (zeros, ``-1`` slates, nan NDCG elsewhere)."""
        out = {}
        for name in ("slate", "positions", "clicks", "purchases", "dwell", "parts", "reward", "position_rewards",
                     "ndcg", "left"):
            value = getattr(self, name)
            fill = -1 if name in ("slate", "positions") else (np.nan if name == "ndcg" else 0)
            full = np.full((n,) + value.shape[1:], fill, dtype=value.dtype)
            full[idx] = value
            out[name] = full
        raw = None
        if self.responses is not None:
            raw = [None] * n
            for j, b in enumerate(idx):
                raw[b] = self.responses[j]
        return SlateResult(**out, responses=raw)


class EnvCore:
    """``B`` sessions of one config, world and simulator, stepped with array operations.

    Args:
        config: The env config (``EnvConfig``).
        world: The shared world.
        simulator: A ``UserSimulator`` (wrapped by :func:`envs.shoppers.batch_simulator`) or a
            :class:`~envs.shoppers.BatchSimulator`.
        n_sessions: ``B``.

    Attributes:
        layout: The :class:`FeatureLayout` of the observation.
        table: The :class:`QueryTable`.
        sim: The :class:`~envs.shoppers.BatchSimulator`.
        sessions: The :class:`Sessions` (``None`` before :meth:`start`).
    """

    def __init__(self, config: Any, world: Any, simulator: Any, n_sessions: int) -> None:
        from envs.shoppers import batch_simulator

        self.config, self.world, self.n = config, world, int(n_sessions)
        self.reward_spec: RewardSpec = config.reward
        profile_dim = int(simulator.profile_dim)
        buckets = config.attribute_buckets
        ids = attribute_ids(world.catalog.attributes, buckets) if buckets else None
        self.layout = FeatureLayout.build(config.n_candidates, config.history_size, world.fused.shape[1],
                                          world.query_basis.shape[1], profile_dim,
                                          ids.shape[1] if buckets else 0, buckets)
        self.table = QueryTable(world, self.layout, config.n_candidates, self.n, ids)
        self.sim = batch_simulator(simulator, self.table, config.slate_size)
        if self.reward_spec.expected and not self.sim.privileged:  # refused here, not at the first step
            raise expected_reward_refused(getattr(self.sim, "name", type(self.sim).__name__))
        self.discounts = 1.0 / np.log2(np.arange(2, config.slate_size + 2))
        self.sessions: Sessions | None = None
        self._prices = world.items.prices
        self._all_rows = np.arange(self.n)
        self._no_utility = np.zeros((self.n, 0))  # settle_slates' utility without a privileged simulator

    # -- sessions ---------------------------------------------------------------------------------------
    def start(self, rows: np.ndarray | None, rng: np.random.Generator) -> None:
        """Start new sessions (all when ``rows`` is ``None``, else where ``bool (B,)`` ``rows``): fresh
        shoppers, zero counters, empty history, and their first query."""
        idx = self._all_rows if rows is None or self.sessions is None else np.flatnonzero(rows)
        if len(idx) == 0:
            return
        s = self.sessions
        if s is None:
            h, f = self.config.history_size, self.world.fused.shape[1]
            self.sessions = Sessions(shopper=self.sim.sample(len(idx), rng), query=np.zeros(self.n, dtype=np.int64),
                                     n_queries=np.zeros(self.n, dtype=np.int64), totals=np.zeros((self.n, 3)),
                                     last_ctr=np.zeros(self.n), history=np.full((self.n, h), -1, dtype=np.int64),
                                     history_vectors=np.zeros((self.n, h, f), dtype=np.float32),
                                     history_mask=np.zeros((self.n, h), dtype=np.float32))
        else:
            restart = getattr(self.sim, "restart", None)  # optional: a BatchSimulator written before it existed
            s.shopper = (restart(s.shopper, idx, rng) if callable(restart)
                         else self.sim.put(s.shopper, idx, self.sim.sample(len(idx), rng)))
            clear_sessions(idx, s.n_queries, s.totals, s.last_ctr, s.history, s.history_vectors, s.history_mask)
        self.next_queries(idx, rng)

    def next_queries(self, idx: np.ndarray, rng: np.random.Generator) -> None:
        """Ask the shoppers of sessions ``idx`` (``int64 (n,)``) for their next query and retrieve it."""
        s = self.sessions
        s.query[idx] = self.sim.next_queries(s.shopper, idx, rng)
        weight = self.config.personalize_query
        if weight > 0:
            for b in idx:
                recent = [int(i) for i in s.history[b] if i >= 0]
                if recent:
                    text = self.table.text(int(s.query[b]))
                    s.query[b] = self.table.personalise(int(b), text, recent, weight)
                    self.sim.refresh(s.shopper, np.array([b]), s.query[b:b + 1])

    def observation(self, b: int | None = None) -> dict[str, np.ndarray]:
        """The observation of every session (arrays with a leading ``B`` axis), or of session ``b`` alone (no
        such axis); fresh arrays either way (see :func:`observation_space`)."""
        s, t = self.sessions, self.table
        one = b is not None
        q = s.query.item(b) if one else s.query  # take() copies a row for an int, rows for an array
        rows = b if one else self._all_rows
        profile = self.sim.profile(s.shopper)
        session = session_features(self.layout, s.n_queries, s.totals, s.last_ctr, self.config.max_queries)
        obs = {"query": t.query_obs.take(q, axis=0), "profile": profile[b] if one else profile,
               "session": session[b] if one else session, "history": s.history_vectors.take(rows, axis=0),
               "history_mask": s.history_mask.take(rows, axis=0), "candidates": t.cand.take(q, axis=0),
               "mask": t.mask.take(q, axis=0)}
        if self.layout.attribute_buckets:
            obs["attributes"] = t.attr.take(q, axis=0)
        return obs

    @property
    def candidates(self) -> np.ndarray:
        """``int64 (B, K)`` catalog rows of the current candidates, ``-1`` padded."""
        return self.table.ids[self.sessions.query]

    @property
    def valid(self) -> np.ndarray:
        """``bool (B, K)`` real (non-padded) current candidates."""
        return self.table.valid[self.sessions.query]

    def slate_positions(self, scores: np.ndarray) -> np.ndarray:
        """:func:`slate_positions` of ``scores (B, K)`` over the sessions' current candidates."""
        return _top_slots(scores, self.table.valid, self.sessions.query, self.config.slate_size)

    # -- one slate per session --------------------------------------------------------------------------
    def show(self, positions: np.ndarray, rng: np.random.Generator, idx: np.ndarray | None = None) -> SlateResult:
        """Show each session the candidates at ``positions`` (``int64 (B, N)``, ``-1`` = empty slot), sample
        the shoppers' responses, reward, score and move them on (the caller asks for the next queries).

        Args:
            positions: Candidate positions per slot (distinct per row, valid candidates only).
            rng: Generator; draws the responses, then the transitions.
            idx: ``int64 (n,)`` the sessions to step (default all); the others are left as they are and get
                zero rows in the result.
        """
        s, sim, spec = self.sessions, self.sim, self.reward_spec
        whole = idx is None or len(idx) == self.n
        state = s.shopper if whole else sim.take(s.shopper, idx)
        q = s.query if whole else s.query[idx]
        if not whole:
            positions = positions[idx]
        slate = slate_rows(self.table.ids, q, positions)
        resp = sim.respond(state, q, positions, slate, rng)
        # what the reward and NDCG need from the shopper before it moves on
        click_prob, purchase_prob = sim.expected(state, q, positions, slate) if spec.expected else (resp.clicks,
                                                                                                  resp.purchases)
        utility = resp.utility if resp.utility is not None else sim.utilities(state, q, self.table.ids[q])
        left = sim.transition(state, q, positions, slate, resp, rng)
        if resp.abandoned is not None:
            left = left | resp.abandoned
        rows = self._all_rows if whole else idx
        if not whole:
            s.shopper = sim.put(s.shopper, idx, state)
        parts, position_rewards, reward, scores = settle_slates(
            spec.click, spec.purchase, spec.revenue, spec.expected, resp.clicks, resp.purchases, click_prob,
            purchase_prob, self._prices, slate, self._no_utility if utility is None else utility, self.table.valid, q,
            positions, self.discounts, rows, s.n_queries, s.totals, s.last_ctr, s.history, s.history_vectors,
            s.history_mask, self.world.fused)
        result = SlateResult(slate=slate, positions=positions, clicks=resp.clicks, purchases=resp.purchases,
                             dwell=resp.dwell, parts=parts, reward=reward, position_rewards=position_rewards,
                             ndcg=scores, left=left, responses=resp.raw)
        if whole:
            return result
        return result.expand(idx, self.n)
