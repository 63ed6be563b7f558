"""``ShopRank-v1``: a shopper's relationship with the shop over several visits (photo gloss, returns, trust).

The shopper is :class:`~simulators.longterm.LongTermShopper` (built from ``config.shopper`` and
``config.longterm``; its gloss is a direction of the world's image vectors), run by the same array core as
``ShopRank-v0`` through :class:`VisitEnvCore`, which adds the one rule v1 has on top of v0: a purchase
returned at a visit's end takes its reward back. Single (:class:`ShopRankVisitsEnv`), sequential
(:class:`ShopRankSeqVisitsEnv`, ``ShopRankSeq-v1``) and vector (:class:`ShopRankVisitsVectorEnv`, the
``vector_entry_point`` of ``ShopRank-v1``) forms share it, so they follow the same dynamics; ``B = 1``
replays the single env exactly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from encoders.errors import ConfigError
from envs.config import EnvConfig, resolve_env_config
from envs.core import EnvCore
from envs.layout import FeatureLayout
from envs.seq_env import ShopRankSeqEnv
from envs.session import SessionCore
from envs.shoprank_env import ShopRankEnv
from envs.vector_env import ShopRankVectorEnv
from envs.world import ShopWorld, get_world
from simulators.longterm import (VISIT_SIGNALS, LongTermConfig, LongTermShopper, RewardWeights, candidate_terms,
                                 estimate_visit_value, planner_scores)
from simulators.protocols import UserSimulator


def v1_config(**overrides: Any) -> EnvConfig:
    """The :class:`EnvConfig` of ``ShopRank-v1``: the query budget covers every visit
    (``max_visits * max_queries_per_visit``), so the shopper, not the budget, ends the episode."""
    longterm = overrides.get("longterm", LongTermConfig())
    return EnvConfig(**{"max_queries": longterm.max_visits * longterm.max_queries_per_visit, **overrides})


def longterm_simulator(config: EnvConfig, world: ShopWorld) -> LongTermShopper:
    """The v1 shopper of ``config`` in ``world`` (gloss from the image vectors, or the visual traits without them)."""
    if config.simulator:
        raise ConfigError(f"ShopRank-v1's shopper is built from config.shopper and config.longterm; "
                          f"config.simulator must be empty, got {config.simulator!r} (pass simulator= instead).")
    return LongTermShopper(world.items, config.longterm, config.shopper, photo=world.image_vectors,
                           n_slots=config.slate_size)


def visit_layout(layout: FeatureLayout) -> FeatureLayout:
    """``layout`` with :data:`~simulators.longterm.VISIT_SIGNALS` appended to the ``session`` block."""
    extra = len(VISIT_SIGNALS)
    blocks = tuple((key, (shape[0] + extra,) if key == "session" else shape) for key, shape in layout.blocks)
    return replace(layout, blocks=blocks, session=layout.session + VISIT_SIGNALS)


class VisitEnvCore(EnvCore):
    """:class:`~envs.core.EnvCore` for the long-term shopper: returns are refunded, visits are observed.

    After each slate, the products a session's shopper returned (:meth:`LongTermShopper.returns_of`) take
    their reward back: ``reward -= purchase * returns + revenue * refund`` (``refund`` = their prices; with
    ``RewardSpec.expected`` the sampled returns are still what is taken back). The ``session`` block gains
    the shop-visible :data:`~simulators.longterm.VISIT_SIGNALS`.

    Attributes:
        last_returns, last_refund: ``float (B,)`` products returned and currency refunded at the last slate.
        last_trust, last_visits: ``float (B,)`` hidden trust and visits so far after the last slate (analysis
            only; kept here so a session reset in the same step does not lose them).
        last_returned_slots: Per session, ``float (r, 3)`` ``(queries ago, slot, refund)`` of each purchase
            returned at the last slate: where it was bought (0 queries ago = this slate) and the reward taken
            back for it (:meth:`LongTermShopper.returned_slots_of`; empty for a shopper without it).
    """

    def __init__(self, config: EnvConfig, world: ShopWorld, simulator: Any, n_sessions: int) -> None:
        super().__init__(config, world, simulator, n_sessions)
        user = self.sim.user_simulator
        missing = [m for m in ("returns_of", "visit_signals") if not callable(getattr(user, m, None))]
        if missing:
            raise ConfigError(f"ShopRank-v1 needs a long-term shopper (simulators.longterm.LongTermShopper); "
                              f"{type(user).__name__} has no {missing}.")
        self.layout = visit_layout(self.layout)
        self._visit_columns = [self.layout.session_column(name) for name in VISIT_SIGNALS]
        self.last_returns, self.last_refund = np.zeros(self.n), np.zeros(self.n)
        self.last_trust, self.last_visits = np.zeros(self.n), np.zeros(self.n)
        self.last_returned_slots = [np.zeros((0, 3)) for _ in range(self.n)]
        self.visit_value: float | None = None

    def state(self, b: int) -> Any:
        """Session ``b``'s :class:`~simulators.longterm.LongTermState` (privileged)."""
        return self.sim.state_of(self.sessions.shopper, b)

    def observation(self, b: int | None = None) -> dict[str, np.ndarray]:
        obs = super().observation(b)
        user = self.sim.user_simulator
        if b is not None:
            obs["session"][self._visit_columns] = user.visit_signals(self.state(b))
        else:
            obs["session"][:, self._visit_columns] = np.stack([user.visit_signals(self.state(i)) for i in range(self.n)])
        return obs

    def show(self, positions: np.ndarray, rng: np.random.Generator, idx: np.ndarray | None = None):
        result = super().show(positions, rng, idx)
        user, prices, spec = self.sim.user_simulator, self.world.items.prices, self.reward_spec
        for arr in (self.last_returns, self.last_refund, self.last_trust, self.last_visits):
            arr[:] = 0.0
        self.last_returned_slots = [np.zeros((0, 3))] * self.n
        for b in (range(self.n) if idx is None else idx):
            state = self.state(int(b))
            rows = user.returns_of(state)
            self.last_returns[b], self.last_refund[b] = len(rows), float(prices[rows].astype(np.float64).sum())
            self.last_trust[b], self.last_visits[b] = float(state.trust), float(state.visit + 1)
            where = getattr(user, "returned_slots_of", None)
            at = where(state) if callable(where) else np.zeros((0, 2), dtype=np.int64)
            refund = spec.purchase + spec.revenue * prices[rows].astype(np.float64)
            self.last_returned_slots[b] = np.column_stack([at, refund[: len(at)]]).astype(np.float64)
        result.reward = result.reward - (spec.purchase * self.last_returns + spec.revenue * self.last_refund)
        return result

    def relationship_info(self, b: int) -> dict[str, Any]:
        """``returns``, ``refund`` (reward parts of the last slate), ``trust``, ``visits`` and ``returned_slots``
        (``float (r, 3)``, see :attr:`last_returned_slots`) of session ``b``."""
        return {"returns": float(self.last_returns[b]), "refund": float(self.last_refund[b]),
                "trust": float(self.last_trust[b]), "visits": float(self.last_visits[b]),
                "returned_slots": self.last_returned_slots[b].copy()}

    def padded_returned_slots(self, width: int) -> np.ndarray:
        """``float (B, width, 3)`` :attr:`last_returned_slots` padded with rows of ``-1``."""
        out = np.full((self.n, width, 3), -1.0)
        for b, rows in enumerate(self.last_returned_slots):
            out[b, : len(rows)] = rows[:width]
        return out

    def _weights(self) -> RewardWeights:
        spec = self.reward_spec
        return RewardWeights(spec.click, spec.purchase, spec.revenue)

    def myopic_scores(self, b: int, query: Any, candidates: np.ndarray, observable: bool = False) -> np.ndarray:
        """``float (K,)`` expected immediate reward of each candidate alone at the top (the oracles' value, as
        ``SessionCore.candidate_values`` computes it one candidate at a time), for session ``b``'s true state
        or, with ``observable``, the shopper's ``observable_state``; ``-inf`` for padding."""
        user = self.sim.user_simulator
        state = user.observable_state(self.state(b)) if observable else self.state(b)
        return candidate_terms(user, state, query, candidates, self._weights(), self.config.slate_size)[0]

    def planner_scores(self, b: int, query: Any, candidates: np.ndarray, observable: bool = False,
                       value_trust: bool = True) -> np.ndarray:
        """``float (K,)`` :func:`simulators.longterm.planner_scores` of session ``b`` (privileged, or with
        ``observable`` planned on what the shop can know; ``value_trust=False`` leaves out the trust term); the
        value of a visit is estimated once per core (:func:`simulators.longterm.estimate_visit_value`)."""
        cfg, weights = self.config, self._weights()
        user = self.sim.user_simulator
        if self.visit_value is None:
            self.visit_value = estimate_visit_value(
                user, lambda text: self.world.search(text, cfg.n_candidates)[0], weights, cfg.slate_size)
        return planner_scores(user, self.state(b), query, candidates, weights, self.visit_value, cfg.slate_size,
                              observable, value_trust)


