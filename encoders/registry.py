"""Encoders and fusions selectable by name from configs (a dict lookup; ``"module:attr"`` and
``"path/to/file.py:attr"`` also work).

Image encoders may need training on the catalog (the contrastive one does), so every image-encoder
factory receives an :class:`EncoderContext`; text encoders and fusions are built from their name alone.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from encoders.errors import ConfigError
from encoders.catalog import Catalog
from encoders.fusion import BlockProjectionFusion, ConcatProjectionFusion, GatedAttentionFusion, WeightedMeanFusion
from encoders.pixels import PixelStatsImageEncoder
from encoders.protocols import Fusion, ImageEncoder, TextEncoder
from encoders.store import EmbeddingStore
from encoders.text import HashingTextEncoder, MiniLMTextEncoder


@dataclass
class EncoderContext:
    """What an image-encoder factory may use to fit itself to a catalog.

    Attributes:
        catalog: The products.
        text_vectors: ``float32 (n, d_text)`` frozen text vectors of the catalog.
        store: The embedding cache (its ``root`` is where weights may be cached too).
        seed: Seed for any training.
        progress: Show progress bars.
        text_encoder: The encoder that made ``text_vectors`` (optional): lets a trained image encoder
            encode augmented texts; without it, text augmentation falls back to noise on the vectors.
    """

    catalog: Catalog
    text_vectors: np.ndarray
    store: EmbeddingStore
    seed: int = 0
    progress: bool = False
    text_encoder: TextEncoder | None = None


def _contrastive_image_encoder(context: EncoderContext) -> ImageEncoder:
    """Train (once per catalog, then load from the weight cache) the CLIP-style catalog image encoder."""
    from encoders.image_contrastive import ContrastiveImageConfig, train_contrastive_image_encoder

    return train_contrastive_image_encoder(context.catalog, context.text_vectors, ContrastiveImageConfig(),
                                           seed=context.seed, text_encoder=context.text_encoder,
                                           store=context.store, progress=context.progress)


def _openclip_image_encoder(context: EncoderContext) -> ImageEncoder:
    """A local open_clip checkpoint named by ``SHOPRANK_OPENCLIP_MODEL`` / ``SHOPRANK_OPENCLIP_CHECKPOINT``."""
    from encoders.openclip_adapter import openclip_from_env

    return openclip_from_env()


TEXT_ENCODERS: dict[str, Callable[[], TextEncoder]] = {
    "minilm": MiniLMTextEncoder,
    "hashing": HashingTextEncoder,
}
IMAGE_ENCODERS: dict[str, Callable[[EncoderContext], ImageEncoder]] = {
    "pixel-stats": lambda context: PixelStatsImageEncoder(),
    "contrastive": _contrastive_image_encoder,
    "openclip": _openclip_image_encoder,
}
FUSIONS: dict[str, Callable[[int, float], Fusion]] = {
    "block": lambda dim, image_weight: BlockProjectionFusion(dim, {"image": image_weight}),
    "concat": lambda dim, image_weight: ConcatProjectionFusion(dim, {"image": image_weight}),
    "mean": lambda dim, image_weight: WeightedMeanFusion(dim, {"image": image_weight}),
    "gated": lambda dim, image_weight: GatedAttentionFusion(dim, {"image": image_weight}),
}
"""Fusion factories: ``(fused_dim, image_weight) -> Fusion``."""


def import_plugin_module(module_name: str) -> Any:
    """The module of a plug-in name: an importable ``package.module``, or a Python file ``path/to/file.py``
    (relative to the working directory; no ``PYTHONPATH`` needed), loaded under a name derived from its
    resolved path so two files with one name do not collide."""
    if not module_name.endswith(".py"):
        return importlib.import_module(module_name)
    path = Path(module_name).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no plug-in file at {path}")
    unique = "shoprank_plugin_" + hashlib.sha256(str(path).encode()).hexdigest()[:12] + "_" + (
        "".join(c if c.isalnum() else "_" for c in path.stem))
    if unique in sys.modules:
        return sys.modules[unique]
    spec = importlib.util.spec_from_file_location(unique, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[unique]
        raise
    return module


def resolve(name: str, registry: dict[str, Callable[..., Any]], what: str, callable_only: bool = True) -> Any:
    """Look ``name`` up in ``registry`` or import it from ``"package.module:attribute"`` or
    ``"path/to/file.py:attribute"`` (a plug-in file; no ``PYTHONPATH`` needed).

    ``callable_only``: an imported attribute must be callable (a factory); ``False`` also accepts an
    object (e.g. a ready simulator instance for the conformance kit).

    Raises:
        ValueError: naming the known choices when ``name`` is neither.
    """
    if name in registry:
        return registry[name]
    if ":" in name:
        module_name, _, attr = name.rpartition(":")  # rpartition: a Windows file path has a colon
        if not module_name or not attr:
            raise ConfigError(f"{what} '{name}' must look like 'package.module:attribute'.")
        try:
            found = getattr(import_plugin_module(module_name), attr)
        except Exception as exc:  # a plug-in may fail to import in any way (syntax, its own imports, ...)
            raise ConfigError(f"cannot import {what} '{name}': {type(exc).__name__}: {exc}") from exc
        if callable_only and not callable(found):
            raise ConfigError(f"{what} '{name}' is not callable (got {type(found).__name__}).")
        return found
    if not registry:
        raise ConfigError(f"{what} '{name}' must look like 'package.module:attribute'.")
    raise ConfigError(f"unknown {what} '{name}'; choose one of {sorted(registry)} or give 'package.module:attribute'.")
