"""Build, train, save and load RL agents (SB3 PPO, DQN, sb3-contrib MaskablePPO) from typed configs.

* ``ppo`` acts in ``ShopRank-v0`` (``Box(K)`` scores): a Gaussian over candidate scores.
* ``maskable_ppo`` and ``dqn`` act in ``ShopRankSeq-v0`` (``Discrete(K)`` per slot, masked).

All three share :class:`~agents.extractor.CandidateSetExtractor`. Checkpoints (save, and load for
evaluation without running code) live in :mod:`agents.checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import DummyVecEnv

from encoders.atomic_files import atomic_path
from encoders.errors import ConfigError, NoExpectedResponseError
from agents.callbacks import HeldOutEvalCallback, HParamsCallback, ShopMetricsCallback
from agents.extractor import CandidateSetExtractor
from agents.students import STUDENT_NETWORKS
from agents.slate_ppo import SlotCreditPPO, SlotCreditRolloutBuffer
from agents.pretrain import (PRETRAIN_TARGETS, PretrainConfig, collect_click_logs, collect_logs, pretrain_q_values,
                             pretrain_scores, seed_replay_buffer)
from agents.policies import (CandidateDQNPolicy, CandidateScorePolicy, MaskableCandidateScorePolicy, MaskablePPO,
                             MaskedDQN)
from envs.config import EnvConfig, config_to_dict


SLATE_POLICIES: dict[str, Callable[["AgentConfig", int], dict[str, Any]]] = {
    "plackett_luce": lambda config, slate_size: {"slate_size": slate_size, "slot_credit": config.slot_credit},
    "gaussian": lambda config, slate_size: {"log_std_init": config.log_std_init},
}
"""PPO's action distribution on the ``Box`` env by name -> the policy kwargs that select it."""


