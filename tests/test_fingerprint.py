"""The catalog fingerprint (the embedding-cache key) covers every input the vectors depend on.

A photo replaced in place (same file name, new bytes) must change the fingerprint, so the cache cannot
serve the old image vectors; the text and the encoder's name (its config) are part of the key too.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from encoders.csv_catalog import CsvCatalogConfig, load_csv_catalog
from encoders.pixels import PixelStatsImageEncoder
from encoders.store import EmbeddingStore
from encoders.text import HashingTextEncoder

N_PRODUCTS = 12


def _copy_catalog(luma: Path, out: Path, n: int = N_PRODUCTS) -> list[dict[str, str]]:
    """The first ``n`` Luma products with photos, as a CSV catalog folder of their own under ``out``."""
    with (luma / "products.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        rows = [r for r in reader if r["image"].strip()][:n]
    out.mkdir(parents=True, exist_ok=True)
    with (out / "products.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        target = out / row["image"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(luma / row["image"], target)
    return rows


@pytest.fixture()
def catalog_dir(shared_data, tmp_path) -> tuple[Path, list[dict[str, str]]]:
    folder = tmp_path / "shop"
    return folder, _copy_catalog(shared_data / "luma", folder)


def _load_and_encode(folder: Path, store: EmbeddingStore, modality: str, encoder) -> tuple:
    """``(catalog, vectors)`` of the catalog in ``folder`` through ``store.text`` / ``store.image``."""
    catalog = load_csv_catalog(CsvCatalogConfig(folder))
    return catalog, getattr(store, modality)(catalog, encoder)


def test_replaced_photo_changes_fingerprint_and_exactly_its_image_vector(catalog_dir, tmp_path):
    folder, rows = catalog_dir
    store = EmbeddingStore(tmp_path / "cache", progress=False)
    encoder = PixelStatsImageEncoder()
    before_catalog, before = _load_and_encode(folder, store, "image", encoder)
    assert store.computed == ["image-pixel-stats-v2"]

    # replace product 3's photo in place with product 7's bytes (same file name, new content)
    shutil.copyfile(folder / rows[7]["image"], folder / rows[3]["image"])
    after_catalog, after = _load_and_encode(folder, store, "image", encoder)
    assert after_catalog.fingerprint() != before_catalog.fingerprint()
    assert store.computed == ["image-pixel-stats-v2", "image-pixel-stats-v2"], "stale vectors were served"
    assert not np.allclose(after[3], before[3])
    np.testing.assert_array_equal(after[3], before[7])
    unchanged = [i for i in range(len(rows)) if i != 3]
    np.testing.assert_array_equal(after[unchanged], before[unchanged])
    # both versions stay cached under their own key: reading the old catalog again computes nothing
    np.testing.assert_array_equal(store.image(before_catalog, encoder), before)
    assert len(store.computed) == 2


def test_fingerprint_follows_content_not_file_times(catalog_dir):
    folder, rows = catalog_dir
    first = load_csv_catalog(CsvCatalogConfig(folder)).fingerprint()
    photo = folder / rows[0]["image"]
    stat = photo.stat()
    os.utime(photo, (stat.st_atime + 1000, stat.st_mtime + 1000))
    assert load_csv_catalog(CsvCatalogConfig(folder)).fingerprint() == first
    photo.write_bytes(photo.read_bytes() + b"\0")  # JPEG readers ignore trailing bytes; the hash does not
    assert load_csv_catalog(CsvCatalogConfig(folder)).fingerprint() != first


def test_changed_text_changes_fingerprint_and_text_vectors(catalog_dir, tmp_path):
    folder, _ = catalog_dir
    store = EmbeddingStore(tmp_path / "cache", progress=False)
    before_catalog, before = _load_and_encode(folder, store, "text", HashingTextEncoder())
    text = (folder / "products.csv").read_text(encoding="utf-8")
    title = before_catalog.titles[2]
    assert text.count(title) >= 1
    (folder / "products.csv").write_text(text.replace(title, "Completely Different Thing", 1), encoding="utf-8")
    after_catalog, after = _load_and_encode(folder, store, "text", HashingTextEncoder())
    assert after_catalog.fingerprint() != before_catalog.fingerprint()
    assert not np.allclose(after[2], before[2])
    np.testing.assert_array_equal(np.delete(after, 2, axis=0), np.delete(before, 2, axis=0))


def test_encoder_config_is_part_of_the_cache_key(catalog_dir, tmp_path):
    folder, _ = catalog_dir
    catalog = load_csv_catalog(CsvCatalogConfig(folder))
    store = EmbeddingStore(tmp_path / "cache", progress=False)
    small, large = HashingTextEncoder(dim=64), HashingTextEncoder(dim=128)
    assert store.path(catalog, "text", small.name) != store.path(catalog, "text", large.name)
    assert store.text(catalog, small).shape[1] == 64
    assert store.text(catalog, large).shape[1] == 128
    assert store.computed == [f"text-{small.name}", f"text-{large.name}"]
