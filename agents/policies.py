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

from agents.aux_heads import (AUX_LABEL_KEYS, SCORE_FIT_KEY, aux_loss, profiled_poisson_loss, shown_slots,
                               with_loss_gradient)
from agents.distributions import PlackettLuceDistribution


class ScoreSplit(nn.Module):
    """SB3 ``mlp_extractor`` stand-in: actor latent = the ``K`` scores, critic latent = MLP(pooled).

    Args:
        n_candidates: ``K``.
        features_dim: ``K + value_dim`` (the extractor's output width).
        value_hidden: Width of the critic latent.
        detach_critic: Stop the critic's gradient at the extractor (see ``_ScoreHeadMixin``).
    """

    def __init__(self, n_candidates: int, features_dim: int, value_hidden: int = 64,
                 detach_critic: bool = False) -> None:
        super().__init__()
        self.k = n_candidates
        self.detach_critic = detach_critic
        self.latent_dim_pi = n_candidates
        self.latent_dim_vf = value_hidden
        self.critic = nn.Sequential(nn.Linear(features_dim - n_candidates, value_hidden), nn.Tanh())

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, : self.k]

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features[:, self.k:]
        return self.critic(pooled.detach() if self.detach_critic else pooled)


class _ScoreHeadMixin:
    """Replaces SB3's MLP extractor and action head with :class:`ScoreSplit` and the identity.

    Extra policy kwargs (pass them in ``policy_kwargs``):
        slate_size: With a ``Box(K)`` action space, ``N`` > 0 makes the action distribution
            :class:`~agents.distributions.PlackettLuceDistribution` over the ``K`` scores with ``N`` shown
            slots; ``None`` keeps SB3's diagonal Gaussian over the scores.
        slot_credit: With Plackett-Luce, log-probabilities are per slot ``(B, N)`` (for
            :class:`~agents.slate_ppo.SlotCreditPPO`).
        detach_critic: The critic reads the shared extractor's pooled features without back-propagating
            into them (with ``share_features_extractor=True``: one extractor pass, trained by the actor's
            loss only, so the value loss's scale cannot swamp the ranking features).
        aux_loss_weight: Weight of the auxiliary click / purchase loss (:mod:`agents.aux_heads`) added to the
            algorithm's loss when a minibatch carries per-slot labels (keys :data:`~agents.aux_heads.AUX_LABEL_KEYS`)
            and the extractor has auxiliary heads; each minibatch's unweighted loss is appended to ``aux_losses``.
        score_fit_weight: Weight of the online score fit: when a minibatch carries each slot's reward (key
            :data:`~agents.aux_heads.SCORE_FIT_KEY`), the warm start's Poisson loss of the shown candidates' scores
            (:func:`~agents.aux_heads.profiled_poisson_loss`) is added to the algorithm's loss; each minibatch's
            unweighted loss is appended to ``score_fit_losses``.
    """

    def __init__(self, *args, slate_size: int | None = None, slot_credit: bool = False, detach_critic: bool = False,
                 aux_loss_weight: float = 0.0, score_fit_weight: float = 0.0, **kwargs) -> None:
        self.slate_size = slate_size
        self.slot_credit = slot_credit
        self.detach_critic = detach_critic
        self.aux_loss_weight = aux_loss_weight
        self.aux_losses: list[float] = []
        self.score_fit_weight = score_fit_weight
        self.score_fit_losses: list[float] = []
        super().__init__(*args, **kwargs)

    def _get_constructor_parameters(self) -> dict:
        return {**super()._get_constructor_parameters(), "slate_size": self.slate_size,
                "slot_credit": self.slot_credit, "detach_critic": self.detach_critic,
                "aux_loss_weight": self.aux_loss_weight, "score_fit_weight": self.score_fit_weight}

    def evaluate_actions(self, obs: dict[str, torch.Tensor], actions: torch.Tensor, *args, **kwargs):
        """SB3's ``evaluate_actions`` (values, log-probabilities, entropy); when ``obs`` carries per-slot labels,
        the log-probabilities also carry ``aux_loss_weight`` times the auxiliary loss of this forward pass
        (:func:`~agents.aux_heads.with_loss_gradient`: same values, the loss's gradient added); likewise
        ``score_fit_weight`` times the online score fit's loss when it carries each slot's reward."""
        labels = [obs[key] for key in AUX_LABEL_KEYS if key in obs]
        fit_rewards = obs.get(SCORE_FIT_KEY)
        obs = {key: value for key, value in obs.items() if key not in (*AUX_LABEL_KEYS, SCORE_FIT_KEY)}
        values, log_prob, entropy = super().evaluate_actions(obs, actions, *args, **kwargs)
        if fit_rewards is not None:
            shown, filled = shown_slots(actions, obs["mask"], fit_rewards.shape[1])
            loss = profiled_poisson_loss(self.action_dist.scores.gather(1, shown), fit_rewards, filled)
            self.score_fit_losses.append(float(loss.detach()))
            if self.score_fit_weight > 0:
                log_prob = with_loss_gradient(log_prob, self.score_fit_weight * loss)
        extractor = self.pi_features_extractor
        if labels and getattr(extractor, "last_aux", None) is not None:
            clicks, purchases = labels
            shown, filled = shown_slots(actions, obs["mask"], clicks.shape[1])
            loss = aux_loss(extractor.last_aux, extractor.aux_slot_bias[:, : clicks.shape[1]], shown, filled,
                            clicks, purchases)
            self.aux_losses.append(float(loss.detach()))
            if self.aux_loss_weight > 0:
                log_prob = with_loss_gradient(log_prob, self.aux_loss_weight * loss)
        return values, log_prob, entropy

    def _build_mlp_extractor(self) -> None:
        k = self.action_space.shape[0] if isinstance(self.action_space, spaces.Box) else int(self.action_space.n)
        self.mlp_extractor = ScoreSplit(k, self.features_dim, detach_critic=self.detach_critic)

    def _build(self, lr_schedule) -> None:
        if self.slate_size is not None and isinstance(self.action_space, spaces.Box):
            self.action_dist = PlackettLuceDistribution(self.action_space.shape[0], self.slate_size,
                                                        per_slot=self.slot_credit)
        super()._build(lr_schedule)
        self.action_net = nn.Identity()
        if hasattr(self.pi_features_extractor, "shrink_score_head"):
            self.pi_features_extractor.shrink_score_head()  # after SB3's orthogonal init: start at the prior
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)