class VisitSessionCore(SessionCore):
    """:class:`~envs.session.SessionCore` over a :class:`VisitEnvCore` (the oracles' values in one call)."""

    env_core = VisitEnvCore

    def candidate_values(self, observable: bool = False) -> np.ndarray:
        return self.core.myopic_scores(0, self.query, self.candidates, observable)


class _Visits:
    """What the single and sequential v1 envs add to their v0 twins (the v1 shopper, info, the planner)."""

    session_core = VisitSessionCore

    def __init__(self, config: EnvConfig | dict | None = None, world: ShopWorld | None = None,
                 simulator: UserSimulator | None = None, render_mode: str | None = None) -> None:
        config = v1_config() if config is None else resolve_env_config(config)
        world = world if world is not None else get_world(config.world)
        super().__init__(config, world, simulator or longterm_simulator(config, world), render_mode)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = super().step(action)
        if "shown_ids" in info:
            info.update(self.core.core.relationship_info(0))
        return obs, reward, terminated, truncated, info

    def planner_scores(self, observable: bool = False, value_trust: bool = True) -> np.ndarray:
        """Privileged long-term value of each candidate (``float (K,)``, ``-inf`` for padding): the ``planner``;
        with ``observable``, planned on what the shop can know (the ``profile_planner``); ``value_trust=False``
        leaves out the value of trust (``profile_net``: expected reward net of the expected refund)."""
        return self.core.core.planner_scores(0, self.core.query, self.core.candidates, observable, value_trust)