@dataclass(frozen=True)
class AgentConfig:
    """Hyperparameters shared by the RL agents (fields an algorithm does not use are ignored).

    Attributes:
        learning_rate: Adam step size.
        n_steps: PPO rollout length per env.
        batch_size: Minibatch size.
        n_epochs: PPO epochs per rollout.
        gamma: Discount (per query in ``ShopRank-v0``, per slot in the sequential env).
        gae_lambda: PPO GAE lambda.
        ent_coef: PPO entropy bonus.
        clip_range: PPO clip range.
        target_kl: PPO early stop of an update's epochs once the approximate KL exceeds it (``None`` = off).
        log_std_init: Initial log std of the Gaussian over scores (PPO with ``slate_policy="gaussian"``).
        slate_policy: PPO's action distribution on ``ShopRank-v0``: ``"plackett_luce"`` (a ranking
            distribution over the ``K`` scores, the shown top ``N`` sampled without replacement; see
            :mod:`agents.distributions`) or ``"gaussian"`` (a diagonal Gaussian over the scores).
        share_extractor: PPO: actor and critic share one candidate-set extractor, the critic reading its
            pooled features without back-propagating into them (one forward pass instead of two).
        hidden: Width of the candidate embeddings.
        heads: Attention heads.
        layers: Self-attention layers across candidates.
        prior_weight: Initial weight of the retriever-order prior in the scores (see
            :class:`~agents.extractor.CandidateSetExtractor`); with the Gaussian over scores, the ratio of
            the exploration std to the score gap between neighbouring ranks (``prior_weight / K``) sets
            how far exploration reorders the slate.
        buffer_size: DQN replay size.
        learning_starts: DQN steps before learning.
        exploration_initial_eps: DQN epsilon at the start (lower it after a warm start).
        exploration_fraction: DQN fraction of training over which epsilon decays.
        exploration_final_eps: DQN final epsilon.
        target_update_interval: DQN target network sync period (steps).
        train_freq: DQN environment steps between updates (vector env steps: ``n_envs`` slot steps each).
        gradient_steps: DQN gradient steps per update.
        slot_credit: Per-slot credit from ``info["position_rewards"]``. DQN: credit each slot's pick with
            its own product's reward (see :class:`~agents.policies.MaskedDQN`) instead of crediting the whole
            slate's reward to the last pick. PPO with ``slate_policy="plackett_luce"``: each slot's
            decision gets its own advantage from its reward-to-go in the slate (see
            :mod:`agents.slate_ppo`); ``target_kl`` then bounds the mean per-slot KL.
        slot_discount: PPO with ``slot_credit``: weight ``g`` of the slots below a decision in its advantage
            (1 = unbiased; 0 = its own product's reward only). In ``[0, 1]``.
        return_credit: PPO with ``slot_credit`` in ``ShopRank-v1``: credit each returned purchase's refund to
            the slot that sold it (``info["returned_slots"]``; see :mod:`agents.slate_ppo`) instead of the
            query at the visit's end where it is paid.
        n_envs: Parallel sessions.
        batched_env: Per-query algorithms (PPO) step the ``n_envs`` sessions in one batched vector env
            (array operations) instead of a ``DummyVecEnv`` of single envs (the sequential env has no
            batched form).
        pretrain_sessions: Sessions logged with a uniformly random ranking that the policy is fitted to
            before RL starts (:mod:`agents.pretrain`): PPO's scores to ``pretrain_target``, DQN's
            Q-values to each slot's reward-to-go; 0 = learn from scratch.
        pretrain_target: What the warm start fits: ``"reward"`` (each slot's reward, Poisson), ``"clicks"``
            (logistic), ``"net_reward"`` (``ShopRank-v1``: the reward net of refunds, Poisson) or
            ``"trust_reward"`` (``ShopRank-v1``: the net reward less a return's later cost estimated from the same
            logs, squared error); see :mod:`agents.pretrain`.
        pretrain_epochs: Passes over the logged sessions.
        pretrain_envs: Logged sessions stepped at once (:func:`agents.pretrain.collect_logs`'s ``n_envs``): 1 =
            the single env, one session after another; more = the env id's vector env, the same shopper
            distribution drawn in one stream (at 64: 7.3x the logged sessions per CPU-second on the static env,
            5.8x on ``ShopRank-v0``, ``shoprank bench env --only logging``; none yet on ``ShopRank-v1``, whose
            shopper runs one session per call).
        seed_buffer: DQN with a warm start: also put the logged transitions in the replay buffer, so online
            learning keeps fitting them (``buffer_size`` must hold them: ``N`` per logged slate).
        network: The candidate network, a key of :data:`NETWORKS` (``"candidate_set"``: the attention
            network of :mod:`agents.extractor`; ``"student_mlp"`` / ``"student_linear"``: the per-candidate
            scorers that ``shoprank distill`` trains, :mod:`agents.students`).
        aux_heads: Multi-task heads: the candidate-set network also predicts each candidate's click and
            purchase (:mod:`agents.aux_heads`), fitted to the per-slot outcomes of the warm start's logged
            sessions and, in PPO, of every rollout (an auxiliary loss added to PPO's). Needs
            ``network="candidate_set"``. MaskablePPO uses them in its warm start only; DQN ignores them.
        aux_loss_weight: Weight of the auxiliary loss against the warm start's / PPO's loss (>= 0, finite).
        score_fit_weight: PPO's online score fit (>= 0, finite; 0 = off): each rollout's per-slot rewards are
            also fitted by the warm start's Poisson loss of the policy's own scores, added to PPO's loss with
            this weight (:func:`agents.aux_heads.profiled_poisson_loss`). Needs the Plackett-Luce slate policy
            and ``pretrain_target="reward"``.
        expected_reward: Train online on the expected reward of each shown slate (the env's
            ``RewardSpec(expected=True)``: the same weighted sum under the shopper's true click and purchase
            probabilities, so the sampling noise of clicks and purchases leaves the advantages and the score
            fit's labels). Only the online training envs change: the warm start's logged sessions, the held-out
            learning curve and every evaluation keep sampled rewards, and the policy still sees only the
            observation. A simulation-only training aid: it needs a privileged simulator
            (``expected_response``), which the default shopper is (a model built without online steps, e.g.
            a loaded checkpoint, does not). What the training envs report follows: ``shop/reward``, SB3's
            ``rollout/ep_rew_mean`` and the progress bar's reward are expected rewards, while ``shop/clicks``,
            ``shop/purchases`` and ``shop/revenue`` stay the sampled outcomes. DQN's ``seed_buffer`` keeps the
            logged (sampled) slot rewards; only the online transitions change.
        torch_threads: Torch intra-op threads while training/acting. 1 is fastest for these small
            networks on a shared 2-core machine (measured: 2048 PPO steps took 12 s with 1 thread and
            261 s with the default under load, which oversubscribes the cores).
    """

    learning_rate: float = 3e-4
    n_steps: int = 512
    batch_size: int = 256
    n_epochs: int = 5
    gamma: float = 0.9
    gae_lambda: float = 0.9
    ent_coef: float = 0.0
    clip_range: float = 0.2
    target_kl: float | None = 0.05
    log_std_init: float = -1.0
    slate_policy: str = "plackett_luce"
    share_extractor: bool = True
    hidden: int = 64
    heads: int = 4
    layers: int = 1
    prior_weight: float = 2.0
    buffer_size: int = 50_000
    learning_starts: int = 1000
    exploration_initial_eps: float = 1.0
    exploration_fraction: float = 0.3
    exploration_final_eps: float = 0.05
    target_update_interval: int = 1000
    train_freq: int = 4
    gradient_steps: int = 1
    batched_env: bool = True
    slot_credit: bool = False
    slot_discount: float = 1.0
    return_credit: bool = False
    n_envs: int = 4
    pretrain_sessions: int = 0
    pretrain_target: str = "reward"
    pretrain_epochs: int = 8
    pretrain_envs: int = 1
    seed_buffer: bool = False
    torch_threads: int = 1
    network: str = "candidate_set"
    aux_heads: bool = False
    aux_loss_weight: float = 1.0
    score_fit_weight: float = 0.0
    expected_reward: bool = False

    def __post_init__(self) -> None:
        for name in ("learning_rate", "n_steps", "batch_size", "n_epochs", "hidden", "heads", "n_envs",
                     "pretrain_envs"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"AgentConfig.{name} must be > 0, got {getattr(self, name)}.")
        if self.pretrain_target not in PRETRAIN_TARGETS:
            raise ConfigError(f"AgentConfig.pretrain_target must be one of {list(PRETRAIN_TARGETS)}, "
                             f"got {self.pretrain_target!r}.")
        if not 0.0 <= self.slot_discount <= 1.0:
            raise ConfigError(f"AgentConfig.slot_discount must be in [0, 1], got {self.slot_discount}.")
        if self.slate_policy not in SLATE_POLICIES:
            raise ConfigError(f"AgentConfig.slate_policy must be one of {list(SLATE_POLICIES)}, "
                              f"got {self.slate_policy!r}.")
        if self.network not in NETWORKS:
            raise ConfigError(f"AgentConfig.network must be one of {list(NETWORKS)}, got {self.network!r}.")
        if not 0.0 <= self.aux_loss_weight < float("inf"):
            raise ConfigError(f"AgentConfig.aux_loss_weight must be finite and >= 0, got {self.aux_loss_weight}.")
        if not 0.0 <= self.score_fit_weight < float("inf"):
            raise ConfigError(f"AgentConfig.score_fit_weight must be finite and >= 0, got {self.score_fit_weight}.")
        if self.score_fit_weight > 0 and (self.slate_policy != "plackett_luce" or self.pretrain_target != "reward"):
            raise ConfigError("AgentConfig.score_fit_weight > 0 needs slate_policy='plackett_luce' and "
                              f"pretrain_target='reward' (it fits the scores to each slot's reward), got "
                              f"slate_policy={self.slate_policy!r}, pretrain_target={self.pretrain_target!r}.")
        if self.aux_heads and self.network != "candidate_set":
            raise ConfigError(f"AgentConfig.aux_heads needs network='candidate_set' (the students have no auxiliary "
                              f"heads), got network={self.network!r}.")
        if self.hidden % self.heads:
            raise ConfigError(f"AgentConfig.hidden ({self.hidden}) must be divisible by heads ({self.heads}).")


