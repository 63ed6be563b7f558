"""Why did the agent score a product so? Feature-group attributions of a candidate-set network's scores.

A ShopRank agent scores every candidate from one observation (:class:`~agents.extractor.CandidateSetExtractor`:
PPO's logits, DQN's Q-values). This module splits each score over **feature groups** of the observation
(:func:`feature_groups`, found by name through :class:`~envs.layout.FeatureLayout`):

* ``text`` / ``photo``: the text and photo blocks of every candidate's fused vector (the ``block`` fusion
  keeps each modality in its own columns, :meth:`~encoders.fusion.BlockProjectionFusion.column_blocks`; other
  fusions mix them, and the fused vector is then one group, ``product vector``); ``photo`` also holds the
  has-photo flag;
* ``price`` (price z-score), ``retriever`` (retriever score and rank), ``attributes`` (any further candidate
  columns, e.g. sparse attribute features; absent when the observation has none);
* ``profile``, ``session``, ``query``, ``history`` (the context blocks).

Masks (``mask``, ``history_mask``, and the sequential env's ``placed`` / ``slot``) are held at their values.

The **baseline** is the observation with every candidate-feature group replaced by its mean over the valid
candidates (all candidates look alike) and every context group by zeros. Two attribution methods
(:data:`METHODS`):

* ``shapley``: exact Shapley values over the groups (``2^G`` network evaluations in one batch; ``G <= 10``).
  They sum to ``score(x) - score(baseline)`` up to float rounding (efficiency).
* ``ig``: integrated gradients along the straight path from the baseline (Sundararajan et al., 2017),
  Gauss-Legendre quadrature in float64; their sum misses ``score(x) - score(baseline)`` by the quadrature
  error at the ReLU kinks, which is reported.

:func:`attention_maps` reads the attention weights of the history and set attention layers;
:func:`randomised_network` gives the re-initialised network of the sanity check of Adebayo et al. (2018);
:class:`PermutedGroupAgent` is the global view (a group permuted across candidates, the drop in reward).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from encoders.errors import ConfigError
from envs.layout import FeatureLayout

CONTEXT_BLOCKS = ("profile", "session", "query", "history")
"""Observation blocks that describe the shopper and the query (one per observation, not per candidate)."""
KNOWN_CANDIDATE_FEATURES = ("fused", "retriever_score", "retriever_rank", "price_z", "has_photo")
MAX_SHAPLEY_GROUPS = 10
"""Exact Shapley values evaluate the network on ``2^G`` inputs; above this use ``ig``."""


@dataclass(frozen=True)
class FeatureGroup:
    """A named set of observation entries that is attributed (and permuted) together.

    Attributes:
        name: Group name (a CSV column).
        columns: Observation block -> columns of its last axis in the group (``None``: the whole block).
        per_candidate: True for columns of the ``candidates`` block (permuted across candidates), False for a
            context block (shuffled across observations in the global view).
        carry: Blocks that travel with it when it is swapped for another observation's (``history_mask``).
        discrete: Integer ids (the hashed ``attributes`` block): scrambled in the global view, but not
            attributed by Shapley values or integrated gradients, which need a mean of, or a path between,
            inputs that ids do not have.
    """

    name: str
    columns: tuple[tuple[str, tuple[int, ...] | None], ...]
    per_candidate: bool
    carry: tuple[str, ...] = ()
    discrete: bool = False

    def mask(self, obs: Mapping[str, Any], key: str) -> np.ndarray | None:
        """``bool`` array of block ``key``'s shape (unbatched) that is True on this group's entries."""
        for block, cols in self.columns:
            if block == key:
                shape = np.shape(obs[key])
                out = np.zeros(shape, dtype=bool)
                if cols is None:
                    out[...] = True
                else:
                    out[..., list(cols)] = True
                return out
        return None


def _range(cols: slice) -> tuple[int, ...]:
    return tuple(range(cols.start, cols.stop))


def fused_blocks(fusion: Any, fused_dim: int) -> dict[str, slice] | None:
    """Columns of each modality in the fused vector, or ``None`` when the fusion mixes them (one group then)."""
    blocks = getattr(fusion, "column_blocks", None)
    if not callable(blocks):
        return None
    out = blocks()
    if max(s.stop for s in out.values()) != fused_dim:
        return None
    return out


def feature_groups(layout: FeatureLayout, fusion: Any = None) -> list[FeatureGroup]:
    """The feature groups of an observation (see the module docstring), in a fixed order.

    Args:
        layout: The observation's layout.
        fusion: The world's fusion (``world.fusion``); its :meth:`column_blocks` splits the fused vector into
            ``text`` and ``photo`` (``image``) columns. ``None`` or a mixing fusion: one ``product vector``
            group.
    """
    fused = layout.columns("fused")
    blocks = fused_blocks(fusion, fused.stop) if fusion is not None else None
    photo_flag = (layout.column("has_photo"),)
    groups: list[FeatureGroup] = []
    if blocks is not None and "text" in blocks:
        groups.append(FeatureGroup("text", (("candidates", _range(blocks["text"])),), True))
        photo = tuple(c for m, s in blocks.items() if m != "text" for c in _range(s))
        groups.append(FeatureGroup("photo", (("candidates", photo + photo_flag),), True))
    else:
        groups.append(FeatureGroup("product vector", (("candidates", _range(fused) + photo_flag),), True))
    groups.append(FeatureGroup("price", (("candidates", (layout.column("price_z"),)),), True))
    groups.append(FeatureGroup("retriever", (("candidates", (layout.column("retriever_score"),
                                                             layout.column("retriever_rank"))),), True))
    extra = tuple(c for name, start, stop in layout.candidates if name not in KNOWN_CANDIDATE_FEATURES
                  for c in range(start, stop))
    if extra:
        groups.append(FeatureGroup("attributes", (("candidates", extra),), True))
    present = {key for key, _ in layout.blocks}
    if "attributes" in present:
        groups.append(FeatureGroup("attribute ids", (("attributes", None),), True, discrete=True))
    for key in CONTEXT_BLOCKS:
        if key in present:
            groups.append(FeatureGroup(key, ((key, None),), False, ("history_mask",) if key == "history" else ()))
    return groups


# -- the network as a scorer --------------------------------------------------------------------------------
def score_network(policy: Any) -> nn.Module:
    """The candidate-set extractor that gives a policy's per-candidate scores (PPO's actor, DQN's Q-network)."""
    extractor = getattr(policy, "pi_features_extractor", None)
    if extractor is None:
        q_net = getattr(policy, "q_net", None)
        extractor = getattr(q_net, "features_extractor", None)
    if extractor is None or not hasattr(extractor, "n_candidates"):
        raise ConfigError(f"{type(policy).__name__} has no candidate-set extractor to explain.")
    return extractor


