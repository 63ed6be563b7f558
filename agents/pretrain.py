"""Warm-start a policy's candidate scores from logged clicks (offline pretraining before online RL).

A uniformly random logging policy runs in the env; every shown (candidate, slot) is one example with its
click. The policy's own feature extractor is fitted to predict clicks, ``P(click) = sigmoid(score_i +
b_slot)`` (a learned bias per slot absorbs position bias, as in a position-based click model), so RL
starts from a reranker that already reads taste and look off the features. Only logged clicks are used,
never the simulator's hidden state. Logging sessions use the training seed stream (``derive_seed(...,
stream=1)``), so they never replay evaluation shoppers.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from agents.logging_policy import derive_seed, shown_candidates


@dataclass(frozen=True)
class PretrainConfig:
    """Offline pretraining settings.

    Attributes:
        sessions: Logged sessions collected with a uniformly random ranking (0 disables pretraining).
        epochs: Passes over the logged examples.
        batch_size: Queries per gradient step.
        learning_rate: Adam step size.
    """

    sessions: int = 0
    epochs: int = 8
    batch_size: int = 128
    learning_rate: float = 1e-3


def collect_click_logs(env: gym.Env, n_sessions: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Log ``n_sessions`` sessions of a uniformly random ranking in a Box-action ShopRank env.

    Returns:
        ``(observations {key: (M, ...)}, shown (M, N) candidate indices, clicks (M, N) float32)`` with one
        row per shown slate.
    """
    rng = np.random.default_rng(derive_seed(seed, 0, stream=2))
    obs_rows, shown_rows, click_rows = [], [], []
    k = env.action_space.shape[0]
    for i in range(n_sessions):
        obs, _ = env.reset(seed=derive_seed(seed, i, stream=1))
        done = False
        while not done:
            action = rng.uniform(-1.0, 1.0, size=k).astype(np.float32)
            next_obs, _, terminated, truncated, info = env.step(action)
            n = len(info["shown_ids"])
            clicks = np.zeros(n, dtype=np.float32)
            clicks[np.asarray(info["clicked_positions"], dtype=int)] = 1.0
            obs_rows.append(obs)
            shown_rows.append(shown_candidates(action, obs["mask"], n))
            click_rows.append(clicks)
            obs, done = next_obs, terminated or truncated
    observations = {key: np.stack([o[key] for o in obs_rows]) for key in obs_rows[0]}
    return observations, np.stack(shown_rows), np.stack(click_rows)


def pretrain_scores(extractor: torch.nn.Module, n_candidates: int, observations: dict[str, np.ndarray],
                    shown: np.ndarray, clicks: np.ndarray, config: PretrainConfig, seed: int,
                    progress: bool = False) -> list[float]:
    """Fit ``extractor``'s first ``K`` outputs (candidate scores) to logged clicks.

    Args:
        extractor: A :class:`~agents.extractor.CandidateSetExtractor` (trained in place).
        n_candidates: ``K``.
        observations: ``{key: (M, ...)}`` logged observations.
        shown: ``int64 (M, N)`` candidate index shown in each slot.
        clicks: ``float32 (M, N)`` 1 where clicked.
        config: Optimiser settings.
        seed: Seeds the minibatch order.
        progress: Progress bar over epochs.

    Returns:
        Mean training loss per epoch.
    """
    obs_t = {key: torch.as_tensor(value, dtype=torch.float32) for key, value in observations.items()}
    shown_t = torch.as_tensor(shown, dtype=torch.int64).clamp(min=0)
    clicks_t = torch.as_tensor(clicks)
    valid_t = torch.as_tensor(shown >= 0)
    slot_bias = torch.zeros(shown.shape[1], requires_grad=True)
    optimizer = torch.optim.Adam(list(extractor.parameters()) + [slot_bias], lr=config.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    m = len(shown)
    for _ in tqdm(range(config.epochs), desc="pretraining on logged clicks", disable=not progress):
        order = torch.randperm(m, generator=generator)
        total = 0.0
        for start in range(0, m, config.batch_size):
            idx = order[start:start + config.batch_size]
            scores = extractor({key: value[idx] for key, value in obs_t.items()})[:, :n_candidates]
            logits = torch.gather(scores, 1, shown_t[idx]) + slot_bias
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, clicks_t[idx], weight=valid_t[idx].float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        losses.append(total / m)
    return losses