NETWORKS: dict[str, Callable[[AgentConfig], dict[str, Any]]] = {
    "candidate_set": lambda config: {
        "features_extractor_class": CandidateSetExtractor,
        "features_extractor_kwargs": {"hidden": config.hidden, "heads": config.heads, "layers": config.layers,
                                      "prior_weight": config.prior_weight, "aux_heads": config.aux_heads}},
    **STUDENT_NETWORKS,
}
"""Candidate networks by ``AgentConfig.network`` -> the SB3 policy kwargs that build them."""


def _extractor_kwargs(config: AgentConfig) -> dict[str, Any]:
    return NETWORKS[config.network](config)


def ppo_policy_kwargs(config: AgentConfig, slate_size: int) -> dict[str, Any]:
    """``CandidateScorePolicy`` kwargs of PPO on the ``Box`` env: the candidate-set network and the slate
    distribution ``config`` names (one definition for SB3's PPO and the RLlib module,
    :mod:`agents.rllib_module`)."""
    return {**_extractor_kwargs(config), **SLATE_POLICIES[config.slate_policy](config, slate_size),
            "share_features_extractor": config.share_extractor, "detach_critic": config.share_extractor,
            "aux_loss_weight": config.aux_loss_weight if config.aux_heads else 0.0,
            "score_fit_weight": config.score_fit_weight}


