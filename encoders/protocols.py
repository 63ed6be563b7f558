"""Protocols every encoder and fusion satisfies (structural typing: no base class needed)."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class TextEncoder(Protocol):
    """Strings to vectors.

    Attributes:
        name: Stable identifier, part of the embedding-cache key (change it when the weights change).
        dim: Output width ``d``.
    """

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``b`` strings into ``float32 (b, d)``, L2-normalised rows."""
        ...


@runtime_checkable
class ImageEncoder(Protocol):
    """Photos to vectors.

    Attributes:
        name: Stable identifier, part of the embedding-cache key.
        dim: Output width ``d``.
    """

    name: str
    dim: int

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Encode ``uint8 (b, H, W, 3)`` photos into ``float32 (b, d)``."""
        ...


@runtime_checkable
class AudioEncoder(Protocol):
    """Audio clips to vectors.

    Attributes:
        name: Stable identifier, part of the embedding-cache key.
        dim: Output width ``d``.
    """

    name: str
    dim: int

    def encode(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Encode ``b`` mono float waveforms (any length) into ``float32 (b, d)``."""
        ...


@runtime_checkable
class Fusion(Protocol):
    """Modality vectors of the same products to one vector per product.

    Attributes:
        name: Stable identifier, part of the embedding-cache key.
        dim: Output width ``d``.
    """

    name: str
    dim: int

    def fit(self, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> "Fusion":
        """Fit on a catalog: ``modalities[m]`` is ``(n, d_m)``, ``present[m]`` is bool ``(n,)``."""
        ...

    def fuse(self, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> np.ndarray:
        """Fuse into ``float32 (n, d)``; a missing modality is masked out, never read as zeros."""
        ...