def scores_of(net: nn.Module, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``(B, K)`` candidate scores of a batched observation."""
    return net(dict(obs))[:, : net.n_candidates]


def to_batch(obs: Mapping[str, np.ndarray], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """One observation as a batch of one."""
    return {k: torch.as_tensor(np.asarray(v), dtype=dtype).unsqueeze(0) for k, v in obs.items()}


def baseline_observation(obs: Mapping[str, np.ndarray], groups: list[FeatureGroup]) -> dict[str, np.ndarray]:
    """The reference input: each candidate-feature group at its mean over the valid candidates, each context
    group at zero; everything outside the groups (masks) unchanged."""
    base = {k: np.array(v, dtype=np.float32, copy=True) for k, v in obs.items()}
    valid = np.asarray(obs["mask"]) > 0.5
    for group in groups:
        for key, _ in group.columns:
            where = group.mask(obs, key)
            if group.per_candidate:
                mean = base[key][valid].mean(axis=0) if valid.any() else np.zeros(base[key].shape[-1], np.float32)
                fill = np.where(valid[:, None], mean[None, :], 0.0)
                base[key] = np.where(where, fill, base[key]).astype(np.float32)
            else:
                base[key] = np.where(where, 0.0, base[key]).astype(np.float32)
    return base


@dataclass
class Attribution:
    """Group attributions of the scores of one observation.

    Attributes:
        groups: Group names, in column order of ``values``.
        values: ``float64 (K, G)`` each candidate's score split over the groups.
        scores: ``float64 (K,)`` the network's scores of the observation.
        baseline_scores: ``float64 (K,)`` its scores of the baseline observation.
        method: ``"shapley"`` or ``"ig"``.
    """

    groups: list[str]
    values: np.ndarray
    scores: np.ndarray
    baseline_scores: np.ndarray
    method: str

    @property
    def gap(self) -> np.ndarray:
        """``float64 (K,)`` completeness gap: ``sum(values) - (scores - baseline_scores)`` per candidate."""
        return self.values.sum(axis=1) - (self.scores - self.baseline_scores)


def _group_masks(obs: Mapping[str, np.ndarray], groups: list[FeatureGroup]) -> list[dict[str, np.ndarray]]:
    return [{key: group.mask(obs, key) for key, _ in group.columns} for group in groups]


def shapley(net: nn.Module, obs: Mapping[str, np.ndarray], groups: list[FeatureGroup]) -> Attribution:
    """Exact Shapley values of every candidate's score over ``groups`` (``2^G`` evaluations, one batch)."""
    g = len(groups)
    if g > MAX_SHAPLEY_GROUPS:
        raise ConfigError(f"exact Shapley values over {g} groups need 2^{g} network evaluations; use method 'ig' "
                          f"(at most {MAX_SHAPLEY_GROUPS} groups).")
    base = baseline_observation(obs, groups)
    masks = _group_masks(obs, groups)
    coalitions = np.arange(2 ** g)
    members = (coalitions[:, None] >> np.arange(g)[None, :]) & 1            # (2^G, G)
    batch = {}
    for key, value in obs.items():
        x, b = np.asarray(value, dtype=np.float32), base[key]
        take = np.zeros((2 ** g,) + x.shape, dtype=bool)
        for j, mask in enumerate(masks):
            if key in mask:
                take |= members[:, j].astype(bool).reshape((-1,) + (1,) * x.ndim) & mask[key][None]
        batch[key] = torch.as_tensor(np.where(take, x[None], b[None]))
    with torch.no_grad():
        values = scores_of(net, batch).double().numpy()                      # (2^G, K)
    size = members.sum(axis=1)
    weight = np.array([math.factorial(s) * math.factorial(g - s - 1) / math.factorial(g) for s in range(g)])
    out = np.zeros((values.shape[1], g))
    for j in range(g):
        without = coalitions[members[:, j] == 0]
        out[:, j] = (weight[size[without]][:, None] * (values[without | (1 << j)] - values[without])).sum(axis=0)
    return Attribution([gr.name for gr in groups], out, values[-1], values[0], "shapley")


def integrated_gradients(net: nn.Module, obs: Mapping[str, np.ndarray], groups: list[FeatureGroup],
                         steps: int = 64, candidates: np.ndarray | None = None) -> Attribution:
    """Integrated gradients of the candidates' scores, summed per group (float64, ``steps`` Gauss-Legendre nodes).

    Args:
        net: The scoring network (a float64 copy is differentiated).
        obs: One observation.
        groups: Feature groups.
        steps: Quadrature nodes on the path from the baseline to ``obs``.
        candidates: Candidate positions to attribute (default all valid ones); others get zeros.
    """
    net64 = copy.deepcopy(net).double().eval()
    base = baseline_observation(obs, groups)
    masks = _group_masks(obs, groups)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alpha = torch.as_tensor((nodes + 1) / 2, dtype=torch.float64)
    w = torch.as_tensor(weights / 2, dtype=torch.float64)
    x = {k: torch.as_tensor(np.asarray(v), dtype=torch.float64) for k, v in obs.items()}
    b = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in base.items()}
    moving = sorted({key for m in masks for key in m})
    path = {}
    for key in x:
        shape = (steps,) + (1,) * x[key].ndim
        value = b[key][None] + alpha.view(shape) * (x[key] - b[key])[None] if key in moving else x[key].expand(
            (steps,) + x[key].shape)
        path[key] = value.clone().requires_grad_(key in moving)
    scores = scores_of(net64, path)                                          # (steps, K)
    k = scores.shape[1]
    valid = np.flatnonzero(np.asarray(obs["mask"]) > 0.5)
    which = valid if candidates is None else np.asarray(candidates)
    out = np.zeros((k, len(groups)))
    for i in which:
        grads = torch.autograd.grad((scores[:, int(i)] * w).sum(), [path[key] for key in moving], retain_graph=True)
        for j, mask in enumerate(masks):
            total = 0.0
            for key, grad in zip(moving, grads):
                if key in mask:
                    contribution = grad.sum(0) * (x[key] - b[key])
                    total += float(contribution[torch.as_tensor(mask[key])].sum())
            out[i, j] = total
    with torch.no_grad():
        ends = scores_of(net64, {key: torch.stack([b[key], x[key]]) for key in x}).numpy()
    return Attribution([gr.name for gr in groups], out, ends[1], ends[0], "ig")


