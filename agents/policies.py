"""SB3 policies whose action logits / means / Q-values are the extractor's per-candidate scores.

With :class:`~agents.extractor.CandidateSetExtractor` in front, the action head is the identity over
the first ``K`` features (no ``Linear(K, K)`` mixing candidates), so policies stay
permutation-equivariant; the critic reads the pooled features after them.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3 import DQN
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn


class ScoreSplit(nn.Module):
    """SB3 ``mlp_extractor`` stand-in: actor latent = the ``K`` scores, critic latent = MLP(pooled).

    Args:
        n_candidates: ``K``.
        features_dim: ``K + value_dim`` (the extractor's output width).
        value_hidden: Width of the critic latent.
    """

    def __init__(self, n_candidates: int, features_dim: int, value_hidden: int = 64) -> None:
        super().__init__()
        self.k = n_candidates
        self.latent_dim_pi = n_candidates
        self.latent_dim_vf = value_hidden
        self.critic = nn.Sequential(nn.Linear(features_dim - n_candidates, value_hidden), nn.Tanh())

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, : self.k]

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.critic(features[:, self.k:])


class _ScoreHeadMixin:
    """Replaces SB3's MLP extractor and action head with :class:`ScoreSplit` and the identity."""

    def _build_mlp_extractor(self) -> None:
        k = self.action_space.shape[0] if isinstance(self.action_space, spaces.Box) else int(self.action_space.n)
        self.mlp_extractor = ScoreSplit(k, self.features_dim)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()
        if hasattr(self.pi_features_extractor, "shrink_score_head"):
            self.pi_features_extractor.shrink_score_head()  # after SB3's orthogonal init: start at the prior
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)


class CandidateScorePolicy(_ScoreHeadMixin, ActorCriticPolicy):
    """PPO policy: Gaussian over candidate scores (``Box`` env) or categorical over candidates."""


class MaskableCandidateScorePolicy(_ScoreHeadMixin, MaskableActorCriticPolicy):
    """MaskablePPO policy: categorical over candidates, logits = scores, invalid actions masked."""


class CandidateQNetwork(QNetwork):
    """Q-values = the extractor's per-candidate scores; masked candidates get a very low value, so the
    greedy action and the TD target's max never pick them (a masked Q-network, not a penalty)."""

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        k = int(self.action_space.n)
        return self.extract_features(obs, self.features_extractor)[:, :k]


class CandidateDQNPolicy(DQNPolicy):
    """DQN policy built on :class:`CandidateQNetwork`."""

    def make_q_net(self) -> QNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return CandidateQNetwork(**net_args).to(self.device)


def valid_actions(observation: dict[str, np.ndarray]) -> np.ndarray:
    """``bool (B, K)`` (or ``(K,)``) selectable candidates: real and not yet placed."""
    valid = np.asarray(observation["mask"]) > 0.5
    if "placed" in observation:
        valid &= np.asarray(observation["placed"]) < 0.5
    return valid


class MaskedDQN(DQN):
    """DQN whose epsilon-greedy exploration samples only valid candidates.

    Exploration draws from its own generator (seeded from ``seed``), not from global ``np.random``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._explore_rng = np.random.default_rng(self.seed)

    def _sample_action(self, learning_starts, action_noise=None, n_envs=1):
        """Like SB3's, but the warm-up phase samples valid candidates of *each* env's own mask (SB3 samples
        the shared ``action_space``, which knows at most one env's mask)."""
        if self.num_timesteps < learning_starts:
            valid = valid_actions(self._last_obs)
            action = np.array([self._explore_rng.choice(np.flatnonzero(v)) for v in valid])
            return action, action
        return super()._sample_action(learning_starts, action_noise, n_envs)

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        if not deterministic and self._explore_rng.random() < self.exploration_rate:
            valid = valid_actions(observation)
            if valid.ndim == 1:
                return np.array(self._explore_rng.choice(np.flatnonzero(valid))), state
            return np.array([self._explore_rng.choice(np.flatnonzero(v)) for v in valid]), state
        return self.policy.predict(observation, state, episode_start, deterministic)


__all__ = ["CandidateScorePolicy", "MaskableCandidateScorePolicy", "CandidateDQNPolicy", "MaskedDQN",
           "MaskablePPO", "valid_actions"]
