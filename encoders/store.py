"""Disk cache of product vectors, keyed by catalog fingerprint + encoder name.

The key covers every input a vector depends on: :meth:`Catalog.fingerprint` hashes the ids, text,
categories, prices and photo mask, plus the source's own fingerprint (for CSV catalogs the CSV bytes and
**each photo's bytes by content hash**, so a photo replaced under the same file name changes the key and
the whole matrix is re-encoded; for the synthetic catalog its generation config); the encoder's ``name``
must change with any setting that changes its output (``hashing-256``, ``pixel-stats-v2``, the
contrastive encoder's hash of its config, seed and training data). Tested in ``tests/test_fingerprint.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from encoders.atomic_files import atomic_path
from encoders.catalog import Catalog
from encoders.protocols import ImageEncoder, TextEncoder

log = logging.getLogger(__name__)
DEFAULT_CACHE = Path(".cache") / "shoprank"


class EmbeddingStore:
    """Computes each (catalog, encoder) matrix once and keeps it on disk as ``.npy``.

    Args:
        root: Cache folder (created on first write). ``None`` disables the disk cache.
        batch_size: Products per encoder call.
        progress: Show a progress bar while encoding.

    Attributes:
        computed: Names of the matrices this store had to compute (not read from cache); a test reads it.
    """

    def __init__(self, root: Path | None = DEFAULT_CACHE, batch_size: int = 256, progress: bool = True) -> None:
        self.root = Path(root) if root is not None else None
        self.batch_size = batch_size
        self.progress = progress
        self.computed: list[str] = []

    def path(self, catalog: Catalog, modality: str, encoder_name: str) -> Path | None:
        """Cache file of one matrix (``None`` when caching is off)."""
        if self.root is None:
            return None
        safe = encoder_name.replace("/", "_")
        return self.root / catalog.fingerprint() / f"{modality}-{safe}.npy"

    def get_or_compute(self, catalog: Catalog, modality: str, encoder_name: str,
                       encode_rows: Callable[[np.ndarray], np.ndarray], n: int | None = None) -> np.ndarray:
        """Return the ``float32 (n, d)`` matrix, computing it in batches with ``encode_rows(rows)`` if needed.

        ``n`` defaults to the catalog size (pass it for matrices of other things, e.g. query texts).
        """
        path = self.path(catalog, modality, encoder_name)
        if path is not None and path.is_file():
            return np.load(path)
        n = len(catalog) if n is None else n
        chunks = []
        starts = range(0, n, self.batch_size)
        for start in tqdm(starts, desc=f"encoding {modality} ({encoder_name})", disable=not self.progress,
                          unit="batch"):
            chunks.append(np.asarray(encode_rows(np.arange(start, min(start + self.batch_size, n))),
                                     dtype=np.float32))
        matrix = np.concatenate(chunks, axis=0)
        self.computed.append(f"{modality}-{encoder_name}")
        if path is not None:
            with atomic_path(path) as tmp:  # a killed writer never leaves a truncated matrix under the key
                np.save(tmp, matrix)
        return matrix

    def text(self, catalog: Catalog, encoder: TextEncoder) -> np.ndarray:
        """``float32 (n, encoder.dim)`` text vectors of ``catalog.texts``."""
        texts = catalog.texts
        return self.get_or_compute(catalog, "text", encoder.name, lambda rows: encoder.encode([texts[i] for i in rows]))

    def image(self, catalog: Catalog, encoder: ImageEncoder) -> np.ndarray:
        """``float32 (n, encoder.dim)`` image vectors; rows without a photo are zeros (mask with ``has_image``)."""
        def encode(rows: np.ndarray) -> np.ndarray:
            out = np.zeros((len(rows), encoder.dim), dtype=np.float32)
            present = catalog.has_image[rows]
            if present.any():
                out[present] = encoder.encode(catalog.load_images(rows[present]))
            return out

        return self.get_or_compute(catalog, "image", encoder.name, encode)
