"""Logged clicks for learning-to-rank baselines: run a logging policy in an env and record what was shown.

The records follow the Open Bandit Pipeline's shape per shown slot (context features, action = the
candidate shown, position, reward = click, propensity of that candidate at that position under the
logging policy), grouped by query so a ranker (LambdaMART) can train on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

import gymnasium as gym
import numpy as np

from encoders.blas import blas_threads
from encoders.errors import ConfigError

FeatureFn = Callable[[Mapping[str, np.ndarray]], np.ndarray]
"""``obs -> float32 (K, d)`` per-candidate features of one observation."""


class Policy(Protocol):
    """Anything with SB3's ``predict`` returning a score vector ``(K,)`` for the Box env."""

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]: ...


def derive_seed(seed: int, index: int, stream: int = 0) -> int:
    """A reset seed from ``(seed, index, stream)`` via ``np.random.SeedSequence`` (no global state).

    ``stream`` separates uses of the same ``(seed, index)``: 0 = evaluation sessions, 1 = training /
    logging sessions, so training never sees the exact shoppers evaluation uses.
    """
    return int(np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(1)[0])


def shown_candidates(action: np.ndarray, mask: np.ndarray, n_shown: int) -> np.ndarray:
    """Candidate indices the env shows for ``action``, top slot first (``int64 (..., n_shown)``).

    Mirrors ``ShopRankEnv.slate_from_scores``: valid candidates by descending score, ties in the
    retriever's order (stable sort); padding sorts last.

    Args:
        action: ``(..., K)`` scores (one query's or a batch's, rows independent).
        mask: ``(..., K)`` 1 for a real candidate.
        n_shown: Slate size ``N``.
    """
    keyed = np.where(np.asarray(mask) > 0, -np.asarray(action, dtype=np.float64), np.inf)
    return np.argsort(keyed, axis=-1, kind="stable")[..., :n_shown]


@dataclass
class LoggedClicks:
    """Clicks logged under a logging policy, one row per shown (query, slot).

    Attributes:
        features: ``float32 (M, d)`` features of the shown candidate.
        clicks: ``int8 (M,)`` 1 if it was clicked.
        positions: ``int64 (M,)`` slot it was shown in (0 = top).
        candidates: ``int64 (M,)`` candidate index within the query's K (the "action").
        item_ids: ``int64 (M,)`` catalog row of the shown product.
        propensities: ``float64 (M,)`` probability that the logging policy put this candidate at this
            slot (``1 / #valid`` for the uniformly random logging policy, ``nan`` when unknown).
        groups: ``int64 (G,)`` rows per query, in order (sums to ``M``).
    """

    features: np.ndarray
    clicks: np.ndarray
    positions: np.ndarray
    candidates: np.ndarray
    item_ids: np.ndarray
    propensities: np.ndarray
    groups: np.ndarray

    @property
    def n_queries(self) -> int:
        return int(len(self.groups))


def collect_logs(env: gym.Env, policy: Policy, n_sessions: int, seed: int, feature_fn: FeatureFn,
                 propensity: float | None = None) -> LoggedClicks:
    """Run ``policy`` for ``n_sessions`` sessions and log every shown slot.

    Sessions are reset with ``derive_seed(seed, i, stream=1)`` (the training stream), so logs never
    replay the evaluation shoppers of the same seed.

    Args:
        env: A Box-action ShopRank env (``ShopRank-v0`` / ``ShopRankStatic-v0``).
        policy: The logging policy.
        n_sessions: Sessions to run (``>= 1``).
        seed: Base seed.
        feature_fn: Per-candidate features of an observation.
        propensity: Known uniform propensity rule; ``None`` stores ``nan``. When ``propensity`` is
            ``-1.0`` the uniform-shuffle propensity ``1 / #valid candidates`` is stored.

    Returns:
        The logged clicks.
    """
    if n_sessions < 1:
        raise ConfigError(f"n_sessions must be >= 1, got {n_sessions}.")
    with blas_threads(1):
        return _collect(env, policy, n_sessions, seed, feature_fn, propensity)


def _collect(env: gym.Env, policy: Policy, n_sessions: int, seed: int, feature_fn: FeatureFn,
             propensity: float | None) -> LoggedClicks:
    feats, clicks, pos, cands, items, props, groups = [], [], [], [], [], [], []
    for i in range(n_sessions):
        obs, _ = env.reset(seed=derive_seed(seed, i, stream=1))
        done = False
        while not done:
            action, _ = policy.predict(obs, deterministic=False)
            obs_next, _, terminated, truncated, info = env.step(action)
            shown_ids = np.asarray(info["shown_ids"])
            shown = shown_candidates(action, obs["mask"], len(shown_ids))
            filled = shown_ids >= 0
            shown, slots = shown[filled], np.flatnonzero(filled)
            clicked = np.zeros(len(shown_ids), dtype=np.int8)
            clicked[np.asarray(info["clicked_positions"], dtype=np.int64)] = 1
            feats.append(feature_fn(obs)[shown])
            clicks.append(clicked[slots])
            pos.append(slots)
            cands.append(shown)
            items.append(shown_ids[slots])
            n_valid = max(float(np.sum(obs["mask"] > 0)), 1.0)
            rule = np.nan if propensity is None else (1.0 / n_valid if propensity == -1.0 else propensity)
            props.append(np.full(len(shown), rule))
            groups.append(len(shown))
            obs = obs_next
            done = terminated or truncated
    return LoggedClicks(
        features=np.concatenate(feats).astype(np.float32), clicks=np.concatenate(clicks).astype(np.int8),
        positions=np.concatenate(pos).astype(np.int64), candidates=np.concatenate(cands).astype(np.int64),
        item_ids=np.concatenate(items).astype(np.int64), propensities=np.concatenate(props).astype(np.float64),
        groups=np.asarray(groups, dtype=np.int64))
