"""Auxiliary losses added to PPO's: the multi-task heads' click / purchase losses, and the online score fit.

With ``AgentConfig.aux_heads``, :class:`~agents.extractor.CandidateSetExtractor` predicts a click logit and a
purchase logit for every candidate (``last_aux (B, K, 2)``) from the same embeddings its scores come from.
They are fitted to what each shown product did in its slot: clicked or not, bought or not (the labels the
env reports as ``info["clicked_positions"]`` / ``info["purchased_positions"]``, the parts of
``info["position_rewards"]``), with a position-based model as the warm start's fit uses::

    P(click_n) = sigmoid(a_click[o_n] + b_click[n]),   P(purchase_n) = sigmoid(a_buy[o_n] + b_buy[n])
    L_aux = BCE(click) + BCE(purchase)          (means over the shown, non-empty slots)

``o_n`` is the candidate shown in slot ``n`` and ``b`` a per-slot bias (position effect; learnt, kept in the
policy). The loss is used in two places:

* **Warm start** (:func:`agents.pretrain.pretrain_scores` with ``aux_labels``): added to the score fit.
* **PPO**: the rollout buffer stores each step's per-slot labels (:class:`~agents.slate_ppo.SlotCreditRolloutBuffer`
  with ``aux_labels=True``) and hands them to the policy with the minibatch; the policy adds
  ``aux_loss_weight * L_aux`` to PPO's loss (:func:`with_loss_gradient`), so one backward pass and one
  optimiser step train the policy, value and auxiliary objectives jointly, without touching ``PPO.train``.

**Online score fit** (``AgentConfig.score_fit_weight``): the same route carries a second auxiliary loss, on the
scores themselves rather than on extra heads: the warm start's Poisson fit of each slot's reward
(:func:`profiled_poisson_loss`, its slot biases profiled out in closed form), applied to the slates the policy
shows online (minibatch key :data:`SCORE_FIT_KEY`).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from agents.distributions import order_from_action

AUX_LABEL_KEYS = ("aux_clicks", "aux_purchases")
"""Minibatch observation keys of the per-slot labels ``float32 (B, N)`` (1 = clicked / bought in slot ``n``),
added by the rollout buffer and removed by the policy before its forward pass."""


def shown_slots(actions: torch.Tensor, mask: torch.Tensor, n_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidates the env showed for score ``actions``, as ``envs.core.slate_positions`` picks them.

    Args:
        actions: ``float (B, K)`` scores (rank-encoded Plackett-Luce actions or raw Gaussian scores).
        mask: ``float (B, K)`` 1 for real candidates.
        n_slots: ``N``.

    Returns:
        ``(shown int64 (B, N), filled bool (B, N))``: candidate index per slot (valid candidates by descending
        score, ties in candidate order) and whether the slot holds a real candidate.
    """
    valid = mask > 0.5
    shown = order_from_action(torch.where(valid, actions, torch.full_like(actions, -float("inf"))))[:, :n_slots]
    return shown, valid.gather(1, shown)


def aux_loss(aux_logits: torch.Tensor, slot_bias: torch.Tensor, shown: torch.Tensor, filled: torch.Tensor,
             clicks: torch.Tensor, purchases: torch.Tensor) -> torch.Tensor:
    """Position-based click + purchase cross-entropy of the shown slots (see the module docstring).

    Args:
        aux_logits: ``float (B, K, 2)`` per-candidate click and purchase logits.
        slot_bias: ``float (2, N)`` per-slot click and purchase biases.
        shown: ``int64 (B, N)`` candidate shown in each slot.
        filled: ``bool (B, N)`` slots that hold a real candidate.
        clicks, purchases: ``float (B, N)`` 1 where slot ``n``'s product was clicked / bought.

    Returns:
        Scalar: the mean click BCE plus the mean purchase BCE over filled slots (0 when none is filled).
    """
    weight = filled.float()
    total = aux_logits.new_zeros(())
    for head, labels in enumerate((clicks, purchases)):
        logits = aux_logits[..., head].gather(1, shown) + slot_bias[head]
        total = total + F.binary_cross_entropy_with_logits(logits, labels, weight=weight, reduction="sum")
    return total / weight.sum().clamp(min=1.0)


class _AddLossGradient(torch.autograd.Function):
    """Identity on ``carrier``; in the backward pass ``loss`` also receives gradient 1."""

    @staticmethod
    def forward(ctx, carrier: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        ctx.loss_shape = loss.shape
        return carrier.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return grad, grad.new_ones(ctx.loss_shape)


def with_loss_gradient(carrier: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """``carrier`` unchanged, tied to ``loss`` so that any objective built from it is trained as ``objective + loss``.

    The forward value is ``carrier`` itself; backpropagating an objective ``J(carrier)`` gives every
    parameter ``dJ/dtheta + dloss/dtheta``. This adds an auxiliary loss to a loss computed by code we do not
    own (SB3's ``PPO.train``) in the same backward pass and optimiser step (gradient clipping included),
    as long as ``J`` depends on ``carrier`` (PPO's loss always depends on the log-probabilities).

    Args:
        carrier: Any tensor ``J`` is computed from (PPO: the log-probabilities ``(B,)`` or ``(B, N)``).
        loss: Scalar auxiliary loss (already weighted).
    """
    return _AddLossGradient.apply(carrier, loss)


def poisson_loss(scores: torch.Tensor, slot_bias: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
                 ) -> torch.Tensor:
    """Poisson negative log-likelihood of ``E[target] = exp(score + b_slot)`` (constant terms dropped), weighted mean:
    the warm start's fit of each slot's reward (:mod:`agents.pretrain`) and, online, :func:`profiled_poisson_loss`'s."""
    logits = scores + slot_bias
    return ((torch.exp(logits) - target * logits) * weight).sum() / weight.sum().clamp(min=1.0)


SCORE_FIT_KEY = "fit_rewards"
"""Minibatch observation key of each slot's reward ``float32 (B, N)`` for the online score fit
(:func:`profiled_poisson_loss`), added by the rollout buffer and removed by the policy before its forward pass."""


def profiled_poisson_loss(scores: torch.Tensor, rewards: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """The warm start's Poisson loss of the shown slots (``E[r_n] = exp(score[o_n] + b_n)``,
    :func:`poisson_loss`), with each slot's bias ``b_n`` profiled out in closed form.

    For fixed scores, the bias that minimises the loss on this batch is ``b_n = log(sum_t r_{t,n} / sum_t
    exp(s_{t,n}))``; with it held fixed (detached), the gradient with respect to the scores is the profile
    likelihood's (envelope theorem: the loss is flat in ``b`` at its optimum). So online PPO can keep fitting
    its scores to each rollout's per-slot rewards with no extra parameter, and a warm start that did not keep
    its fitted biases continues unchanged.

    Args:
        scores: ``float (B, N)`` the policy's score of the candidate shown in each slot.
        rewards: ``float (B, N)`` what each slot earned (non-negative).
        filled: ``bool (B, N)`` slots that hold a real candidate.

    Returns:
        Scalar: the weighted mean Poisson loss (constant terms dropped; 0 when no slot is filled).
    """
    weight = filled.float()
    scores = torch.where(filled, scores, torch.zeros_like(scores))
    with torch.no_grad():
        earned = (rewards * weight).sum(dim=0).clamp(min=1e-8)
        log_exposure = torch.logsumexp(scores.masked_fill(~filled, -float("inf")), dim=0)      # stable at any level
        bias = torch.where(filled.any(dim=0), torch.log(earned) - log_exposure, torch.zeros_like(earned))   # (N,)
    return poisson_loss(scores, bias, rewards, weight)
