"""Transfer: use a local open_clip (CLIP) checkpoint as ShopRank's image encoder. Nothing is downloaded.

Three ways in, all giving an :class:`OpenClipImageEncoder` (an :class:`~encoders.protocols.ImageEncoder`):

1. ``load_openclip("ViT-B-32", "/models/clip.pt")``: builds the architecture with ``open_clip`` (``pip install
   'shoprank[clip]'``) and loads the local checkpoint file; a missing file is an error, never a download.
2. ``OpenClipImageEncoder(model)``: any model object with ``encode_image(x (b, 3, S, S)) -> (b, d)`` (an
   ``open_clip`` model you built yourself, or your own torch module).
3. ``OpenClipImageEncoder.from_state_dict(model, path)``: your module plus a ``state_dict`` file (read with
   ``torch.load(..., weights_only=True)``).

From configs: ``WorldConfig(image_encoder="openclip")`` reads ``SHOPRANK_OPENCLIP_MODEL`` (architecture
name) and ``SHOPRANK_OPENCLIP_CHECKPOINT`` (file path) from the environment.

Photos (``uint8 (b, 64, 64, 3)`` from the catalog) are resized to the model's input size (bicubic),
normalised with the model's mean/std (CLIP's by default), encoded and L2-normalised. When the model also
has ``encode_text`` and a tokenizer is given, :meth:`OpenClipImageEncoder.encode_text` embeds query text in
the same space (CLIP's own text tower), so text queries can retrieve by photo.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from encoders.errors import ConfigError, InputNotFoundError, MissingDependencyError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _file_tag(path: Path) -> str:
    """Cheap content tag of a checkpoint: size + hash of the first and last MiB."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, path.stat().st_size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]


class OpenClipImageEncoder:
    """Wrap a CLIP-like model as an image encoder.

    Args:
        model: Object with ``encode_image(float32 (b, 3, S, S)) -> (b, d)`` (a torch module).
        name: Stable cache name; include something that changes with the weights.
        image_size: Input side ``S`` the model expects.
        mean: Per-channel normalisation mean (RGB, on ``[0, 1]`` pixels).
        std: Per-channel normalisation std.
        tokenizer: Optional ``texts -> token tensor`` for :meth:`encode_text`.
        batch_size: Photos per forward pass.
        device: Torch device string.

    Raises:
        TypeError: if ``model`` has no ``encode_image``.
    """

    def __init__(self, model: Any, name: str = "openclip", image_size: int = 224,
                 mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD,
                 tokenizer: Callable[[list[str]], Any] | None = None, batch_size: int = 64,
                 device: str = "cpu") -> None:
        import torch

        if not callable(getattr(model, "encode_image", None)):
            raise TypeError(f"{type(model).__name__} has no encode_image(); an open_clip model (or any module "
                            "with encode_image(x (b, 3, S, S)) -> (b, d)) is required.")
        if image_size <= 0:
            raise ConfigError(f"image_size must be positive, got {image_size}.")
        self.model = model.eval() if hasattr(model, "eval") else model
        if hasattr(self.model, "to"):
            self.model = self.model.to(device)
        self.name = name
        self.image_size = int(image_size)
        self.device = device
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        with torch.no_grad():
            probe = self.model.encode_image(torch.zeros(1, 3, self.image_size, self.image_size, device=device))
        self.dim = int(probe.shape[-1])

    @classmethod
    def from_state_dict(cls, model: Any, checkpoint: str | Path, **kwargs: Any) -> "OpenClipImageEncoder":
        """Load a local ``state_dict`` file into ``model`` (``weights_only=True``), then wrap it.

        Raises:
            FileNotFoundError: naming the path when it is not a file.
        """
        import torch

        path = Path(checkpoint)
        if not path.is_file():
            raise InputNotFoundError(f"checkpoint not found: {path} (ShopRank never downloads weights; "
                                    "point at a local file).")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        model.load_state_dict(state)
        kwargs.setdefault("name", f"torch-{type(model).__name__}-{_file_tag(path)}")
        return cls(model, **kwargs)

    def _pixels(self, images: np.ndarray):
        import torch
        import torch.nn.functional as F

        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (b, H, W, 3), got {images.dtype} {images.shape}.")
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False,
                              antialias=x.shape[-1] > self.image_size).clamp_(0.0, 1.0)
        return ((x - self._mean) / self._std).to(self.device)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Encode ``uint8 (b, H, W, 3)`` photos into L2-normalised ``float32 (b, dim)``."""
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(images), self.batch_size):
                z = self.model.encode_image(self._pixels(images[s:s + self.batch_size])).float().cpu()
                out.append(torch.nn.functional.normalize(z, dim=1).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts with the model's own text tower: L2-normalised ``float32 (b, dim)``.

        Raises:
            RuntimeError: without a tokenizer or a model ``encode_text``.
        """
        import torch

        if self.tokenizer is None or not callable(getattr(self.model, "encode_text", None)):
            raise RuntimeError("encode_text needs a tokenizer and a model with encode_text().")
        with torch.no_grad():
            z = self.model.encode_text(self.tokenizer(list(texts)).to(self.device)).float().cpu()
        return torch.nn.functional.normalize(z, dim=1).numpy().astype(np.float32)


def load_openclip(model_name: str, checkpoint: str | Path, device: str = "cpu") -> OpenClipImageEncoder:
    """Build ``model_name`` with open_clip and load the local ``checkpoint`` file (no download).

    Args:
        model_name: open_clip architecture name, e.g. ``"ViT-B-32"`` (``open_clip.list_models()``).
        checkpoint: Path of a local ``.pt`` / ``.bin`` / ``.safetensors`` checkpoint.
        device: Torch device string.

    Raises:
        FileNotFoundError: when ``checkpoint`` is not a local file.
        ImportError: when open_clip is not installed (with the install hint).
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise InputNotFoundError(f"open_clip checkpoint not found: {path} (ShopRank never downloads weights; "
                                "point at a local file).")
    try:
        import open_clip
    except ImportError as exc:
        raise MissingDependencyError("load_openclip needs open_clip: pip install 'shoprank[clip]' (or open_clip_torch); "
                          "or build the model yourself and pass it to OpenClipImageEncoder.") from exc
    model, _, _ = open_clip.create_model_and_transforms(model_name, pretrained=str(path), device=device)
    visual = getattr(model, "visual", None)
    size = getattr(visual, "image_size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = getattr(visual, "image_mean", None) or CLIP_MEAN
    std = getattr(visual, "image_std", None) or CLIP_STD
    try:
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception:  # noqa: BLE001 - some tokenizers live on the hub; text is optional here
        tokenizer = None
    return OpenClipImageEncoder(model, name=f"openclip-{model_name}-{_file_tag(path)}", image_size=int(size),
                                mean=mean, std=std, tokenizer=tokenizer, device=device)


def openclip_from_env() -> OpenClipImageEncoder:
    """:func:`load_openclip` from ``SHOPRANK_OPENCLIP_MODEL`` and ``SHOPRANK_OPENCLIP_CHECKPOINT``.

    Raises:
        ValueError: naming the variables when either is unset.
    """
    model_name = os.environ.get("SHOPRANK_OPENCLIP_MODEL", "")
    checkpoint = os.environ.get("SHOPRANK_OPENCLIP_CHECKPOINT", "")
    if not model_name or not checkpoint:
        raise ConfigError("image_encoder='openclip' needs SHOPRANK_OPENCLIP_MODEL (e.g. ViT-B-32) and "
                         "SHOPRANK_OPENCLIP_CHECKPOINT (a local checkpoint file) in the environment.")
    return load_openclip(model_name, checkpoint)
