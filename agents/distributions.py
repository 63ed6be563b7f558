"""A Plackett-Luce slate distribution over candidate scores, usable as an SB3 action distribution.

A Plackett-Luce (PL) ranking distribution with scores ``s (K,)`` draws a slate top-down: slot ``n`` takes
candidate ``i`` among those not yet placed with probability ``exp(s_i) / sum_{j remaining} exp(s_j)``
(softmax without replacement; Plackett 1975, Luce 1959). For the shown top ``N`` of an order
``o = (o_1, ..., o_K)``::

    log P(o_1..o_N | s) = sum_{n=1..N} [ s_{o_n} - logsumexp_{m >= n} s_{o_m} ]

* **Sampling** is exact with the Gumbel-top-k trick: perturb each score with i.i.d. Gumbel(0, 1) noise and
  sort (Yellott 1977; Kool et al. 2019).
* **Actions** stay what ``ShopRank-v0`` expects, a ``Box(K)`` score vector: the sampled order is encoded as
  rank scores (the candidate at rank ``p`` gets ``1 - 2p / (K - 1)``), so the env's "top N by score" shows
  exactly the sampled slate. :func:`order_from_action` inverts the encoding (stable: ties keep candidate
  order, as the env does).
* **Masked candidates** (padding, score :data:`~agents.extractor.MASKED_SCORE`) sort last and their slots
  contribute nothing to the log-probability.
* **Entropy** has no closed form for ``N > 1``; :meth:`PlackettLuceDistribution.entropy` returns the sum of
  the per-slot conditional entropies along the greedy order (exact for ``N = 1``; a smooth, deterministic
  estimate otherwise, used only for the entropy bonus).

Only the relative order of the first ``N`` slots earns reward, so the log-probability covers those
``N`` terms (:meth:`slot_log_probs` gives them one by one, for per-slot credit).
"""

from __future__ import annotations

import torch
from stable_baselines3.common.distributions import CategoricalDistribution
from torch import nn

MASK_THRESHOLD = -1e3
"""Scores below this are masked candidates (the extractor gives them ``MASKED_SCORE = -1e4``)."""


def rank_encoding(order: torch.Tensor) -> torch.Tensor:
    """Scores that rank candidates in ``order``: ``float32 (B, K)`` with ``action[b, order[b, p]] = 1 - 2p/(K-1)``.

    Args:
        order: ``int64 (B, K)`` candidate indices, top slot first (a permutation per row).
    """
    b, k = order.shape
    ranks = torch.linspace(1.0, -1.0, k, device=order.device) if k > 1 else torch.ones(1, device=order.device)
    action = torch.empty(b, k, device=order.device)
    action.scatter_(1, order, ranks.expand(b, k))
    return action


def order_from_action(action: torch.Tensor) -> torch.Tensor:
    """The order an action's scores encode, ``int64 (B, K)``, highest first; ties keep candidate order."""
    return torch.sort(action, dim=-1, descending=True, stable=True).indices


def slot_log_probs(scores: torch.Tensor, order: torch.Tensor, n_slots: int) -> torch.Tensor:
    """Per-slot Plackett-Luce log-probabilities of the first ``n_slots`` of ``order``.

    Args:
        scores: ``float (B, K)`` candidate scores (masked candidates below :data:`MASK_THRESHOLD`).
        order: ``int64 (B, K)`` a full order of the candidates per row.
        n_slots: ``N``, the shown slots.

    Returns:
        ``float (B, N)``: ``s_{o_n} - logsumexp_{m >= n} s_{o_m}`` for real candidates, 0 where slot ``n``
        holds a masked one.
    """
    ordered = scores.gather(1, order)                                      # (B, K)
    tail_lse = torch.logcumsumexp(ordered.flip(-1), dim=-1).flip(-1)       # logsumexp over slots m >= n
    terms = (ordered - tail_lse)[:, :n_slots]
    return torch.where(ordered[:, :n_slots] > MASK_THRESHOLD, terms, torch.zeros_like(terms))


def sample_order(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A Plackett-Luce draw of a full order per row by the Gumbel-top-k trick, ``int64 (B, K)``."""
    uniform = torch.rand(scores.shape, generator=generator, device=scores.device).clamp_(1e-12, 1.0 - 1e-7)
    gumbel = -torch.log(-torch.log(uniform))
    return torch.sort(scores + gumbel, dim=-1, descending=True).indices


class PlackettLuceDistribution(CategoricalDistribution):
    """SB3 action distribution: Plackett-Luce over ``K`` candidate scores, the top ``N`` shown.

    It plugs into SB3's ``ActorCriticPolicy`` where a categorical distribution would (the policy's
    latent is already the ``K`` scores, so :meth:`proba_distribution_net` is the identity); actions are
    rank-encoded ``Box(K)`` score vectors (see the module docstring).

    Args:
        n_candidates: ``K``.
        n_slots: ``N``, slots whose order earns reward (the log-probability covers these).
        per_slot: :meth:`log_prob` returns the ``(B, N)`` per-slot terms instead of their sum (per-slot
            credit, :mod:`agents.slate_ppo`).
    """

    def __init__(self, n_candidates: int, n_slots: int, per_slot: bool = False) -> None:
        super().__init__(n_candidates)
        if not 1 <= n_slots <= n_candidates:
            raise ValueError(f"PlackettLuceDistribution needs 1 <= n_slots <= n_candidates={n_candidates}, "
                             f"got {n_slots}.")
        self.n_slots = n_slots
        self.per_slot = per_slot
        self.scores: torch.Tensor | None = None

    def proba_distribution_net(self, latent_dim: int) -> nn.Module:
        if latent_dim != self.action_dim:
            raise ValueError(f"the policy latent must be the {self.action_dim} candidate scores, got width {latent_dim}.")
        return nn.Identity()

    def proba_distribution(self, action_logits: torch.Tensor) -> "PlackettLuceDistribution":
        self.scores = action_logits
        return self

    def slot_log_probs(self, actions: torch.Tensor) -> torch.Tensor:
        """``float (B, N)`` per-slot log-probabilities of the slates that rank-encoded ``actions`` show."""
        return slot_log_probs(self.scores, order_from_action(actions), self.n_slots)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """``float (B,)`` log-probability of the shown top ``N`` of each action's order (``(B, N)`` per-slot
        terms with ``per_slot``)."""
        terms = self.slot_log_probs(actions)
        return terms if self.per_slot else terms.sum(dim=1)

    def entropy(self) -> torch.Tensor:
        """``float (B,)`` sum of per-slot conditional entropies along the greedy order (see module doc)."""
        order = torch.sort(self.scores.detach(), dim=-1, descending=True).indices
        ordered = self.scores.gather(1, order)
        total = torch.zeros(ordered.shape[0], device=ordered.device)
        for n in range(self.n_slots):
            rest = ordered[:, n:]
            valid = rest > MASK_THRESHOLD  # masked scores are finite (-1e4): their p is ~0, zeroed below
            log_p = torch.log_softmax(rest, dim=-1)
            total = total - torch.where(valid, log_p.exp() * log_p, torch.zeros_like(log_p)).sum(dim=-1)
        return total

    def sample(self) -> torch.Tensor:
        return rank_encoding(sample_order(self.scores.detach()))

    def mode(self) -> torch.Tensor:
        return rank_encoding(torch.sort(self.scores.detach(), dim=-1, descending=True, stable=True).indices)

    def actions_from_params(self, action_logits: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        self.proba_distribution(action_logits)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, action_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actions = self.actions_from_params(action_logits)
        return actions, self.log_prob(actions)