def _ppo(env, config: AgentConfig, seed: int, tensorboard_log: str | None):
    env_config = env.get_attr("config")[0]
    slate_size = int(env_config.slate_size)
    reward = env_config.reward if config.score_fit_weight > 0 else None
    if reward is not None and min(reward.click, reward.purchase, reward.revenue) < 0:
        raise ConfigError(f"AgentConfig.score_fit_weight > 0 needs non-negative slot rewards (a Poisson fit), got "
                          f"RewardSpec(click={reward.click}, purchase={reward.purchase}, revenue={reward.revenue}); "
                          f"use score_fit_weight=0 with negative reward weights.")
    per_slot = config.slot_credit and config.slate_policy == "plackett_luce"
    score_fit = config.score_fit_weight > 0
    slot_buffer = per_slot or config.aux_heads or score_fit
    buffer = ({"rollout_buffer_class": SlotCreditRolloutBuffer,
               "rollout_buffer_kwargs": {"n_slots": slate_size, "slot_discount": config.slot_discount,
                                         "return_credit": config.return_credit, "credit": per_slot,
                                         "aux_labels": config.aux_heads, "score_fit": score_fit}}
              if slot_buffer else {})
    return (SlotCreditPPO if slot_buffer else PPO)(
               CandidateScorePolicy, env, learning_rate=config.learning_rate, n_steps=config.n_steps,
               batch_size=config.batch_size, n_epochs=config.n_epochs, gamma=config.gamma,
               gae_lambda=config.gae_lambda, ent_coef=config.ent_coef, clip_range=config.clip_range,
               target_kl=config.target_kl,
               policy_kwargs=ppo_policy_kwargs(config, slate_size),
               tensorboard_log=tensorboard_log, seed=seed, device="cpu", verbose=0, **buffer)


def _maskable_ppo(env, config: AgentConfig, seed: int, tensorboard_log: str | None):
    return MaskablePPO(MaskableCandidateScorePolicy, env, learning_rate=config.learning_rate,
                       n_steps=config.n_steps, batch_size=config.batch_size, n_epochs=config.n_epochs,
                       gamma=config.gamma, gae_lambda=config.gae_lambda, ent_coef=config.ent_coef,
                       clip_range=config.clip_range, target_kl=config.target_kl,
                       policy_kwargs={**_extractor_kwargs(config), "share_features_extractor": False},
                       tensorboard_log=tensorboard_log, seed=seed, device="cpu", verbose=0)


def _dqn(env, config: AgentConfig, seed: int, tensorboard_log: str | None):
    return MaskedDQN(CandidateDQNPolicy, env, learning_rate=config.learning_rate, buffer_size=config.buffer_size,
                     learning_starts=config.learning_starts, batch_size=config.batch_size, gamma=config.gamma,
                     exploration_initial_eps=config.exploration_initial_eps,
                     exploration_fraction=config.exploration_fraction,
                     exploration_final_eps=config.exploration_final_eps,
                     target_update_interval=config.target_update_interval, train_freq=config.train_freq,
                     gradient_steps=config.gradient_steps, slot_credit=config.slot_credit,
                     policy_kwargs={**_extractor_kwargs(config), "net_arch": [], "bootstrap": config.gamma > 0},
                     tensorboard_log=tensorboard_log, seed=seed, device="cpu", verbose=0)


@dataclass(frozen=True)
class AlgoSpec:
    """How to build one algorithm: its constructor, which env family it acts in, and how it is warm-started
    from logged sessions (``warm_start(model, env, env_config, config, pretrain, seed, progress) -> losses``; the
    module-level :func:`warm_start` wraps it with the cache and the timing).
    ``weights_only_warm_start``: the warm start changes nothing but the policy's weights, so a saved copy of
    them can stand in for it (:func:`warm_start`'s ``cache``; DQN's also fills its replay buffer)."""

    build: Callable[..., Any]
    sequential: bool
    warm_start: Callable[..., list[float]]
    weights_only_warm_start: bool = False


def _warm_start_scores(model, env, env_config: EnvConfig, config: AgentConfig, pretrain: PretrainConfig, seed: int,
                       progress: bool) -> list[float]:
    """PPO / MaskablePPO: fit the policy's candidate scores to ``config.pretrain_target``."""
    return fit_policy_scores(model.policy, env, env_config, config, pretrain, seed, progress)


