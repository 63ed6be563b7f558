"""Load a real catalog from a CSV file plus an image folder, through a column mapping.

Every bad input gets an error that names the row and the column: missing columns, duplicate ids,
non-numeric or negative prices, missing or unreadable photos. A missing photo is tolerated only with
``allow_missing_images=True``, and then recorded in ``Catalog.has_image`` (the modality is masked
downstream, never zero-filled silently).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.catalog import IMAGE_SIZE, Catalog, read_rgb
from encoders.errors import CatalogError
from encoders.pixels import pixel_descriptor
from encoders.variants import group_codes


@dataclass(frozen=True)
class ColumnMapping:
    """Which CSV column holds which product field (the defaults read the Luma export).

    Attributes:
        id: Unique product id.
        title: Product title.
        description: Plain-text description (optional column: empty when ``None``).
        category: ``/``-separated category path.
        price: Numeric price (``>= 0``); an empty cell is read as missing (``allow_missing_prices``).
        image: Photo path relative to the catalog folder (optional column when ``None``).
        attributes: JSON object or ``key=value;...`` attribute string (optional column).
        colors: ``|``-separated colours, added to the attributes as ``colour`` (optional column).
        group: Parent (group) id: rows with the same value are variants of one product (colours, sizes),
            ``Catalog.groups``; an empty cell makes the product its own group (optional column; ``None``:
            no groups). Luma's ``color_variants.csv`` maps as :data:`LUMA_VARIANTS_COLUMNS`.
    """

    id: str = "sku"
    title: str = "name"
    description: str | None = "description"
    category: str = "category"
    price: str = "price"
    image: str | None = "image"
    attributes: str | None = "attributes"
    colors: str | None = "colors"
    group: str | None = None

    def required(self) -> list[str]:
        """Column names that must be present in the CSV header."""
        return [c for c in (self.id, self.title, self.description, self.category, self.price, self.image,
                            self.attributes, self.colors, self.group) if c is not None]

    @classmethod
    def from_spec(cls, spec: str) -> "ColumnMapping":
        """The default mapping changed by ``"field=column,field=column"`` (``field=`` with no column
        drops an optional column), e.g. ``"id=variant_id,colors=color,attributes=,group=parent_sku"``.

        Raises:
            CatalogError: for an unknown field, a malformed item, or an empty required column.
        """
        known = list(cls.__dataclass_fields__)
        optional = {"description", "image", "attributes", "colors", "group"}
        changes: dict[str, str | None] = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            field_name, sep, column = (s.strip() for s in item.partition("="))
            if not sep or field_name not in known:
                raise CatalogError(f"catalog column mapping {spec!r}: {item!r} must be FIELD=COLUMN with FIELD "
                                   f"one of {known}")
            if not column and field_name not in optional:
                raise CatalogError(f"catalog column mapping {spec!r}: required field '{field_name}' needs a column")
            changes[field_name] = column or None
        return cls(**changes)


LUMA_VARIANTS_COLUMNS = "id=variant_id,colors=color,attributes=,group=parent_sku"
"""``ColumnMapping.from_spec`` of Luma's ``color_variants.csv`` (one row per colour of a parent sku)."""


@dataclass(frozen=True)
class CsvCatalogConfig:
    """How to read a CSV catalog.

    Attributes:
        path: Folder holding ``csv_name`` and the photos (or the CSV file itself).
        csv_name: CSV file name inside ``path``.
        mapping: Column mapping.
        allow_missing_images: Keep products whose photo is missing or unreadable, marking them in
            ``Catalog.has_image``; otherwise such a product is an error.
        allow_missing_prices: Read an empty price cell as 0 (and count it) instead of failing.
    """

    path: Path
    csv_name: str = "products.csv"
    mapping: ColumnMapping = ColumnMapping()
    allow_missing_images: bool = False
    allow_missing_prices: bool = True


_NO_ATTRIBUTES = {"", "-", "n/a", "na", "none", "null", "{}"}


def parse_attributes(text: str) -> dict[str, str]:
    """Parse ``{"k": "v"}`` JSON or ``k=v;k2=v2`` into a dict of strings (``|`` keeps multi-values).

    An empty cell or a "no value" marker (``-``, ``n/a``, ``none``, ``null``) gives ``{}``; any other text
    that is neither format raises ``ValueError``."""
    text = (text or "").strip()
    if text.lower() in _NO_ATTRIBUTES:
        return {}
    if text.startswith(("{", "[")):
        parsed = json.loads(text)
        if not isinstance(parsed, dict):
            raise ValueError(f"JSON attributes must be an object {{\"key\": \"value\"}}, got {text[:40]!r}")
        return {str(k).lower(): str(v) for k, v in parsed.items()}
    pairs = [p.split("=", 1) for p in text.split(";") if "=" in p]
    if not pairs:
        raise ValueError(f"attributes must be JSON or key=value;key=value pairs, got {text[:40]!r}")
    return {k.strip().lower(): v.strip() for k, v in pairs}


MAX_PRICE = 1e9
"""The largest price a catalog may hold: prices become float32 features, and 1e308 would be ``inf``."""


def _image_path(root: Path, cell: str, where: str) -> Path:
    """The photo a catalog cell names, confined to the catalog folder ``root``.

    Raises:
        CatalogError: for an absolute path or a ``..`` (or a symbolic link) leading outside ``root``.
    """
    path = root / cell.strip()
    resolved, base = path.resolve(), root.resolve()
    if not resolved.is_relative_to(base):
        raise CatalogError(f"{where}: image path '{cell.strip()}' points outside the catalog folder {base}; photos "
                           "must live inside it")
    return path


