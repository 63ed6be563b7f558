"""Pieces shared by everything ShopRank trains contrastively (image encoder, neural fusions).

* :func:`info_nce`: the symmetric CLIP loss with a learned temperature.
* :func:`augment_text` / :func:`text_views`: text augmentation (attribute dropout, sentence shuffle and
  dropout) re-encoded once with the frozen text encoder and cached, so training never calls it again.
* :func:`split_rows`: the seeded train / held-out split used for early stopping.
* :func:`torch_threads`: a context manager that sets torch's intra-op threads only while training.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from encoders.catalog import Catalog
from encoders.protocols import TextEncoder
from encoders.store import EmbeddingStore

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def info_nce(a, b, logit_scale):
    """Symmetric InfoNCE between matched rows of ``a`` and ``b`` (row ``i`` of each is a positive pair).

    Args:
        a: ``torch.float32 (B, d)`` L2-normalised.
        b: ``torch.float32 (B, d)`` L2-normalised.
        logit_scale: scalar tensor, ``log(1 / temperature)`` (clamped to ``<= log 100``).

    Returns:
        Scalar tensor: mean of the a->b and b->a cross-entropies.
    """
    import torch
    import torch.nn.functional as F

    scale = logit_scale.clamp(max=float(np.log(100.0))).exp()
    logits = scale * a @ b.T
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


#: Part of every cache key of text views and of what is fitted on them (fusions): "v2" since the attribute
#: words are dropped in a fixed order, so views cached before, which depended on PYTHONHASHSEED, are not reused.
TEXT_VIEWS_VERSION = "v2"


def _attribute_words(attributes: dict) -> list[str]:
    words: set[str] = set()
    for value in attributes.values():
        for part in str(value).split("|"):
            part = part.strip()
            if part and part.lower() not in {"yes", "no"}:
                words.add(part)
    # longest first (so "light blue" goes before "blue"), then alphabetical: a set's order changes with
    # Python's per-process string hashing, and the augmentation draws one random number per word
    return sorted(words, key=lambda word: (-len(word), word))


def augment_text(title: str, description: str, attributes: dict, rng: np.random.Generator,
                 p_drop_attribute: float = 0.5, p_drop_sentence: float = 0.3) -> str:
    """One augmented view of a product's text (what :attr:`Catalog.texts` would give, perturbed).

    Each attribute value that occurs in the text as a whole word (``"red"``, ``"striped"``) is deleted
    with probability ``p_drop_attribute`` (all its occurrences); description sentences are shuffled and
    each dropped with probability ``p_drop_sentence`` (at least one is kept).

    Args:
        title: Product title.
        description: Plain-text description.
        attributes: ``dict[str, str]`` (``|`` separates multiple values).
        rng: Source of randomness.
        p_drop_attribute: Probability of deleting one attribute value's mentions.
        p_drop_sentence: Probability of dropping one description sentence.

    Returns:
        ``"title. sentence sentence ..."``.
    """
    sentences = [s.strip() for s in _SENTENCE.split(description or "") if s.strip()]
    if sentences:
        order = rng.permutation(len(sentences))
        keep = rng.random(len(sentences)) >= p_drop_sentence
        if not keep.any():
            keep[rng.integers(len(sentences))] = True
        sentences = [sentences[i] for i in order if keep[i]]
    text = f"{title}. {' '.join(sentences)}"
    for word in _attribute_words(attributes):
        if rng.random() < p_drop_attribute:
            text = re.sub(rf"(?i)\b{re.escape(word)}\b", "", text)
    return re.sub(r"\s{2,}", " ", text).strip()


def text_views(catalog: Catalog, encoder: TextEncoder, n_views: int, seed: int = 0,
               p_drop_attribute: float = 0.5, p_drop_sentence: float = 0.3,
               store: EmbeddingStore | None = None) -> np.ndarray:
    """Encode ``n_views`` augmented texts per product once (cached in ``store`` when given).

    Args:
        catalog: The products.
        encoder: The frozen text encoder.
        n_views: Views per product.
        seed: Seed of the augmentation.
        p_drop_attribute: See :func:`augment_text`.
        p_drop_sentence: See :func:`augment_text`.
        store: Embedding cache; ``None`` encodes without caching.

    Returns:
        ``float32 (n_views, n, d_text)``.
    """
    views = []
    tag = hashlib.sha256(f"{TEXT_VIEWS_VERSION}:{seed}:{p_drop_attribute}:{p_drop_sentence}".encode()).hexdigest()[:8]
    for v in range(n_views):
        rng = np.random.default_rng([seed, v])
        texts = [augment_text(t, d, a, rng, p_drop_attribute, p_drop_sentence)
                 for t, d, a in zip(catalog.titles, catalog.descriptions, catalog.attributes)]
        if store is None:
            views.append(encoder.encode(texts).astype(np.float32))
        else:
            views.append(store.get_or_compute(catalog, f"textview{v}-{tag}", encoder.name,
                                              lambda rows, texts=texts: encoder.encode([texts[i] for i in rows])))
    if not views:
        return np.zeros((0, len(catalog), encoder.dim), dtype=np.float32)
    return np.stack(views).astype(np.float32)


def split_rows(rows: np.ndarray, val_fraction: float, seed: int, min_val: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``rows`` into ``(train, val)``; ``val`` is empty when too few rows for ``min_val``."""
    rows = np.asarray(rows, dtype=np.int64)
    n_val = int(round(len(rows) * val_fraction))
    if n_val < min_val or len(rows) - n_val < 2:
        return rows, rows[:0]
    perm = np.random.default_rng([seed, 7]).permutation(len(rows))
    return np.sort(rows[perm[n_val:]]), np.sort(rows[perm[:n_val]])


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set ``torch.set_num_threads(n)`` for the block only (``None``: leave torch's setting alone)."""
    import torch

    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def array_digest(*arrays: np.ndarray) -> str:
    """Short hash of array contents (shape, dtype and bytes): part of weight-cache keys."""
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.shape}{a.dtype}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()[:16]
