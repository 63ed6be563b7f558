"""``shoprank catalog``: describe or validate a catalog, or export the built-in one as CSV + photos."""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

import numpy as np

from encoders.csv_catalog import CsvCatalogConfig, load_csv_catalog
from encoders.errors import command_errors
from encoders.synthetic import SyntheticCatalogConfig, generate_catalog


def describe(catalog) -> str:
    """A short human-readable summary of a catalog."""
    tops = Counter(catalog.top_categories())
    prices = np.asarray(catalog.prices)
    return "\n".join([
        f"catalog: {catalog.name}  ({len(catalog)} products, fingerprint {catalog.fingerprint()})",
        "top categories: " + ", ".join(f"{k} {v}" for k, v in tops.most_common()),
        f"prices: min {prices.min():.2f}, median {np.median(prices):.2f}, max {prices.max():.2f}",
        f"photos: {int(catalog.has_image.sum())} present, {int((~catalog.has_image).sum())} missing",
        f"example: {catalog.titles[0]} — {catalog.descriptions[0][:100]}",
    ])


def export(catalog, out: Path) -> None:
    """Write ``products.csv`` + ``images/*.png`` in the format the CSV loader reads."""
    from PIL import Image

    (out / "images").mkdir(parents=True, exist_ok=True)
    with (out / "products.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sku", "name", "description", "category", "price", "image", "attributes", "colors"])
        for start in range(0, len(catalog), 256):
            rows = np.arange(start, min(start + 256, len(catalog)))
            images = catalog.load_images(rows)
            for row, image in zip(rows, images):
                name = f"images/{catalog.ids[row]}.png"
                Image.fromarray(image).save(out / name)
                attrs = ";".join(f"{k}={v}" for k, v in catalog.attributes[row].items() if k != "colour")
                writer.writerow([catalog.ids[row], catalog.titles[row], catalog.descriptions[row],
                                 catalog.categories[row], f"{catalog.prices[row]:.2f}", name, attrs,
                                 catalog.attributes[row].get("colour", "")])


@command_errors("catalog")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoprank catalog", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    d = sub.add_parser("describe", help="summarise the built-in catalog or a CSV catalog (validates it)")
    d.add_argument("--catalog", default="synthetic", help="'synthetic' or a CSV catalog folder/file")
    d.add_argument("--n-products", type=int, default=2000)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--allow-missing-images", action="store_true")
    g = sub.add_parser("generate", help="export the built-in catalog as products.csv + images/")
    g.add_argument("--n-products", type=int, default=2000)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.action == "generate":
        catalog = generate_catalog(SyntheticCatalogConfig(n_products=args.n_products, seed=args.seed))
        export(catalog, args.out)
        print(f"wrote {len(catalog)} products to {args.out}")
        return 0
    if args.catalog == "synthetic":
        catalog = generate_catalog(SyntheticCatalogConfig(n_products=args.n_products, seed=args.seed))
    else:
        catalog = load_csv_catalog(CsvCatalogConfig(Path(args.catalog),
                                                    allow_missing_images=args.allow_missing_images))
    print(describe(catalog))
    return 0
