"""The product catalog: the one data structure every other part reads.

A :class:`Catalog` is column-oriented (arrays of length ``n``) so that a million products fit in memory.
Photos are not held in memory: :meth:`Catalog.load_images` reads (real catalogs) or renders (the built-in
synthetic catalog) the requested rows on demand, so encoders can stream them in batches.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from encoders.errors import CatalogError

IMAGE_SIZE = 64
"""Side in pixels of the square RGB images handed to image encoders."""

ImageSource = Callable[[np.ndarray], np.ndarray]
"""``rows (b,) int -> uint8 (b, IMAGE_SIZE, IMAGE_SIZE, 3)``; rows without a photo come back black and are
flagged by ``Catalog.has_image``."""


@dataclass
class Catalog:
    """Products in columns.

    Attributes:
        name: Human-readable catalog name (used in reports).
        ids: ``(n,)`` object array of unique product ids (strings).
        titles: ``(n,)`` object array of product titles.
        descriptions: ``(n,)`` object array of plain-text descriptions.
        categories: ``(n,)`` object array of category paths, ``/``-separated (``"Men/Tops/Tees"``).
        attributes: ``(n,)`` object array of ``dict[str, str]`` (colour, material, style, gender, brand, ...).
        prices: ``(n,)`` float32 prices, ``>= 0``.
        has_image: ``(n,)`` bool, False where the photo modality is missing (recorded, never zero-filled
            silently).
        visual: ``(n, V)`` float32 visual traits the *simulated shopper* has taste over: generation
            latents for the synthetic catalog, a pixel descriptor of the photo for real catalogs. Hidden
            from agents (they see encoder outputs of the photo instead).
        image_source: Callable returning photos for given rows (see :data:`ImageSource`).
        source_fingerprint: String that identifies the source data (seed and size, or file hashes); part of
            :meth:`fingerprint`.
        groups: ``int64 (n,)`` parent (group) code per product: variants of one parent product (colours,
            sizes) share a code (see :mod:`encoders.variants`); ``None``: every product stands alone.
    """

    name: str
    ids: np.ndarray
    titles: np.ndarray
    descriptions: np.ndarray
    categories: np.ndarray
    attributes: np.ndarray
    prices: np.ndarray
    has_image: np.ndarray
    visual: np.ndarray
    image_source: ImageSource = field(repr=False)
    source_fingerprint: str = ""
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.groups is not None:
            from encoders.variants import check_groups

            self.groups = check_groups(self.groups, n)
        for column in ("titles", "descriptions", "categories", "attributes", "prices", "has_image", "visual"):
            if len(getattr(self, column)) != n:
                raise CatalogError(f"Catalog column '{column}' has {len(getattr(self, column))} rows, expected {n}.")
        if n == 0:
            raise CatalogError("Catalog is empty: at least one product is required.")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def texts(self) -> list[str]:
        """Title and description joined: the text each text encoder reads, one string per product."""
        return [f"{t}. {d}" for t, d in zip(self.titles, self.descriptions)]

    def top_categories(self) -> np.ndarray:
        """``(n,)`` object array with the first component of each category path."""
        return np.array([c.split("/")[0] for c in self.categories], dtype=object)

    def load_images(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Photos of ``rows`` as ``uint8 (b, IMAGE_SIZE, IMAGE_SIZE, 3)``."""
        return self.image_source(np.asarray(rows, dtype=np.int64))

    def fingerprint(self) -> str:
        """Stable hash of the catalog content; the cache key for anything derived from it."""
        digest = hashlib.sha256()
        digest.update(self.source_fingerprint.encode())
        digest.update(str(len(self)).encode())
        for column in (self.ids, self.titles, self.descriptions, self.categories):
            digest.update("\x1f".join(map(str, column)).encode())
        digest.update(np.ascontiguousarray(self.prices, dtype=np.float32).tobytes())
        digest.update(np.ascontiguousarray(self.has_image).tobytes())
        return digest.hexdigest()[:16]


def category_codes(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer-code an object array: returns ``codes (n,) int64`` and the sorted vocabulary."""
    vocab = sorted(set(map(str, values)))
    index = {v: i for i, v in enumerate(vocab)}
    return np.array([index[str(v)] for v in values], dtype=np.int64), vocab


def read_rgb(path: Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """Read an image file into ``uint8 (size, size, 3)``, letterboxed on white.

    Raises:
        CatalogError: if the file is missing, empty, corrupt, cannot be converted to RGB, or has more pixels
            than Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) allows.
    """
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise CatalogError(f"image file not found: {path}")
    if path.stat().st_size == 0:
        raise CatalogError(f"image file is empty (zero bytes): {path}")
    try:
        with warnings.catch_warnings():  # Pillow only warns between its limit and twice the limit
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                rgb = img.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CatalogError(f"image file has more pixels than Pillow decodes safely (PIL.Image.MAX_IMAGE_PIXELS = "
                           f"{Image.MAX_IMAGE_PIXELS}; a decompression bomb?): {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise CatalogError(f"image file is corrupt or not an image: {path} ({exc})") from exc
    if rgb.width == 0 or rgb.height == 0:
        raise CatalogError(f"image has zero size: {path}")
    rgb.thumbnail((size, size))
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(rgb, ((size - rgb.width) // 2, (size - rgb.height) // 2))
    return np.asarray(canvas, dtype=np.uint8)
