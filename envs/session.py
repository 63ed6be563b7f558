"""One shopping session as the single and sequential envs see it: the array core at ``B = 1``.

:class:`SessionCore` is :class:`~envs.core.EnvCore` with one session, plus per-session views (the
shopper's state, the query, the candidates) for the oracles and metrics that need them. A failure inside a
plug-in simulator is re-raised as :class:`SimulatorError` naming the method and what it returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from encoders.errors import ConfigError, NoExpectedResponseError, SimulatorError
from envs.config import EnvConfig, resolve_env_config
from encoders.registry import resolve
from envs.core import N_EXTRA, N_SESSION, SCORE_BOUND, EnvCore, SlateResult, episode_end, observation_space
from envs.world import ShopWorld, get_world
from simulators.items import ItemTable
from simulators.protocols import Query, UserSimulator
from simulators.shopper import DefaultShopper

__all__ = ["N_EXTRA", "N_SESSION", "SCORE_BOUND", "SessionCore", "SimulatorError", "SlateOutcome", "episode_end",
           "init_session_env", "make_simulator", "observation_space"]


def init_session_env(env: Any, config: EnvConfig | None, world: ShopWorld | None, simulator: UserSimulator | None,
                     render_mode: str | None) -> None:
    """The set-up both ShopRank envs share: config, render mode check, shared world and session core.

    ``config`` may also be a nested dict of :class:`EnvConfig` fields (as ``config_to_dict`` writes it)."""
    env.config = resolve_env_config(config)  # the one validation the vector env shares
    if render_mode is not None and render_mode not in env.metadata["render_modes"]:
        raise ConfigError(f"render_mode must be one of {env.metadata['render_modes']} or None, got {render_mode!r}.")
    env.render_mode = render_mode
    env.world = world if world is not None else get_world(env.config.world)
    core_type = getattr(env, "session_core", SessionCore)  # an env class may name a SessionCore subclass
    env.core = core_type(env.config, env.world, simulator or make_simulator(env.config, env.world))


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


@dataclass
class SlateOutcome:
    """What one shown slate produced (row 0 of a :class:`~envs.core.SlateResult`)."""

    reward: float
    parts: dict[str, float]
    clicks: np.ndarray
    purchases: np.ndarray
    slate: np.ndarray
    left: bool
    ndcg: float
    position_rewards: np.ndarray
    """``float (N,)`` each slot's share of ``reward`` (see :meth:`RewardSpec.slate_rewards`)."""
    response: Any = None
    """The simulator's ``Response`` when it made one (plug-ins), else ``None``."""

    @classmethod
    def of(cls, result: SlateResult) -> "SlateOutcome":
        clicks, purchases, revenue = result.parts[0].tolist()
        return cls(reward=result.reward.item(0), parts={"clicks": clicks, "purchases": purchases, "revenue": revenue},
                   clicks=result.clicks[0], purchases=result.purchases[0], slate=result.slate[0],
                   left=bool(result.left.item(0)), ndcg=result.ndcg.item(0), position_rewards=result.position_rewards[0],
                   response=result.responses[0] if result.responses else None)


