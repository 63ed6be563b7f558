"""RLlib's PPO learner for ShopRank's module: SB3's optimiser settings and per-slot credit (new API stack).

Needs the ``distributed`` extra (importing it without Ray raises
:class:`~encoders.errors.MissingDependencyError`, through :mod:`agents.rllib_module`).

:class:`ShopRankPPOLearner` is RLlib's ``PPOTorchLearner`` with two changes, both read from the module's own
:class:`~agents.factory.AgentConfig` (``module.agent_config``), so the learner needs no settings of its own:

* Adam with ``eps=1e-5``, as SB3's ``ActorCriticPolicy`` builds it (RLlib's default is torch's ``1e-8``).
* With ``slot_credit=True``, the per-slot credit of :mod:`agents.slate_ppo`, the same maths SB3's
  ``SlotCreditPPO`` trains with, through RLlib's extension points:

  1. :class:`SlotRewardsFromInfos`, a learner connector piece right after ``AddOneTsToEpisodesAndTruncate``,
     reads each step's ``info["position_rewards"]`` from the episodes (step ``t``'s info is the one that came
     with observation ``t + 1``) into a ``slot_rewards (B, N)`` column
     (:func:`envs.slot_flags.slot_rewards_row`, as SB3's buffer does);
  2. :class:`SlotCreditAdvantages`, appended after RLlib's ``GeneralAdvantageEstimation``, turns the GAE
     value targets, the critic's values and those rewards into ``slot_advantages (B, N)`` over the whole
     train batch (:func:`agents.slate_ppo.slot_advantages`, the function SB3's buffer calls; RLlib's
     artificial bootstrap steps, ``loss_mask == False``, are left out of every statistic);
  3. :meth:`ShopRankPPOLearner.compute_loss_for_module` applies PPO's clipped objective to each slot with
     its own ratio ``pi(o_n | o_<n, s) / pi_old(o_n | o_<n, s)`` (both from
     :meth:`~agents.rllib_module.PlackettLuceActionDist.slot_logp`, the old one from the scores the env
     runner sampled with) and normalises the advantages per minibatch as SB3's ``PPO.train`` does::

         A  = (A - mean(A)) / (std(A) + 1e-8)            over the minibatch's (B, N) entries
         L  = mean_b[ -mean_n min(rho A, clip(rho, 1 - eps, 1 + eps) A) + c_v (V - V_target)^2 - c_e H ]

     which is SB3's loss (``policy_loss + ent_coef * entropy_loss + vf_coef * value_loss``) term for term
     (tested to 1e-5 on the same batch).

Without slot credit the learner is RLlib's PPO loss unchanged (the sequence's log-probability, GAE
advantages standardised over the train batch).
"""

from __future__ import annotations

from typing import Any

from agents.rllib_module import PlackettLuceActionDist, ShopRankRLModule  # noqa: F401  (raises without Ray)
from agents.slate_ppo import slot_advantages
from envs.slot_flags import slot_rewards_row

import torch
from ray.rllib.algorithms.ppo.ppo import LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY, LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.connectors.learner import AddOneTsToEpisodesAndTruncate, GeneralAdvantageEstimation
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import ENTROPY_KEY, POLICY_LOSS_KEY, VF_LOSS_KEY
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.torch_utils import explained_variance

SLOT_REWARDS = "slot_rewards"
"""Train-batch column ``float32 (B, N)``: each step's ``info["position_rewards"]``."""
SLOT_ADVANTAGES = "slot_advantages"
"""Train-batch column ``float32 (B, N)``: per-slot advantages (0 on RLlib's artificial bootstrap steps)."""
ADAM_EPS = 1e-5
"""Adam's epsilon, as SB3's ``ActorCriticPolicy`` sets it."""


def _unwrapped(module):
    """The module itself (a multi-learner setup wraps it for DDP)."""
    return module.unwrapped() if hasattr(module, "unwrapped") else module


def _slot_credit(module) -> bool:
    config = getattr(_unwrapped(module), "agent_config", None)
    return bool(config is not None and config.slot_credit)


def _module_of(rl_module, episode):
    """The (single-agent, unwrapped) module an episode's data trains."""
    return _unwrapped(rl_module[episode.module_id or DEFAULT_MODULE_ID])


class SlotRewardsFromInfos(ConnectorV2):
    """Learner connector piece: the ``slot_rewards (B, N)`` column from each step's ``info["position_rewards"]``.

    Runs after ``AddOneTsToEpisodesAndTruncate`` (each episode then has one artificial last step, whose info
    repeats the last real one; its row is masked out of the loss). Episodes of modules without slot credit
    are skipped.
    """

    def __call__(self, *, rl_module, batch: dict[str, Any], episodes, explore=None, shared_data=None,
                 **kwargs) -> Any:
        for episode in self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False):
            module = _module_of(rl_module, episode)
            if not _slot_credit(module):
                continue
            n = len(episode)
            infos = episode.get_infos(slice(1, n + 1))  # info t + 1 came with step t's rewards
            rows = [slot_rewards_row(info, module.slate_size) for info in infos]
            self.add_n_batch_items(batch, SLOT_REWARDS, rows, n, episode)
        return batch