def load_csv_catalog(config: CsvCatalogConfig) -> Catalog:
    """Read, validate and index a CSV catalog.

    Args:
        config: Location, mapping and tolerance options.

    Returns:
        A :class:`Catalog` whose ``visual`` traits are the pixel descriptors of the photos and whose
        ``image_source`` reads the photos from disk (letterboxed to ``IMAGE_SIZE``).

    Raises:
        CatalogError: naming the file, row (1-based data row, as a spreadsheet shows it: header = row 1)
            and column of the first problem.
    """
    root = Path(config.path)
    csv_path = root if root.is_file() else root / config.csv_name
    root = csv_path.parent
    if not csv_path.is_file():
        raise CatalogError(f"catalog file not found: {csv_path}")
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: a leading BOM is not a header
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in config.mapping.required() if c not in header]
            if missing:
                raise CatalogError(f"{csv_path.name}: missing column(s) {missing}; found {header}")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{csv_path.name}: not UTF-8 text ({exc})") from None
    if not rows:
        raise CatalogError(f"{csv_path.name}: no products (only a header)")
    m = config.mapping
    seen: dict[str, int] = {}
    prices = np.zeros(len(rows), dtype=np.float32)
    image_paths: list[Path | None] = []
    for i, row in enumerate(rows):
        line = i + 2
        if None in row or None in row.values():  # csv.DictReader's marks of a short or long row
            cells = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
            raise CatalogError(f"{csv_path.name} row {line}: {cells} cells, but the header has {len(header)} columns")
        pid = (row[m.id] or "").strip()
        if not pid:
            raise CatalogError(f"{csv_path.name} row {line}, column '{m.id}': empty product id")
        if pid in seen:
            raise CatalogError(
                f"{csv_path.name} row {line}, column '{m.id}': duplicate id '{pid}' (first seen on row {seen[pid]})")
        seen[pid] = line
        if not (row[m.title] or "").strip():
            raise CatalogError(f"{csv_path.name} row {line}, column '{m.title}': empty title")
        if not (row[m.category] or "").strip():
            raise CatalogError(f"{csv_path.name} row {line}, column '{m.category}': empty category")
        raw_price = (row[m.price] or "").strip()
        if raw_price == "" and config.allow_missing_prices:
            price = 0.0
        else:
            try:
                price = float(raw_price)
            except ValueError:
                raise CatalogError(
                    f"{csv_path.name} row {line}, column '{m.price}': price '{raw_price}' is not a number") from None
            if not math.isfinite(price) or price < 0:
                raise CatalogError(
                    f"{csv_path.name} row {line}, column '{m.price}': price {raw_price} must be a finite number >= 0")
            if price > MAX_PRICE:
                raise CatalogError(f"{csv_path.name} row {line}, column '{m.price}': price {raw_price} is above "
                                   f"{MAX_PRICE:g}, the largest price a catalog may hold (a typo or a unit error?)")
        prices[i] = price
        image_paths.append(_image_path(root, row[m.image], f"{csv_path.name} row {line}, column '{m.image}'")
                           if m.image and (row[m.image] or "").strip() else None)

    has_image = np.ones(len(rows), dtype=bool)
    visual = np.zeros((len(rows), 5), dtype=np.float32)
    photo_hashes = ["-"] * len(rows)  # content hash per product's photo: part of the catalog fingerprint
    for i, path in enumerate(image_paths):
        try:
            if path is None:
                raise ValueError("no image path given")
            visual[i] = pixel_descriptor(read_rgb(path)[None])[0]
            photo_hashes[i] = hashlib.sha256(path.read_bytes()).hexdigest()
        except ValueError as exc:
            if not config.allow_missing_images:
                raise CatalogError(
                    f"{csv_path.name} row {i + 2} (product '{rows[i][m.id].strip()}'), column '{m.image}': {exc} "
                    "(pass allow_missing_images=True to keep the product without a photo)") from None
            has_image[i] = False
            image_paths[i] = None
    if (~has_image).any():
        visual[~has_image] = visual[has_image].mean(axis=0) if has_image.any() else 0.0

    attributes = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        try:
            attrs = parse_attributes(row[m.attributes]) if m.attributes else {}
        except ValueError as exc:  # incl. json.JSONDecodeError
            raise CatalogError(f"{csv_path.name} row {i + 2}, column '{m.attributes}': unreadable attributes ({exc})") from None
        if m.colors and row[m.colors]:
            attrs.setdefault("colour", row[m.colors])
        attrs.setdefault("gender", row[m.category].split("/")[0])
        attrs.setdefault("type", row[m.category].split("/")[-1])
        attributes[i] = attrs

    digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()[:16]
    photos = hashlib.sha256("\x1f".join(photo_hashes).encode()).hexdigest()[:16]
    return Catalog(
        name=root.name or csv_path.stem,
        ids=np.array([r[m.id].strip() for r in rows], dtype=object),
        titles=np.array([r[m.title].strip() for r in rows], dtype=object),
        descriptions=np.array([(r[m.description] or "").strip() if m.description else "" for r in rows], dtype=object),
        categories=np.array([r[m.category].strip() for r in rows], dtype=object),
        attributes=attributes,
        prices=prices,
        has_image=has_image,
        visual=visual,
        image_source=_FileImages(tuple(image_paths)).load,
        source_fingerprint=f"csv:{digest}:photos:{photos}:{config.allow_missing_images}",
        groups=group_codes([r[m.group] or "" for r in rows]) if m.group else None,
    )


@dataclass(frozen=True)
class _FileImages:
    """Reads photos from disk on demand (picklable)."""

    paths: tuple[Path | None, ...]

    def load(self, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        for j, row in enumerate(rows):
            path = self.paths[row]
            if path is not None:
                out[j] = read_rgb(path)
        return out
