"""``ShopRankSeq-v0``: build the slate one slot at a time (``Discrete(K)`` with action masks)."""

from __future__ import annotations

import weakref
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.config import EnvConfig
from envs.core import episode_end, observation_space
from envs.session import init_session_env
from envs.world import ShopWorld
from simulators.protocols import UserSimulator


class SlotActionSpace(spaces.Discrete):
    """``Discrete(K)`` whose :meth:`sample` without a mask draws only valid actions of its env.

    ``space.sample()`` uses ``env.action_masks()``, so random agents (and the env checkers, which step
    with ``action_space.sample()``) never pick a placed or padded candidate. An explicit ``mask`` or
    ``probability`` wins. The link to the env is a weak reference and is not pickled (an unpickled or
    copied space samples from all ``K`` actions until an env binds it again).
    """

    def __init__(self, n: int, env: "ShopRankSeqEnv | None" = None) -> None:
        super().__init__(n)
        self._env = weakref.ref(env) if env is not None else None

    def bind(self, env: "ShopRankSeqEnv") -> None:
        """Sample from ``env``'s current action mask from now on."""
        self._env = weakref.ref(env)

    def sample(self, mask: np.ndarray | None = None, probability: np.ndarray | None = None) -> np.int64:
        env = self._env() if self._env is not None else None
        if mask is None and probability is None and env is not None and env.core.started:
            mask = env.action_masks().astype(np.int8)
        return super().sample(mask=mask, probability=probability)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_env"] = None
        return state


