"""Shoppers over ``B`` sessions at once for :class:`~envs.core.EnvCore` (the seam is
:class:`simulators.batch.BatchSimulator`).

Two implementations, chosen by :func:`batch_simulator`:

* :class:`DefaultShopperBatch` — the default shopper (:class:`~simulators.shopper.DefaultShopper`) in
  arrays: its query bank is retrieved once into the :class:`~envs.core.QueryTable`, its per-candidate terms
  (intent match, visual traits, price, near-duplicates as bit sets) are tables over table rows, and a
  slate is a few compiled calls over all ``B`` sessions (:mod:`simulators.kernels`): with a click model whose
  slots are examined independently (PBM, ``independent_examination``) the response and the transition's
  arithmetic are one call after the draws; with any other model, the probabilities, the model's own
  ``sample``, then purchases and the transition (the same numbers; tested). Its formulas are the shopper's
  own, written once in :mod:`simulators.kernels` and compiled both for the kernels and as the NumPy ufuncs
  ``DefaultShopper``'s per-session methods call (:func:`~simulators.shopper.combined_utility`,
  :func:`~simulators.shopper.attractiveness`, :func:`~simulators.shopper.purchase_probability`,
  :func:`~simulators.shopper.session_update`, ...).
* :class:`~simulators.batch.LoopShopper` — any per-session ``UserSimulator`` plug-in: it loops over the sessions and calls
  the plug-in's methods, checking each result (a broken plug-in raises ``SimulatorError`` naming the
  method). So a custom shopper runs in the vector env too, at the speed of its own per-session calls.

Both draw from the caller's generator in session order, so ``B = 1`` reproduces the per-session draws.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from encoders.blas import blas_threads
from simulators.batch import BatchResponse, BatchSimulator, LoopShopper
from simulators.click_models import independent_examination_of
from simulators.kernels import commit_state, pack_bits, restart_shoppers, slot_parameters, table_slate_response, table_slot_probabilities, table_transition
from simulators.protocols import Query
from simulators.shopper import (DefaultShopper, ShopperState, leave_after_purchase, profile_rows, sample_bank_rows,
                                sample_response, sample_traits, trait_draws)


def batch_simulator(simulator: Any, table: Any, n_slots: int) -> BatchSimulator:
    """The :class:`BatchSimulator` of a simulator: itself if it is one, :class:`DefaultShopperBatch` for an
    exact :class:`DefaultShopper` (a subclass may override its formulas: it gets the loop), else
    :class:`LoopShopper`."""
    if hasattr(simulator, "next_queries") and hasattr(simulator, "state_of"):
        return simulator
    if type(simulator) is DefaultShopper:
        return DefaultShopperBatch(simulator, table)
    known = getattr(simulator, "known_queries", None)
    if callable(known):
        table.world.prewarm(list(known()), table.k)
    return LoopShopper(simulator, n_slots, table.rows)


# -- the default shopper in arrays -------------------------------------------------------------------------------
@dataclass
class ShopperArrays:
    """Hidden state of ``B`` default shoppers (row ``b`` = one session).

    Attributes:
        segment: ``int64 (B,)``; taste: ``float32 (B, V)``; price_sensitivity: ``float64 (B,)``;
        profile_noise: ``float32 (B, V + 1)``; patience: ``float64 (B,)``; willingness_to_pay: ``float64 (B,)``.
        intent: ``int64 (B,)`` query-bank row of the current intent, ``-1`` = none (a new one is drawn).
    """

    segment: np.ndarray
    taste: np.ndarray
    price_sensitivity: np.ndarray
    profile_noise: np.ndarray
    patience: np.ndarray
    willingness_to_pay: np.ndarray
    intent: np.ndarray


class DefaultShopperBatch:
    """:class:`DefaultShopper` over ``B`` sessions (see the module docstring).

    Args:
        sim: The default shopper whose population (query bank, config, click model) is batched.
        table: The env's query table (the bank is retrieved into it).

    Attributes (per table row ``r``, candidate ``k``): ``rel (R, K)`` intent match, ``price_z (R, K)``,
    ``log_over_ref (R, K)`` ``log(price) - log(median price of its type)``, ``visual (R, K, V)`` visual
    traits, ``dup (R, K, W)`` near-duplicate pairs among the candidates as bit sets (:func:`pack_bits`: bit ``j``
    of row ``(r, k)`` is set when candidates ``k`` and ``j`` are near-duplicates; never ``j = k``).
    """

    privileged = True
    steps_ended_sessions = True
    """A session whose shopper left may still be stepped (the vector env discards the result)."""

    def __init__(self, sim: DefaultShopper, table: Any) -> None:
        self.user_simulator = sim
        self.config, self.click_model, self.visual_dim = sim.config, sim.click_model, sim.visual_dim
        self.profile_dim = sim.profile_dim
        self.table = table
        texts = sim.known_queries()
        table.world.prewarm(texts, table.k)
        rows = table.rows(texts)
        self.bank_row = rows  # table row of each bank intent
        r, k = len(table.ids), table.k
        self.rel = np.zeros((r, k))
        self.price_z = np.zeros((r, k), dtype=np.float32)
        self.log_over_ref = np.zeros((r, k))
        self.visual = np.zeros((r, k, sim.visual_dim), dtype=np.float32)
        self.dup = np.zeros((r, k, (k + 63) // 64), dtype=np.uint64)
        with blas_threads(1):  # many small batched products: one BLAS thread is ~50x cheaper on a busy machine
            for start in range(0, len(rows), 256):  # construction only, chunked to bound memory
                part = rows[start:start + 256]
                self._fill(part, np.arange(start, start + len(part)))
        self._parameters = slot_parameters(self.config, sim.visual_dim)
        self._pending: tuple | None = None  # respond()'s transition, for the transition() that follows
        self._examination_of: dict[int, np.ndarray | None] = {}
        self._after_buffers: tuple[np.ndarray, ...] | None = None  # see _after

    def _fill(self, rows: np.ndarray, intents: np.ndarray) -> None:
        """Compute the per-candidate terms of table ``rows`` for bank ``intents``."""
        sim, items, cfg = self.user_simulator, self.user_simulator.items, self.config
        ids = self.table.ids[rows]
        valid = ids >= 0
        safe = np.where(valid, ids, 0)
        self.rel[rows] = np.stack([sim.relevance(sim.bank[i], ids[j]) for j, i in enumerate(intents)])
        self.price_z[rows] = np.where(valid, items.price_z[safe], 0.0)
        self.log_over_ref[rows] = (np.log(np.maximum(items.prices[safe].astype(np.float64), 1e-2))
                                   - sim._log_ref_price[safe])
        self.visual[rows] = items.visual_z[safe]
        if cfg.boredom > 0 and items.similarity is not None:
            vec = items.similarity[safe]
            dup = (vec @ np.swapaxes(vec, 1, 2) > cfg.duplicate_threshold) & valid[:, :, None] & valid[:, None, :]
            dup[:, np.arange(ids.shape[1]), np.arange(ids.shape[1])] = False
            self.dup[rows] = pack_bits(dup)

    # -- sessions ---------------------------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator) -> ShopperArrays:
        traits = sample_traits(self.config, n, self.visual_dim, rng)
        patience, intent = np.empty(n), np.empty(n, dtype=np.int64)
        patience.fill(self.config.patience)  # (np.full costs several times more on small arrays)
        intent.fill(-1)
        return ShopperArrays(**traits, patience=patience, intent=intent)

    def restart(self, state: ShopperArrays, idx: np.ndarray, rng: np.random.Generator) -> ShopperArrays:
        cfg = self.config
        restart_shoppers(idx, *trait_draws(len(idx), self.visual_dim, rng), cfg.profile_noise, cfg.budget_mean,
                         cfg.budget_std, float(cfg.patience), state.segment, state.taste, state.price_sensitivity,
                         state.profile_noise, state.patience, state.willingness_to_pay, state.intent)
        return state

    def put(self, state: ShopperArrays, idx: np.ndarray, fresh: ShopperArrays) -> ShopperArrays:
        for f in fields(ShopperArrays):
            getattr(state, f.name)[idx] = getattr(fresh, f.name)
        return state

    def take(self, state: ShopperArrays, idx: np.ndarray) -> ShopperArrays:
        return ShopperArrays(**{f.name: getattr(state, f.name)[idx] for f in fields(ShopperArrays)})

    def next_queries(self, state: ShopperArrays, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sim = self.user_simulator
        if len(idx) == 1:  # one session: the same rule on basic slices (a fraction of the fancy indexing's cost)
            b = int(idx[0])
            if state.intent[b] < 0:
                state.intent[b:b + 1] = sample_bank_rows(sim.bank_table, sim.bank_counts, state.segment[b:b + 1], rng)
            return self.bank_row[state.intent[b:b + 1]]
        need = idx[state.intent[idx] < 0]
        if len(need):
            state.intent[need] = sample_bank_rows(sim.bank_table, sim.bank_counts, state.segment[need], rng)
        return self.bank_row[state.intent[idx]]

    def refresh(self, state: ShopperArrays, idx: np.ndarray, rows: np.ndarray) -> None:
        self._fill(rows, state.intent[idx])

    def profile(self, state: ShopperArrays) -> np.ndarray:
        return profile_rows(state.segment, state.taste, state.price_sensitivity, state.profile_noise)

    # -- response ---------------------------------------------------------------------------------------
    def _slot_probabilities(self, state: ShopperArrays, q: np.ndarray, positions: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(attractiveness (B, N), p_buy (B, N), utility (B, K))``: each slot's product's probabilities (0 on
        empty slots) and every candidate's utility (0 on padded candidates), in one compiled call."""
        t = self.table
        return table_slot_probabilities(self._parameters, q, positions, state.taste, state.price_sensitivity,
                                        state.willingness_to_pay, self.rel, self.price_z, self.log_over_ref,
                                        self.visual, self.dup, t.valid)

    def respond(self, state, q, positions, slate, rng) -> BatchResponse:
        exam = self._examination(positions.shape[1])
        if exam is None:  # any click model: probabilities, the model's own draws, then purchases and dwell
            self._pending = None
            attract, p_buy, util = self._slot_probabilities(state, q, positions)
            clicks, purchases, dwell = sample_response(self.click_model, attract, p_buy, rng)
            return BatchResponse(clicks, purchases, dwell, None, utility=util)
        # independent examination (PBM): the same draws in the same order (the model's click uniforms, then
        # sample_response's), and the response and the transition's arithmetic in one compiled call
        shape, cfg = positions.shape, self.config
        uniforms = rng.random((2,) + shape)  # the same numbers as two draws of `shape`
        dwell_draws = rng.gamma(2.0, 15.0, size=shape)
        after = self._after(state)
        clicks, purchases, dwell, util, n_ask = table_slate_response(
            self._parameters, cfg.drift, cfg.fatigue, cfg.no_click_penalty, q, positions, state.taste,
            state.price_sensitivity, state.willingness_to_pay, state.patience, state.intent, self.rel, self.price_z,
            self.log_over_ref, self.visual, self.dup, self.table.valid, exam, uniforms, dwell_draws, *after)
        response = BatchResponse(clicks, purchases, dwell, None, utility=util)
        self._pending = (state, positions, response, n_ask)
        return response

    def _after(self, state: ShopperArrays) -> tuple[np.ndarray, ...]:
        """Buffers for the state after a slate (taste, patience, intent, left, ask), kept between steps."""
        b, v = state.taste.shape
        buffers = self._after_buffers
        if buffers is None or buffers[0].shape != (b, v):
            buffers = self._after_buffers = (np.empty((b, v), dtype=np.float32), np.empty(b), np.empty(b, dtype=np.int64),
                                             np.empty(b, dtype=bool), np.empty(b, dtype=bool))
        return buffers

    def _examination(self, n: int) -> np.ndarray | None:
        """``float (n,)`` the click model's per-slot examination when it examines slots independently of each
        other and of clicks (:func:`~simulators.click_models.independent_examination_of`, e.g. PBM), else ``None``
        (cached per ``n``)."""
        cache = self._examination_of
        if n not in cache:
            cache[n] = independent_examination_of(self.click_model, n)
        return cache[n]

    def expected(self, state, q, positions, slate) -> tuple[np.ndarray, np.ndarray]:
        attract, p_buy, _ = self._slot_probabilities(state, q, positions)
        click = self.click_model.click_probs(attract)
        return click, click * p_buy

    def utilities(self, state: ShopperArrays, q: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        return self._slot_probabilities(state, q, np.empty((len(q), 0), dtype=np.int64))[2]

    def transition(self, state, q, positions, slate, response, rng) -> np.ndarray:
        cfg = self.config
        pending, self._pending = self._pending, None
        if pending is not None and all(a is b for a, b in zip(pending, (state, positions, response))):
            # the state after this slate, computed by respond() for this state, slate and response
            taste, patience, intent, left, ask = self._after(state)
            commit_state(state.taste, state.patience, state.intent, taste, patience, intent)
            left, n_ask = left.copy(), pending[3]
        else:
            left, ask, n_ask = table_transition(cfg.drift, cfg.fatigue, cfg.no_click_penalty, q, positions,
                                                state.taste, state.patience, state.intent, self.rel, self.visual,
                                                response.clicks, response.purchases)
        return leave_after_purchase(cfg, left, ask, n_ask, rng)

    # -- per-session views ------------------------------------------------------------------------------
    def state_of(self, state: ShopperArrays, b: int) -> ShopperState:
        intent = int(state.intent[b])
        return ShopperState(segment=int(state.segment[b]), taste=state.taste[b].copy(),
                            price_sensitivity=float(state.price_sensitivity[b]),
                            profile_noise=state.profile_noise[b].copy(), patience=float(state.patience[b]),
                            intent=self.user_simulator.bank[intent] if intent >= 0 else None,
                            willingness_to_pay=float(state.willingness_to_pay[b]))

    def query_of(self, state: ShopperArrays, q: np.ndarray, b: int) -> Query:
        intent = self.user_simulator.bank[int(state.intent[b])]
        return Query(text=self.user_simulator.query_text(intent), intent=intent)

__all__ = ["BatchResponse", "BatchSimulator", "DefaultShopperBatch", "LoopShopper", "ShopperArrays",
           "batch_simulator"]