METHODS: dict[str, Callable[..., Attribution]] = {"shapley": shapley, "ig": integrated_gradients}
"""Attribution methods by name: ``(net, obs, groups) -> Attribution``."""


# -- attention ------------------------------------------------------------------------------------------------
def _attention_weights(module: nn.Module, x: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """``(B, Q, M)`` weights of :class:`~agents.extractor.Attention` (mean over heads), as its forward computes them."""
    b, q_len, d = x.shape
    h = module.heads
    q = module.query(x).view(b, q_len, h, d // h).transpose(1, 2)
    k = module.key_value(keys).view(b, keys.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)[0]
    logits = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return torch.softmax(logits, dim=-1).mean(dim=1)


def attention_maps(net: nn.Module, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Attention weights of one observation by layer: ``"history"`` ``(K, H)`` (candidates over the clicked
    products; absent when the network skipped it: no history) and ``"set attention i"`` ``(K, K)``
    (candidates over candidates). Empty for a network without attention layers."""
    captured: list[tuple[str, tuple]] = []
    hooks = []
    named = [("history", getattr(net, "history_attention", None))]
    named += [(f"set attention {i + 1}", m) for i, m in enumerate(getattr(net, "attention", []))]
    for name, module in named:
        if module is not None:
            hooks.append(module.register_forward_pre_hook(
                lambda mod, args, name=name: captured.append((name, (mod,) + tuple(a.detach() for a in args)))))
    try:
        with torch.no_grad():
            net(to_batch(obs))
            return {name: _attention_weights(*args)[0].numpy() for name, args in captured}
    finally:
        for hook in hooks:
            hook.remove()


# -- sanity check -------------------------------------------------------------------------------------------
def randomised_network(net: nn.Module, seed: int) -> nn.Module:
    """A copy of ``net`` with every parameter re-drawn (Adebayo et al., 2018, model parameter randomisation):
    weights ``N(0, 1/fan_in)``, vectors and scalars ``N(0, 0.1^2)``, from a generator seeded with ``seed``."""
    out = copy.deepcopy(net)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for param in out.parameters():
            std = 1.0 / math.sqrt(param.shape[-1]) if param.ndim >= 2 else 0.1
            param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * std)
    return out


# -- the global view ----------------------------------------------------------------------------------------
class PermutedGroupAgent:
    """An agent that sees one feature group scrambled: candidate-feature groups permuted across the valid
    candidates, context groups swapped for those of an earlier observation (another shopper or query) of the
    same evaluation. The env still responds to the true products, so the drop in reward against the intact
    agent measures how much the agent's decisions use the group.

    Args:
        agent: The agent (SB3-style ``predict``; ``sequential`` and ``action_masks`` pass through).
        group: The group to scramble.
        seed: Seeds the permutations.
        pool_size: Earlier observations kept for context swaps.
    """

    def __init__(self, agent: Any, group: FeatureGroup, seed: int, pool_size: int = 64) -> None:
        self.agent, self.group = agent, group
        self.sequential = getattr(agent, "sequential", False)
        self.rng = np.random.default_rng(seed)
        self.pool: list[dict[str, np.ndarray]] = []
        self.pool_size = pool_size

    def scramble(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``obs`` with the group scrambled (a copy)."""
        out = {k: np.array(v, copy=True) for k, v in obs.items()}
        if self.group.per_candidate:
            valid = np.flatnonzero(np.asarray(obs["mask"]) > 0.5)
            perm = valid[self.rng.permutation(len(valid))]
            for key, _ in self.group.columns:
                where = self.group.mask(obs, key)[valid]
                out[key][valid] = np.where(where, out[key][perm], out[key][valid])
            return out
        keys = [key for key, _ in self.group.columns] + list(self.group.carry)
        if self.pool:
            other = self.pool[int(self.rng.integers(len(self.pool)))]
            for key in keys:
                out[key] = other[key].copy()
        entry = {key: np.array(obs[key], copy=True) for key in keys}
        if len(self.pool) < self.pool_size:
            self.pool.append(entry)
        else:
            self.pool[int(self.rng.integers(self.pool_size))] = entry
        return out

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True,
                action_masks: np.ndarray | None = None):
        extra = {"action_masks": action_masks} if action_masks is not None else {}
        return self.agent.predict(self.scramble(observation), state, episode_start, deterministic, **extra)


__all__ = ["Attribution", "FeatureGroup", "METHODS", "PermutedGroupAgent", "attention_maps", "baseline_observation",
           "feature_groups", "integrated_gradients", "randomised_network", "score_network", "scores_of", "shapley"]