class ShopRankSeqEnv(gym.Env):
    """Rerank e-commerce search results slot by slot for a simulated shopper.

    ## Description
    The same shopping session as ``ShopRank-v0`` (one episode = one sampled shopper's queries; the
    retriever returns ``K`` candidates per query; the shopper responds to a slate of ``N``), but the agent
    builds each slate one position at a time: step ``n`` of a query picks the candidate for slot ``n``
    (top first). Once the slate is full, the shopper examines it, clicks and buys, their hidden state
    changes, and the next query's candidates arrive (or the session ends). Per-slot decisions let a policy
    condition each choice on what it has already placed (e.g. to avoid near-duplicates, which bore the
    shopper), and suit sb3-contrib's ``MaskablePPO``.

    ## Action Space
    ``Discrete(K)``: the index, in the retriever's order, of the candidate to put in the next slot.
    Candidates already placed in this slate and padded candidates (fewer than ``K`` results) are invalid;
    :meth:`action_masks` returns the valid ones (``bool (K,)``, on the env itself, so it works through
    ``DummyVecEnv`` / ``SubprocVecEnv`` and ``MaskablePPO``). An invalid or out-of-range action raises
    ``ValueError``. The space is a :class:`SlotActionSpace`: ``env.action_space.sample()`` draws only
    valid actions (it reads ``action_masks()``). When a query has fewer than ``N`` valid candidates, the slate is shown (padded with
    empty slots) as soon as every valid candidate is placed; in the degenerate case of no candidate at
    all, only action 0 is valid and it shows the empty slate.

    ## Observation Space
    ``ShopRank-v0``'s ``Dict`` (``query``, ``profile``, ``session``, ``history``, ``history_mask``,
    ``candidates (K, F + 4)``, ``mask (K,)``) plus:

    | key | shape | content |
    |-----|-------|---------|
    | placed | (K,) | 1 for candidates already placed in the slate being built |
    | slot | (N,) | one-hot of the slot the next action fills |

    ## Rewards
    0 for the steps that fill slots ``0 .. N-2``; the step that completes the slate gets ``RewardSpec``'s
    ``click * clicks + purchase * purchases + revenue * revenue`` of the shown slate, and its ``info``
    carries ``clicks``, ``purchases``, ``revenue``, ``clicked_positions``, ``shown_ids``, ``ndcg``,
    ``left`` and ``position_rewards`` (``float (N,)``, slot ``n``'s share of the reward) as in ``ShopRank-v0``;
    an agent can credit slot ``n``'s decision with ``position_rewards[n]`` (see ``agents.policies.MaskedDQN``).
    Every ``info`` has ``slot`` (the slot just filled), ``slate_done`` and ``query``.

    ## Starting State
    A shopper sampled from the simulator's population, their first query's candidates, an empty slate.

    ## Episode End
    ``terminated``: the shopper left (patience ran out, or satisfied after a purchase); only on a step
    that completes a slate. ``truncated``: the query budget ``max_queries`` was reached (also only then).
    An episode therefore lasts at most ``max_queries * N`` steps.

    ## Arguments
    ``gymnasium.make("ShopRankSeq-v0", config=EnvConfig(...), world=None, simulator=None,
    render_mode=None)``; the arguments mean what they mean for ``ShopRank-v0``.
    ``ShopRankSeqStatic-v0`` is the same env with ``max_queries=1`` (one slate per episode).

    ## Version History
    * v0: initial release.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, config: EnvConfig | None = None, world: ShopWorld | None = None,
                 simulator: UserSimulator | None = None, render_mode: str | None = None) -> None:
        init_session_env(self, config, world, simulator, render_mode)
        k, n = self.config.n_candidates, self.config.slate_size
        self.action_space = SlotActionSpace(k, self)
        self.layout = self.core.layout
        base = observation_space(self.layout)
        self.observation_space = spaces.Dict({
            **base.spaces,
            "placed": spaces.Box(0.0, 1.0, shape=(k,), dtype=np.float32),
            "slot": spaces.Box(0.0, 1.0, shape=(n,), dtype=np.float32),
        })
        self._order: list[int] = []
        self._values: tuple[bool, np.ndarray] | None = None
        self._last: dict[str, Any] | None = None
        self._ended = False

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.action_space.bind(self)

    # -- slate under construction ---------------------------------------------------------------------
    @property
    def slot(self) -> int:
        """Index of the slot the next action fills (0 = top)."""
        return len(self._order)

    def _n_valid(self) -> int:
        return int((self.core.candidates >= 0).sum())

    def _slate_target(self) -> int:
        """Slots to fill before the slate is shown: ``min(N, valid candidates)``, at least 1."""
        return max(1, min(self.config.slate_size, self._n_valid()))

    def action_masks(self) -> np.ndarray:
        """``bool (K,)``: True for candidates that may fill the next slot (valid and not yet placed)."""
        mask = self.core.candidates >= 0
        if not mask.any():
            mask = np.zeros(self.config.n_candidates, dtype=bool)
            mask[0] = True  # no candidate at all: action 0 shows the empty slate
            return mask
        mask[self._order] = False
        return mask

    def _observation(self) -> dict[str, np.ndarray]:
        obs = self.core.observation()
        placed = np.zeros(self.config.n_candidates, dtype=np.float32)
        placed[self._order] = 1.0
        slot = np.zeros(self.config.slate_size, dtype=np.float32)
        slot[min(self.slot, self.config.slate_size - 1)] = 1.0
        obs["placed"] = placed
        obs["slot"] = slot
        return obs

    def _new_query_state(self) -> None:
        self._order = []
        self._values = None

    # -- gym API --------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.core.start(self.np_random)
        self._new_query_state()
        self._last = None
        self._ended = False
        return self._observation(), {"query": self.core.query_text}

    def _check_action(self, action: Any) -> int:
        k = self.config.n_candidates
        arr = np.asarray(action)
        if arr.size != 1 or not (np.issubdtype(arr.dtype, np.integer) or
                                 (np.issubdtype(arr.dtype, np.floating) and float(arr.flat[0]).is_integer())):
            raise ValueError(f"action must be one integer candidate index in [0, {k}), got {action!r}.")
        index = int(arr.flat[0])
        if not 0 <= index < k:
            raise ValueError(f"action {index} is out of range: candidate indices are 0 .. {k - 1}.")
        if not self.action_masks()[index]:
            why = "was already placed in this slate" if index in self._order else "is a padded (empty) candidate"
            raise ValueError(f"action {index} is masked: candidate {index} {why}; "
                             "choose an index where env.action_masks() is True.")
        return index

    def step(self, action: Any):
        if not self.core.started:
            raise RuntimeError("call reset() before step().")
        if self._ended:
            raise RuntimeError("the episode has ended (terminated or truncated); call reset() before step().")
        index = self._check_action(action)
        filled = self.slot
        if self._n_valid() > 0:
            self._order.append(index)
        info: dict[str, Any] = {"slot": filled, "query": self.core.query_text}
        if self._n_valid() > 0 and len(self._order) < self._slate_target():
            info["slate_done"] = False
            return self._observation(), 0.0, False, False, info

        positions = np.full(self.config.slate_size, -1, dtype=np.int64)
        positions[: len(self._order)] = self._order
        outcome = self.core.show(positions, self.np_random)
        terminated, truncated = map(bool, episode_end(outcome.left, self.core.n_queries, self.config.max_queries))
        info.update({**outcome.parts, "slate_done": True, "clicked_positions": np.flatnonzero(outcome.clicks),
                     "purchased_positions": np.flatnonzero(outcome.purchases),
                     "shown_ids": outcome.slate, "ndcg": outcome.ndcg, "left": outcome.left,
                     "position_rewards": outcome.position_rewards})
        self._last = {"query": self.core.query_text, "outcome": outcome, "positions": positions}
        self._ended = terminated or truncated
        if not self._ended:
            self.core.next_query(self.np_random)
            self._new_query_state()
            info["next_query"] = self.core.query_text
        return self._observation(), outcome.reward, terminated, truncated, info

    def privileged_scores(self, observable: bool = False) -> np.ndarray:
        """Expected immediate reward of each candidate at the top slot (``float (K,)``); oracles only.

        Candidates already placed (and padded ones) score ``-inf``, so ``argmax`` is always a valid action.
        ``observable=True``: for the shopper estimated from the observation alone (``profile_oracle``).
        """
        if self._values is None or self._values[0] != observable:
            self._values = (observable, self.core.candidate_values(observable))
        values = self._values[1].copy()
        values[self._order] = -np.inf
        return values

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "rgb_array":
            from envs.render import render_env

            return render_env(self)
        if self.render_mode != "ansi":
            return None
        catalog = self.world.catalog
        target = self._slate_target()
        progress = f"building slot {self.slot + 1}/{target}" if self.slot < target else "slate shown"
        lines = [f"query: {self.core.query_text!r}   {progress}"]
        for pos, index in enumerate(self._order):
            item = self.core.candidates[index]
            lines.append(f"{pos + 1:>3}. [{index:>2}] {catalog.titles[item][:60]:<60} {catalog.prices[item]:>8.2f}")
        if self._last is not None:
            outcome = self._last["outcome"]
            lines.append(f"last slate: query {self._last['query']!r}, reward {outcome.reward:.2f}, "
                         f"{int(outcome.clicks.sum())} clicks, {int(outcome.purchases.sum())} purchases")
        return "\n".join(lines) + "\n"
