"""The built-in catalog generator and the CSV catalog loader (exact error messages)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from encoders.csv_catalog import CatalogError, CsvCatalogConfig, load_csv_catalog, parse_attributes
from encoders.synthetic import SyntheticCatalogConfig, generate_catalog


def test_synthetic_catalog_is_deterministic_and_complete():
    a = generate_catalog(SyntheticCatalogConfig(n_products=300, seed=7))
    b = generate_catalog(SyntheticCatalogConfig(n_products=300, seed=7))
    c = generate_catalog(SyntheticCatalogConfig(n_products=300, seed=8))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert np.array_equal(a.load_images([0, 5, 299]), b.load_images([0, 5, 299]))
    assert len(a) == 300 and len(set(a.ids)) == 300
    for key in ("type", "gender", "colour", "material", "style", "brand", "pattern"):
        assert all(key in attrs for attrs in a.attributes)
    assert (a.prices > 0).all()
    assert a.visual.shape == (300, 5)


def test_synthetic_photos_carry_what_the_text_omits():
    catalog = generate_catalog(SyntheticCatalogConfig(n_products=400, seed=1))
    omitted = [i for i in range(400) if catalog.attributes[i]["colour"] not in catalog.descriptions[i]]
    assert len(omitted) > 50  # the colour is often missing from the text ...
    images = catalog.load_images(omitted[:2])
    assert images.shape == (2, 64, 64, 3) and images.std() > 10  # ... but always drawn in the photo


@pytest.mark.parametrize("n", [99, 1_000_001])
def test_synthetic_size_bounds(n):
    with pytest.raises(ValueError, match=re.escape(f"n_products must be between 100 and 1,000,000, got {n}.")):
        SyntheticCatalogConfig(n_products=n)


def test_luma_catalog_loads(shared_data):
    catalog = load_csv_catalog(CsvCatalogConfig(shared_data / "luma"))
    assert len(catalog) == 199
    assert catalog.has_image.all()
    assert catalog.load_images([0]).shape == (1, 64, 64, 3)
    assert catalog.attributes[0]["gender"] == "Men"


HEADER = "sku,name,description,category,price,image,attributes,colors\n"


def _write(tmp_path: Path, rows: str, image: bool = True) -> Path:
    (tmp_path / "products.csv").write_text(HEADER + rows)
    if image:
        from PIL import Image
        Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "a.png")
    return tmp_path


def test_csv_missing_column(tmp_path):
    (tmp_path / "products.csv").write_text("sku,name\nA,Shirt\n")
    with pytest.raises(CatalogError, match=re.escape("products.csv: missing column(s) ['description', 'category', "
                                                     "'price', 'image', 'attributes', 'colors']; found ['sku', 'name']")):
        load_csv_catalog(CsvCatalogConfig(tmp_path))


def test_csv_duplicate_id(tmp_path):
    _write(tmp_path, "A,Shirt,d,Men/Tops,10,a.png,,\nA,Pants,d,Men/Bottoms,12,a.png,,\n")
    with pytest.raises(CatalogError, match=re.escape(
            "products.csv row 3, column 'sku': duplicate id 'A' (first seen on row 2)")):
        load_csv_catalog(CsvCatalogConfig(tmp_path))


def test_csv_non_numeric_price(tmp_path):
    _write(tmp_path, "A,Shirt,d,Men/Tops,cheap,a.png,,\n")
    with pytest.raises(CatalogError, match=re.escape(
            "products.csv row 2, column 'price': price 'cheap' is not a number")):
        load_csv_catalog(CsvCatalogConfig(tmp_path))


def test_csv_negative_price(tmp_path):
    _write(tmp_path, "A,Shirt,d,Men/Tops,-3,a.png,,\n")
    with pytest.raises(CatalogError, match=re.escape(
            "products.csv row 2, column 'price': price -3 must be a finite number >= 0")):
        load_csv_catalog(CsvCatalogConfig(tmp_path))


def test_csv_missing_image_is_an_error_unless_allowed(tmp_path):
    _write(tmp_path, "A,Shirt,d,Men/Tops,10,a.png,,\nB,Cap,d,Men/Hats,5,missing.png,,\n")
    with pytest.raises(CatalogError, match=re.escape(
            f"products.csv row 3 (product 'B'), column 'image': image file not found: {tmp_path / 'missing.png'} "
            "(pass allow_missing_images=True to keep the product without a photo)")):
        load_csv_catalog(CsvCatalogConfig(tmp_path))
    catalog = load_csv_catalog(CsvCatalogConfig(tmp_path, allow_missing_images=True))
    assert catalog.has_image.tolist() == [True, False]


def test_csv_corrupt_and_empty_images(tmp_path):
    _write(tmp_path, "A,Shirt,d,Men/Tops,10,bad.png,,\n")
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(CatalogError, match=re.escape("products.csv row 2 (product 'A'), column 'image': image file is corrupt")):
        load_csv_catalog(CsvCatalogConfig(tmp_path))
    (tmp_path / "bad.png").write_bytes(b"")
    with pytest.raises(CatalogError, match=re.escape(
            f"products.csv row 2 (product 'A'), column 'image': image file is empty (zero bytes): {tmp_path / 'bad.png'}")):
        load_csv_catalog(CsvCatalogConfig(tmp_path))


def test_csv_non_rgb_image_is_converted(tmp_path):
    from PIL import Image
    _write(tmp_path, "A,Shirt,d,Men/Tops,10,grey.png,,\n", image=False)
    Image.new("L", (20, 10), 80).save(tmp_path / "grey.png")
    assert load_csv_catalog(CsvCatalogConfig(tmp_path)).load_images([0]).shape == (1, 64, 64, 3)


def test_csv_file_not_found(tmp_path):
    with pytest.raises(CatalogError, match=re.escape(f"catalog file not found: {tmp_path / 'products.csv'}")):
        load_csv_catalog(CsvCatalogConfig(tmp_path))


def test_parse_attributes_formats():
    assert parse_attributes('{"Material": "Wool|Nylon"}') == {"material": "Wool|Nylon"}
    assert parse_attributes("colour=red; style=sporty") == {"colour": "red", "style": "sporty"}
    assert parse_attributes("") == {}


def test_csv_short_and_long_rows_are_errors(tmp_path):
    _write(tmp_path, "A,Shirt,d,Men/Tops,10,a.png,,\nB,Cap\n")
    with pytest.raises(CatalogError, match=re.escape("products.csv row 3: 2 cells, but the header has 8 columns")):
        load_csv_catalog(CsvCatalogConfig(tmp_path, allow_missing_images=True))
    _write(tmp_path, "A,Shirt,d,Men/Tops,10,a.png,,,extra\n")
    with pytest.raises(CatalogError, match=re.escape("products.csv row 2: 9 cells, but the header has 8 columns")):
        load_csv_catalog(CsvCatalogConfig(tmp_path))


def test_csv_empty_category_and_unreadable_attributes(tmp_path):
    _write(tmp_path, "A,Shirt,d,,10,a.png,,\n")
    with pytest.raises(CatalogError, match=re.escape("products.csv row 2, column 'category': empty category")):
        load_csv_catalog(CsvCatalogConfig(tmp_path))
    _write(tmp_path, 'A,Shirt,d,Men/Tops,10,a.png,"[1,2]",\n')
    with pytest.raises(CatalogError, match=re.escape(
            "products.csv row 2, column 'attributes': unreadable attributes (JSON attributes must be an object")):
        load_csv_catalog(CsvCatalogConfig(tmp_path))


def test_csv_that_is_not_utf8_names_the_file(tmp_path):
    _write(tmp_path, "A,Shirt,d,Men/Tops,10,a.png,,\n")
    (tmp_path / "products.csv").write_bytes((tmp_path / "products.csv").read_bytes() + "B,Café,d,Men/Tops,1,a.png,,\n".encode("latin-1"))
    with pytest.raises(CatalogError, match=r"^products\.csv: not UTF-8 text \("):
        load_csv_catalog(CsvCatalogConfig(tmp_path))


def test_parse_attributes_rejects_what_it_cannot_read():
    with pytest.raises(ValueError, match=re.escape("attributes must be JSON or key=value;key=value pairs, got 'wool'")):
        parse_attributes("wool")
