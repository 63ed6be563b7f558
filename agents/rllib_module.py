"""ShopRank's PPO policy as an RLlib ``RLModule`` (new API stack, torch): one network, two frameworks.

Needs the ``distributed`` extra (``ray[rllib]``); importing this module without Ray raises
:class:`~encoders.errors.MissingDependencyError` with the install command. Nothing else in :mod:`agents`
imports it, so the package works without Ray.

The seam
--------
:class:`ShopRankRLModule` does not define a network. Its ``setup`` builds the very ``nn.Module`` SB3's PPO
trains, :class:`~agents.policies.CandidateScorePolicy` (the candidate-set extractor
:class:`~agents.extractor.CandidateSetExtractor`, the score split and the critic), from the same
:class:`~agents.factory.AgentConfig` through the same :func:`~agents.factory.ppo_policy_kwargs`, and holds it
as ``self.policy``. RLlib's forward passes call that policy's own sub-modules:

* ``Columns.ACTION_DIST_INPUTS`` = the ``K`` candidate scores ``(B, K)`` (the policy's actor latent; its
  action head is the identity);
* ``compute_values`` = the policy's ``value_net`` over its critic latent, ``(B,)``.

The action distribution is :class:`PlackettLuceActionDist`, a thin RLlib ``Distribution`` adapter around
:class:`~agents.distributions.PlackettLuceDistribution` (the SB3 class; sampling, log-probabilities, entropy
and the greedy mode are its methods, not a second copy). Actions are the rank-encoded ``Box(K)`` score
vectors ``ShopRank-v0`` takes, exactly as under SB3.

Weights therefore move between the frameworks by renaming only: the module's state dict is the SB3
policy's with a ``policy.`` prefix (:func:`sb3_state_dict`, :func:`load_sb3_state_dict`), and
:func:`export_checkpoint` writes it as an ordinary ShopRank checkpoint (``agent.json`` + ``policy.pt``, algo
``ppo``, tensors only) that ``shoprank evaluate --checkpoint`` and :func:`agents.checkpoint.load_agent` read
under the data-only checkpoint rules, never unpickling anything of RLlib's.

Per-slot credit (``AgentConfig.slot_credit``, :mod:`agents.slate_ppo`) is the learner's part:
:class:`agents.rllib_learner.ShopRankPPOLearner` (the learner class of
:func:`experiments.rllib_backend.ppo_config`) computes
the per-slot advantages in RLlib's learner connector pipeline and the per-slot PPO loss from
:meth:`PlackettLuceActionDist.slot_logp`. Return credit (``ShopRank-v1``) is not carried over; the module
refuses a config that asks for it.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from agents.distributions import PlackettLuceDistribution
from agents.factory import AgentConfig, ppo_policy_kwargs
from agents.policies import CandidateScorePolicy
from encoders.errors import ConfigError, MissingDependencyError
from envs.config import EnvConfig

INSTALL_HINT = ("Ray RLlib is not installed: `pip install shoprank[distributed]` "
                "(or `pip install -c constraints.txt \"ray[rllib]==2.60.*\"`, or `make distributed`).")

try:
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.distribution.distribution import Distribution
    from ray.rllib.core.rl_module.apis import ValueFunctionAPI
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.core.rl_module.torch import TorchRLModule
except ImportError as exc:  # the distributed extra is optional
    raise MissingDependencyError(INSTALL_HINT) from exc

PREFIX = "policy."
"""Prefix of the SB3 policy's parameter names inside :class:`ShopRankRLModule`'s state dict."""


class PlackettLuceActionDist(Distribution):
    """RLlib action distribution over rank-encoded slates: :class:`~agents.distributions.PlackettLuceDistribution`.

    Every method delegates to the SB3 distribution (the same maths SB3's PPO uses).

    Args:
        logits: ``float (B, K)`` candidate scores (``Columns.ACTION_DIST_INPUTS``).
        n_slots: ``N``, shown slots (the log-probability covers their order).
        deterministic: ``sample()`` returns the greedy order (RLlib's ``to_deterministic``, used for
            ``explore=False``).
    """

    def __init__(self, logits: torch.Tensor, n_slots: int, deterministic: bool = False) -> None:
        super().__init__()
        self.logits = logits
        self.n_slots = n_slots
        self.deterministic = deterministic
        self.dist = PlackettLuceDistribution(int(logits.shape[-1]), n_slots).proba_distribution(logits)

    def sample(self, *, sample_shape=None) -> torch.Tensor:
        """``float32 (B, K)`` rank-encoded action: a Plackett-Luce draw (Gumbel-top-k), or the greedy order."""
        if sample_shape:
            raise ValueError("PlackettLuceActionDist draws one slate per row (no sample_shape).")
        return self.dist.mode() if self.deterministic else self.dist.sample()

    def rsample(self, *, sample_shape=None):
        raise NotImplementedError("a Plackett-Luce slate is discrete: no reparameterised sample.")

    def logp(self, value: torch.Tensor, **kwargs) -> torch.Tensor:
        """``float (B,)`` log-probability of the shown top ``N`` of each rank-encoded action."""
        return self.dist.slot_log_probs(value).sum(dim=1)

    def slot_logp(self, value: torch.Tensor) -> torch.Tensor:
        """``float (B, N)`` the per-slot terms of :meth:`logp` (per-slot credit, :mod:`agents.rllib_learner`)."""
        return self.dist.slot_log_probs(value)

    def entropy(self, **kwargs) -> torch.Tensor:
        """``float (B,)`` per-slot conditional entropies along the greedy order (see :mod:`agents.distributions`)."""
        return self.dist.entropy()

    def kl(self, other: "Distribution", **kwargs) -> torch.Tensor:
        raise NotImplementedError("Plackett-Luce slates have no closed-form KL; train with use_kl_loss=False "
                                  "(as experiments.rllib_backend does).")

    @staticmethod
    def required_input_dim(space, **kwargs) -> int:
        return int(space.shape[0])

    @classmethod
    def from_logits(cls, logits: torch.Tensor, **kwargs) -> "PlackettLuceActionDist":
        return cls(logits, **kwargs)

    def to_deterministic(self) -> "PlackettLuceActionDist":
        return type(self)(self.logits, self.n_slots, deterministic=True)


def agent_config_from_dict(data: Mapping[str, Any]) -> AgentConfig:
    """An :class:`AgentConfig` from its ``asdict`` form (what travels in RLlib's ``model_config``)."""
    known = {f.name for f in fields(AgentConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown AgentConfig field(s) {unknown} in the RLlib model_config.")
    return AgentConfig(**dict(data))


def check_config(config: AgentConfig) -> None:
    """Raise :class:`~encoders.errors.ConfigError` for what the RLlib module does not support."""
    if config.slate_policy != "plackett_luce":
        raise ConfigError(f"the RLlib module supports slate_policy='plackett_luce', got {config.slate_policy!r}.")
    if config.return_credit:
        raise ConfigError("the RLlib module does not implement return credit (AgentConfig.return_credit=True, "
                          "ShopRank-v1): train it with return_credit=False.")
    if config.aux_heads:
        raise ConfigError("the RLlib module does not implement the auxiliary heads' loss (AgentConfig.aux_heads=True): "
                          "train it with aux_heads=False.")
    if config.score_fit_weight > 0:
        raise ConfigError("the RLlib module does not implement the online score fit (AgentConfig.score_fit_weight > 0): "
                          "train it with score_fit_weight=0.")


def build_sb3_policy(observation_space, action_space, config: AgentConfig, slate_size: int,
                     seed: int = 0) -> CandidateScorePolicy:
    """The untrained :class:`~agents.policies.CandidateScorePolicy` SB3's PPO would build for these spaces,
    initialised from ``seed`` (a forked torch RNG: the global one is left as it was); no optimiser."""
    check_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = CandidateScorePolicy(observation_space, action_space, lambda _: config.learning_rate,
                                      **ppo_policy_kwargs(config, slate_size))
    policy.optimizer = None  # RLlib's learner owns the optimiser
    return policy


class ShopRankRLModule(TorchRLModule, ValueFunctionAPI):
    """RLlib module around ShopRank's SB3 PPO policy (see the module docstring).

    ``model_config`` keys: ``agent_config`` (``asdict`` of an :class:`AgentConfig`), ``slate_size`` (``N``),
    ``seed`` (initialisation; default 0).
    """

    def setup(self) -> None:
        config = agent_config_from_dict(self.model_config["agent_config"])
        self.agent_config = config
        torch.set_num_threads(config.torch_threads)
        self.slate_size = int(self.model_config["slate_size"])
        self.policy = build_sb3_policy(self.observation_space, self.action_space, config, self.slate_size,
                                       int(self.model_config.get("seed", 0)))
        self.action_dist_cls = PlackettLuceActionDist.get_partial_dist_cls(n_slots=self.slate_size)

    def _latents(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores (B, K), critic latent (B, H))`` through the policy's own modules (SB3's forward)."""
        policy = self.policy
        features = policy.extract_features(obs)
        if policy.share_features_extractor:
            latent_pi, latent_vf = policy.mlp_extractor(features)
        else:
            latent_pi = policy.mlp_extractor.forward_actor(features[0])
            latent_vf = policy.mlp_extractor.forward_critic(features[1])
        return policy.action_net(latent_pi), latent_vf

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        scores, _ = self._latents(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: scores}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        scores, latent_vf = self._latents(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: scores, Columns.EMBEDDINGS: latent_vf}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """``float (B,)`` state values (the policy's ``value_net`` over its critic latent)."""
        if embeddings is None:
            _, embeddings = self._latents(batch[Columns.OBS])
        return self.policy.value_net(embeddings).squeeze(-1)


def module_spec(config: AgentConfig, slate_size: int, seed: int = 0) -> RLModuleSpec:
    """The ``RLModuleSpec`` of :class:`ShopRankRLModule` for ``config`` (spaces come from the env)."""
    check_config(config)
    return RLModuleSpec(module_class=ShopRankRLModule,
                        model_config={"agent_config": asdict(config), "slate_size": int(slate_size), "seed": seed})


def sb3_state_dict(module_state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """SB3 ``CandidateScorePolicy`` state dict from a :class:`ShopRankRLModule` state (tensors or NumPy arrays,
    e.g. ``module.get_state()``): the ``policy.`` prefix dropped, values as CPU tensors."""
    state = {k[len(PREFIX):]: torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v).cpu()
             for k, v in module_state.items() if k.startswith(PREFIX)}
    if not state:
        raise ConfigError(f"not a ShopRankRLModule state: no parameter starts with {PREFIX!r} "
                          f"(got {sorted(module_state)[:5]}...).")
    return state


def load_sb3_state_dict(module: ShopRankRLModule, state: Mapping[str, torch.Tensor]) -> None:
    """Load SB3 policy weights (e.g. :func:`agents.checkpoint.read_weights` of a ShopRank checkpoint) into
    ``module`` for fine-tuning with RLlib; keys and shapes must match exactly."""
    module.policy.load_state_dict(dict(state), strict=True)


def export_checkpoint(module_state: Mapping[str, Any], env_config: EnvConfig, config: AgentConfig,
                      path: Path) -> Path:
    """Write a ShopRank checkpoint (``agent.json`` + ``policy.pt``, algo ``ppo``) from a module's weights.

    The env's feature layout is read from a single ``ShopRank-v0`` env built here, the catalog fingerprint
    from its (cached) world.

    Args:
        module_state: :class:`ShopRankRLModule` state (``policy.``-prefixed names -> arrays/tensors).
        env_config: The env config it was trained on.
        config: The agent config the module was built with.
        path: Checkpoint folder (created).

    Returns:
        ``path``.
    """
    from agents.checkpoint import save_policy
    from agents.factory import make_env

    state = sb3_state_dict(module_state)
    env = make_env(env_config, sequential=False)
    try:
        layout = getattr(env.unwrapped, "layout", None)
        policy = build_sb3_policy(env.observation_space, env.action_space, config, env_config.slate_size)
    finally:
        env.close()
    policy.load_state_dict(state, strict=True)  # the export is checked against the network it claims to be
    return save_policy(policy, "ppo", env_config, config, Path(path), layout=layout)
