"""A permutation-equivariant feature extractor for a set of candidates (SB3 ``BaseFeaturesExtractor``).

Each candidate is embedded by a shared MLP conditioned on a context vector (query, shopper profile,
session features, and attention over the recently clicked products), then the candidates attend to each
other (multi-head self-attention, padding masked), and a shared head gives **one score per candidate**.
Permuting the candidates permutes the scores the same way; the pooled value features are invariant.

Output layout, ``float32 (B, K + value_dim)``: the first ``K`` entries are the candidate scores (masked
candidates get :data:`MASKED_SCORE`), the rest are pooled features for the critic / value head.
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
    """

    def __init__(self, observation_space: gym.spaces.Dict, hidden: int = 64, heads: int = 4, layers: int = 1,
                 value_dim: int = 64, prior_feature: str | None = "retriever_rank", prior_weight: float = 2.0) -> None:
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
        x = self.candidate_mlp(self.candidate_in(own) + self.context_in(context).unsqueeze(1))  # (B, K, D)
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
        scores = self.score_head(torch.cat([x, pooled.unsqueeze(1).expand_as(x)], dim=-1)).squeeze(-1)
        if self.prior_column is not None:
            scores = scores + self.prior_weight * (cand[..., self.prior_column] - 0.5)
        scores = torch.where(selectable, scores, torch.full_like(scores, MASKED_SCORE))
        value = self.value_head(torch.cat([pooled, context], dim=-1))
        return torch.cat([scores, value], dim=1)
