"""Per-slot credit for PPO with the Plackett-Luce slate policy, through SB3's documented extension points.

A Plackett-Luce slate is ``N`` sequential decisions (slot 1 picks among ``K``, slot 2 among the rest, ...),
and its log-probability is the sum of the per-slot terms (:mod:`agents.distributions`). The env reports
what each shown product earned in its slot, ``info["position_rewards"] (N,)``. With per-slot credit, the
PPO objective is applied to each slot's decision with its own advantage::

    G_{t,n} = sum_{m >= n} g^(m-n) r_{t,m}                 slot n's reward-to-go within the slate
    F_t     = A_t + V(s_t) - R_t                           the future beyond this query (GAE; 0 when it ends)
    A_{t,n} = G_{t,n} + F_t - c_n V(s_t) - mean_t(...)     (n = 0 .. N-1)
    L = - mean_{t,n} min(rho_{t,n} A_{t,n}, clip(rho_{t,n}, 1 - eps, 1 + eps) A_{t,n}),
    rho_{t,n} = pi(o_n | o_<n, s_t) / pi_old(o_n | o_<n, s_t)

where ``A_t`` is the usual GAE advantage of the query step, ``R_t = sum_n r_{t,n}`` and
``c_n = mean(G_n + F) / mean(R + F)`` scales the critic's value to the part of it slot ``n`` is credited
with. Leaving out the rewards of the slots above slot ``n`` drops terms that depend only on decisions
already taken (a shopper reads top-down, so a product placed lower does not change what the ones above
earned): with ``g = 1`` the estimate of the slot's policy gradient stays unbiased while the noise of
those slots' clicks and purchases leaves it. ``c_n V(s_t)`` and the per-slot mean over the rollout are
baselines. ``g`` (``slot_discount``) weighs the slots below: ``g = 0`` credits each decision with its
own product's reward only (much lower variance, biased towards placing the best-looking product first,
which is what a top-down shopper rewards; measured in the README).

**Return credit** (``return_credit=True``, ``ShopRank-v1``): a purchase returned at a visit's end is refunded
there (a negative reward several queries later), but the decision that caused it is the slot that sold it.
The env reports where each returned purchase was bought (``info["returned_slots"]``: queries ago, slot,
refund), so the buffer moves each refund from the step it is paid at to that slot's reward (and that step's
reward), when the sale is in the same rollout: the episode's total reward is unchanged, only the time
and slot it is credited to. Trust's effect on later visits still reaches every slot through ``F_t``.

How it plugs into SB3 without rewriting ``PPO.train``:
* :class:`SlotCreditRolloutBuffer` (PPO's ``rollout_buffer_class``) stores per-slot log-probabilities
  ``(n_steps, n_envs, N)`` and per-slot rewards, and yields per-slot ``advantages`` / ``old_log_prob``
  ``(batch, N)``; SB3's loss (ratio, clipping, normalisation, mean, approximate KL) is elementwise, so it
  applies per slot unchanged.
* The policy's distribution returns per-slot log-probabilities (``PlackettLuceDistribution(per_slot=True)``).
* :class:`SlotCreditPPO` overrides one hook, ``_update_info_buffer`` (called once per rollout step with
  the step's ``infos``), to hand ``position_rewards`` to the buffer.

The maths lives in two pure functions, :func:`envs.slot_flags.slot_rewards_row` and :func:`slot_advantages`, which RLlib's
learner (:mod:`agents.rllib_learner`) calls too: one definition of per-slot credit for both frameworks.

**Auxiliary labels** (``aux_labels=True``, multi-task heads, :mod:`agents.aux_heads`): the same hook stores
each step's per-slot clicks and purchases (``info["clicked_positions"]`` / ``info["purchased_positions"]``),
and the minibatches carry them to the policy as extra observation keys (:data:`~agents.aux_heads.AUX_LABEL_KEYS`),
which adds the auxiliary loss to PPO's. ``credit=False`` keeps SB3's whole-slate advantages and log-probabilities
(labels only), so the auxiliary heads work with or without per-slot credit.

**Online score fit** (``score_fit=True``, ``AgentConfig.score_fit_weight``): the same hook stores each step's
per-slot rewards as a label (:data:`~agents.aux_heads.SCORE_FIT_KEY`), and the policy adds the warm start's
Poisson loss of its own scores on them (:func:`~agents.aux_heads.profiled_poisson_loss`) to PPO's: what the
warm start learnt from randomly ranked logs keeps being fitted on the slates the policy itself shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import DictRolloutBuffer
from stable_baselines3.common.type_aliases import DictRolloutBufferSamples

from agents.aux_heads import AUX_LABEL_KEYS, SCORE_FIT_KEY
from envs.slot_flags import slot_flags, slot_rewards_row


def slot_advantages(slot_rewards: np.ndarray, advantages: np.ndarray, values: np.ndarray,
                    slot_discount: float) -> np.ndarray:
    """Per-slot advantages ``A_{t,n}`` of one rollout (the module docstring's formula), the one definition that
    SB3 (:class:`SlotCreditRolloutBuffer`) and RLlib (:mod:`agents.rllib_learner`) share.

    Args:
        slot_rewards: ``float (M, N)`` each step's per-slot rewards ``r_{t,n}`` (``M`` steps of the rollout, in
            any order: every statistic is a mean over the rollout).
        advantages: ``float (M,)`` each step's GAE advantage ``A_t`` (not normalised).
        values: ``float (M,)`` the critic's ``V(s_t)`` the GAE used.
        slot_discount: ``g``, weight of the slots below a decision.

    Returns:
        ``float32 (M, N)``: ``G_{t,n} + F_t - c_n V(s_t)`` minus its mean over the rollout, per slot.
    """
    r = np.asarray(slot_rewards, dtype=np.float32)
    to_go = np.zeros_like(r)                                                # G_{t,n}
    running = np.zeros(r.shape[0], dtype=np.float32)
    for n in reversed(range(r.shape[1])):
        running = r[:, n] + slot_discount * running
        to_go[:, n] = running
    values = np.asarray(values, dtype=np.float32)[:, None]
    total = r.sum(axis=1, keepdims=True)                                    # R_t
    future = np.asarray(advantages, dtype=np.float32)[:, None] + values - total   # F_t
    share = (to_go + future).mean(axis=0) / max(float((total + future).mean()), 1e-8)   # c_n
    slot_adv = to_go + future - share[None, :] * values
    slot_adv -= slot_adv.mean(axis=0, keepdims=True)                        # a constant baseline per slot
    return slot_adv.astype(np.float32)


class SlotCreditRolloutBuffer(DictRolloutBuffer):
    """``DictRolloutBuffer`` with per-slot log-probabilities, rewards and advantages.

    Args:
        n_slots: ``N``, slots per slate (passed through PPO's ``rollout_buffer_kwargs``).
        slot_discount: ``g`` of the module docstring.
        return_credit: Move refunds to the slot that sold the product (``ShopRank-v1``).
        credit: Per-slot advantages and log-probabilities (False: SB3's per-step ones, e.g. labels only).
        aux_labels: Store per-slot click / purchase labels and add them to the minibatches' observations.
        score_fit: Store each slot's reward and add it to the minibatches' observations (key
            :data:`~agents.aux_heads.SCORE_FIT_KEY`) for the policy's online score fit.
        Other args: as ``DictRolloutBuffer``.
    """

    def __init__(self, *args: Any, n_slots: int, slot_discount: float = 1.0, return_credit: bool = False,
                 credit: bool = True, aux_labels: bool = False, score_fit: bool = False, **kwargs: Any) -> None:
        self.n_slots = n_slots
        self.slot_discount = slot_discount
        self.return_credit = return_credit
        self.credit = credit
        self.aux_labels = aux_labels
        self.score_fit = score_fit
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        super().reset()
        if self.credit:
            self.log_probs = np.zeros((self.buffer_size, self.n_envs, self.n_slots), dtype=np.float32)
        self.slot_rewards = np.zeros((self.buffer_size, self.n_envs, self.n_slots), dtype=np.float32)
        self.slot_advantages = np.zeros((self.buffer_size, self.n_envs, self.n_slots), dtype=np.float32)
        self.reward_shift = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        if self.aux_labels:
            self.slot_labels = np.zeros((len(AUX_LABEL_KEYS), self.buffer_size, self.n_envs, self.n_slots),
                                        dtype=np.float32)
        if self.score_fit:
            self.fit_rewards = np.zeros((self.buffer_size, self.n_envs, self.n_slots), dtype=np.float32)

    def record_step(self, infos: list[dict[str, Any]]) -> None:
        """Store what this buffer uses of the ``infos`` of the step about to be added (``self.pos``)."""
        if self.credit:
            self.record_slot_rewards(infos)
        if self.aux_labels:
            self.record_slot_labels(infos)
        if self.score_fit:
            for env_index, info in enumerate(infos):
                self.fit_rewards[self.pos, env_index, :] = slot_rewards_row(info, self.n_slots)

    def record_slot_labels(self, infos: list[dict[str, Any]]) -> None:
        """Store each env's clicked and purchased slots (``info["clicked_positions"]``, ``info["purchased_positions"]``)."""
        for env_index, info in enumerate(infos):
            for head, outcome in enumerate(("clicks", "purchases")):
                self.slot_labels[head, self.pos, env_index, :] = slot_flags(info, outcome, self.n_slots)

    def record_slot_rewards(self, infos: list[dict[str, Any]]) -> None:
        """Store each env's ``info["position_rewards"]`` for the step about to be added (``self.pos``)."""
        for env_index, info in enumerate(infos):
            self.slot_rewards[self.pos, env_index, :] = slot_rewards_row(info, self.n_slots)
            if self.return_credit:
                self._credit_returns(env_index, info.get("returned_slots"))

    def _credit_returns(self, env_index: int, returned: Any) -> None:
        """Move each refund of ``returned`` (``(r, 3)`` queries ago, slot, refund; rows of ``-1`` are padding)
        from this step to the slot and step that sold the product, when that step is in this rollout."""
        if returned is None:
            return
        for ago, slot, refund in np.asarray(returned, dtype=np.float64).reshape(-1, 3):
            step = self.pos - int(ago)
            if ago < 0 or step < 0 or not 0 <= slot < self.n_slots:
                continue
            self.slot_rewards[step, env_index, int(slot)] -= refund
            self.reward_shift[step, env_index] -= refund
            self.reward_shift[self.pos, env_index] += refund

    def compute_returns_and_advantage(self, last_values, dones: np.ndarray) -> None:
        """GAE as SB3 computes it (on rewards with the refunds moved, with ``return_credit``), then the
        per-slot advantages (see the module docstring)."""
        self.rewards += self.reward_shift
        self.reward_shift[:] = 0.0
        super().compute_returns_and_advantage(last_values, dones)
        if not self.credit:
            return
        t, e, n = self.slot_rewards.shape
        self.slot_advantages = slot_advantages(self.slot_rewards.reshape(t * e, n), self.advantages.reshape(-1),
                                               self.values.reshape(-1), self.slot_discount).reshape(t, e, n)

    def get(self, batch_size: int | None = None):
        if not self.generator_ready:
            self.slot_advantages = self.swap_and_flatten(self.slot_advantages)
            if self.aux_labels:
                self.flat_labels = np.stack([self.swap_and_flatten(labels) for labels in self.slot_labels])
            if self.score_fit:
                self.flat_fit_rewards = self.swap_and_flatten(self.fit_rewards)
        return super().get(batch_size)

    def _get_samples(self, batch_inds: np.ndarray, env=None) -> DictRolloutBufferSamples:
        samples = super()._get_samples(batch_inds, env)
        if self.aux_labels:
            labels = {key: self.to_torch(self.flat_labels[head, batch_inds]) for head, key in enumerate(AUX_LABEL_KEYS)}
            samples = samples._replace(observations={**samples.observations, **labels})
        if self.score_fit:
            samples = samples._replace(observations={**samples.observations,
                                                     SCORE_FIT_KEY: self.to_torch(self.flat_fit_rewards[batch_inds])})
        if not self.credit:
            return samples
        return samples._replace(old_log_prob=self.to_torch(self.log_probs[batch_inds]),
                                advantages=self.to_torch(self.slot_advantages[batch_inds]))


class SlotCreditPPO(PPO):
    """SB3 ``PPO`` whose rollout buffer receives each step's per-slot rewards and labels (see the module docstring).

    Build it with ``rollout_buffer_class=SlotCreditRolloutBuffer``, ``rollout_buffer_kwargs={"n_slots": N}``
    and a policy whose distribution returns per-slot log-probabilities (with ``credit=True``). With auxiliary
    labels, the policy's mean auxiliary loss of each update is logged as ``train/aux_loss``; with the online score
    fit, its mean loss as ``train/score_fit_loss``.
    """

    def _update_info_buffer(self, infos: list[dict[str, Any]], dones: np.ndarray | None = None) -> None:
        super()._update_info_buffer(infos, dones)
        if isinstance(self.rollout_buffer, SlotCreditRolloutBuffer) and not self.rollout_buffer.full:
            self.rollout_buffer.record_step(infos)

    def train(self) -> None:
        super().train()
        for name, attribute in (("aux_loss", "aux_losses"), ("score_fit_loss", "score_fit_losses")):
            losses = getattr(self.policy, attribute, None)
            if losses:
                self.logger.record(f"train/{name}", float(np.mean(losses)))
                losses.clear()
