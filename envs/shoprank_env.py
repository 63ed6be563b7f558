"""``ShopRank-v0``: rerank the retriever's candidates, one step per query of a shopping session."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.config import EnvConfig
from envs.core import SCORE_BOUND, episode_end, observation_space
from envs.session import init_session_env
from envs.world import ShopWorld
from simulators.protocols import UserSimulator


class ShopRankEnv(gym.Env):
    """Rerank e-commerce search results for a simulated shopper.

    ## Description
    One episode is one shopping session of one sampled shopper. Each step the shopper types a query,
    a vector-index retriever returns ``K`` candidate products (multimodal fused vectors), the agent scores
    them, and the top ``N`` by score are shown. The shopper examines, clicks and buys; their hidden state
    (intent, visual taste, patience) changes, and they may leave. The retriever sees only the query text,
    while the shopper also cares about the look of the product (photo) and its price: a reranker that
    reads the photo features and the shopper's profile can beat the retriever's order.

    ## Action Space
    ``Box(-SCORE_BOUND, SCORE_BOUND, (K,), float32)`` with ``SCORE_BOUND = 10``: one score per candidate,
    in the retriever's order. The slate is the ``N`` valid candidates with the highest scores (ties keep
    the retriever's order). Any finite values are accepted (only their order matters); a wrong shape or a
    NaN/inf raises ``ValueError``. The bound is wide on purpose: a Gaussian policy's samples must not be
    clipped into ties (with ``Box(-1, 1)``, a clipped top score ties with every other clipped one and
    the learning signal between them is lost).

    ## Observation Space
    ``Dict`` of float32 arrays with fixed shapes (``F`` = fused width, ``H`` = history size):

    | key | shape | content |
    |-----|-------|---------|
    | query | (Q,) | query text vector, projected |
    | profile | (P,) | observable shopper profile: segment one-hot, noisy taste, noisy price sensitivity |
    | session | (4,) | queries so far / budget, clicks / 10, purchases / 5, last slate's CTR |
    | history | (H, F) | fused vectors of the shopper's last clicked products |
    | history_mask | (H,) | 1 where ``history`` holds a product |
    | candidates | (K, F + 4) | fused vector, retriever score, ``1 - rank/K``, price z-score, has-photo |
    | mask | (K,) | 1 for a real candidate, 0 for padding (fewer than K results) |

    Columns are named by ``env.unwrapped.layout`` (:class:`~envs.layout.FeatureLayout`):
    ``obs["candidates"][:, layout.column("retriever_rank")]``, ``layout.columns("fused")``,
    ``obs["session"][layout.session_column("clicks")]``; look features up by name, never by position.

    Constant inputs of ``ShopRankStatic-v0`` (one query per episode): ``session``, ``history`` and
    ``history_mask`` are zeros in every observation an agent acts on (no earlier query in the episode); on
    the built-in catalog ``mask`` is all ones and the candidates' has-photo column is 1 (every product has a
    photo and every query returns ``K`` results). They stay so that the static and session envs share one
    observation space (a policy trained on one acts in the other); ``tests/test_static_observation.py``
    checks that these, and only these, are constant.

    ## Rewards
    ``RewardSpec``: ``click * clicks + purchase * purchases + revenue * revenue`` of the shown slate.
    ``info`` carries ``clicks``, ``purchases``, ``revenue``, ``clicked_positions``, ``purchased_positions``, ``shown_ids``,
    ``ndcg`` (slate vs the shopper's true utilities of the K candidates), ``left`` and ``position_rewards``
    (``float (N,)``, each slot's share of the reward; they sum to it).

    ## Starting State
    A shopper sampled from the simulator's population, and their first query's candidates.

    ## Episode End
    ``terminated``: the shopper left (patience ran out, or satisfied after a purchase).
    ``truncated``: the query budget ``max_queries`` was reached.

    ## Arguments
    ``gymnasium.make("ShopRank-v0", config=EnvConfig(...), world=None, simulator=None, render_mode=None)``.
    ``world`` shares a pre-built :class:`~envs.world.ShopWorld`; ``simulator`` overrides
    ``config.simulator`` with any ``UserSimulator`` object. ``render_mode="ansi"`` renders the last slate as text,
    ``"rgb_array"`` as a ``uint8 (H, W, 3)`` strip of product photos (:mod:`envs.render`).
    ``ShopRankStatic-v0`` is the same env with ``max_queries=1`` (one query per episode, bandit-style).

    ## Version History
    * v0: initial release. Since the array core (one implementation for the single, sequential and vector
      envs) the observation returned with ``terminated``/``truncated`` shows the session after its last
      slate (counters, history, profile), where it used to repeat the observation before that slate; the
      same seed gives the same shoppers, queries, slates, clicks and rewards as before.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, config: EnvConfig | None = None, world: ShopWorld | None = None,
                 simulator: UserSimulator | None = None, render_mode: str | None = None) -> None:
        init_session_env(self, config, world, simulator, render_mode)
        k = self.config.n_candidates
        self.action_space = spaces.Box(-SCORE_BOUND, SCORE_BOUND, shape=(k,), dtype=np.float32)
        self.layout = self.core.layout
        self.observation_space = observation_space(self.layout)
        self._last: dict[str, Any] | None = None
        self._ended = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.core.start(self.np_random)
        self._last = None
        self._ended = False
        return self.core.observation(), {"query": self.core.query_text}

    def slate_from_scores(self, scores: np.ndarray) -> np.ndarray:
        """Top-``N`` catalog rows by score among valid candidates (``int64 (N,)``, -1 padded)."""
        scores = np.asarray(scores)
        k = self.config.n_candidates
        if not (np.issubdtype(scores.dtype, np.number) and not np.issubdtype(scores.dtype, np.bool_)):
            raise ValueError(f"action must be a float array of shape ({k},) (one score per candidate), got dtype {scores.dtype}.")
        if scores.shape != (k,):
            raise ValueError(f"action must have shape ({k},), got {scores.shape}.")
        if not np.all(np.isfinite(scores)):
            raise ValueError("action contains NaN or infinite scores.")
        positions = self.core.core.slate_positions(scores[None, :])[0]
        return np.where(positions >= 0, self.core.candidates[np.maximum(positions, 0)], -1)

    def _positions(self, scores: np.ndarray) -> np.ndarray:
        """``int64 (N,)`` candidate positions of the slate (see :meth:`slate_from_scores`), ``-1`` = empty."""
        scores = np.asarray(scores)
        k = self.config.n_candidates
        if scores.shape != (k,) or scores.dtype.kind not in "fiu":
            self.slate_from_scores(scores)  # raises the matching error
        return self.core.core.slate_positions(scores[None, :])[0]

    def step(self, action: np.ndarray):
        if not self.core.started:
            raise RuntimeError("call reset() before step().")
        if self._ended:
            raise RuntimeError("the episode has ended (terminated or truncated); call reset() before step().")
        positions = self._positions(action)
        outcome = self.core.show(positions, self.np_random)
        terminated, truncated = episode_end(outcome.left, self.core.n_queries, self.config.max_queries)
        self._ended = terminated or truncated
        query = self.core.query_text
        info = {**outcome.parts, "clicked_positions": outcome.clicks.nonzero()[0],
                "purchased_positions": outcome.purchases.nonzero()[0],
                "shown_ids": outcome.slate, "ndcg": outcome.ndcg, "left": outcome.left,
                "position_rewards": outcome.position_rewards, "query": query}
        self._last = {"query": query, "outcome": outcome, "positions": positions,
                      "scores": np.array(action)}
        if not self._ended:
            self.core.next_query(self.np_random)
            info["next_query"] = self.core.query_text
        return self.core.observation(), outcome.reward, terminated, truncated, info

    def privileged_scores(self, observable: bool = False) -> np.ndarray:
        """Expected immediate reward of each candidate at the top slot (``float (K,)``); oracles only.

        ``observable=True`` values them for the shopper estimated from the observation alone (see
        :meth:`~envs.session.SessionCore.candidate_values`)."""
        return self.core.candidate_values(observable)

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "rgb_array":
            from envs.render import render_env

            return render_env(self)
        if self.render_mode != "ansi":
            return None
        catalog = self.world.catalog
        if self._last is None:
            return f"query: {self.core.query_text!r}  (no slate shown yet)\n"
        outcome = self._last["outcome"]
        lines = [f"query: {self._last['query']!r}   reward {outcome.reward:.2f}"]
        for pos, item in enumerate(outcome.slate):
            if item < 0:
                lines.append(f"{pos + 1:>3}. (empty)")
                continue
            mark = "BUY " if outcome.purchases[pos] else ("click" if outcome.clicks[pos] else "")
            lines.append(f"{pos + 1:>3}. {mark:<5} {catalog.titles[item][:60]:<60} {catalog.prices[item]:>8.2f}")
        return "\n".join(lines) + "\n"