def fit_policy_scores(policy, env, env_config: EnvConfig, config: AgentConfig, pretrain: PretrainConfig, seed: int,
                      progress: bool) -> list[float]:
    """Fit an SB3 candidate-score policy's scores (``policy.pi_features_extractor``) to ``config.pretrain_target``
    on ``config.pretrain_sessions`` sessions logged in ``env`` (and, with ``config.aux_heads``, its auxiliary heads
    to each slot's click and purchase): PPO's warm start, for SB3's model and for the policy inside the RLlib
    module alike (:func:`experiments.rllib_backend.train_rllib`). Returns the loss per epoch."""
    targets = (config.pretrain_target, *(("clicks", "purchases") if config.aux_heads else ()))
    observations, shown, outcomes = collect_logs(env, config.pretrain_sessions, seed, targets,
                                                 n_envs=config.pretrain_envs, progress=progress)
    aux = (outcomes["clicks"], outcomes["purchases"], config.aux_loss_weight) if config.aux_heads else None
    extractor = policy.pi_features_extractor
    if extractor.has_placed:  # the sequential policy scores the first slot of an empty slate
        m, k = observations["mask"].shape
        observations["placed"] = np.zeros((m, k), dtype=np.float32)
        observations["slot"] = np.zeros((m, env_config.slate_size), dtype=np.float32)
        observations["slot"][:, 0] = 1.0
    return pretrain_scores(extractor, env_config.n_candidates, observations, shown, outcomes[config.pretrain_target],
                           pretrain, seed, progress, aux_labels=aux)


def _warm_start_q_values(model, env, env_config: EnvConfig, config: AgentConfig, pretrain: PretrainConfig,
                         seed: int, progress: bool) -> list[float]:
    """DQN: Q-values are expected rewards, so fit each slot's reward-to-go (see ``pretrain_q_values``),
    sync the target network, and with ``config.seed_buffer`` keep the logged transitions in the buffer."""
    observations, shown, rewards = collect_click_logs(env, config.pretrain_sessions, seed, "reward",
                                                      n_envs=config.pretrain_envs)
    losses = pretrain_q_values(model.policy.q_net, observations, shown, rewards, config.gamma, pretrain, seed,
                               progress)
    model.policy.q_net_target.load_state_dict(model.policy.q_net.state_dict())
    if config.seed_buffer:
        seed_replay_buffer(model.replay_buffer, observations, shown, rewards)
    return losses


ALGOS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec(_ppo, sequential=False, warm_start=_warm_start_scores, weights_only_warm_start=True),
    "maskable_ppo": AlgoSpec(_maskable_ppo, sequential=True, warm_start=_warm_start_scores, weights_only_warm_start=True),
    "dqn": AlgoSpec(_dqn, sequential=True, warm_start=_warm_start_q_values),
}
"""RL algorithms by name (the names used in ``shoprank train/compare`` and in ``summary.csv``)."""


@dataclass(frozen=True)
class AgentPreset:
    """A named RL agent: an algorithm of :data:`ALGOS` plus the hyperparameters it is run with."""

    algo: str
    config: AgentConfig
    description: str
    online: bool = True
    """False: the warm start alone (no online RL step, whatever training budget is asked for)."""


PPO_WARM = AgentConfig(pretrain_sessions=100_000, pretrain_epochs=6, pretrain_envs=64, slot_credit=True,
                       slot_discount=0.0, learning_rate=1e-3, n_epochs=10, target_kl=None, expected_reward=True,
                       score_fit_weight=1.0)
"""``ppo``'s configuration (and ``ppo_pretrained``'s: the same warm start, then no online step). Online it trains
on expected rewards with the score fit (README "Results": the online gain over the warm start this measured)."""

PPO_LONGTERM = AgentConfig(slot_credit=True, slot_discount=0.0, return_credit=True, learning_rate=5e-4, n_epochs=10,
                           target_kl=None, hidden=32, layers=0, gamma=0.99, gae_lambda=0.95,
                           pretrain_sessions=30_000, pretrain_target="trust_reward")
"""``ppo_longterm``'s configuration (``ShopRank-v1``: a relationship spans ~10 queries over several visits)."""