class SessionCore:
    """One session: :class:`~envs.core.EnvCore` at ``B = 1`` with per-session views.

    Args:
        config: Environment config.
        world: Shared world.
        simulator: The shopper population (any ``UserSimulator``).

    Attributes:
        core: The array core (``B = 1``); layout: its :class:`~envs.layout.FeatureLayout`.
        sim: The ``UserSimulator``; n_queries: slates shown this session.
    """

    env_core: type = EnvCore
    """The array core class (a subclass adds rules, e.g. ``ShopRank-v1``'s returns)."""

    def __init__(self, config: EnvConfig, world: ShopWorld, simulator: UserSimulator) -> None:
        self.config, self.world, self.sim = config, world, simulator
        self.core = self.env_core(config, world, simulator, 1)
        self.batch = self.core.sim
        self.layout = self.core.layout
        self.profile_dim = self.batch.profile_dim
        self._started = False
        self._session = np.zeros(1, dtype=np.int64)  # the one session's index, for the core's (n,) arguments
        self._session.flags.writeable = False

    # -- session --------------------------------------------------------------------------------------
    def start(self, rng: np.random.Generator) -> None:
        """Sample a shopper and their first query."""
        self.core.start(None, rng)
        self._started = True

    def next_query(self, rng: np.random.Generator) -> None:
        """Ask the shopper for a query and retrieve its candidates."""
        self.core.next_queries(self._session, rng)

    def observation(self) -> dict[str, np.ndarray]:
        """The current observation (fresh arrays; see :func:`~envs.core.observation_space`)."""
        return self.core.observation(0)

    def show(self, positions: np.ndarray, rng: np.random.Generator) -> SlateOutcome:
        """Show the candidates at ``positions`` (``int64 (N,)`` candidate positions, -1 = empty slot)."""
        return SlateOutcome.of(self.core.show(positions[None, :], rng))

    # -- per-session views ----------------------------------------------------------------------------
    @property
    def n_queries(self) -> int:
        return int(self.core.sessions.n_queries[0])

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has run."""
        return self._started

    @property
    def query_text(self) -> str:
        """The current query's text."""
        return self.core.table.text(int(self.core.sessions.query[0]))

    @property
    def query(self) -> Query | None:
        """The current ``Query`` (``None`` before the first :meth:`start`)."""
        if not self._started:
            return None
        return self.batch.query_of(self.core.sessions.shopper, self.core.sessions.query, 0)

    @property
    def state(self) -> Any:
        """The shopper's hidden state as the ``UserSimulator`` sees it (privileged)."""
        return self.batch.state_of(self.core.sessions.shopper, 0)

    @property
    def candidates(self) -> np.ndarray:
        """``int64 (K,)`` catalog rows of the current candidates, ``-1`` padded."""
        if not self._started:
            return np.full(self.config.n_candidates, -1, dtype=np.int64)
        return self.core.candidates[0]

    @property
    def privileged(self) -> bool:
        return self.batch.privileged

    def candidate_values(self, observable: bool = False) -> np.ndarray:
        """``float (K,)`` expected immediate reward of each candidate shown alone in the top slot (privileged).

        ``-inf`` for padded candidates. Used by the myopic oracles; needs ``expected_response``.

        Args:
            observable: Value them for the shopper the simulator's ``observable_state(state)`` estimates
                from the observation alone (the ``profile_oracle``), not for the true hidden state.
        """
        if not self.privileged:
            raise NoExpectedResponseError(f"{type(self.sim).__name__} has no expected_response: no oracle possible.")
        state = self.state
        if observable:
            estimate = getattr(self.sim, "observable_state", None)
            if not callable(estimate):
                raise SimulatorError(f"{type(self.sim).__name__} has no observable_state(state): "
                                     "no profile oracle possible.")
            try:
                state = estimate(state)
            except Exception as exc:
                raise SimulatorError(f"{type(self.sim).__name__}.observable_state raised {exc!r}") from exc
        cfg, query = self.config, self.query
        values = np.full(cfg.n_candidates, -np.inf)
        empty = np.full(cfg.slate_size, -1, dtype=np.int64)
        prices = self.world.items.prices
        for i, item in enumerate(self.candidates):
            if item < 0:
                continue
            slate = empty.copy()
            slate[0] = item
            exp = self.sim.expected_response(state, query, slate)
            values[i] = (cfg.reward.click * exp.click_prob[0] + cfg.reward.purchase * exp.purchase_prob[0]
                         + cfg.reward.revenue * exp.purchase_prob[0] * prices[item])
        return values

    def candidate_utilities(self) -> np.ndarray | None:
        """``float (K,)`` true utility of each candidate (privileged), or ``None`` without it."""
        util = self.batch.utilities(self.core.sessions.shopper, self.core.sessions.query, self.core.candidates)
        return None if util is None else util[0]
