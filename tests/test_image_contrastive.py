"""Contrastive image encoder: training, caching, augmentation, and bad photos."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from encoders.catalog import read_rgb
from encoders.contrastive import augment_text, split_rows
from encoders.csv_catalog import CatalogError, CsvCatalogConfig, load_csv_catalog
from encoders.image_contrastive import (ContrastiveImageConfig, augment_images, train_contrastive_image_encoder,
                                        weights_path)
from encoders.protocols import ImageEncoder
from encoders.registry import IMAGE_ENCODERS, EncoderContext
from encoders.store import EmbeddingStore
from encoders.synthetic import SyntheticCatalogConfig, generate_catalog
from encoders.text import HashingTextEncoder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = ContrastiveImageConfig(embed_dim=16, channels=(8, 16), hidden=32, epochs=2, batch_size=32,
                              min_steps_per_epoch=2, n_text_views=1, n_threads=1)


@pytest.fixture(scope="module")
def tiny():
    catalog = generate_catalog(SyntheticCatalogConfig(n_products=100, seed=3))
    text_encoder = HashingTextEncoder(64)
    return catalog, text_encoder, text_encoder.encode(catalog.texts)


def test_trains_once_then_loads_from_cache(tiny, tmp_path):
    catalog, text_encoder, text = tiny
    store = EmbeddingStore(tmp_path, progress=False)
    first = train_contrastive_image_encoder(catalog, text, TINY, seed=0, text_encoder=text_encoder, store=store)
    assert isinstance(first, ImageEncoder) and first.dim == 16
    assert not first.history.from_cache and len(first.history.train_loss) >= 1
    assert first.history.n_train + first.history.n_val == 100 and first.history.n_val == 10
    vectors = first.encode(catalog.load_images(np.arange(10)))
    assert vectors.shape == (10, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert first.encode_text_vectors(text[:3]).shape == (3, 16)
    path = weights_path(store, catalog, first.name.removeprefix("contrastive-"))
    assert path is not None and path.is_file()
    state = torch.load(path, weights_only=True)  # a plain state_dict
    assert "logit_scale" in state and "text.weight" in state

    second = train_contrastive_image_encoder(catalog, text, TINY, seed=0, text_encoder=text_encoder, store=store)
    assert second.history.from_cache and second.name == first.name
    np.testing.assert_allclose(second.encode(catalog.load_images(np.arange(10))), vectors, atol=1e-6)
    other = train_contrastive_image_encoder(catalog, text, replace(TINY, embed_dim=8), seed=0, store=store)
    assert other.name != first.name and other.dim == 8


def test_training_is_deterministic(tiny):
    catalog, text_encoder, text = tiny
    a = train_contrastive_image_encoder(catalog, text, TINY, seed=1, text_encoder=text_encoder)
    b = train_contrastive_image_encoder(catalog, text, TINY, seed=1, text_encoder=text_encoder)
    images = catalog.load_images(np.arange(5))
    np.testing.assert_allclose(a.encode(images), b.encode(images), atol=1e-6)
    assert a.history.train_loss == b.history.train_loss


def test_registry_factory(tiny, tmp_path, monkeypatch):
    catalog, text_encoder, text = tiny
    import encoders.image_contrastive as module

    monkeypatch.setattr(module, "ContrastiveImageConfig", lambda: TINY)
    encoder = IMAGE_ENCODERS["contrastive"](EncoderContext(catalog, text, EmbeddingStore(tmp_path, progress=False),
                                                           seed=0, text_encoder=text_encoder))
    assert encoder.name.startswith("contrastive-") and encoder.dim == 16


def test_augmentation_is_mild_on_colour_and_seeded():
    x = torch.zeros(8, 3, 64, 64)
    x[:, 0], x[:, 1], x[:, 2] = 0.8, 0.2, 0.1
    config = ContrastiveImageConfig(crop_padding=0)
    a = augment_images(x, config, torch.Generator().manual_seed(0))
    b = augment_images(x, config, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert float((a.mean(dim=(2, 3)) - x.mean(dim=(2, 3))).abs().max()) < 0.07


def test_text_augmentation_drops_attributes_and_sentences():
    rng = np.random.default_rng(0)
    attrs = {"colour": "red", "pattern": "striped"}
    views = {augment_text("Tee", "A red striped tee. Made of cotton. Built to last.", attrs, rng,
                          p_drop_attribute=0.5, p_drop_sentence=0.3) for _ in range(30)}
    assert len(views) > 5
    assert any("red" not in v for v in views) and any("red" in v for v in views)
    assert all(v.startswith("Tee.") for v in views)
    assert augment_text("Tee", "One.", attrs, np.random.default_rng(1), 0.0, 0.99) == "Tee. One."


def test_split_rows_is_seeded_and_disjoint():
    train, val = split_rows(np.arange(50), 0.2, seed=4)
    assert len(val) == 10 and not set(train) & set(val)
    assert np.array_equal(val, split_rows(np.arange(50), 0.2, seed=4)[1])
    assert len(split_rows(np.arange(10), 0.2, seed=4)[1]) == 0  # too few for a held-out split


def test_text_vectors_must_match_catalog(tiny):
    catalog, _, text = tiny
    with pytest.raises(ValueError, match=r"text_vectors must be \(n=100, d\), got \(99, 64\)\."):
        train_contrastive_image_encoder(catalog, text[:99], TINY)


# --- bad photos -----------------------------------------------------------------------------------------

def _write_catalog(folder: Path, images: dict[str, bytes | Image.Image]) -> Path:
    """A CSV catalog with one product per image; ``images`` maps product id to file bytes or a PIL image."""
    (folder / "img").mkdir(parents=True)
    rows = []
    for i, (pid, content) in enumerate(images.items()):
        path = folder / "img" / f"{pid}.png"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content.save(path)
        rows.append({"sku": pid, "name": f"Product {pid}", "description": f"A {pid} thing. Nice.",
                     "category": "Gear/Bags", "price": "10", "image": f"img/{pid}.png", "attributes": "",
                     "colors": ""})
    with (folder / "products.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def _good(i: int) -> Image.Image:
    return Image.new("RGB", (40, 30), (20 * i % 255, 100, 200 - 10 * i))


def test_read_rgb_messages(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"^image file is empty \(zero bytes\): {empty}$"):
        read_rgb(empty)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match=rf"^image file is corrupt or not an image: {corrupt} \("):
        read_rgb(corrupt)
    with pytest.raises(ValueError, match=rf"^image file not found: {tmp_path / 'missing.jpg'}$"):
        read_rgb(tmp_path / "missing.jpg")


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_other_modes_are_converted_to_rgb(tmp_path, mode):
    path = tmp_path / f"x.{'tiff' if mode == 'CMYK' else 'png'}"
    Image.new("RGB", (20, 10), (200, 30, 30)).convert(mode).save(path)
    img = read_rgb(path)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8


def test_bad_photo_in_csv_names_the_product(tmp_path):
    folder = _write_catalog(tmp_path / "cat", {"A1": _good(1), "B2": b"garbage bytes", "C3": _good(3)})
    with pytest.raises(CatalogError, match=r"^products\.csv row 3 \(product 'B2'\), column 'image': image file is "
                                           r"corrupt or not an image: .*B2\.png .*\(pass allow_missing_images=True"):
        load_csv_catalog(CsvCatalogConfig(path=folder))
    folder = _write_catalog(tmp_path / "cat2", {"A1": _good(1), "Z9": b""})
    with pytest.raises(CatalogError, match=r"row 3 \(product 'Z9'\), column 'image': image file is empty \(zero bytes\)"):
        load_csv_catalog(CsvCatalogConfig(path=folder))


def test_bad_photos_skipped_and_counted_only_when_allowed(tmp_path):
    images = {f"P{i}": _good(i) for i in range(12)}
    images["BAD"] = b"garbage"
    images["EMPTY"] = b""
    catalog = load_csv_catalog(CsvCatalogConfig(path=_write_catalog(tmp_path / "cat", images),
                                                allow_missing_images=True))
    assert int((~catalog.has_image).sum()) == 2
    text_encoder = HashingTextEncoder(32)
    text = text_encoder.encode(catalog.texts)
    store = EmbeddingStore(tmp_path / "cache", progress=False)
    encoder = train_contrastive_image_encoder(catalog, text, TINY, text_encoder=text_encoder, store=store)
    assert encoder.history.n_train + encoder.history.n_val == 12  # the two bad photos are not trained on
    vectors = store.image(catalog, encoder)
    assert (vectors[~catalog.has_image] == 0).all() and (np.abs(vectors[catalog.has_image]).sum(1) > 0).all()


def test_too_few_photos(tmp_path):
    images = {"P1": _good(1), "BAD": b"x"}
    catalog = load_csv_catalog(CsvCatalogConfig(path=_write_catalog(tmp_path / "c", images), allow_missing_images=True))
    with pytest.raises(ValueError, match=r"has 1 products with a photo; contrastive training needs at least 2\."):
        train_contrastive_image_encoder(catalog, HashingTextEncoder(8).encode(catalog.texts), TINY)


@pytest.mark.skipif(not (DATA / "luma" / "products.csv").is_file(), reason="shared Luma data not present")
def test_luma_photos_load_and_train_one_epoch(tmp_path):
    catalog = load_csv_catalog(CsvCatalogConfig(path=DATA / "luma"))
    assert catalog.has_image.all()
    text_encoder = HashingTextEncoder(64)
    encoder = train_contrastive_image_encoder(catalog, text_encoder.encode(catalog.texts), replace(TINY, epochs=1),
                                              text_encoder=text_encoder)
    assert encoder.encode(catalog.load_images(np.arange(4))).shape == (4, 16)


def test_text_augmentation_is_the_same_in_every_process():
    """The attribute words are dropped in a fixed order, not in a set's order (which Python's per-process
    string hashing changes): same seed, same augmented text, whatever PYTHONHASHSEED is."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np; from encoders.contrastive import augment_text; "
            "attrs = {'colour': 'red|tan|sky|ash|oak', 'material': 'wool|silk|felt|jute', 'pattern': 'dot'}; "
            "text = 'red tan sky ash oak wool silk felt jute dot shirt. One. Two. Three.'; "
            "print([augment_text('t', text, attrs, np.random.default_rng(s)) for s in range(8)])")
    outputs = set()
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        outputs.add(done.stdout)
    assert len(outputs) == 1