AGENT_PRESETS: dict[str, AgentPreset] = {
    "ppo": AgentPreset("ppo", PPO_WARM,
                       "PPO on ShopRank-v0, scores warm-started on 100k logged sessions (slot rewards), then "
                       "trained online on expected rewards (Plackett-Luce slate policy, per-slot credit, online "
                       "score fit)"),
    "ppo_pretrained": AgentPreset("ppo", PPO_WARM,
                                  "ppo's warm start alone (the same fit to 100k logged sessions, no online step)",
                                  online=False),
    "ppo_scratch": AgentPreset("ppo", AgentConfig(slot_credit=True, slot_discount=0.0, learning_rate=2e-3,
                                                  n_epochs=10, target_kl=None, hidden=32, layers=0),
                               "PPO on ShopRank-v0 from scratch (no logged sessions): Plackett-Luce slate policy, "
                               "per-slot credit, a slim candidate network"),
    "ppo_longterm": AgentPreset("ppo", PPO_LONGTERM,
                                "PPO for ShopRank-v1: ppo_scratch's slim network, scores warm-started on 30,000 logged "
                                "relationships (each slot's reward net of refunds, less a return's later cost estimated "
                                "from the same logs), then per-slot credit with "
                                "discount 0.99 across the visits, each refund credited to the slot that sold it"),
    "ppo_longterm_pretrained": AgentPreset("ppo", PPO_LONGTERM,
                                           "ppo_longterm's warm start alone (the same fit to 30,000 logged "
                                           "relationships, no online step)", online=False),
    "maskable_ppo": AgentPreset("maskable_ppo", AgentConfig(pretrain_sessions=10_000, gamma=1.0, gae_lambda=1.0),
                                "MaskablePPO on ShopRankSeq-v0, warm-started on 10k logged sessions"),
    "dqn": AgentPreset("dqn", AgentConfig(n_envs=1, gamma=0.0, slot_credit=True, learning_rate=5e-4,
                                          pretrain_sessions=10_000, seed_buffer=True, buffer_size=130_000,
                                          learning_starts=100, exploration_initial_eps=0.1,
                                          exploration_final_eps=0.02, target_update_interval=2000),
                       "DQN with a masked Q-network on ShopRankSeq-v0, per-slot credit, Q-values warm-started "
                       "on 10k logged sessions (kept in its replay buffer), then trained online"),
    "dqn_scratch": AgentPreset("dqn", AgentConfig(n_envs=8, train_freq=1, gradient_steps=1, batch_size=128,
                                                  gamma=0.0, slot_credit=True, learning_rate=1e-3, hidden=32,
                                                  layers=0, learning_starts=1000, exploration_fraction=0.1,
                                                  target_update_interval=2000),
                               "DQN with a masked Q-network and per-slot credit, from scratch: a slim candidate "
                               "network, 8 sessions per step, one gradient step of 128 per 8 slot steps"),
}
AGENT_PRESETS["dqn_pretrained"] = AgentPreset("dqn", AGENT_PRESETS["dqn"].config,
                                              "dqn's warm start alone (Q-values fitted to the same 10k logged "
                                              "sessions, no online step)", online=False)
"""RL agents by the names ``shoprank compare`` and ``summary.csv`` use."""


def write_learning_curve(curve: list[dict[str, float]], path: Path) -> Path:
    """Write a learning curve (``HeldOutEvalCallback.curve``) as CSV: ``env_steps, wall_s, reward, ...``."""
    import pandas as pd

    pd.DataFrame(curve).to_csv(path, index=False)
    return path


def algo_spec(name: str) -> AlgoSpec:
    if name not in ALGOS:
        raise ConfigError(f"unknown RL algorithm '{name}'; choose one of {sorted(ALGOS)}.")
    return ALGOS[name]


def make_env(env_config: EnvConfig, sequential: bool, render_mode: str | None = None,
             env_id: str = "ShopRank-v0") -> gym.Env:
    """The per-query (``Box``) env ``env_id`` or its per-slot twin (``Discrete``, masked;
    :data:`envs.SEQUENTIAL_IDS`) for ``env_config``."""
    import envs

    return gym.make(envs.sequential_id(env_id) if sequential else env_id, config=env_config, render_mode=render_mode)


def online_env_config(env_config: EnvConfig, config: AgentConfig) -> EnvConfig:
    """The env config of the online training envs: ``env_config`` with ``RewardSpec(expected=True)`` when
    ``config.expected_reward`` (see :class:`AgentConfig`), else ``env_config`` itself."""
    if not config.expected_reward or env_config.reward.expected:
        return env_config
    return replace(env_config, reward=replace(env_config.reward, expected=True))


