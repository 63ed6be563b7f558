"""Sparse attribute features: a catalog's categorical attributes as hashed ids (the feature-hashing trick).

Each product's attributes (``Catalog.attributes``: ``{"colour": "Black|Gray", "material": "Wool", ...}``,
whatever the CSV's attribute column holds) become **tokens** ``"key=value"`` (lower-cased, multi-valued
entries split on ``|``), and each token an id in ``0 .. n_buckets - 1``:

* ``0`` (:data:`PAD_ID`): no token (a product with fewer tokens than the block is wide; padded candidates);
* ``1`` (:data:`UNKNOWN_ID`): the shared bucket of **unknown** values: empty or placeholder values
  (``""``, ``"unknown"``, ``"n/a"``, ...) and values fewer than :data:`MIN_COUNT` products of the catalog
  have (a value seen once carries nothing a model can generalise from, and would otherwise get a bucket of
  its own to over-fit);
* ``2 .. n_buckets - 1``: every other token by a stable hash (CRC-32, the same in every process and run)
  modulo ``n_buckets - 2``; distinct tokens may share a bucket (collisions), which the embedding learns to
  live with, and the table's size stays ``n_buckets`` whatever the catalog holds.

The env puts each candidate's ids in the observation block ``attributes`` ``float32 (K, A)`` when
``EnvConfig.attribute_buckets > 0`` (``A``: the most tokens a product of the catalog has, at most
:data:`MAX_TOKENS`); :class:`~agents.extractor.CandidateSetExtractor` embeds them with
``torch.nn.EmbeddingBag`` (mean over a candidate's ids, ``PAD_ID`` left out).
"""

from __future__ import annotations

import zlib
from collections import Counter
from typing import Iterable, Mapping

import numpy as np

PAD_ID = 0
"""Id of an empty token slot (left out of the embedding's mean)."""
UNKNOWN_ID = 1
"""Id shared by all unknown values (empty, placeholder or rarer than :data:`MIN_COUNT`)."""
MIN_COUNT = 2
"""Fewest products a token must occur in to get its own hashed bucket."""
MAX_TOKENS = 32
"""Widest ``attributes`` block: a product's tokens beyond this many (in sorted order) are dropped."""
MAX_BUCKETS = 2 ** 24
"""Most buckets: ids travel as ``float32``, exact up to ``2 ** 24``."""
PLACEHOLDERS = frozenset({"", "unknown", "n/a", "na", "none", "null", "-", "?"})
"""Values that mean "not known" (compared lower-cased and stripped)."""


def attribute_tokens(attributes: Mapping[str, str]) -> list[str]:
    """A product's attribute tokens, sorted: ``{"Colour": "Black|Gray"}`` -> ``["colour=black", "colour=gray"]``.

    A placeholder value becomes ``"<key>=?"`` (it still says the attribute exists, and maps to
    :data:`UNKNOWN_ID`).
    """
    tokens = set()
    for key, value in attributes.items():
        name = str(key).strip().lower()
        for part in str(value).split("|"):
            part = part.strip().lower()
            tokens.add(f"{name}={part if part not in PLACEHOLDERS else '?'}")
    return sorted(tokens)


def token_bucket(token: str, n_buckets: int) -> int:
    """The hashed bucket of a known token, in ``2 .. n_buckets - 1``."""
    return 2 + zlib.crc32(token.encode("utf-8")) % (n_buckets - 2)


def attribute_ids(catalog_attributes: Iterable[Mapping[str, str]], n_buckets: int) -> np.ndarray:
    """``int64 (n_products, A)`` hashed attribute ids of every product (see the module docstring).

    Args:
        catalog_attributes: One ``dict[str, str]`` per product (``Catalog.attributes``).
        n_buckets: Buckets including :data:`PAD_ID` and :data:`UNKNOWN_ID` (``>= 3``).

    Returns:
        Ids padded with :data:`PAD_ID`; ``A = max(1, most tokens of a product)``, at most :data:`MAX_TOKENS`.
    """
    if not 3 <= n_buckets <= MAX_BUCKETS:
        raise ValueError(f"n_buckets must be between 3 and {MAX_BUCKETS}, got {n_buckets}.")
    tokens = [attribute_tokens(attrs or {})[:MAX_TOKENS] for attrs in catalog_attributes]
    counts = Counter(token for product in tokens for token in product)
    width = max([1, *map(len, tokens)])
    out = np.full((len(tokens), width), PAD_ID, dtype=np.int64)
    for row, product in enumerate(tokens):
        for col, token in enumerate(product):
            known = counts[token] >= MIN_COUNT and not token.endswith("=?")
            out[row, col] = token_bucket(token, n_buckets) if known else UNKNOWN_ID
    return out
