"""MiniLM vectors are real: on the Luma catalog, a product's own name retrieves it in the top 10."""

from __future__ import annotations

import numpy as np

from encoders.csv_catalog import CsvCatalogConfig, load_csv_catalog
from encoders.retriever import FaissRetriever
from encoders.store import EmbeddingStore
from encoders.text import MiniLMTextEncoder


def name_self_retrieval(catalog, encoder, store, k: int = 10) -> float:
    """Fraction of products whose own name retrieves them in the top ``k`` (index over title + description)."""
    vectors = store.text(catalog, encoder)
    ids, _ = FaissRetriever(vectors).search(encoder.encode(list(catalog.titles)), k)
    return float(np.mean([row in hits for row, hits in enumerate(ids)]))


def test_luma_name_retrieves_its_product_in_top_10(shared_data, tmp_path):
    catalog = load_csv_catalog(CsvCatalogConfig(shared_data / "luma"))
    hit_rate = name_self_retrieval(catalog, MiniLMTextEncoder(), EmbeddingStore(tmp_path, progress=False))
    print(f"Luma name -> own product in top 10: {hit_rate:.3f} of {len(catalog)} products")
    assert hit_rate >= 0.90
