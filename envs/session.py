"""One shopping session as both environments see it: observation building, slate response, metrics.

:class:`SessionCore` owns the simulator calls so that the per-query env (``ShopRank-v0``) and the
per-slot env (``ShopRankSeq-v0``) share one implementation of the rules. A failure inside a plug-in
simulator is re-raised as :class:`SimulatorError` naming the method and what it returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from encoders.errors import ConfigError, SimulatorError
from envs.config import EnvConfig, resolve_env_config
from encoders.registry import resolve
from envs.world import ShopWorld, get_world
from simulators.items import ItemTable
from simulators.protocols import PrivilegedSimulator, Query, Response, UserSimulator
from simulators.shopper import DefaultShopper

N_EXTRA = 4
"""Per-candidate numeric features after the fused vector: retriever score, retriever rank score
(``1 - rank / K``), price z-score, has-photo flag."""
SCORE_BOUND = 10.0
"""Bound of the ``Box`` score actions; only the order of the scores matters (see ``ShopRankEnv``)."""
N_SESSION = 4
"""Session features: queries so far / budget, clicks, purchases so far (scaled), last-slate CTR."""


def episode_end(left, n_queries, max_queries: int):
    """Gymnasium's ``(terminated, truncated)`` after a slate, for scalars or ``(B,)`` arrays.

    ``terminated``: the shopper left, or the episode is a one-query bandit (``max_queries == 1``: the
    query is the whole task, nothing follows it, so there is nothing to bootstrap). ``truncated``: the
    query budget of a multi-query session ran out while the shopper was still there.
    """
    terminated = np.logical_or(left, max_queries == 1)
    truncated = np.logical_and(~terminated, np.asarray(n_queries) >= max_queries)
    return terminated, truncated


def init_session_env(env: Any, config: EnvConfig | None, world: ShopWorld | None, simulator: UserSimulator | None,
                     render_mode: str | None) -> None:
    """The set-up both ShopRank envs share: config, render mode check, shared world and session core.

    ``config`` may also be a nested dict of :class:`EnvConfig` fields (as ``config_to_dict`` writes it)."""
    env.config = resolve_env_config(config)  # the one validation the vector env shares
    if render_mode is not None and render_mode not in env.metadata["render_modes"]:
        raise ConfigError(f"render_mode must be one of {env.metadata['render_modes']} or None, got {render_mode!r}.")
    env.render_mode = render_mode
    env.world = world if world is not None else get_world(env.config.world)
    env.core = SessionCore(env.config, env.world, simulator or make_simulator(env.config, env.world))


def default_simulator(items: ItemTable, n_slots: int, config: EnvConfig) -> UserSimulator:
    return DefaultShopper(items, config.shopper, n_slots=n_slots)


def make_simulator(config: EnvConfig, world: ShopWorld) -> UserSimulator:
    """The default shopper, or ``factory(items, n_slots)`` imported from ``config.simulator``."""
    if not config.simulator:
        return default_simulator(world.items, config.slate_size, config)
    factory = resolve(config.simulator, {}, "simulator")
    try:
        sim = factory(world.items, config.slate_size)
    except Exception as exc:
        raise SimulatorError(f"simulator factory '{config.simulator}' failed: {exc!r}") from exc
    missing = [m for m in ("reset", "profile", "next_query", "respond", "transition", "profile_dim")
               if not hasattr(sim, m)]
    if missing:
        raise SimulatorError(f"simulator '{config.simulator}' does not satisfy UserSimulator: missing {missing}.")
    return sim


def observation_space(config: EnvConfig, world: ShopWorld, profile_dim: int) -> spaces.Dict:
    """The flat ``Dict`` observation space shared by the environments (fixed shapes, float32)."""
    k, h, f = config.n_candidates, config.history_size, world.fused.shape[1]
    box = lambda *shape: spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32)  # noqa: E731
    return spaces.Dict({
        "query": box(world.query_basis.shape[1]),
        "profile": box(profile_dim),
        "session": box(N_SESSION),
        "history": box(h, f),
        "history_mask": spaces.Box(0.0, 1.0, shape=(h,), dtype=np.float32),
        "candidates": box(k, f + N_EXTRA),
        "mask": spaces.Box(0.0, 1.0, shape=(k,), dtype=np.float32),
    })


@dataclass
class SlateOutcome:
    """What one shown slate produced."""

    reward: float
    parts: dict[str, float]
    response: Response
    slate: np.ndarray
    left: bool
    ndcg: float
    position_rewards: np.ndarray
    """``float (N,)`` each slot's share of ``reward`` (see :meth:`RewardSpec.position_rewards`)."""