def build_agent(name: str, env_config: EnvConfig, config: AgentConfig = AgentConfig(), seed: int = 0,
                tensorboard_log: str | None = None, n_envs: int | None = None, env_id: str = "ShopRank-v0",
                online: bool = True):
    """An untrained SB3 model for algorithm ``name`` on ``n_envs`` sessions of ``env_id`` (its sequential twin
    for sequential algorithms): one batched vector env (``env_id``'s ``vector_entry_point``;
    ``config.batched_env``, per-query algorithms) or a ``DummyVecEnv`` of single envs.

    ``online``: the model will take online steps in these envs, so they are :func:`online_env_config`'s; a
    model built only for its network (a loaded checkpoint, a distilled student, a warm start with no online
    step) keeps ``env_config`` as it is and so runs with any simulator."""
    spec = algo_spec(name)
    if config.score_fit_weight > 0 and name != "ppo":
        raise ConfigError(f"AgentConfig.score_fit_weight > 0 is PPO's online score fit; algorithm {name!r} does not "
                          f"use it (set score_fit_weight=0).")
    torch.set_num_threads(config.torch_threads)
    if online:
        env_config = online_env_config(env_config, config)
    n = n_envs or config.n_envs
    try:
        if config.batched_env and not spec.sequential:
            from envs.vector_env import sb3_vec_env

            vec = sb3_vec_env(n, env_config, seed=seed, env_id=env_id)
        else:
            vec = DummyVecEnv([lambda: make_env(env_config, spec.sequential, env_id=env_id) for _ in range(n)])
            vec.seed(seed)
    except NoExpectedResponseError as exc:
        if not config.expected_reward:
            raise
        raise NoExpectedResponseError(
            f"AgentConfig.expected_reward=True trains on expected rewards: {exc} Train on sampled rewards with "
            f"expected_reward=False (--set agent.expected_reward=false).") from exc
    return spec.build(vec, config, seed, tensorboard_log)


def warm_start(model, name: str, env_config: EnvConfig, config: AgentConfig, seed: int, progress: bool,
               env_id: str = "ShopRank-v0", cache: Path | None = None) -> tuple[list[float], float]:
    """Fit the policy to ``config.pretrain_sessions`` logged sessions of ``env_id`` before RL (see
    :mod:`agents.pretrain`); what is fitted is the algorithm's ``AlgoSpec.warm_start``.

    With a ``cache`` folder and an algorithm whose warm start only sets weights (PPO, MaskablePPO), the fitted
    policy weights are kept there under a key of everything that decides them (:func:`warm_start_key`): a
    second agent with the same algorithm, configs, env and seed (``ppo_pretrained`` and ``ppo`` in one
    ``compare``) loads them instead of logging and fitting again, and continues exactly as if it had fitted
    them itself (the warm start draws from its own seeded generators only). Loading is tensors only.

    What the fit found is kept as ``model.warm_start_report`` (``fit_seconds``, ``cached``, ``loss_per_epoch``
    and, for a ``trust_reward`` fit, ``return_cost``: the estimated later cost of a return,
    :class:`agents.return_cost.ReturnCost` as a dict); a cached fit's report is the one saved with its weights
    (``fit_seconds`` only, for a fit cached before reports were kept).

    Returns:
        ``(losses, seconds)``: the loss per epoch (empty when the weights came from the cache) and the wall
        seconds the fit took (a cached fit's own, recorded beside its weights, so that learning curves over
        wall time still include the warm start).
    """
    spec = algo_spec(name)
    path = None
    if cache is not None and spec.weights_only_warm_start:
        path = Path(cache) / f"{warm_start_key(name, env_config, config, seed, env_id)}.pt"
        if path.is_file() and path.with_suffix(".json").is_file():
            model.policy.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            saved = json.loads(path.with_suffix(".json").read_text())
            model.warm_start_report = {**saved, "cached": True}
            return [], float(saved["fit_seconds"])
    started = time.perf_counter()
    env = make_env(env_config, sequential=False, env_id=env_id)
    losses = spec.warm_start(model, env, env_config, config, pretrain_config(config), seed, progress)
    seconds = time.perf_counter() - started
    cost = getattr(env.unwrapped, "last_return_cost", None)
    report = {"fit_seconds": seconds, "loss_per_epoch": [float(loss) for loss in losses],
              **({"return_cost": asdict(cost)} if cost is not None else {})}
    model.warm_start_report = {**report, "cached": False}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(model.policy.state_dict(), tmp)
        with atomic_path(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(report))
    return losses, seconds


ONLINE_ONLY_FIELDS = ("learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "ent_coef",
                      "clip_range", "target_kl", "score_fit_weight", "expected_reward")
"""``AgentConfig`` fields that only act once online training starts (PPO's optimiser and rollout settings): they
neither build the network nor enter the warm start, so :func:`warm_start_key` leaves them out and agents that
differ only in them share a cached warm start (``tests/test_agents.py`` checks the weights are bit-identical)."""


