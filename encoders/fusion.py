"""Fusion of modality vectors into one vector per product."""

from __future__ import annotations

import numpy as np


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
            raise ValueError(f"dim must be positive, got {dim}.")
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