class SessionCore:
    """State and rules of one session; the envs add their action handling on top.

    Args:
        config: Environment config.
        world: Shared world.
        simulator: The shopper population.
    """

    def __init__(self, config: EnvConfig, world: ShopWorld, simulator: UserSimulator) -> None:
        self.config = config
        self.world = world
        self.sim = simulator
        self.profile_dim = int(simulator.profile_dim)
        k = config.n_candidates
        self._item_static = np.column_stack([world.items.price_z, world.catalog.has_image.astype(np.float32)])
        self._rank_feature = (1.0 - np.arange(k) / k).astype(np.float32)
        self.state: Any = None
        self.query: Query | None = None
        self.candidates = np.full(k, -1, dtype=np.int64)
        self.n_queries = 0
        self.totals = {"clicks": 0.0, "purchases": 0.0, "revenue": 0.0}
        self.last_ctr = 0.0
        self.history: list[int] = []
        self._obs: dict[str, np.ndarray] = {}
        self._privileged = isinstance(simulator, PrivilegedSimulator)  # protocol isinstance is slow: once
        # DefaultShopper's utility does not depend on the rest of the slate: one call scores all K
        # candidates (a subclass that overrides the probabilities keeps the generic per-chunk path).
        self._fast_utility = (
            getattr(type(simulator), "expected_response", None) is DefaultShopper.expected_response
            and getattr(type(simulator), "item_probabilities", None) is DefaultShopper.item_probabilities
            and getattr(type(simulator), "utility", None) is DefaultShopper.utility)
        self._discounts = 1.0 / np.log2(np.arange(2, config.slate_size + 2))
        known = getattr(simulator, "known_queries", None)
        if callable(known):
            world.prewarm(list(known()), k)

    # -- plug-in guard --------------------------------------------------------------------------------
    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.sim, method)(*args)
        except SimulatorError:
            raise
        except Exception as exc:
            raise SimulatorError(f"{type(self.sim).__name__}.{method} raised {exc!r}") from exc

    # -- session --------------------------------------------------------------------------------------
    def start(self, rng: np.random.Generator) -> None:
        """Sample a shopper and their first query."""
        self.state = self._call("reset", rng)
        self.n_queries = 0
        self.totals = {"clicks": 0.0, "purchases": 0.0, "revenue": 0.0}
        self.last_ctr = 0.0
        self.history = []
        self.next_query(rng)

    def next_query(self, rng: np.random.Generator) -> None:
        """Ask the shopper for a query and retrieve its candidates."""
        query = self._call("next_query", self.state, rng)
        if not isinstance(query, Query) or not isinstance(query.text, str):
            raise SimulatorError(
                f"{type(self.sim).__name__}.next_query must return simulators.Query(text=str, ...), got {query!r}")
        self.query = query
        ids, scores, qobs = self.world.personalized_search(query.text, self.history, self.config.personalize_query,
                                                           self.config.n_candidates)
        self.candidates = ids
        self._build_obs(scores, qobs)

    def _build_obs(self, scores: np.ndarray, qobs: np.ndarray) -> None:
        cfg, world = self.config, self.world
        k, h = cfg.n_candidates, cfg.history_size
        valid = self.candidates >= 0
        rows = np.where(valid, self.candidates, 0)
        cand = np.zeros((k, world.fused.shape[1] + N_EXTRA), dtype=np.float32)
        cand[:, : world.fused.shape[1]] = world.fused[rows]
        cand[:, -4] = np.where(valid, scores, 0.0)
        cand[:, -3] = self._rank_feature
        cand[:, -2:] = self._item_static[rows]
        cand[~valid] = 0.0
        profile = np.asarray(self._call("profile", self.state), dtype=np.float32)
        if profile.shape != (self.profile_dim,) or not np.all(np.isfinite(profile)):
            raise SimulatorError(
                f"{type(self.sim).__name__}.profile must return finite float32 ({self.profile_dim},), "
                f"got shape {profile.shape}")
        history = np.zeros((h, world.fused.shape[1]), dtype=np.float32)
        hmask = np.zeros(h, dtype=np.float32)
        recent = self.history[-h:]
        if recent:
            history[: len(recent)] = world.fused[recent]
            hmask[: len(recent)] = 1.0
        session = np.array([self.n_queries / cfg.max_queries, self.totals["clicks"] / 10.0,
                            self.totals["purchases"] / 5.0, self.last_ctr], dtype=np.float32)
        self._obs = {"query": qobs.astype(np.float32), "profile": profile, "session": session,
                     "history": history, "history_mask": hmask, "candidates": cand,
                     "mask": valid.astype(np.float32)}

    def observation(self) -> dict[str, np.ndarray]:
        """Copy of the current observation (see :func:`observation_space`)."""
        return {key: value.copy() for key, value in self._obs.items()}

    def show(self, slate: np.ndarray, rng: np.random.Generator) -> SlateOutcome:
        """Show ``slate`` (``int64 (N,)`` catalog rows, -1 = empty) and apply the shopper's response."""
        cfg = self.config
        response = self._call("respond", self.state, self.query, slate, rng)
        n = len(slate)
        for name in ("clicks", "purchases"):
            value = np.asarray(getattr(response, name, None))
            if value.shape != (n,) or value.dtype != bool:
                raise SimulatorError(
                    f"{type(self.sim).__name__}.respond must return Response.{name} as bool ({n},), "
                    f"got {value.dtype} {value.shape}")
        if np.any(response.purchases & ~response.clicks) or np.any(response.clicks & (slate < 0)):
            raise SimulatorError(f"{type(self.sim).__name__}.respond: purchases must be clicks, "
                                 "and empty slots (-1) cannot be clicked")
        prices = self.world.items.prices[np.where(slate >= 0, slate, 0)]
        parts = cfg.reward.parts(response.clicks, response.purchases, prices)
        if cfg.reward.expected:
            click_prob, purchase_prob = self._expected_probs(slate)
            position_rewards = cfg.reward.position_rewards(click_prob, purchase_prob, prices)
            reward = cfg.reward.total(cfg.reward.expected_parts(click_prob, purchase_prob, prices))
        else:
            position_rewards = cfg.reward.position_rewards(response.clicks, response.purchases, prices)
            reward = cfg.reward.total(parts)
        ndcg = self.ndcg(slate)
        result = self._call("transition", self.state, self.query, slate, response, rng)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise SimulatorError(f"{type(self.sim).__name__}.transition must return (new_state, left: bool), "
                                 f"got {result!r:.200}")
        self.state, left = result
        for key in self.totals:
            self.totals[key] += parts[key]
        shown = max(int((slate >= 0).sum()), 1)
        self.last_ctr = float(response.clicks.sum()) / shown
        self.history.extend(int(i) for i in slate[response.clicks])
        self.history = self.history[-cfg.history_size:]
        self.n_queries += 1
        left = bool(left) or bool(getattr(response, "abandoned", False))
        return SlateOutcome(reward=reward, parts=parts, response=response, slate=slate, left=left, ndcg=ndcg,
                            position_rewards=position_rewards)

    def _expected_probs(self, slate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(click_prob (N,), purchase_prob (N,))`` of ``slate`` under the shopper's true state."""
        if not self.privileged:
            raise SimulatorError(f"RewardSpec(expected=True) needs a simulator with expected_response; "
                                 f"{type(self.sim).__name__} has none.")
        exp = self.sim.expected_response(self.state, self.query, slate)
        return np.asarray(exp.click_prob), np.asarray(exp.purchase_prob)

    # -- privileged truth -----------------------------------------------------------------------------
    @property
    def privileged(self) -> bool:
        return self._privileged

    def candidate_values(self, observable: bool = False) -> np.ndarray:
        """``float (K,)`` expected immediate reward of each candidate shown alone in the top slot (privileged).

        ``-inf`` for padded candidates. Used by the myopic oracles; needs ``expected_response``.

        Args:
            observable: Value them for the shopper the simulator's ``observable_state(state)`` estimates
                from the observation alone (the ``profile_oracle``), not for the true hidden state.
        """
        if not self.privileged:
            raise SimulatorError(f"{type(self.sim).__name__} has no expected_response: no oracle possible.")
        state = self.state
        if observable:
            estimate = getattr(self.sim, "observable_state", None)
            if not callable(estimate):
                raise SimulatorError(f"{type(self.sim).__name__} has no observable_state(state): "
                                     "no profile oracle possible.")
            state = self._call("observable_state", self.state)
        cfg = self.config
        values = np.full(cfg.n_candidates, -np.inf)
        empty = np.full(cfg.slate_size, -1, dtype=np.int64)
        prices = self.world.items.prices
        for i, item in enumerate(self.candidates):
            if item < 0:
                continue
            slate = empty.copy()
            slate[0] = item
            exp = self.sim.expected_response(state, self.query, slate)
            values[i] = (cfg.reward.click * exp.click_prob[0] + cfg.reward.purchase * exp.purchase_prob[0]
                         + cfg.reward.revenue * exp.purchase_prob[0] * prices[item])
        return values

    def candidate_utilities(self) -> np.ndarray | None:
        """``float (K,)`` true utility of each candidate (privileged), or ``None`` without it."""
        if not self.privileged:
            return None
        if self._fast_utility:
            return np.asarray(self.sim.utility(self.state, self.query.intent, self.candidates), dtype=float)
        n = self.config.slate_size
        chunks = []
        for start in range(0, len(self.candidates), n):
            chunk = np.full(n, -1, dtype=np.int64)
            part = self.candidates[start:start + n]
            chunk[: len(part)] = part
            utility = np.asarray(self.sim.expected_response(self.state, self.query, chunk).utility, dtype=float)
            if len(utility) == 0:
                return None
            chunks.append(utility[: len(part)])
        return np.concatenate(chunks)

    def ndcg(self, slate: np.ndarray) -> float:
        """NDCG@N of ``slate`` against the shopper's true utilities of the K candidates (nan without truth).

        Gains are utilities shifted to be non-negative over the candidates (``u - min u``).
        """
        util = self.candidate_utilities()
        if util is None:
            return float("nan")
        valid = self.candidates >= 0
        gains = np.where(valid, util - util[valid].min(), 0.0)
        n = len(slate)
        discounts = self._discounts if n == len(self._discounts) else 1.0 / np.log2(np.arange(2, n + 2))
        # gain of each slate item: its candidate's gain (the last one if an id repeats), 0 if absent/empty
        match = (np.asarray(slate)[:, None] == self.candidates[None, :]) & (np.asarray(slate) >= 0)[:, None]
        last = len(gains) - 1 - np.argmax(match[:, ::-1], axis=1)
        slate_gains = np.where(match.any(axis=1), gains[last], 0.0)
        dcg = float(slate_gains @ discounts)
        ideal = float(np.sort(gains)[::-1][:n] @ discounts[: min(n, len(gains))])
        return float(dcg / ideal) if ideal > 0 else 1.0
