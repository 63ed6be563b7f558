"""``ShopRankVectorEnv``: ``B`` shopping sessions stepped at once with array operations.

The batched twin of :class:`~envs.shoprank_env.ShopRankEnv` (``ShopRank-v0``) for the default shopper
(:class:`~simulators.shopper.DefaultShopper`). It is registered as the ``vector_entry_point`` of
``ShopRank-v0`` and ``ShopRankStatic-v0``::

    vec = gymnasium.make_vec("ShopRank-v0", num_envs=256, vectorization_mode="vector_entry_point",
                             config=EnvConfig(...))

How it batches
--------------
The default shopper only ever types queries from its finite query *bank* (``Q`` intents), so everything
that depends on the query alone is computed once, at construction, into ``(Q, ...)`` tables
(:class:`BatchedShopper`):

* retrieval: candidate ids ``(Q, K)``, retriever scores ``(Q, K)``, query observation ``(Q, D)`` — from
  :meth:`ShopWorld.prewarm` / :meth:`ShopWorld.search`, exactly what the single env retrieves;
* the candidates' observation block ``(Q, K, F + 4)`` (same features as :class:`SessionCore`);
* intent match ``rel`` ``(Q, K)`` (:meth:`DefaultShopper.relevance`), price z-scores, prices,
  ``log(price) - log(type median price)`` ``(Q, K)``, visual traits ``(Q, K, V)`` and the near-duplicate
  relation between candidates ``(Q, K, K)`` (boredom).

The per-session hidden state lives in arrays — segment ``(B,)``, taste ``(B, V)``, price sensitivity
``(B,)``, profile noise ``(B, V + 1)``, patience ``(B,)``, willingness to pay ``(B,)``, current bank query
``(B,)``, and the env's session counters and click history ``(B, H)`` — and one step is a fixed number of
NumPy calls over ``(B, K)`` / ``(B, N)`` / ``(B, N, N)`` arrays: no Python loop over sessions or
candidates (the click model loops over the ``N`` slots only for the chain models; PBM has no loop).

Dynamics of ``DefaultShopper``, batched: utility, attractiveness with boredom, purchase-after-click with
the over-budget term, drift, fatigue and the no-click penalty call the same formula functions as the
single shopper (``simulators.shopper.combined_utility``, ``attractiveness``, ``purchase_probability``,
``drifted_taste``, ``patience_after``) on ``(B, K)`` / ``(B, N)`` arrays; the shopper's click model (any
``ClickModel``) is sampled on ``(B, N)``; satisfaction after a purchase (new intent or leave) and patience
follow ``DefaultShopper.transition``. :meth:`BatchedShopper.item_probabilities` equals ``DefaultShopper.item_probabilities`` to
float round-off (tested). Differences, all in how random numbers are consumed, not in distributions:

* the order of draws differs (one ``(B, N)`` array at a time instead of one session at a time), so the
  same seed gives different sessions than ``B`` single envs: equivalence is statistical (tested with
  confidence intervals on mean episode return/clicks under two policies);
* "leave after a purchase" draws one uniform per session every step (the single shopper draws only after
  a purchase); dwell times are not sampled (the env never reports them);
* a custom ``config.simulator`` cannot be batched: use ``vectorization_mode="sync"`` for those.

Autoreset
---------
``metadata["autoreset_mode"]`` is :attr:`AutoresetMode.NEXT_STEP` (Gymnasium 1.x's default): when a
session ends at step ``t`` (``terminated`` or ``truncated``), the observation returned is the final one;
at step ``t + 1`` that sub-env ignores its action, starts a new session and returns its first
observation with reward 0 and ``terminated = truncated = False``. ``autoreset_mode=AutoresetMode.SAME_STEP``
is also supported: the first observation of the new session is returned at step ``t`` itself and the
final one goes to ``info["final_obs"]`` (a batched ``Dict`` of arrays, valid where ``info["_final_obs"]``).

``info`` (per step, arrays over ``B`` with Gymnasium's ``_key`` masks, False for rows that were reset
instead of stepped): ``clicks``, ``purchases``, ``revenue`` ``(B,)``, ``ndcg`` ``(B,)``, ``left`` ``(B,)``,
``clicked`` ``bool (B, N)`` (clicked positions), ``shown_ids`` ``int64 (B, N)``, ``position_rewards``
``float (B, N)`` (each slot's share of the reward) and ``query_index``
``(B,)`` (row of the query bank; ``env.query_texts[i]`` is the text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from encoders.errors import ConfigError
from envs.config import EnvConfig, resolve_env_config
from envs.session import N_EXTRA, N_SESSION, SCORE_BOUND, episode_end, make_simulator, observation_space
from envs.world import ShopWorld, get_world
from simulators.shopper import (SEGMENTS, DefaultShopper, ShopperConfig, attractiveness, combined_utility,
                                drifted_taste, patience_after, purchase_probability)


@dataclass
class ShopperBatch:
    """Hidden state of ``B`` default shoppers (row ``b`` = one session).

    Attributes:
        segment: ``int64 (B,)`` index into :data:`simulators.shopper.SEGMENTS`.
        taste: ``float32 (B, V)`` visual taste.
        price_sensitivity: ``float64 (B,)``.
        profile_noise: ``float32 (B, V + 1)`` fixed noise of the observable profile.
        patience: ``float64 (B,)``.
        willingness_to_pay: ``float64 (B,)`` log budget multiple.
        query: ``int64 (B,)`` row of the query bank being served (the current intent).
    """

    segment: np.ndarray
    taste: np.ndarray
    price_sensitivity: np.ndarray
    profile_noise: np.ndarray
    patience: np.ndarray
    willingness_to_pay: np.ndarray
    query: np.ndarray


class BatchedShopper:
    """``DefaultShopper``'s formulas over ``B`` sessions, with per-bank-query tables precomputed.

    Args:
        sim: The default shopper whose population (query bank, config, click model) is batched.
        world: The world whose retriever serves the queries.
        n_candidates: ``K``.

    Attributes:
        texts: ``list[str]`` (Q) query texts of the bank.
        ids: ``int64 (Q, K)`` candidate catalog rows, ``-1`` padded.
        valid: ``bool (Q, K)``.
        query_obs: ``float32 (Q, D)`` query observation.
        cand_obs: ``float32 (Q, K, F + 4)`` candidates' observation block.
        rel: ``float64 (Q, K)`` intent match of each candidate.
        price_z, price: ``(Q, K)`` price z-score and price of each candidate (0 for padding).
        log_over_ref: ``float64 (Q, K)`` ``log(max(price, 0.01)) - log(median price of its type)``.
        visual: ``float32 (Q, K, V)`` z-scored visual traits.
        dup: ``bool (Q, K, K)`` near-duplicate pairs among the candidates (diagonal False).
        bank_by_segment: ``int64 (S, M)`` bank rows per segment, padded; ``bank_counts (S,)``.
    """

    def __init__(self, sim: DefaultShopper, world: ShopWorld, n_candidates: int) -> None:
        if not isinstance(sim, DefaultShopper):
            raise ValueError(
                f"ShopRankVectorEnv batches the default shopper only, got {type(sim).__name__}; use "
                "gymnasium.make_vec(..., vectorization_mode='sync') for a custom simulator.")
        self.sim = sim
        self.config: ShopperConfig = sim.config
        self.click_model = sim.click_model
        self.visual_dim = sim.visual_dim
        items = world.items
        k = n_candidates
        self.texts = sim.known_queries()
        world.prewarm(self.texts, k)
        q = len(self.texts)
        ids = np.full((q, k), -1, dtype=np.int64)
        scores = np.zeros((q, k), dtype=np.float32)
        qobs = np.zeros((q, world.query_basis.shape[1]), dtype=np.float32)
        for i, text in enumerate(self.texts):  # construction only (Q dict look-ups)
            ids[i], scores[i], qobs[i] = world.search(text, k)
        self.ids, self.valid, self.query_obs = ids, ids >= 0, qobs
        rows = np.where(self.valid, ids, 0)
        f = world.fused.shape[1]
        cand = np.zeros((q, k, f + N_EXTRA), dtype=np.float32)
        cand[..., :f] = world.fused[rows]
        cand[..., -4] = np.where(self.valid, scores, 0.0)
        cand[..., -3] = (1.0 - np.arange(k) / k).astype(np.float32)
        cand[..., -2] = items.price_z[rows]
        cand[..., -1] = world.catalog.has_image.astype(np.float32)[rows]
        cand[~self.valid] = 0.0
        self.cand_obs = cand
        self.rel = np.stack([sim.relevance(intent, ids[i]) for i, intent in enumerate(sim.bank)])
        self.price_z = np.where(self.valid, items.price_z[rows], 0.0).astype(np.float32)
        self.price = np.where(self.valid, items.prices[rows], 0.0).astype(np.float32)
        logp = np.log(np.maximum(items.prices[rows].astype(np.float64), 1e-2))
        self.log_over_ref = logp - sim._log_ref_price[rows]
        self.visual = items.visual_z[rows]
        self.dup = np.zeros((q, k, k), dtype=bool)
        if self.config.boredom > 0 and items.similarity is not None:
            for start in range(0, q, 256):  # construction only, chunked to bound memory
                vec = items.similarity[rows[start:start + 256]]
                sim_qkk = np.einsum("qkd,qjd->qkj", vec, vec)
                ok = self.valid[start:start + 256]
                self.dup[start:start + 256] = (sim_qkk > self.config.duplicate_threshold) & ok[:, :, None] & ok[:, None, :]
            self.dup[:, np.arange(k), np.arange(k)] = False
        counts = np.array([len(b) for b in sim._bank_by_segment], dtype=np.int64)
        table = np.zeros((len(SEGMENTS), counts.max()), dtype=np.int64)
        for s, members in enumerate(sim._bank_by_segment):
            table[s, : len(members)] = members
        self.bank_by_segment, self.bank_counts = table, counts

    # -- sampling -------------------------------------------------------------------------------------
    def sample_shoppers(self, n: int, rng: np.random.Generator) -> ShopperBatch:
        """``n`` fresh shoppers (same distributions as :meth:`DefaultShopper.reset`) with a first intent."""
        v, cfg = self.visual_dim, self.config
        segment = rng.integers(len(SEGMENTS), size=n)
        return ShopperBatch(
            segment=segment,
            taste=rng.normal(size=(n, v)).astype(np.float32),
            price_sensitivity=rng.gamma(2.0, 0.5, size=n),
            profile_noise=(cfg.profile_noise * rng.normal(size=(n, v + 1))).astype(np.float32),
            patience=np.full(n, float(cfg.patience)),
            willingness_to_pay=cfg.budget_mean + cfg.budget_std * rng.normal(size=n),
            query=self.sample_queries(segment, rng),
        )

    def sample_queries(self, segment: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``int64 (n,)`` bank rows drawn uniformly among those fitting each shopper's ``segment (n,)``."""
        pick = (rng.random(len(segment)) * self.bank_counts[segment]).astype(np.int64)
        return self.bank_by_segment[segment, pick]

    # -- response -------------------------------------------------------------------------------------
    def utilities(self, state: ShopperBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Utility of every candidate of every session.

        Returns:
            ``(utility (B, K), visual match (B, K), price term s * price_z (B, K))``; 0 for padding.
        """
        cfg, q = self.config, state.query
        vis = np.einsum("bkv,bv->bk", self.visual[q], state.taste) / np.sqrt(self.visual_dim)
        price = state.price_sensitivity[:, None] * self.price_z[q]
        util = combined_utility(cfg, self.rel[q], vis, price)
        return np.where(self.valid[q], util, 0.0), vis, price

    def item_probabilities(self, state: ShopperBatch, order: np.ndarray, util: np.ndarray, vis: np.ndarray,
                           price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Attractiveness (after boredom) and purchase-given-click probability of each slot.

        Args:
            state: The shoppers.
            order: ``int64 (B, N)`` candidate positions (0..K-1) shown in slots 0..N-1.
            util, vis, price: ``(B, K)`` from :meth:`utilities`.

        Returns:
            ``(attractiveness (B, N), p_buy (B, N))``, 0 for empty slots (padded candidates).
        """
        cfg, q = self.config, state.query
        b = np.arange(len(q))[:, None]
        shown = self.valid[q[:, None], order]
        rel_s = self.rel[q[:, None], order]
        vis_s, price_s = vis[b, order], price[b, order]
        above = None
        if cfg.boredom > 0:
            n = order.shape[1]
            dup = self.dup[q[:, None, None], order[:, :, None], order[:, None, :]]
            above = (dup & np.tri(n, n, -1, dtype=bool)).sum(axis=2)
        attract = attractiveness(cfg, util[b, order], above)
        over = None
        if cfg.buy_over_budget > 0:
            over = np.maximum(0.0, self.log_over_ref[q[:, None], order] - state.willingness_to_pay[:, None])
        p_buy = purchase_probability(cfg, rel_s, vis_s, price_s, over)
        return np.where(shown, attract, 0.0), np.where(shown, p_buy, 0.0)

    # -- dynamics -------------------------------------------------------------------------------------
    def transition(self, state: ShopperBatch, order: np.ndarray, clicks: np.ndarray, purchases: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
        """Apply drift, fatigue, satisfaction and patience in place; returns ``bool (B,)`` left.

        Same rules as :meth:`DefaultShopper.transition`; rows whose shopper bought get a new intent.
        """
        cfg, q = self.config, state.query
        shown = self.valid[q[:, None], order]
        clicks = clicks & shown
        n_click = clicks.sum(axis=1)
        if cfg.drift > 0:
            vis = self.visual[q[:, None], order]  # (B, N, V)
            target = (vis * clicks[:, :, None]).sum(axis=1) / np.maximum(n_click, 1)[:, None]
            state.taste = np.where((n_click > 0)[:, None], drifted_taste(cfg, state.taste, target), state.taste)
        n_shown = shown.sum(axis=1)
        irrelevant = ((self.rel[q[:, None], order] < 0.5) & shown).sum(axis=1) / np.maximum(n_shown, 1)
        irrelevant = np.where(n_shown > 0, irrelevant, 1.0)
        state.patience = patience_after(cfg, state.patience, irrelevant, n_click == 0)
        bought = purchases.any(axis=1)
        left = (state.patience <= 0) | (bought & (rng.random(len(q)) >= cfg.p_continue_after_purchase))
        if bought.any():
            state.query = np.where(bought, self.sample_queries(state.segment, rng), state.query)
        return left

    def profile(self, state: ShopperBatch) -> np.ndarray:
        """``float32 (B, S + V + 1)``: segment one-hot, noisy taste, noisy price sensitivity."""
        n, v = len(state.segment), self.visual_dim
        out = np.zeros((n, len(SEGMENTS) + v + 1), dtype=np.float32)
        out[np.arange(n), state.segment] = 1.0
        out[:, len(SEGMENTS):-1] = state.taste + state.profile_noise[:, :-1]
        out[:, -1] = state.price_sensitivity + state.profile_noise[:, -1]
        return out


def _set_rows(dst: Any, src: Any, rows: np.ndarray) -> None:
    """``dst[rows] = src`` for every array field of a :class:`ShopperBatch`."""
    for name in ShopperBatch.__dataclass_fields__:
        getattr(dst, name)[rows] = getattr(src, name)


class ShopRankVectorEnv(VectorEnv):
    """``B`` ``ShopRank-v0`` sessions with the default shopper, stepped with array operations.

    Args:
        num_envs: ``B``, sessions stepped at once.
        config: Environment config (shared by all sessions).
        world: A pre-built world to share (built from ``config.world`` when ``None``).
        simulator: Must be ``None`` or a :class:`DefaultShopper` (custom shoppers cannot be batched).
        render_mode: Only ``None`` (vector envs do not render here).
        autoreset_mode: :attr:`AutoresetMode.NEXT_STEP` (default) or :attr:`AutoresetMode.SAME_STEP`.
        **_: Ignored (e.g. ``max_episode_steps`` that ``make_vec`` may pass; ``config.max_queries`` rules).

    Observation space: ``batch_space`` of ``ShopRank-v0``'s ``Dict`` (each key gets a leading ``B``).
    Action space: ``Box(-SCORE_BOUND, SCORE_BOUND, (B, K), float32)``; any finite scores are accepted, a wrong shape or a
    NaN/inf raises ``ValueError``.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, config: EnvConfig | None = None, world: ShopWorld | None = None,
                 simulator: DefaultShopper | None = None, render_mode: str | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, **_: Any) -> None:
        if int(num_envs) < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}.")
        if render_mode is not None:
            raise ConfigError(f"ShopRankVectorEnv does not render; render_mode must be None, got {render_mode!r}.")
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        if self.autoreset_mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ConfigError(f"autoreset_mode must be NEXT_STEP or SAME_STEP, got {self.autoreset_mode}.")
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.num_envs = int(num_envs)
        self.config = resolve_env_config(config)  # the one validation the single env shares
        self.world = world if world is not None else get_world(self.config.world)
        if self.config.personalize_query > 0:
            raise ConfigError("ShopRankVectorEnv retrieves per query text only (personalize_query=0); "
                             "use gymnasium.make_vec(..., vectorization_mode='sync') for personalised retrieval.")
        if self.config.reward.expected:
            raise ConfigError("ShopRankVectorEnv rewards sampled outcomes only (RewardSpec.expected=False); "
                             "use gymnasium.make_vec(..., vectorization_mode='sync') for expected rewards.")
        if simulator is None:
            if self.config.simulator:
                raise ValueError(
                    f"ShopRankVectorEnv batches the default shopper only, but config.simulator="
                    f"{self.config.simulator!r}; use gymnasium.make_vec(..., vectorization_mode='sync').")
            simulator = make_simulator(self.config, self.world)
        self.shopper = BatchedShopper(simulator, self.world, self.config.n_candidates)
        self.query_texts = self.shopper.texts
        k, n = self.config.n_candidates, self.config.slate_size
        self.single_observation_space = observation_space(self.config, self.world, simulator.profile_dim)
        self.single_action_space = spaces.Box(-SCORE_BOUND, SCORE_BOUND, shape=(k,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._discounts = 1.0 / np.log2(np.arange(2, n + 2))
        self._rows = np.arange(self.num_envs)
        self._state: ShopperBatch | None = None
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    # -- session bookkeeping --------------------------------------------------------------------------
    def _start(self, rows: np.ndarray) -> None:
        """Start new sessions in ``rows`` (bool ``(B,)``): fresh shoppers, zero counters and history."""
        n = int(rows.sum())
        if n == 0:
            return
        fresh = self.shopper.sample_shoppers(n, self.np_random)
        if self._state is None:
            self._state = fresh
            self._n_queries = np.zeros(self.num_envs, dtype=np.int64)
            self._totals = np.zeros((self.num_envs, 3))
            self._last_ctr = np.zeros(self.num_envs)
            self._history = np.full((self.num_envs, self.config.history_size), -1, dtype=np.int64)
            return
        _set_rows(self._state, fresh, rows)
        self._n_queries[rows] = 0
        self._totals[rows] = 0.0
        self._last_ctr[rows] = 0.0
        self._history[rows] = -1

    def _observation(self) -> dict[str, np.ndarray]:
        """The batched observation (fresh arrays) of the current state."""
        st, sh, cfg = self._state, self.shopper, self.config
        q = st.query
        hist_ok = self._history >= 0
        history = self.world.fused[np.where(hist_ok, self._history, 0)]
        history *= hist_ok[:, :, None]
        session = np.empty((self.num_envs, N_SESSION), dtype=np.float32)
        session[:, 0] = self._n_queries / cfg.max_queries
        session[:, 1] = self._totals[:, 0] / 10.0
        session[:, 2] = self._totals[:, 1] / 5.0
        session[:, 3] = self._last_ctr
        return {"query": sh.query_obs[q], "profile": sh.profile(st), "session": session, "history": history,
                "history_mask": hist_ok.astype(np.float32), "candidates": sh.cand_obs[q],
                "mask": sh.valid[q].astype(np.float32)}

    def _push_history(self, clicked_ids: np.ndarray) -> None:
        """Append clicked ids ``(B, N)`` (-1 = none, slate order) to the ``(B, H)`` history, keeping the
        newest ``H`` left-aligned, oldest first (what :class:`SessionCore` shows)."""
        h = self._history.shape[1]
        both = np.concatenate([self._history, clicked_ids], axis=1)
        ok = both >= 0
        rank = np.cumsum(ok, axis=1)  # 1-based rank of each valid entry
        count = rank[:, -1:]
        slot = rank - 1 - np.maximum(count - h, 0)
        keep = ok & (slot >= 0)
        out = np.full_like(self._history, -1)
        r, c = np.nonzero(keep)
        out[r, slot[r, c]] = both[r, c]
        self._history = out

    # -- gymnasium API --------------------------------------------------------------------------------
    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Start ``B`` sessions (or only those in ``options["reset_mask"]``, ``bool (B,)``).

        ``seed`` must be an ``int`` (one generator drives all sessions) or ``None``.
        """
        if isinstance(seed, (list, tuple)):
            raise ValueError("ShopRankVectorEnv draws all sessions from one generator: pass one int seed.")
        super().reset(seed=seed)
        rows = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            rows = np.asarray(options["reset_mask"], dtype=bool)
            if rows.shape != (self.num_envs,):
                raise ValueError(f"options['reset_mask'] must be bool ({self.num_envs},), got shape {rows.shape}.")
            if self._state is None:
                rows = np.ones(self.num_envs, dtype=bool)
        if self._state is None or rows.all():
            self._state = None
        self._start(rows)
        self._needs_reset[rows] = False
        q = self._state.query
        return self._observation(), {"query_index": q.copy(), "_query_index": rows.copy()}

    def _check_action(self, actions: Any) -> np.ndarray:
        actions = np.asarray(actions)
        shape = (self.num_envs, self.config.n_candidates)
        if actions.shape != shape:
            raise ValueError(f"actions must have shape {shape}, got {actions.shape}.")
        if not np.issubdtype(actions.dtype, np.number) or not np.all(np.isfinite(actions)):
            raise ValueError("actions contain NaN or infinite scores.")
        return actions

    def step(self, actions: np.ndarray):
        """Show the top-``N`` slate of every session and apply the shoppers' responses.

        Args:
            actions: ``float (B, K)`` candidate scores (retriever order).

        Returns:
            ``(obs, rewards (B,), terminated (B,), truncated (B,), info)`` (see the module docstring).
        """
        if self._state is None:
            raise RuntimeError("call reset() before step().")
        actions = self._check_action(actions)
        cfg, sh, st, rng = self.config, self.shopper, self._state, self.np_random
        n, b = cfg.slate_size, self._rows[:, None]
        q = st.query
        valid = sh.valid[q]
        keys = np.where(valid, -actions.astype(np.float64), np.inf)
        order = np.argsort(keys, axis=1, kind="stable")[:, :n]  # (B, N) candidate positions
        shown = valid[b, order]
        slate = np.where(shown, sh.ids[q[:, None], order], -1)

        util, vis, price = sh.utilities(st)
        attract, p_buy = sh.item_probabilities(st, order, util, vis, price)
        clicks = np.asarray(sh.click_model.sample(attract, rng), dtype=bool) & shown
        purchases = clicks & (rng.random(clicks.shape) < p_buy)

        n_clicks = clicks.sum(axis=1).astype(np.float64)
        n_buys = purchases.sum(axis=1).astype(np.float64)
        rw = cfg.reward
        prices = sh.price[q[:, None], order]
        position_rewards = rw.position_rewards(clicks, purchases, prices)
        revenue = np.where(purchases, prices, 0.0).sum(axis=1)
        reward = rw.click * n_clicks + rw.purchase * n_buys + rw.revenue * revenue

        valid_util = np.where(valid, util, np.inf)
        gains = np.where(valid, util - valid_util.min(axis=1, keepdims=True), 0.0)
        gains = np.where(valid.any(axis=1, keepdims=True), gains, 0.0)
        dcg = (np.where(shown, gains[b, order], 0.0) * self._discounts).sum(axis=1)
        ideal = -np.sort(-gains, axis=1)[:, :n] @ self._discounts
        ndcg = np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 1.0)

        left = sh.transition(st, order, clicks, purchases, rng)
        self._totals += np.stack([n_clicks, n_buys, revenue], axis=1)
        self._last_ctr = n_clicks / np.maximum(shown.sum(axis=1), 1)
        self._push_history(np.where(clicks, slate, -1))
        self._n_queries += 1
        terminated, truncated = episode_end(left, self._n_queries, cfg.max_queries)

        stepped = ~self._needs_reset
        info = {"clicks": n_clicks, "purchases": n_buys, "revenue": revenue, "ndcg": ndcg, "left": left.copy(),
                "clicked": clicks, "shown_ids": slate, "position_rewards": position_rewards}
        done = terminated | truncated
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            redo = self._needs_reset
            if redo.any():
                self._start(redo)
                reward = np.where(redo, 0.0, reward)
                terminated, truncated = terminated & stepped, truncated & stepped
            self._needs_reset = terminated | truncated
            obs = self._observation()
        else:  # SAME_STEP
            obs = self._observation()
            if done.any():
                info["final_obs"] = obs
                info["_final_obs"] = done.copy()
                self._start(done)
                obs = self._observation()
        info["query_index"] = self._state.query.copy()
        masks = {f"_{key}": stepped for key in ("clicks", "purchases", "revenue", "ndcg", "left", "clicked",
                                                "shown_ids", "position_rewards")}
        info.update(masks)
        info["_query_index"] = np.ones(self.num_envs, dtype=bool)
        return obs, reward.astype(np.float64), terminated, truncated, info

    # -- privileged -----------------------------------------------------------------------------------
    def privileged_utilities(self) -> np.ndarray:
        """``float (B, K)`` the shoppers' true utility of every candidate (oracle/metrics only)."""
        return self.shopper.utilities(self._state)[0]


def sb3_vec_env(num_envs: int = 4, config: EnvConfig | None = None, seed: int | None = None, **kwargs: Any):
    """A stable-baselines3 ``VecEnv`` backed by one :class:`ShopRankVectorEnv` (SAME_STEP autoreset).

    Drop-in for ``DummyVecEnv([make ShopRank-v0] * num_envs)`` in SB3 (``PPO(policy, sb3_vec_env(8, cfg))``)
    without the per-env Python loop: SB3's conventions are kept (``dones`` = terminated or truncated, the
    final observation in ``info["terminal_observation"]``, ``info["TimeLimit.truncated"]``, and the
    single env's per-step ``info`` keys incl. ``clicked_positions``). Building the ``infos`` list is the
    one per-session loop left (SB3's format is a list of dicts).
    """
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv as SB3VecEnv

    class ShopRankSB3VecEnv(SB3VecEnv):
        def __init__(self, env: ShopRankVectorEnv) -> None:
            self.env = env
            super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
            self._actions: np.ndarray | None = None
            self._first_seed = seed

        def reset(self):
            first = self._seeds[0] if self._seeds[0] is not None else self._first_seed
            self._first_seed = None
            obs, _ = self.env.reset(seed=first)
            self._reset_seeds()
            self._reset_options()
            return obs

        def step_async(self, actions: np.ndarray) -> None:
            self._actions = actions

        def step_wait(self):
            obs, reward, term, trunc, info = self.env.step(self._actions)
            done = term | trunc
            final = info.get("final_obs")
            infos = []
            for i in range(self.num_envs):
                row = {"clicks": float(info["clicks"][i]), "purchases": float(info["purchases"][i]),
                       "revenue": float(info["revenue"][i]), "ndcg": float(info["ndcg"][i]),
                       "left": bool(info["left"][i]), "shown_ids": info["shown_ids"][i],
                       "clicked_positions": np.flatnonzero(info["clicked"][i]),
                       "position_rewards": info["position_rewards"][i]}
                if done[i]:
                    row["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
                    row["terminal_observation"] = {k: v[i] for k, v in final.items()}
                infos.append(row)
            return obs, reward.astype(np.float32), done, infos

        def close(self) -> None:
            self.env.close()

        def get_attr(self, attr_name, indices=None):
            return [getattr(self.env, attr_name)] * len(list(self._get_indices(indices)))

        def set_attr(self, attr_name, value, indices=None) -> None:
            setattr(self.env, attr_name, value)

        def env_method(self, method_name, *method_args, indices=None, **method_kwargs):
            raise NotImplementedError("ShopRankSB3VecEnv batches all sessions in one env: no per-env methods.")

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * len(list(self._get_indices(indices)))

    return ShopRankSB3VecEnv(ShopRankVectorEnv(num_envs=num_envs, config=config,
                                               autoreset_mode=AutoresetMode.SAME_STEP, **kwargs))


def make_vector_env(num_envs: int = 1, config: EnvConfig | None = None, **kwargs: Any) -> ShopRankVectorEnv:
    """``vector_entry_point`` of ``ShopRank-v0`` / ``ShopRankStatic-v0`` (see :class:`ShopRankVectorEnv`)."""
    return ShopRankVectorEnv(num_envs=num_envs, config=config, **kwargs)


__all__ = ["BatchedShopper", "ShopperBatch", "ShopRankVectorEnv", "make_vector_env", "sb3_vec_env"]
_ = gym  # gymnasium is the API this module implements
