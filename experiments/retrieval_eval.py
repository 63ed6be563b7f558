"""``shoprank eval-retrieval``: does the photo earn its place? Query -> product retrieval quality by modality.

For each catalog it trains (or loads from the cache) the contrastive image encoder and the fusions, then
scores every query against every product by cosine similarity in each space:

* ``text``: query text vector vs product text vector (the frozen text encoder alone);
* ``image``: query text vector mapped into the joint space by the image encoder's text head vs the photo
  vector (the photo alone);
* ``concat`` / ``mean`` / ``gated``: the fusion's query side (``encode_query``) vs the fused product vector.

Query sets:

* ``synthetic/attributes``: the built-in catalog; queries generated from a sampled product's attributes
  (``"women's red striped hoodie"``); relevant = every product with the same type, gender, colour and
  pattern. The photo always shows colour and pattern, the text only 60 % / 30 % of the time.
* ``luma/names``: Luma product names with the brand-like first word removed; relevant = that product.
* ``luma/reviews``: review title + text from ``reviews.csv``; relevant = the reviewed product.

Metrics per query: recall@10, recall@50 (share of the relevant products in the top k) and NDCG@10 (binary
relevance); means with 95 % percentile-bootstrap intervals over queries, and the paired difference of
NDCG@10 against ``text`` with its interval. Also photo -> own-text retrieval (each product's photo vs all
products' texts in the joint space): recall@10 against the ``10 / n`` chance level, over all products and
over the encoder's held-out products only.

Writes ``retrieval.csv``, ``photo_text.csv`` and ``retrieval.md`` to ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from encoders.errors import InputNotFoundError, command_errors
from encoders.catalog import Catalog
from encoders.contrastive import TEXT_VIEWS_VERSION, split_rows, text_views
from encoders.fusion import ConcatProjectionFusion, FusionTrainingConfig, GatedAttentionFusion, WeightedMeanFusion
from encoders.atomic_files import atomic_path, atomic_write_text
from encoders.image_contrastive import ContrastiveImageConfig, train_contrastive_image_encoder
from encoders.registry import TEXT_ENCODERS, resolve
from encoders.store import DEFAULT_CACHE, EmbeddingStore
from experiments.encode_cli import LazyTextEncoder, fit_or_load_fusion

DEFAULT_LUMA = Path("..") / "shared" / "data" / "luma"


@dataclass
class RetrievalEvalConfig:
    """Options of ``shoprank eval-retrieval``.

    Attributes:
        out: Output folder.
        synthetic: Evaluate the built-in catalog.
        n_products: Its size.
        luma: Luma folder (``products.csv`` + ``reviews.csv``); ``""`` skips it.
        text_encoder: Text encoder name.
        fused_dim: Width of the fused spaces.
        n_queries: Attribute queries on the synthetic catalog.
        n_boot: Bootstrap resamples.
        seed: Seed of training, queries and bootstrap.
        epochs: Override the image encoder's max epochs.
        cache_dir: Cache folder (``""``: no disk cache).
        progress: Progress bars.
    """

    out: str = "runs/retrieval"
    synthetic: bool = True
    n_products: int = 2000
    luma: str = str(DEFAULT_LUMA)
    text_encoder: str = "minilm"
    fused_dim: int = 64
    n_queries: int = 500
    n_boot: int = 1000
    seed: int = 0
    epochs: int | None = None
    cache_dir: str = str(DEFAULT_CACHE)
    progress: bool = True


@dataclass
class QuerySet:
    """Queries with known relevant products.

    Attributes:
        name: ``catalog/kind``.
        texts: ``b`` query strings.
        relevant: ``b`` int arrays of relevant product rows.
    """

    name: str
    texts: list[str]
    relevant: list[np.ndarray]


@dataclass
class Spaces:
    """Per-method product matrices and query encoders of one catalog."""

    products: dict[str, np.ndarray] = field(default_factory=dict)
    queries: dict[str, object] = field(default_factory=dict)
    notes: dict[str, float] = field(default_factory=dict)


def synthetic_queries(catalog: Catalog, n: int, seed: int) -> QuerySet:
    """Attribute queries on the built-in catalog (``"women's red striped hoodie"``)."""
    rng = np.random.default_rng([seed, 11])
    keys = [(a["type"], a["gender"], a["colour"], a["pattern"]) for a in catalog.attributes]
    groups: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    texts, relevant = [], []
    for i in rng.choice(len(catalog), size=min(n, len(catalog)), replace=False):
        ptype, gender, colour, pattern = keys[i]
        who = {"Women": "women's ", "Men": "men's ", "Unisex": "unisex "}[gender]
        texts.append(f"{who}{colour} {pattern} {ptype}")
        relevant.append(np.array(groups[keys[i]], dtype=np.int64))
    return QuerySet("synthetic/attributes", texts, relevant)


def luma_queries(catalog: Catalog, luma: Path) -> list[QuerySet]:
    """Luma names without their first word, and reviews (title + text), each with its product."""
    row_of = {pid: i for i, pid in enumerate(catalog.ids)}
    names = QuerySet("luma/names", [], [])
    for i, title in enumerate(catalog.titles):
        words = str(title).split()
        if len(words) >= 2:
            names.texts.append(" ".join(words[1:]))
            names.relevant.append(np.array([i]))
    reviews = QuerySet("luma/reviews", [], [])
    with (luma / "reviews.csv").open(newline="", encoding="utf-8") as handle:
        for r in csv.DictReader(handle):
            if r["sku"] in row_of:
                reviews.texts.append(f"{r['title'].strip()}. {r['review'].strip()}")
                reviews.relevant.append(np.array([row_of[r["sku"]]]))
    return [names, reviews]


def rank_metrics(scores: np.ndarray, relevant: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-query recall@10, recall@50 and NDCG@10.

    Args:
        scores: ``(b, n)`` query-product scores.
        relevant: ``b`` arrays of relevant product rows (non-empty).

    Returns:
        ``{"recall@10": (b,), "recall@50": (b,), "ndcg@10": (b,)}``.
    """
    top = np.argsort(-scores, axis=1, kind="stable")[:, :50]
    discounts = 1.0 / np.log2(np.arange(2, 12))
    out = {"recall@10": np.zeros(len(scores)), "recall@50": np.zeros(len(scores)), "ndcg@10": np.zeros(len(scores))}
    for q, rel in enumerate(relevant):
        hit = np.isin(top[q], rel)
        out["recall@10"][q] = hit[:10].sum() / len(rel)
        out["recall@50"][q] = hit[:50].sum() / len(rel)
        top10 = hit[:10]
        out["ndcg@10"][q] = (top10 * discounts[: len(top10)]).sum() / discounts[: min(len(rel), 10)].sum()
    return out