def warm_start_key(name: str, env_config: EnvConfig, config: AgentConfig, seed: int, env_id: str) -> str:
    """A 20-hex-digit digest of the algorithm, env id, seed, env config and agent config (without
    :data:`ONLINE_ONLY_FIELDS`): equal keys, equal warm starts."""
    agent = {key: value for key, value in asdict(config).items() if key not in ONLINE_ONLY_FIELDS}
    blob = json.dumps({"algo": name, "env_id": env_id, "seed": int(seed), "env": config_to_dict(env_config),
                       "agent": agent}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def pretrain_config(config: AgentConfig) -> PretrainConfig:
    """The warm start's settings in ``config`` (``pretrain_sessions``, ``pretrain_target``, ``pretrain_epochs``)."""
    return PretrainConfig(sessions=config.pretrain_sessions, target=config.pretrain_target,
                          epochs=config.pretrain_epochs)


def train_agent(name: str, env_config: EnvConfig, total_timesteps: int, seed: int = 0, run_dir: Path | None = None,
                config: AgentConfig = AgentConfig(), progress: bool = False, callbacks: list | None = None,
                eval_every: int = 0, eval_sessions: int = 100, env_id: str = "ShopRank-v0",
                resume: Path | None = None, warm_cache: Path | None = None):
    """Train algorithm ``name`` and (with ``run_dir``) save TensorBoard events and a checkpoint.

    Args:
        name: Key of :data:`ALGOS`.
        env_config: Environment to train in.
        total_timesteps: Environment steps (queries for ``ppo``, slots for the sequential algorithms).
        seed: Seeds the model, the env copies and exploration.
        run_dir: Folder for ``tb/`` events and ``checkpoint/``; nothing is written when ``None``.
        config: Hyperparameters.
        progress: Show SB3's progress bar.
        callbacks: Extra SB3 callbacks.
        eval_every: Steps between held-out evaluations logged under ``eval/`` (0 = none). With it, the
            learning curve (an evaluation before the first online step, every ``eval_every`` steps and at
            the end) is kept as ``model.learning_curve`` and written to ``run_dir/learning_curve.csv``.
        eval_sessions: Held-out sessions per evaluation.
        env_id: The ``Box``-action env id to train in (``ShopRank-v0``, ``ShopRank-v1``; sequential algorithms
            train in its twin, :data:`envs.SEQUENTIAL_IDS`).
        resume: A checkpoint folder with a training state (:func:`agents.checkpoint.resume_folder`): continue
            that run up to ``total_timesteps`` in all (no warm start; SB3's ``reset_num_timesteps=False``).
        warm_cache: A folder where warm-started weights are kept and looked up (:func:`warm_start`'s ``cache``).

    Returns:
        The trained SB3 model (its ``predict`` serves evaluation).
    """
    tb = str(Path(run_dir) / "tb") if run_dir is not None else None
    started = time.perf_counter()
    online = resume is not None or total_timesteps > 0
    model = build_agent(name, env_config, config, seed, tensorboard_log=tb, env_id=env_id, online=online)
    credited = 0.0
    if resume is not None:
        from agents.checkpoint import restore_training_state  # the checkpoint module builds policies through this one

        restore_training_state(model, resume)
    elif config.pretrain_sessions > 0:
        before = time.perf_counter()
        _, fit_seconds = warm_start(model, name, env_config, config, seed, progress, env_id=env_id, cache=warm_cache)
        credited = fit_seconds - (time.perf_counter() - before)  # > 0: a cached fit's own time
    extra = [HParamsCallback({"algo": name, "seed": seed, **asdict(config)})]
    curve = None
    if eval_every > 0:
        curve = HeldOutEvalCallback(make_env(env_config, algo_spec(name).sequential, env_id=env_id), eval_sessions, eval_every,
                                    seed, wall_offset=time.perf_counter() - started + credited)
        extra.append(curve)
    model.learning_curve = curve.curve if curve is not None else []  # grows as it trains (periodic checkpoints)
    model.learn(total_timesteps=total_timesteps - model.num_timesteps,
                callback=CallbackList([ShopMetricsCallback(), *extra, *(callbacks or [])]),
                progress_bar=progress, tb_log_name=name, reset_num_timesteps=resume is None)
    model.name = name
    model.sequential = algo_spec(name).sequential
    if run_dir is not None and curve is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        write_learning_curve(curve.curve, Path(run_dir) / "learning_curve.csv")
    if run_dir is not None:
        from agents.checkpoint import save_training_checkpoint

        save_training_checkpoint(model, name, env_config, config, Path(run_dir), env_id=env_id)
    return model