class CandidateScorePolicy(_ScoreHeadMixin, ActorCriticPolicy):
    """PPO policy over candidate scores: Plackett-Luce (``slate_size`` set) or Gaussian on the ``Box`` env,
    categorical over candidates on a ``Discrete`` one."""


class MaskableCandidateScorePolicy(_ScoreHeadMixin, MaskableActorCriticPolicy):
    """MaskablePPO policy: categorical over candidates, logits = scores, invalid actions masked."""


class CandidateQNetwork(QNetwork):
    """Q-values = the extractor's per-candidate scores; masked candidates get a very low value, so the
    greedy action and the TD target's max never pick them (a masked Q-network, not a penalty).

    Args:
        bootstrap: False for a target network whose values are multiplied by ``gamma = 0`` in the TD
            target (``r + gamma * max Q_target``): it returns zeros of the same shape ``(B, K)`` without
            running the network (the same target, half the forward passes of a gradient step).
    """

    def __init__(self, *args, bootstrap: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bootstrap = bootstrap

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        k = int(self.action_space.n)
        if not self.bootstrap:
            return torch.zeros(obs["mask"].shape[0], k, device=obs["mask"].device)
        return self.extract_features(obs, self.features_extractor)[:, :k]


class CandidateDQNPolicy(DQNPolicy):
    """DQN policy built on :class:`CandidateQNetwork`.

    Extra policy kwarg ``bootstrap`` (default True): False when the algorithm's ``gamma`` is 0, so the
    target network, whose values the TD target multiplies by 0, is not evaluated (see
    :class:`CandidateQNetwork`); the online network and the target sync are unchanged.
    """

    def __init__(self, *args, bootstrap: bool = True, **kwargs) -> None:
        self.bootstrap = bootstrap
        super().__init__(*args, **kwargs)

    def _get_constructor_parameters(self) -> dict:
        return {**super()._get_constructor_parameters(), "bootstrap": self.bootstrap}

    def make_q_net(self) -> QNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return CandidateQNetwork(**net_args).to(self.device)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.q_net_target.bootstrap = self.bootstrap


def valid_actions(observation: dict[str, np.ndarray]) -> np.ndarray:
    """``bool (B, K)`` (or ``(K,)``) selectable candidates: real and not yet placed."""
    valid = np.asarray(observation["mask"]) > 0.5
    if "placed" in observation:
        valid &= np.asarray(observation["placed"]) < 0.5
    return valid


class MaskedDQN(DQN):
    """DQN whose epsilon-greedy exploration samples only valid candidates, optionally with per-slot credit.

    Exploration draws from its own generator (seeded from ``seed``), not from global ``np.random``.

    With ``slot_credit=True`` (for ``ShopRankSeq-v0``), the transition that filled slot ``n`` is stored
    with reward ``info["position_rewards"][n]`` (the clicks, purchases and revenue of the product it
    placed) instead of the env's ``0, ..., 0, slate reward``: the SlateQ-style decomposition of a slate's
    value into its items (Ie et al., 2019). The rewards sum to the same slate reward, so returns are
    unchanged when ``gamma = 1``; what changes is that each decision is credited with the outcome of its
    own product instead of the whole slate's. The slate's earlier transitions are already in the replay
    buffer when its outcome arrives; their rewards are rewritten in place (for at most ``N - 1`` steps a
    minibatch may draw one with reward 0).

    Args:
        slot_credit: Credit each slot with its own product's reward (needs ``position_rewards`` in the
            slate-completing step's ``info``).
    """

    def __init__(self, *args, slot_credit: bool = False, **kwargs) -> None:
        self.slot_credit = slot_credit
        super().__init__(*args, **kwargs)
        self._explore_rng = np.random.default_rng(self.seed)
        self._pending: list[list[int]] = [[] for _ in range(self.n_envs)]  # buffer rows of each env's open slate

    def _store_transition(self, replay_buffer, buffer_action, new_obs, reward, dones, infos) -> None:
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        if not self.slot_credit:
            return
        row = (replay_buffer.pos - 1) % replay_buffer.buffer_size
        for env_index, info in enumerate(infos):
            if "slate_done" not in info:
                raise KeyError("slot_credit needs a per-slot env whose info has 'slate_done' (ShopRankSeq-v0).")
            self._pending[env_index].append(row)
            if not info["slate_done"]:
                continue
            if "position_rewards" not in info:
                raise KeyError("slot_credit needs info['position_rewards'] on the step that completes a slate "
                               "(ShopRankSeq-v0 provides it).")
            shares = np.asarray(info["position_rewards"], dtype=np.float32)
            for slot, stored in enumerate(self._pending[env_index]):
                replay_buffer.rewards[stored, env_index] = shares[slot] if slot < len(shares) else 0.0
            self._pending[env_index] = []

    def _sample_action(self, learning_starts, action_noise=None, n_envs=1):
        """Like SB3's, but the warm-up phase samples valid candidates of *each* env's own mask (SB3 samples
        the shared ``action_space``, which knows at most one env's mask)."""
        if self.num_timesteps < learning_starts:
            valid = valid_actions(self._last_obs)
            action = np.array([self._explore_rng.choice(np.flatnonzero(v)) for v in valid])
            return action, action
        return super()._sample_action(learning_starts, action_noise, n_envs)

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        """Greedy (masked) actions; without ``deterministic``, each row of a batch independently explores
        with probability ``exploration_rate`` (a uniformly drawn valid candidate)."""
        if deterministic:
            return self.policy.predict(observation, state, episode_start, deterministic)
        valid = valid_actions(observation)
        if valid.ndim == 1:
            if self._explore_rng.random() < self.exploration_rate:
                return np.array(self._explore_rng.choice(np.flatnonzero(valid))), state
            return self.policy.predict(observation, state, episode_start, deterministic)
        explore = self._explore_rng.random(len(valid)) < self.exploration_rate
        if explore.all():
            return np.array([self._explore_rng.choice(np.flatnonzero(v)) for v in valid]), state
        actions, state = self.policy.predict(observation, state, episode_start, deterministic)
        for row in np.flatnonzero(explore):
            actions[row] = self._explore_rng.choice(np.flatnonzero(valid[row]))
        return actions, state


__all__ = ["CandidateScorePolicy", "MaskableCandidateScorePolicy", "CandidateDQNPolicy", "MaskedDQN",
           "MaskablePPO", "valid_actions"]
