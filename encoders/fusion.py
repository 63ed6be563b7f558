"""Fusion of modality vectors into one vector per product.

* :class:`ConcatProjectionFusion`: concatenation of weighted blocks + PCA (no training).
* :class:`WeightedMeanFusion`: fixed-weight mean of learned per-modality projections.
* :class:`GatedAttentionFusion`: adaptive per-product modality weights (:meth:`modality_weights`).

The two neural fusions are trained on the contrastive objective of the image encoder (symmetric InfoNCE,
learned temperature): a product's fused vector against the query-side vector of its own text. Each
fusion has ``encode_query(vectors)``: the query side of retrieval in the fused space (query text vector
-> fused space, i.e. ``fuse`` with only the text modality present).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

from encoders.errors import CheckpointError, ConfigError


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class ConcatProjectionFusion:
    """Concatenate L2-normalised, weighted modality blocks, then project with PCA to ``dim``.

    A missing modality (``present[m] == False``) is replaced by that modality's catalog mean before the
    projection (mean imputation, recorded by the caller's mask), so it carries no information rather than
    pulling the vector toward zero.

    Args:
        dim: Output width.
        weights: Per-modality block weight (default 1.0 for each).
    """

    def __init__(self, dim: int = 32, weights: dict[str, float] | None = None) -> None:
        if dim <= 0:
            raise ConfigError(f"dim must be positive, got {dim}.")
        self.dim = dim
        self.weights = dict(weights or {})
        self.name = f"concat-pca{dim}-" + "-".join(f"{k}{v:g}" for k, v in sorted(self.weights.items()))
        self._order: list[str] = []
        self._means: dict[str, np.ndarray] = {}
        self._center: np.ndarray | None = None
        self._components: np.ndarray | None = None

    def _blocks(self, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> np.ndarray:
        blocks = []
        for m in self._order:
            x = _normalise(np.asarray(modalities[m], dtype=np.float32))
            mask = np.asarray(present.get(m, np.ones(len(x), dtype=bool)))
            x = np.where(mask[:, None], x, self._means[m][None, :])
            blocks.append(self.weights.get(m, 1.0) * x)
        return np.concatenate(blocks, axis=1)

    def fit(self, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> "ConcatProjectionFusion":
        """Fit the per-modality means and the PCA projection on a catalog's ``(n, d_m)`` matrices."""
        if not modalities:
            raise ValueError("fusion needs at least one modality.")
        self._order = sorted(modalities)
        for m in self._order:
            x = _normalise(np.asarray(modalities[m], dtype=np.float32))
            mask = np.asarray(present.get(m, np.ones(len(x), dtype=bool)))
            self._means[m] = x[mask].mean(axis=0) if mask.any() else np.zeros(x.shape[1], dtype=np.float32)
        z = self._blocks(modalities, present)
        self._center = z.mean(axis=0)
        _, _, vt = np.linalg.svd(z - self._center, full_matrices=False)
        components = np.zeros((self.dim, z.shape[1]), dtype=np.float32)
        components[: min(self.dim, len(vt))] = vt[: self.dim]
        self._components = components
        return self

    def fuse(self, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> np.ndarray:
        """``float32 (n, dim)`` fused vectors (PCA coordinates, not normalised)."""
        if self._components is None:
            raise RuntimeError("ConcatProjectionFusion.fuse called before fit.")
        missing = [m for m in self._order if m not in modalities]
        if missing:
            raise ValueError(f"fusion was fitted on modalities {self._order} but {missing} are missing.")
        z = self._blocks(modalities, present) - self._center
        return (z @ self._components.T).astype(np.float32)

    def encode_query(self, vectors: np.ndarray, modality: str = "text") -> np.ndarray:
        """Map query vectors of one modality into the fused space: ``fuse`` with only that modality present.

        Args:
            vectors: ``(b, d_modality)`` query vectors (e.g. text vectors of query strings).
            modality: Which fitted modality the query is.

        Returns:
            ``float32 (b, dim)``; every other modality is absent (mean-imputed, as for a product without it).
        """
        if self._components is None:
            raise RuntimeError("ConcatProjectionFusion.encode_query called before fit.")
        if modality not in self._order:
            raise ValueError(f"query modality '{modality}' is not one of the fitted modalities {self._order}.")
        n = len(vectors)
        modalities = {m: (vectors if m == modality else np.zeros((n, len(self._means[m])), np.float32))
                      for m in self._order}
        present = {m: np.full(n, m == modality) for m in self._order}
        return self.fuse(modalities, present)


class BlockProjectionFusion:
    """Project each modality by its own PCA, scale the blocks to equal variance, and concatenate.

    Unlike :class:`ConcatProjectionFusion` (one PCA over the concatenation, where the wide text block
    takes nearly all components), every modality keeps its own slice of the output, so the look of a
    product survives the projection: a reranker given these features reads the shopper's visual taste
    (README, "Do the photos earn their place?").

    Args:
        dim: Output width.
        weights: Per-modality block weight (default 1.0); ``image`` 0 gives text only.
        image_share: Fraction of ``dim`` given to non-text modalities (split evenly between them).
    """

    def __init__(self, dim: int = 32, weights: dict[str, float] | None = None, image_share: float = 0.375) -> None:
        if dim < 2:
            raise ConfigError(f"dim must be >= 2, got {dim}.")
        if not 0.0 < image_share < 1.0:
            raise ConfigError(f"image_share must be in (0, 1), got {image_share}.")
        self.dim = dim
        self.weights = dict(weights or {})
        self.image_share = image_share
        self.name = f"block-pca{dim}-s{image_share:g}-" + "-".join(f"{k}{v:g}" for k, v in sorted(self.weights.items()))
        self._order: list[str] = []
        self._dims: dict[str, int] = {}
        self._means: dict[str, np.ndarray] = {}
        self._components: dict[str, np.ndarray] = {}
        self._scales: dict[str, float] = {}

    def _split(self, names: list[str]) -> dict[str, int]:
        others = [m for m in names if m != "text"]
        if "text" not in names or not others:
            base, extra = divmod(self.dim, len(names))
            return {m: base + (i < extra) for i, m in enumerate(names)}
        other_dim = max(len(others), int(round(self.dim * self.image_share)))
        dims = {"text": self.dim - other_dim}
        base, extra = divmod(other_dim, len(others))
        dims.update({m: base + (i < extra) for i, m in enumerate(others)})
        return dims

    def fit(self, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> "BlockProjectionFusion":
        """Fit one PCA per modality on the rows where it is present (``(n, d_m)`` inputs)."""
        if not modalities:
            raise ValueError("fusion needs at least one modality.")
        self._order = sorted(modalities)
        self._dims = self._split(self._order)
        for m in self._order:
            x = _normalise(np.asarray(modalities[m], dtype=np.float32))
            mask = np.asarray(present.get(m, np.ones(len(x), dtype=bool)))
            rows = x[mask] if mask.any() else x
            rows = rows[: 50_000]
            self._means[m] = rows.mean(axis=0)
            _, _, vt = np.linalg.svd(rows - self._means[m], full_matrices=False)
            comp = np.zeros((self._dims[m], x.shape[1]), dtype=np.float32)
            comp[: min(self._dims[m], len(vt))] = vt[: self._dims[m]]
            self._components[m] = comp
            proj = (rows - self._means[m]) @ comp.T
            self._scales[m] = 1.0 / max(float(np.sqrt((proj ** 2).sum(axis=1).mean())), 1e-6)
        return self

    def fuse(self, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> np.ndarray:
        """``float32 (n, dim)``; a missing modality's block is its catalog mean (0 after centring)."""
        if not self._components:
            raise RuntimeError("BlockProjectionFusion.fuse called before fit.")
        missing = [m for m in self._order if m not in modalities]
        if missing:
            raise ValueError(f"fusion was fitted on modalities {self._order} but {missing} are missing.")
        blocks = []
        for m in self._order:
            x = _normalise(np.asarray(modalities[m], dtype=np.float32))
            mask = np.asarray(present.get(m, np.ones(len(x), dtype=bool)))
            proj = (x - self._means[m]) @ self._components[m].T * self._scales[m] * self.weights.get(m, 1.0)
            blocks.append(np.where(mask[:, None], proj, 0.0))
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def column_blocks(self) -> dict[str, slice]:
        """Columns of each modality's block in the fused vector, e.g. ``{"image": slice(0, 12), "text":
        slice(12, 32)}`` (blocks are concatenated in sorted modality order; explanations split by them)."""
        if not self._components:
            raise RuntimeError("BlockProjectionFusion.column_blocks called before fit.")
        starts = np.cumsum([0] + [self._dims[m] for m in self._order])
        return {m: slice(int(a), int(b)) for m, a, b in zip(self._order, starts[:-1], starts[1:])}

    def encode_query(self, vectors: np.ndarray, modality: str = "text") -> np.ndarray:
        """Query vectors of one modality into the fused space (other blocks absent)."""
        if modality not in self._order:
            raise ValueError(f"query modality '{modality}' is not one of the fitted modalities {self._order}.")
        n = len(vectors)
        modalities = {m: (vectors if m == modality else np.zeros((n, self._means[m].shape[0]), np.float32))
                      for m in self._order}
        return self.fuse(modalities, {m: np.full(n, m == modality) for m in self._order})


# --------------------------------------------------------------------------------------------------------
# Neural fusions trained on the contrastive objective
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FusionTrainingConfig:
    """How the neural fusions are trained.

    The objective is the same symmetric InfoNCE as the image encoder's: the fused vector of a product
    (all its present modalities, with modality dropout and augmented text views) must be closest to the
    query-side vector of its own target text (by default its own text vector), among the batch.

    Attributes:
        epochs: Maximum epochs.
        batch_size: Products per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        init_temperature: Initial (learned) temperature.
        p_drop_modality: Probability of masking each present modality of a training product (at least one
            is kept), which teaches every modality to stand on its own.
        hidden: Width of the gate MLP (gated fusion).
        val_fraction: Held-out share for early stopping.
        patience: Epochs without held-out improvement before stopping.
        max_products: Train on at most this many products of large catalogs.
        n_threads: torch threads while training (``None``: torch's default).
    """

    epochs: int = 40
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    init_temperature: float = 0.07
    p_drop_modality: float = 0.25
    hidden: int = 64
    val_fraction: float = 0.1
    patience: int = 5
    max_products: int = 100_000
    n_threads: int | None = 2


class _FusionNet:
    """Builds the torch module lazily so that importing this file does not import torch."""

    @staticmethod
    def build(dims: dict[str, int], dim: int, gated: bool, hidden: int, init_temperature: float):
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        class FusionModule(nn.Module):
            """Per-modality projections, modality weights (fixed prior or a gate), learned temperature."""

            def __init__(self) -> None:
                super().__init__()
                self.order = sorted(dims)
                self.proj = nn.ModuleDict({m: nn.Linear(dims[m], dim) for m in self.order})
                self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1.0 / init_temperature))))
                self.gated = gated
                if gated:
                    self.gate = nn.Sequential(nn.Linear(2 * dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
                    self.gate_bias = nn.Parameter(torch.zeros(len(self.order)))

            def tokens(self, x: dict[str, "torch.Tensor"]) -> "torch.Tensor":
                """``(n, M, dim)`` L2-normalised projected modality vectors."""
                return torch.stack([F.normalize(self.proj[m](x[m]), dim=1) for m in self.order], dim=1)

            def weights(self, tokens: "torch.Tensor", mask: "torch.Tensor", log_prior: "torch.Tensor") -> "torch.Tensor":
                """``(n, M)`` modality weights; exactly 0 where ``mask`` is False, rows sum to 1."""
                if self.gated:
                    m = mask.float().unsqueeze(-1)
                    ctx = (tokens * m).sum(1) / m.sum(1).clamp(min=1.0)
                    scores = self.gate(torch.cat([tokens, ctx.unsqueeze(1).expand_as(tokens)], dim=-1)).squeeze(-1)
                    scores = scores + self.gate_bias + log_prior
                else:
                    scores = log_prior.expand(mask.shape).clone()
                scores = scores.masked_fill(~mask, float("-inf"))
                return torch.softmax(scores, dim=1)

            def forward(self, x, mask, log_prior):
                tokens = self.tokens(x)
                w = self.weights(tokens, mask, log_prior)
                return F.normalize((w.unsqueeze(-1) * tokens).sum(1), dim=1), w

        return FusionModule()


class _NeuralFusion:
    """Shared machinery of :class:`WeightedMeanFusion` and :class:`GatedAttentionFusion`.

    Every modality ``m`` is projected by a learned linear map to ``dim`` and L2-normalised (a *token*);
    the fused vector is the normalised weighted sum of the tokens of the *present* modalities. A missing
    modality gets weight exactly 0 (masked before the softmax), so its (meaningless) input never leaks in.
    The query side (:meth:`encode_query`) is the same network with only the query modality present.

    Args:
        dim: Output width.
        weights: Per-modality prior weight (default 1.0); 0 removes a modality.
        config: Training settings.
        query_modality: The modality queries come in (``"text"``).
        seed: Seed of initialisation and training.
    """

    gated = False
    kind = "neural"
    version = 2
    """Bump when training changes, so cached fusion weights of older code are not reused."""

    def __init__(self, dim: int = 32, weights: dict[str, float] | None = None,
                 config: FusionTrainingConfig = FusionTrainingConfig(), query_modality: str = "text",
                 seed: int = 0) -> None:
        if dim <= 0:
            raise ConfigError(f"dim must be positive, got {dim}.")
        for m, w in (weights or {}).items():
            if not np.isfinite(w) or w < 0:
                raise ConfigError(f"modality weight for '{m}' must be a finite number >= 0, got {w}.")
        self.dim = dim
        self.weights = dict(weights or {})
        self.config = config
        self.query_modality = query_modality
        self.seed = seed
        tag = hashlib.sha256(json.dumps([asdict(config), sorted(self.weights.items()), query_modality, seed, self.version],
                                        default=str).encode()).hexdigest()[:8]
        self.name = f"{self.kind}{dim}-{tag}"
        self.history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        self._net = None

    # -- helpers --------------------------------------------------------------------------------------
    @property
    def modalities(self) -> list[str]:
        """Modalities the fusion was fitted on (sorted)."""
        if self._net is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load_state_dict() first.")
        return list(self._net.order)

    def _log_prior(self):
        import torch

        w = np.array([self.weights.get(m, 1.0) for m in self.modalities], dtype=np.float64)
        with np.errstate(divide="ignore"):
            return torch.tensor(np.log(w), dtype=torch.float32)

    def _inputs(self, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray]):
        import torch

        order = self.modalities
        unknown = sorted(set(modalities) - set(order))
        if unknown:
            raise ValueError(f"fusion was fitted on modalities {order}; got unknown {unknown}.")
        given = [m for m in order if m in modalities]
        if not given:
            raise ValueError(f"fusion needs at least one of the modalities {order}.")
        n = len(modalities[given[0]])
        x, mask = {}, np.zeros((n, len(order)), dtype=bool)
        for j, m in enumerate(order):
            d = self._net.proj[m].in_features
            if m in modalities:
                arr = np.asarray(modalities[m], dtype=np.float32)
                if arr.shape != (n, d):
                    raise ValueError(f"modality '{m}' must be ({n}, {d}), got {arr.shape}.")
                mask[:, j] = np.asarray(present.get(m, np.ones(n, dtype=bool)), dtype=bool)
                x[m] = torch.from_numpy(np.where(mask[:, j:j + 1], arr, 0.0).astype(np.float32))
            else:
                x[m] = torch.zeros((n, d))
        empty = ~mask.any(axis=1)
        if empty.any():
            raise ValueError(f"{int(empty.sum())} product(s) have no modality present (first row "
                             f"{int(np.flatnonzero(empty)[0])}); at least one is needed.")
        return x, torch.from_numpy(mask)

    # -- Fusion protocol --------------------------------------------------------------------------------
    def fit(self, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray],
            targets: np.ndarray | None = None, text_views: np.ndarray | None = None,
            progress: bool = False) -> "_NeuralFusion":
        """Train the projections (and the gate) contrastively on a catalog.

        Args:
            modalities: ``modalities[m]`` is ``float32 (n, d_m)``.
            present: ``present[m]`` is bool ``(n,)``; absent rows are masked.
            targets: ``float32 (n, d_query)`` vectors the query side of each product should match;
                default ``modalities[query_modality]``.
            text_views: optional ``float32 (V, n, d_query)`` augmented query-modality vectors: in training,
                each product's query-modality input is drawn from the original and these views.
            progress: Show a progress bar over epochs.

        Returns:
            ``self``.
        """
        import torch

        from encoders.contrastive import info_nce, split_rows, torch_threads

        if self.query_modality not in modalities:
            raise ValueError(f"the query modality '{self.query_modality}' must be among the modalities "
                             f"{sorted(modalities)}.")
        dims = {m: int(np.asarray(v).shape[1]) for m, v in modalities.items()}
        targets = np.asarray(modalities[self.query_modality] if targets is None else targets, dtype=np.float32)
        if targets.shape[1] != dims[self.query_modality]:
            raise ValueError(f"targets must have width {dims[self.query_modality]}, got {targets.shape}.")
        cfg = self.config
        with torch_threads(cfg.n_threads):
            with torch.random.fork_rng():  # seeded init without touching the caller's global RNG state
                torch.manual_seed(self.seed)
                self._net = _FusionNet.build(dims, self.dim, self.gated, cfg.hidden, cfg.init_temperature)
            self._init_from_pca(modalities, present)
            x, mask = self._inputs(modalities, present)
            bank = None
            if text_views is not None and len(text_views):
                bank = torch.from_numpy(np.concatenate([modalities[self.query_modality][None], text_views])
                                        .astype(np.float32))
            t = torch.from_numpy(targets)
            gen = torch.Generator().manual_seed(self.seed)
            rows = np.arange(len(t))
            if len(rows) > cfg.max_products:
                rows = np.sort(np.random.default_rng([self.seed, 5]).choice(rows, cfg.max_products, replace=False))
            train_rows, val_rows = split_rows(rows, cfg.val_fraction, self.seed)
            log_prior = self._log_prior()
            net = self._net
            opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            best, best_state, stale = float("inf"), None, 0
            self.history = {"train_loss": [], "val_loss": []}
            for _ in tqdm(range(cfg.epochs), desc=f"fusion {self.name}", disable=not progress, unit="epoch"):
                net.train()
                order = train_rows[torch.randperm(len(train_rows), generator=gen).numpy()]
                losses = []
                for s in range(0, len(order), cfg.batch_size):
                    b = torch.from_numpy(order[s:s + cfg.batch_size])
                    if len(b) < 2:
                        continue
                    xb = {m: v[b] for m, v in x.items()}
                    if bank is not None:
                        pick = torch.randint(0, bank.shape[0], (len(b),), generator=gen)
                        xb[self.query_modality] = bank[pick, b]
                    mb = mask[b] & (torch.rand(mask[b].shape, generator=gen) >= cfg.p_drop_modality)
                    lost = ~mb.any(dim=1)
                    mb[lost] = mask[b][lost]
                    fused, _ = net(xb, mb, log_prior)
                    query = torch.nn.functional.normalize(net.proj[self.query_modality](t[b]), dim=1)
                    loss = info_nce(fused, query, net.logit_scale)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    losses.append(loss.item())
                self.history["train_loss"].append(float(np.mean(losses)) if losses else float("nan"))
                val = self.history["train_loss"][-1]
                if len(val_rows):
                    net.eval()
                    with torch.no_grad():
                        vb = torch.from_numpy(val_rows)
                        fused, _ = net({m: v[vb] for m, v in x.items()}, mask[vb], log_prior)
                        query = torch.nn.functional.normalize(net.proj[self.query_modality](t[vb]), dim=1)
                        val = float(info_nce(fused, query, net.logit_scale))
                    self.history["val_loss"].append(val)
                if val < best - 1e-4:
                    best, stale = val, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    stale += 1
                    if stale >= cfg.patience:
                        break
            if best_state is not None:
                net.load_state_dict(best_state)
            net.eval()
        return self

    def _init_from_pca(self, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> None:
        """Start each projection at its modality's top principal directions (centred), and the gate at
        equal weights, so training starts from "PCA + mean" and small catalogs stay near it."""
        import torch

        net = self._net
        with torch.no_grad():
            for m in net.order:
                arr = np.asarray(modalities[m], dtype=np.float32)
                rows = arr[np.asarray(present.get(m, np.ones(len(arr), bool)), dtype=bool)][:20_000]
                if len(rows) < 2:
                    continue
                mean = rows.mean(axis=0)
                _, _, vt = np.linalg.svd(rows - mean, full_matrices=False)
                k = min(self.dim, len(vt))
                weight = net.proj[m].weight
                weight[:k] = torch.from_numpy(vt[:k])
                net.proj[m].bias.copy_(-(weight @ torch.from_numpy(mean)))
            if self.gated:
                net.gate[-1].weight.zero_()
                net.gate[-1].bias.zero_()

    def _forward(self, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray]):
        import torch

        x, mask = self._inputs(modalities, present)
        with torch.no_grad():
            fused, w = self._net(x, mask, self._log_prior())
        return fused.numpy().astype(np.float32), w.numpy().astype(np.float32)

    def fuse(self, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> np.ndarray:
        """L2-normalised ``float32 (n, dim)``; absent modalities (``present[m]`` False, or not given) are masked.

        Raises:
            ValueError: for unknown modalities, wrong shapes, or a product with no modality present.
        """
        return self._forward(modalities, present)[0]

    def modality_weights(self, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-product modality weights, for inspection.

        Returns:
            ``{m: float32 (n,)}`` over :attr:`modalities`; each row sums to 1 and an absent modality is 0.
        """
        w = self._forward(modalities, present)[1]
        return {m: w[:, j] for j, m in enumerate(self.modalities)}

    def encode_query(self, vectors: np.ndarray, modality: str | None = None) -> np.ndarray:
        """Query vectors into the fused space: ``fuse`` with only ``modality`` (default the query modality).

        Args:
            vectors: ``(b, d_modality)``.
            modality: Which modality the query is.

        Returns:
            L2-normalised ``float32 (b, dim)``.
        """
        modality = modality or self.query_modality
        n = len(vectors)
        return self.fuse({modality: vectors}, {modality: np.ones(n, dtype=bool)})

    # -- persistence ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The fitted torch parameters (save with ``torch.save``; shapes encode the modality widths)."""
        return self._net.state_dict() if self._net is not None else {}

    def load_state_dict(self, state: dict) -> "_NeuralFusion":
        """Rebuild the fitted network from :meth:`state_dict` output (e.g. ``torch.load(..., weights_only=True)``)."""
        dims = {k[len("proj."):-len(".weight")]: int(v.shape[1]) for k, v in state.items()
                if k.startswith("proj.") and k.endswith(".weight")}
        if not dims:
            raise CheckpointError("state dict has no 'proj.<modality>.weight' entries: not a fusion state.")
        import torch

        with torch.random.fork_rng():  # construction draws from torch's global RNG: leave the caller's intact
            self._net = _FusionNet.build(dims, self.dim, self.gated, self.config.hidden, self.config.init_temperature)
        self._net.load_state_dict(state)
        self._net.eval()
        return self


class WeightedMeanFusion(_NeuralFusion):
    """Fixed-weight mean of the projected modality tokens (weights = the ``weights`` prior, renormalised
    over the present modalities); projections trained contrastively. Output: L2-normalised ``(n, dim)``."""

    gated = False
    kind = "mean"


class GatedAttentionFusion(_NeuralFusion):
    """Adaptive fusion: a gate scores each present modality token against the product's mean token
    (``score_m = MLP([token_m, context]) + bias_m + log prior_m``), a masked softmax gives per-product
    weights (see :meth:`modality_weights`). Output: L2-normalised ``(n, dim)``."""

    gated = True
    kind = "gated"


def query_vectors(fusion, vectors: np.ndarray, modality: str = "text") -> np.ndarray:
    """Map query vectors into ``fusion``'s space (any fusion with ``encode_query``): ``float32 (b, dim)``."""
    if not hasattr(fusion, "encode_query"):
        raise TypeError(f"{type(fusion).__name__} has no encode_query(); it cannot place queries in its space.")
    return fusion.encode_query(vectors, modality)
