"""Small per-candidate scorers ("students") that a trained ranking policy is distilled into.

A student scores each candidate on its own: ``s_i = f(candidate_i, context)`` with
``context = [query, profile, session]``; no attention, no pooling over the candidate set, no history
read. That is what makes it cheap to serve (a couple of matrix products per query) and what it gives up
against the teacher (:class:`~agents.extractor.CandidateSetExtractor`, which lets candidates see each
other and the shopper's clicked products).

Both students are SB3 features extractors with the teacher's output convention (``K`` scores, masked
candidates at :data:`~agents.extractor.MASKED_SCORE`, then the critic's features), so a distilled student is
an ordinary PPO policy: it saves and loads as a normal ShopRank checkpoint (``agent_config.network`` names
it, see :data:`agents.factory.NETWORKS`) and ``shoprank evaluate`` / ``compare`` score it like any agent.

* ``student_linear`` — ``s_i = w . candidate_i + b``. A context term would be the same for every candidate
  of a query, so a linear scorer cannot personalise: it is the floor of what distillation can keep.
* ``student_mlp`` — ``s_i = MLP([candidate_i, context])``, its first layer split into a candidate half
  (per candidate) and a context half (once per query), then ReLU layers of width ``hidden``.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from agents.extractor import MASKED_SCORE

CONTEXT_KEYS = ("query", "profile", "session")
"""Observation blocks a student reads besides ``candidates`` and ``mask`` (flattened and concatenated)."""


def _context_dim(spaces: dict[str, gym.Space]) -> int:
    return sum(int(torch.tensor(spaces[key].shape).prod()) for key in CONTEXT_KEYS if key in spaces)


def _context(obs: dict[str, torch.Tensor]) -> torch.Tensor:
    """``float (B, C)``: the context blocks of a batched observation, concatenated."""
    return torch.cat([obs[key].flatten(1) for key in CONTEXT_KEYS if key in obs], dim=1)


class LinearStudent(BaseFeaturesExtractor):
    """``s_i = w . candidate_i + b`` per candidate; critic features = the raw context.

    Args:
        observation_space: ``ShopRank-v0``'s ``Dict`` space (``candidates (K, F + 4)``, ``mask (K,)``, ...).

    Output of ``forward``: ``float (B, K + C)``, the ``K`` scores then the ``C`` context features.
    """

    def __init__(self, observation_space: gym.spaces.Dict) -> None:
        spaces = observation_space.spaces
        k, f = spaces["candidates"].shape
        self.context_dim = _context_dim(spaces)
        super().__init__(observation_space, features_dim=k + self.context_dim)
        self.score = nn.Linear(f, 1)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        scores = self.score(obs["candidates"]).squeeze(-1)                        # (B, K)
        scores = scores.masked_fill(obs["mask"] < 0.5, MASKED_SCORE)
        return torch.cat([scores, _context(obs)], dim=1)


class MLPStudent(BaseFeaturesExtractor):
    """``s_i = MLP([candidate_i, context])`` per candidate; critic features = the context's embedding.

    The first layer ``W [c_i; x] = W_c c_i + W_x x`` is computed as two products, the context one once per
    query (the same function, ``K`` times fewer multiply-adds for that half).

    Args:
        observation_space: ``ShopRank-v0``'s ``Dict`` space.
        hidden: Width of the hidden layers.
        depth: Hidden layers (>= 1).

    Output of ``forward``: ``float (B, K + hidden)``.
    """

    def __init__(self, observation_space: gym.spaces.Dict, hidden: int = 64, depth: int = 2) -> None:
        spaces = observation_space.spaces
        k, f = spaces["candidates"].shape
        super().__init__(observation_space, features_dim=k + hidden)
        self.candidate_in = nn.Linear(f, hidden)
        self.context_in = nn.Linear(_context_dim(spaces), hidden, bias=False)
        body: list[nn.Module] = [nn.ReLU()]
        for _ in range(depth - 1):
            body += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.body = nn.Sequential(*body, nn.Linear(hidden, 1))

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        context = self.context_in(_context(obs))                                   # (B, H)
        x = self.candidate_in(obs["candidates"]) + context.unsqueeze(1)             # (B, K, H)
        scores = self.body(x).squeeze(-1).masked_fill(obs["mask"] < 0.5, MASKED_SCORE)
        return torch.cat([scores, context], dim=1)


STUDENT_NETWORKS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "student_linear": lambda config: {"features_extractor_class": LinearStudent, "features_extractor_kwargs": {}},
    "student_mlp": lambda config: {"features_extractor_class": MLPStudent,
                                   "features_extractor_kwargs": {"hidden": config.hidden,
                                                                 "depth": max(config.layers, 1)}},
}
"""Student networks by the name ``AgentConfig.network`` gives -> SB3 policy kwargs built from the config
(``hidden`` = width, ``layers`` = hidden layers of the MLP)."""

__all__ = ["CONTEXT_KEYS", "LinearStudent", "MLPStudent", "STUDENT_NETWORKS"]