_HISTORY = """
    ## Version History
    * v1: the episode is a relationship of several visits (``simulators.longterm``): photo gloss raises
      clicks and purchases, a purchase that falls short of its photo is returned at the visit's end (its
      reward taken back, ``info["returns"]``), and hidden trust scales engagement and coming back; the
      ``session`` block adds visit index, days since the last visit, queries this visit, kept purchases
      and returns. Privileged ``planner_scores()``.
    * v0: initial release (one session per episode).
"""

_V1 = """
    ``ShopRank-v1`` (this class): the episode is one shopper's relationship over up to ``max_visits`` visits,
    each a session as in v0 (see :mod:`simulators.longterm` for the dynamics and why a planner beats the
    myopic oracle). Differences from v0:

    * **Observation**: the ``session`` block has 9 columns, v0's 4 then ``visit`` (index / max_visits),
      ``days_since_last_visit`` (/ 30), ``visit_queries`` (/ max_queries_per_visit), ``kept_purchases``
      (/ 5) and ``returns`` (/ 5) — what a shop knows; trust is never observed.
    * **Reward**: v0's, minus ``purchase * returns + revenue * refund`` at the slate that ends a visit,
      where ``returns`` purchases of the visit are sent back (``refund`` = their prices).
      ``position_rewards`` still split the slate's own reward (they do not include the refund).
    * **info** adds ``returns``, ``refund``, ``trust`` (hidden, for analysis only), ``visits`` (so far) and
      ``returned_slots`` (``float (r, 3)``: for each returned purchase, how many queries ago and in which
      slot it was bought, and the reward taken back; what a shop's order history knows, for credit).
    * **Episode end**: ``terminated`` when the shopper does not come back after a visit (probability
      ``1 - comeback(trust)``) or after ``max_visits`` visits; ``truncated`` at ``max_queries``
      (``v1_config`` makes it ``max_visits * max_queries_per_visit``, never reached first).
    * **Arguments**: ``config.longterm`` (:class:`~simulators.longterm.LongTermConfig`); ``simulator`` may
      be any shopper with ``returns_of(state)`` and ``visit_signals(state)``.
"""