def bootstrap_ci(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean and 95 % percentile-bootstrap interval of a per-query metric."""
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def build_spaces(catalog: Catalog, text_encoder, store: EmbeddingStore, config: RetrievalEvalConfig) -> tuple[Spaces, object]:
    """Train/load the image encoder and fusions; return the retrieval spaces and the image encoder."""
    text = store.text(catalog, text_encoder)
    image_config = ContrastiveImageConfig() if config.epochs is None else replace(ContrastiveImageConfig(),
                                                                                   epochs=config.epochs)
    image_encoder = train_contrastive_image_encoder(catalog, text, image_config, seed=config.seed,
                                                    text_encoder=text_encoder, store=store, progress=config.progress)
    image = store.image(catalog, image_encoder)
    modalities = {"text": text, "image": image}
    present = {"text": np.ones(len(catalog), dtype=bool), "image": catalog.has_image}
    spaces = Spaces()
    spaces.notes["image_train_seconds"] = image_encoder.history.seconds
    spaces.notes["image_from_cache"] = float(image_encoder.history.from_cache)
    spaces.products["text"] = text
    spaces.queries["text"] = lambda q: q
    spaces.products["image"] = image
    spaces.queries["image"] = image_encoder.encode_text_vectors
    views = text_views(catalog, text_encoder, image_config.n_text_views, config.seed,
                       image_config.p_drop_attribute, image_config.p_drop_sentence, store)
    fusions = {"concat": ConcatProjectionFusion(config.fused_dim, {"image": 1.0}),
               "mean": WeightedMeanFusion(config.fused_dim, {"image": 1.0}, FusionTrainingConfig(), seed=config.seed),
               "gated": GatedAttentionFusion(config.fused_dim, {"image": 1.0}, FusionTrainingConfig(), seed=config.seed)}
    for method, fusion in fusions.items():
        start = time.perf_counter()
        key = f"eval-{fusion.name}-{text_encoder.name}-{image_encoder.name}-{TEXT_VIEWS_VERSION}"
        fit_or_load_fusion(fusion, catalog, modalities, present, store, key, views, config.progress)
        spaces.notes[f"{method}_seconds"] = time.perf_counter() - start
        spaces.products[method] = fusion.fuse(modalities, present)
        spaces.queries[method] = fusion.encode_query
        if method == "gated":
            w = fusion.modality_weights(modalities, present)["image"]
            spaces.notes["gated_mean_image_weight"] = float(w[catalog.has_image].mean())
    return spaces, image_encoder


def evaluate_queries(spaces: Spaces, queries: QuerySet, text_encoder, n_boot: int, seed: int) -> list[dict]:
    """Rows of ``(queries, method, metric, mean, lo, hi)`` plus paired NDCG@10 differences vs ``text``."""
    qtext = text_encoder.encode(queries.texts)
    rows, per_method = [], {}
    for method, products in spaces.products.items():
        q = _normalise(np.asarray(spaces.queries[method](qtext), dtype=np.float32))
        per_method[method] = rank_metrics(q @ _normalise(products).T, queries.relevant)
    for method, metrics in per_method.items():
        for metric, values in metrics.items():
            mean, lo, hi = bootstrap_ci(values, n_boot, np.random.default_rng([seed, 1]))
            rows.append({"queries": queries.name, "n_queries": len(values), "method": method, "metric": metric,
                         "mean": mean, "lo": lo, "hi": hi})
        diff = metrics["ndcg@10"] - per_method["text"]["ndcg@10"]
        mean, lo, hi = bootstrap_ci(diff, n_boot, np.random.default_rng([seed, 2]))
        rows.append({"queries": queries.name, "n_queries": len(diff), "method": method,
                     "metric": "ndcg@10 - text", "mean": mean, "lo": lo, "hi": hi})
    return rows


def photo_to_text(catalog: Catalog, image_encoder, spaces: Spaces, config: RetrievalEvalConfig,
                  val_fraction: float) -> list[dict]:
    """Recall@10 of each photo retrieving its own product's text among all products, vs chance ``10 / n``."""
    rows_with_photo = np.flatnonzero(catalog.has_image)
    img = spaces.products["image"][rows_with_photo]
    txt = image_encoder.encode_text_vectors(spaces.products["text"])
    scores = img @ txt.T
    own = scores[np.arange(len(rows_with_photo)), rows_with_photo]
    rank = (scores > own[:, None]).sum(axis=1)
    hits = (rank < 10).astype(np.float64)
    _, val = split_rows(rows_with_photo, val_fraction, config.seed)
    out = []
    for subset, mask in (("all", np.ones(len(hits), bool)), ("held-out", np.isin(rows_with_photo, val))):
        if mask.any():
            mean, lo, hi = bootstrap_ci(hits[mask], config.n_boot, np.random.default_rng([config.seed, 3]))
            out.append({"catalog": catalog.name, "subset": subset, "n_photos": int(mask.sum()),
                        "recall@10": mean, "lo": lo, "hi": hi, "chance": min(1.0, 10 / len(catalog))})
    return out


def to_markdown(rows: list[dict], photo_rows: list[dict], notes: dict[str, dict]) -> str:
    """The results as Markdown tables."""
    lines = ["# Retrieval quality by modality", "",
             "Mean over queries with 95 % bootstrap intervals. `ndcg@10 - text` is the paired difference.", ""]
    for qs in dict.fromkeys(r["queries"] for r in rows):
        sub = [r for r in rows if r["queries"] == qs]
        metrics = list(dict.fromkeys(r["metric"] for r in sub))
        lines += [f"## {qs} ({sub[0]['n_queries']} queries)", "",
                  "| method | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
        for method in dict.fromkeys(r["method"] for r in sub):
            cells = []
            for metric in metrics:
                r = next(x for x in sub if x["method"] == method and x["metric"] == metric)
                cells.append(f"{r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Photo -> own text (joint space)", "", "| catalog | subset | photos | recall@10 | chance |",
              "|---|---|---|---|---|"]
    for r in photo_rows:
        lines.append(f"| {r['catalog']} | {r['subset']} | {r['n_photos']} | "
                     f"{r['recall@10']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] | {r['chance']:.3f} |")
    lines += ["", "## Training", ""]
    for catalog, n in notes.items():
        lines.append(f"- {catalog}: " + ", ".join(f"{k}={v:.3g}" for k, v in n.items()))
    return "\n".join(lines) + "\n"


def run(config: RetrievalEvalConfig) -> tuple[list[dict], list[dict], dict]:
    """Evaluate every configured catalog; returns (metric rows, photo->text rows, training notes)."""
    store = EmbeddingStore(Path(config.cache_dir) if config.cache_dir else None, progress=config.progress)
    text_encoder = LazyTextEncoder(resolve(config.text_encoder, TEXT_ENCODERS, "text encoder"))
    rows, photo_rows, notes = [], [], {}
    jobs = []
    if config.synthetic:
        from encoders.synthetic import SyntheticCatalogConfig, generate_catalog

        catalog = generate_catalog(SyntheticCatalogConfig(n_products=config.n_products, seed=0))
        jobs.append((catalog, lambda c: [synthetic_queries(c, config.n_queries, config.seed)]))
    if config.luma:
        from encoders.csv_catalog import CsvCatalogConfig, load_csv_catalog

        luma = Path(config.luma)
        if not (luma / "products.csv").is_file():
            raise InputNotFoundError(f"Luma catalog not found: {luma / 'products.csv'} (pass --luma PATH or --luma '')")
        jobs.append((load_csv_catalog(CsvCatalogConfig(path=luma)), lambda c: luma_queries(c, luma)))
    for catalog, make_queries in jobs:
        spaces, image_encoder = build_spaces(catalog, text_encoder, store, config)
        notes[catalog.name] = spaces.notes
        for qs in make_queries(catalog):
            rows += evaluate_queries(spaces, qs, text_encoder, config.n_boot, config.seed)
        photo_rows += photo_to_text(catalog, image_encoder, spaces, config, ContrastiveImageConfig().val_fraction)
    return rows, photo_rows, notes


def write_outputs(out: Path, rows: list[dict], photo_rows: list[dict], notes: dict) -> str:
    """Write ``retrieval.csv``, ``photo_text.csv``, ``retrieval.md``; return the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    for name, data in (("retrieval.csv", rows), ("photo_text.csv", photo_rows)):
        if data:
            with atomic_path(out / name) as tmp, tmp.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(data[0]))
                writer.writeheader()
                writer.writerows(data)
    markdown = to_markdown(rows, photo_rows, notes)
    atomic_write_text(out / "retrieval.md", markdown)
    return markdown


def parse_args(argv: Sequence[str] | None) -> RetrievalEvalConfig:
    """Parse ``shoprank eval-retrieval`` arguments."""
    d = RetrievalEvalConfig()
    p = argparse.ArgumentParser(prog="shoprank eval-retrieval", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=d.out, help="output folder")
    p.add_argument("--no-synthetic", action="store_true", help="skip the built-in catalog")
    p.add_argument("--n-products", type=int, default=d.n_products, help="built-in catalog size")
    p.add_argument("--luma", default=d.luma, help="Luma folder ('' to skip)")
    p.add_argument("--text-encoder", default=d.text_encoder, help=f"one of {sorted(TEXT_ENCODERS)}")
    p.add_argument("--fused-dim", type=int, default=d.fused_dim, help="fused width")
    p.add_argument("--n-queries", type=int, default=d.n_queries, help="synthetic attribute queries")
    p.add_argument("--n-boot", type=int, default=d.n_boot, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=d.seed, help="seed")
    p.add_argument("--epochs", type=int, default=None, help="max epochs of the image encoder")
    p.add_argument("--cache-dir", default=d.cache_dir, help="cache folder ('' for none)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    a = p.parse_args(list(argv) if argv is not None else None)
    if a.seed < 0:
        p.error(f"--seed must be >= 0, got {a.seed}")
    return RetrievalEvalConfig(out=a.out, synthetic=not a.no_synthetic, n_products=a.n_products, luma=a.luma,
                               text_encoder=a.text_encoder, fused_dim=a.fused_dim, n_queries=a.n_queries,
                               n_boot=a.n_boot, seed=a.seed, epochs=a.epochs, cache_dir=a.cache_dir,
                               progress=not a.no_progress)


@command_errors("eval-retrieval")
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``shoprank eval-retrieval``; returns the exit status (0 ok, 2 bad input)."""
    config = parse_args(argv)
    rows, photo_rows, notes = run(config)
    print(write_outputs(Path(config.out), rows, photo_rows, notes))
    print(f"wrote {config.out}/retrieval.csv, photo_text.csv, retrieval.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
