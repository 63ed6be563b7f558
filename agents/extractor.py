"""A permutation-equivariant feature extractor for a set of candidates (SB3 ``BaseFeaturesExtractor``).

Each candidate is embedded by a shared MLP conditioned on a context vector (query, shopper profile,
session features, and attention over the recently clicked products), then the candidates attend to each
other (multi-head self-attention, padding masked), and a shared head gives **one score per candidate**.
Permuting the candidates permutes the scores the same way; the pooled value features are invariant.

Output layout, ``float32 (B, K + value_dim)``: the first ``K`` entries are the candidate scores (masked
candidates get :data:`MASKED_SCORE`), the rest are pooled features for the critic / value head.

Two optional parts:

* **Auxiliary heads** (``aux_heads=True``, multi-task learning): a second head on the same per-candidate
  embeddings predicts each candidate's click and purchase logits, ``float32 (B, K, 2)``, kept as
  :attr:`CandidateSetExtractor.last_aux` after every forward pass (the policy's output is unchanged). They
  are trained on logged / rolled-out per-slot outcomes (:mod:`agents.aux_heads`) so that the shared
  embeddings learn what predicts a click and a purchase, not only what the policy gradient reinforces.
* **Sparse attribute features**: when the observation has an ``attributes`` block (``EnvConfig.attribute_buckets
  > 0``: ``(K, A)`` hashed attribute ids, 0 = none; see :mod:`envs.attributes`), each candidate's ids are
  embedded with ``torch.nn.EmbeddingBag`` (mean of its attribute vectors, id 0 left out) and added to the
  candidate's first layer.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.nn import functional as F

from envs.layout import FeatureLayout

MASKED_SCORE = -1e4
"""Score given to padded (and, in the sequential env, already placed) candidates."""
AUX_TARGETS = ("clicks", "purchases")
"""What the auxiliary heads predict per candidate, in the order of the last axis of ``last_aux``."""


class Attention(nn.Module):
    """Multi-head scaled dot-product attention of queries over a masked key set (one fused kernel).

    The same maths as ``nn.MultiheadAttention`` (packed q/k/v projections, output projection) without
    its per-call argument checking, which dominated the cost at ShopRank's small sizes.

    Args:
        dim: ``D``, width of queries, keys and values.
        heads: Attention heads (``D`` divisible by it).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """``x (B, Q, D)`` attends over ``keys (B, M, D)`` where ``key_mask (B, M)`` is True; -> ``(B, Q, D)``.
        Every row needs at least one True key."""
        b, q_len, d = x.shape
        h = self.heads
        q = self.query(x).view(b, q_len, h, d // h).transpose(1, 2)                    # (B, h, Q, D/h)
        k, v = self.key_value(keys).view(b, keys.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        return self.out(out.transpose(1, 2).reshape(b, q_len, d))


class CandidateSetExtractor(BaseFeaturesExtractor):
    """Scores ``K`` candidates from a ShopRank ``Dict`` observation.

    Args:
        observation_space: The env's ``Dict`` space (keys ``query``, ``profile``, ``session``, ``history``,
            ``history_mask``, ``candidates``, ``mask``; optionally ``placed`` and ``slot`` from the
            sequential env).
        hidden: Width of the candidate embeddings.
        heads: Attention heads.
        layers: Self-attention layers across candidates.
        value_dim: Width of the pooled features appended after the scores.
        prior_feature: Name of the candidate feature (:class:`~envs.layout.FeatureLayout`) holding the
            retriever's rank score (``1 - rank / K``);
            the scores start as ``prior_weight * (column - 0.5)`` plus the learned head, so an untrained
            policy ranks like the retriever and learning adds corrections (``None`` disables it).
        prior_weight: Initial weight of that prior (learnable).
        aux_heads: Add the click / purchase head (see the module docstring and :attr:`last_aux`).
    """

    def __init__(self, observation_space: gym.spaces.Dict, hidden: int = 64, heads: int = 4, layers: int = 1,
                 value_dim: int = 64, prior_feature: str | None = "retriever_rank", prior_weight: float = 2.0,
                 aux_heads: bool = False) -> None:
        spaces = observation_space.spaces
        k, f = spaces["candidates"].shape
        super().__init__(observation_space, features_dim=k + value_dim)
        self.n_candidates = k
        self.has_placed = "placed" in spaces
        context_keys = ["query", "profile", "session"] + (["slot"] if "slot" in spaces else [])
        self.context_keys = context_keys
        context_dim = sum(int(torch.tensor(spaces[key].shape).prod()) for key in context_keys)
        history_dim = spaces["history"].shape[1]
        self.history_proj = nn.Linear(history_dim, hidden)
        self.context_mlp = nn.Sequential(nn.Linear(context_dim + hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        extra = 1 if self.has_placed else 0
        # first layer over [candidate, context] split in two: the context half is computed once per
        # observation, not once per candidate (the same function, K times fewer multiply-adds for it)
        self.candidate_in = nn.Linear(f + extra, hidden)
        self.context_in = nn.Linear(hidden, hidden, bias=False)
        self.candidate_mlp = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden))
        # FiLM conditioning: the context scales and shifts each candidate embedding, so products of
        # shopper taste and product look (what the shopper's utility is made of) are one layer away
        self.film = nn.Linear(hidden, 2 * hidden)
        self.post_film = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.history_attention = Attention(hidden, heads)
        self.attention = nn.ModuleList(Attention(hidden, heads) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.score_head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.value_head = nn.Sequential(nn.Linear(2 * hidden, value_dim), nn.ReLU())
        self.aux_head = (nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, len(AUX_TARGETS)))
                         if aux_heads else None)
        self.aux_slot_bias = nn.Parameter(torch.zeros(len(AUX_TARGETS), k)) if aux_heads else None
        """``float32 (2, K)`` click and purchase bias of each slot (position effect; slots ``0 .. N-1`` used)."""
        self.last_aux: torch.Tensor | None = None
        """``float32 (B, K, 2)`` click and purchase logits of every candidate from the latest forward pass
        (``None`` without ``aux_heads``); read by the auxiliary losses of the same pass."""
        self.attribute_bag = None
        if "attributes" in spaces:  # hashed attribute ids (K, A), 0 = no attribute
            n_buckets = int(spaces["attributes"].high.max()) + 1
            self.attribute_bag = nn.EmbeddingBag(n_buckets, hidden, mode="mean", padding_idx=0)
            nn.init.normal_(self.attribute_bag.weight, std=hidden ** -0.5)
            with torch.no_grad():
                self.attribute_bag.weight[0].zero_()
        layout = FeatureLayout.of_observation({key: np.zeros(space.shape) for key, space in spaces.items()})
        self.prior_column = layout.column(prior_feature) if prior_feature is not None else None
        self.prior_weight = nn.Parameter(torch.tensor(float(prior_weight)))

    def shrink_score_head(self, scale: float = 0.01) -> None:
        """Scale the score head's last layer down, so an untrained policy ranks by the prior."""
        with torch.no_grad():
            self.score_head[-1].weight.mul_(scale)
            self.score_head[-1].bias.zero_()

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        cand = obs["candidates"]                                   # (B, K, F)
        valid = obs["mask"] > 0.5                                  # (B, K)
        selectable = valid & (obs["placed"] < 0.5) if self.has_placed else valid
        bsz = cand.shape[0]
        history = self.history_proj(obs["history"])                # (B, H, D)
        hmask = obs["history_mask"] > 0.5
        h_pool = (history * hmask.unsqueeze(-1)).sum(1) / hmask.sum(1, keepdim=True).clamp(min=1)
        context = torch.cat([obs[key].reshape(bsz, -1) for key in self.context_keys] + [h_pool], dim=1)
        context = self.context_mlp(context)                        # (B, D)
        own = torch.cat([cand, obs["placed"].unsqueeze(-1)], dim=-1) if self.has_placed else cand
        first = self.candidate_in(own) + self.context_in(context).unsqueeze(1)                 # (B, K, D)
        if self.attribute_bag is not None:
            ids = obs["attributes"].long()                                                    # (B, K, A)
            first = first + self.attribute_bag(ids.reshape(-1, ids.shape[-1])).view(bsz, ids.shape[1], -1)
        x = self.candidate_mlp(first)                                                         # (B, K, D)
        gamma, beta = self.film(context).unsqueeze(1).chunk(2, dim=-1)
        x = self.post_film(x * (1 + gamma) + beta)
        # candidates attend to the clicked products (the shopper's memory); no history -> no update
        has_history = hmask.any(dim=1, keepdim=True)               # (B, 1)
        if bool(has_history.any()):                                # (one-query episodes never have history)
            recalled = self.history_attention(x, history, hmask | ~has_history)
            x = x + recalled * has_history.unsqueeze(-1)
        safe_valid = valid | ~valid.any(dim=1, keepdim=True)       # avoid all-masked rows (NaN)
        for attention, norm in zip(self.attention, self.norms):
            x = norm(x + attention(x, x, safe_valid))
        pooled = (x * valid.unsqueeze(-1)).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        both = torch.cat([x, pooled.unsqueeze(1).expand_as(x)], dim=-1)                     # (B, K, 2D)
        scores = self.score_head(both).squeeze(-1)
        if self.aux_head is not None:
            self.last_aux = self.aux_head(both)                                               # (B, K, 2)
        if self.prior_column is not None:
            scores = scores + self.prior_weight * (cand[..., self.prior_column] - 0.5)
        scores = torch.where(selectable, scores, torch.full_like(scores, MASKED_SCORE))
        value = self.value_head(torch.cat([pooled, context], dim=-1))
        return torch.cat([scores, value], dim=1)