class ShopRankVisitsEnv(_Visits, ShopRankEnv):
    __doc__ = (ShopRankEnv.__doc__ or "").split("## Version History")[0] + _V1 + _HISTORY


class ShopRankSeqVisitsEnv(_Visits, ShopRankSeqEnv):
    __doc__ = (ShopRankSeqEnv.__doc__ or "").split("## Version History")[0] + _V1 + _HISTORY

    def planner_scores(self, observable: bool = False, value_trust: bool = True) -> np.ndarray:
        """As :meth:`ShopRankVisitsEnv.planner_scores`, with candidates already placed at ``-inf``."""
        values = super().planner_scores(observable, value_trust)
        values[self._order] = -np.inf
        return values


class ShopRankVisitsVectorEnv(ShopRankVectorEnv):
    """``B`` ``ShopRank-v1`` relationships stepped at once (the :class:`VisitEnvCore` at ``B > 1``).

    As :class:`~envs.vector_env.ShopRankVectorEnv`; ``info`` adds ``returns``, ``refund``, ``trust`` and
    ``visits`` ``(B,)`` and ``returned_slots`` ``(B, W, 3)`` (the single env's ``(r, 3)`` padded with rows of
    ``-1`` to ``W = max_queries_per_visit * slate_size``), masked like ``clicks``: False for sessions reset
    instead of stepped.
    """

    env_core = VisitEnvCore
    extra_info = ("returns", "refund", "trust", "visits", "returned_slots")

    def __init__(self, num_envs: int = 1, config: EnvConfig | dict | None = None, world: ShopWorld | None = None,
                 simulator: UserSimulator | None = None, **kwargs: Any) -> None:
        config = v1_config() if config is None else resolve_env_config(config)
        world = world if world is not None else get_world(config.world)
        super().__init__(num_envs, config, world, simulator or longterm_simulator(config, world), **kwargs)

    def step(self, actions: np.ndarray):
        core = self.core
        for arr in (core.last_returns, core.last_refund, core.last_trust, core.last_visits):
            arr[:] = 0.0
        core.last_returned_slots = [np.zeros((0, 3))] * core.n
        obs, reward, terminated, truncated, info = super().step(actions)
        width = self.config.longterm.max_queries_per_visit * self.config.slate_size
        for key, arr in zip(self.extra_info, (core.last_returns, core.last_refund, core.last_trust, core.last_visits,
                                              core.padded_returned_slots(width))):
            info[key], info[f"_{key}"] = arr.copy(), info["_clicks"].copy()
        return obs, reward, terminated, truncated, info


__all__ = ["ShopRankSeqVisitsEnv", "ShopRankVisitsEnv", "ShopRankVisitsVectorEnv", "VisitEnvCore", "VisitSessionCore",
           "longterm_simulator", "v1_config", "visit_layout"]