class SlotCreditAdvantages(ConnectorV2):
    """Learner connector piece after ``GeneralAdvantageEstimation``: the ``slot_advantages (B, N)`` column.

    From the GAE value targets ``V_target = A_t + V(s_t)`` (so ``A_t = V_target - V``), the critic's values
    (recomputed: RLlib's GAE piece does not keep them) and ``slot_rewards``, by
    :func:`agents.slate_ppo.slot_advantages` over the batch's real steps.
    """

    def __call__(self, *, rl_module, batch: dict[str, Any], episodes, explore=None, shared_data=None,
                 **kwargs) -> Any:
        for module_id, module_batch in batch.items():
            module = rl_module[module_id]
            if not _slot_credit(module) or SLOT_REWARDS not in module_batch:
                continue
            with torch.no_grad():
                values = module.compute_values(module_batch)
            rewards = module_batch[SLOT_REWARDS]
            valid = (module_batch[Columns.LOSS_MASK] if Columns.LOSS_MASK in module_batch
                     else torch.ones(rewards.shape[0], dtype=torch.bool, device=rewards.device))
            targets = module_batch[Postprocessing.VALUE_TARGETS]
            adv = slot_advantages(rewards[valid].cpu().numpy(), (targets - values)[valid].cpu().numpy(),
                                  values[valid].cpu().numpy(), _unwrapped(module).agent_config.slot_discount)
            out = torch.zeros(rewards.shape, dtype=torch.float32, device=rewards.device)
            out[valid] = torch.as_tensor(adv, device=rewards.device)
            module_batch[SLOT_ADVANTAGES] = out
        return batch


class ShopRankPPOLearner(PPOTorchLearner):
    """PPO learner for :class:`~agents.rllib_module.ShopRankRLModule` (see the module docstring)."""

    def build(self) -> None:
        super().build()  # adds AddOneTsToEpisodesAndTruncate (first) and GeneralAdvantageEstimation (last)
        if self._learner_connector is not None and any(
                _slot_credit(module) for module in self.module._rl_modules.values()):
            self._learner_connector.insert_after(AddOneTsToEpisodesAndTruncate, SlotRewardsFromInfos())
            self._learner_connector.insert_after(GeneralAdvantageEstimation, SlotCreditAdvantages())

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        params = self.get_parameters(self._module[module_id])
        self.register_optimizer(module_id=module_id, optimizer=torch.optim.Adam(params, eps=ADAM_EPS),
                                params=params, lr_or_lr_schedule=config.lr)

    def compute_loss_for_module(self, *, module_id, config, batch: dict[str, Any], fwd_out: dict[str, Any]):
        module = self.module[module_id].unwrapped()
        if not _slot_credit(module):
            return super().compute_loss_for_module(module_id=module_id, config=config, batch=batch, fwd_out=fwd_out)
        rows = batch[SLOT_ADVANTAGES].shape[0]
        valid = batch[Columns.LOSS_MASK] if Columns.LOSS_MASK in batch else torch.ones(
            rows, dtype=torch.bool, device=batch[SLOT_ADVANTAGES].device)
        n_valid = valid.sum()

        def masked_mean(x: torch.Tensor) -> torch.Tensor:
            return x[valid].sum() / n_valid

        dist_cls = module.get_train_action_dist_cls()
        current = dist_cls.from_logits(fwd_out[Columns.ACTION_DIST_INPUTS])
        previous = module.get_exploration_action_dist_cls().from_logits(batch[Columns.ACTION_DIST_INPUTS])
        actions = batch[Columns.ACTIONS]
        ratio = torch.exp(current.slot_logp(actions) - previous.slot_logp(actions))   # (B, N)
        adv = batch[SLOT_ADVANTAGES]
        real = adv[valid]
        adv = (adv - real.mean()) / (real.std() + 1e-8) if real.numel() > 1 else adv  # SB3: per minibatch
        surrogate = torch.min(adv * ratio, adv * torch.clamp(ratio, 1 - config.clip_param, 1 + config.clip_param))
        surrogate = surrogate.mean(dim=1)                                               # (B,)
        values = module.compute_values(batch, embeddings=fwd_out.get(Columns.EMBEDDINGS))
        vf_loss = torch.pow(values - batch[Postprocessing.VALUE_TARGETS], 2.0)
        vf_loss_clipped = torch.clamp(vf_loss, 0, config.vf_clip_param)
        entropy = current.entropy()
        entropy_coeff = self.entropy_coeff_schedulers_per_module[module_id].get_current_value()
        total = masked_mean(-surrogate + config.vf_loss_coeff * vf_loss_clipped - entropy_coeff * entropy)
        self.metrics.log_dict({
            POLICY_LOSS_KEY: -masked_mean(surrogate),
            VF_LOSS_KEY: masked_mean(vf_loss_clipped),
            LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY: masked_mean(vf_loss),
            LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY: explained_variance(batch[Postprocessing.VALUE_TARGETS], values),
            ENTROPY_KEY: masked_mean(entropy),
        }, key=module_id, window=1)
        return total
