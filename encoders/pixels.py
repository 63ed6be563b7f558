"""Hand-built photo descriptors: no training, no torch.

:func:`pixel_descriptor` gives the visual traits of a real catalog's photos (what the simulated shopper
has taste over); :class:`PixelStatsImageEncoder` is the training-free image encoder (colour histogram,
shade statistics and pattern energies of the product's foreground pixels).
"""

from __future__ import annotations

import numpy as np

_BACKGROUND = 245  # pixels brighter than this on all channels count as white background


def _foreground(images: np.ndarray) -> np.ndarray:
    """``(b, H, W)`` bool mask of non-background pixels (all pixels where a photo is all background)."""
    fg = (images < _BACKGROUND).any(axis=-1)
    empty = ~fg.reshape(len(images), -1).any(axis=1)
    fg[empty] = True
    return fg


def _hsv_stats(images: np.ndarray, fg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rgb = images.astype(np.float32) / 255.0
    cmax, cmin = rgb.max(-1), rgb.min(-1)
    lightness = (cmax + cmin) / 2
    saturation = np.where(cmax > 0, (cmax - cmin) / np.maximum(cmax, 1e-6), 0.0)
    count = fg.sum(axis=(1, 2))
    mean_l = (lightness * fg).sum(axis=(1, 2)) / count
    mean_s = (saturation * fg).sum(axis=(1, 2)) / count
    return lightness, mean_l, mean_s


def _pattern_energy(lightness: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """``(b, 3)``: mean absolute vertical, horizontal and diagonal lightness changes inside the product."""
    inner_v = fg[:, 1:, :] & fg[:, :-1, :]
    inner_h = fg[:, :, 1:] & fg[:, :, :-1]
    inner_d = fg[:, 1:, 1:] & fg[:, :-1, :-1]
    dv = np.abs(np.diff(lightness, axis=1)) * inner_v
    dh = np.abs(np.diff(lightness, axis=2)) * inner_h
    dd = np.abs(lightness[:, 1:, 1:] - lightness[:, :-1, :-1]) * inner_d
    return np.stack([
        dv.sum(axis=(1, 2)) / np.maximum(inner_v.sum(axis=(1, 2)), 1),
        dh.sum(axis=(1, 2)) / np.maximum(inner_h.sum(axis=(1, 2)), 1),
        dd.sum(axis=(1, 2)) / np.maximum(inner_d.sum(axis=(1, 2)), 1),
    ], axis=1)


def pixel_descriptor(images: np.ndarray) -> np.ndarray:
    """Visual traits of photos: lightness, saturation, and three pattern energies of the foreground.

    Args:
        images: ``uint8 (b, H, W, 3)``.

    Returns:
        ``float32 (b, 5)`` in roughly ``[0, 1]``.
    """
    fg = _foreground(images)
    lightness, mean_l, mean_s = _hsv_stats(images, fg)
    energy = np.clip(_pattern_energy(lightness, fg) * 4.0, 0.0, 1.0)
    return np.column_stack([mean_l, mean_s, energy]).astype(np.float32)


class PixelStatsImageEncoder:
    """Training-free image encoder: a 4x4x4 foreground colour histogram, shade stats, pattern energies.

    Output: ``float32 (b, 69)``, L2-normalised.
    """

    name = "pixel-stats-v2"
    dim = 64 + 5

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Encode ``uint8 (b, H, W, 3)`` into ``float32 (b, 69)``."""
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (b, H, W, 3), got {images.dtype} {images.shape}.")
        fg = _foreground(images)
        bins = (images // 64).astype(np.int64)
        code = bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]
        hist = np.zeros((len(images), 64), dtype=np.float32)
        for i in range(len(images)):
            hist[i] = np.bincount(code[i][fg[i]], minlength=64)
        hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1.0)
        out = np.concatenate([np.sqrt(hist), 4.0 * pixel_descriptor(images)], axis=1)
        return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)
