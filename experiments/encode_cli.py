"""``shoprank encode``: build and cache every product vector of a catalog (text, image, fused).

Usage::

    shoprank encode --catalog synthetic [--n-products 2000] [--image-encoder contrastive] [--fusion gated]
    shoprank encode --catalog ../shared/data/luma --text-encoder minilm --cache-dir .cache/shoprank

Everything lands in ``<cache-dir>/<catalog fingerprint>/``: ``text-*.npy``, ``image-*.npy``, ``fused-*.npy``,
the contrastive image encoder's weights (``image-contrastive-<key>.pt``) and the neural fusion's weights
(``fusion-*.pt``). A second run on the same catalog and options reads them all and does no model work:
no text encoder is loaded, nothing is trained or encoded (:attr:`EncodeReport.computed` and
:attr:`EncodeReport.trained` are empty).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from encoders.errors import ConfigError, command_errors
from encoders.catalog import Catalog
from encoders.contrastive import TEXT_VIEWS_VERSION, text_views
from encoders.protocols import ImageEncoder, TextEncoder
from encoders.registry import FUSIONS, IMAGE_ENCODERS, TEXT_ENCODERS, EncoderContext, resolve
from encoders.store import EmbeddingStore
from envs.world import WorldConfig, load_catalog


def _encode_world() -> WorldConfig:
    """The world ``shoprank encode`` builds by default: the trained image encoder and the gated fusion,
    with progress bars (the env's default world uses cheaper pixel statistics and a block fusion)."""
    return WorldConfig(image_encoder="contrastive", fusion="gated", progress=True)


@dataclass
class EncodeConfig:
    """Options of ``shoprank encode``.

    Attributes:
        world: The catalog, encoders, fusion, seed (``encoder_seed``, of all training), cache folder
            (required: caching is the point of this command) and progress bars, as a
            :class:`~envs.world.WorldConfig`. ``image_encoder=""`` or ``fusion=""`` skips that step.
        epochs: Override the contrastive image encoder's max epochs (``None``: its default).
    """

    world: WorldConfig = field(default_factory=_encode_world)
    epochs: int | None = None


@dataclass
class EncodeReport:
    """What ``encode`` did.

    Attributes:
        catalog: Catalog name.
        fingerprint: Catalog fingerprint (the cache sub-folder).
        n_products: Products.
        n_without_image: Products whose photo is missing (masked modality).
        shapes: ``{"text": (n, d), "image": ..., "fused": ...}``.
        computed: Matrices encoded in this run (empty on a cached re-run).
        trained: Models trained in this run (empty on a cached re-run).
        seconds: Wall time.
        cache_dir: The folder holding everything.
    """

    catalog: str
    fingerprint: str
    n_products: int
    n_without_image: int
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    computed: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cache_dir: str = ""


class LazyTextEncoder:
    """A text encoder that is only built when something must actually be encoded.

    ``name`` comes from the class attribute when the encoder class has one (MiniLM), so a fully cached
    run never loads the model; otherwise the (cheap) encoder is built to learn its name.
    """

    def __init__(self, factory) -> None:
        self._factory = factory
        self._encoder: TextEncoder | None = None
        name = getattr(factory, "name", None)
        dim = getattr(factory, "dim", None)
        if not isinstance(name, str) or not isinstance(dim, int):
            self._encoder = factory()
            name, dim = self._encoder.name, self._encoder.dim
        self.name, self.dim = name, dim

    @property
    def loaded(self) -> bool:
        """Whether the underlying model has been built."""
        return self._encoder is not None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``b`` strings into ``float32 (b, dim)`` (builds the encoder on first use)."""
        if self._encoder is None:
            self._encoder = self._factory()
        return self._encoder.encode(texts)


def build_image_encoder(name: str, catalog: Catalog, text_vectors: np.ndarray, text_encoder: TextEncoder,
                        store: EmbeddingStore, seed: int, progress: bool,
                        epochs: int | None = None) -> tuple[ImageEncoder, bool]:
    """Build (train or load) an image encoder; returns ``(encoder, trained_now)``."""
    if name == "contrastive":
        from dataclasses import replace

        from encoders.image_contrastive import ContrastiveImageConfig, train_contrastive_image_encoder

        config = ContrastiveImageConfig() if epochs is None else replace(ContrastiveImageConfig(), epochs=epochs)
        encoder = train_contrastive_image_encoder(catalog, text_vectors, config, seed=seed,
                                                  text_encoder=text_encoder, store=store, progress=progress)
        return encoder, not encoder.history.from_cache
    context = EncoderContext(catalog, text_vectors, store, seed, progress, text_encoder)
    return resolve(name, IMAGE_ENCODERS, "image encoder")(context), False


def fit_or_load_fusion(fusion, catalog: Catalog, modalities: dict[str, np.ndarray], present: dict[str, np.ndarray],
                       store: EmbeddingStore, key: str, views: np.ndarray | None = None,
                       progress: bool = False) -> bool:
    """Fit ``fusion`` or load its cached weights (neural fusions); returns whether it was trained now.

    Fusions without ``state_dict`` (concat + PCA) are refitted: cheap and deterministic.
    """
    import torch

    if not hasattr(fusion, "state_dict"):
        fusion.fit(modalities, present)
        return False
    path = store.root / catalog.fingerprint() / f"fusion-{key}.pt" if store.root is not None else None
    if path is not None and path.is_file():
        fusion.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return False
    fusion.fit(modalities, present, text_views=views, progress=progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(fusion.state_dict(), tmp)
        tmp.replace(path)
    return True


def encode(config: EncodeConfig) -> EncodeReport:
    """Build and cache all product vectors of ``config.world.catalog``.

    Raises:
        ValueError: for unknown encoder/fusion names or an unusable catalog (message names the product).
    """
    start = time.perf_counter()
    world = config.world
    if not world.cache_dir:
        raise ConfigError("encode needs a cache folder (--cache-dir): caching the vectors is its purpose.")
    fusion_factory = resolve(world.fusion, FUSIONS, "fusion") if world.fusion else None
    if world.image_encoder and world.image_encoder != "contrastive":
        resolve(world.image_encoder, IMAGE_ENCODERS, "image encoder")
    catalog = load_catalog(world)
    store = EmbeddingStore(Path(world.cache_dir), progress=world.progress)
    report = EncodeReport(catalog=catalog.name, fingerprint=catalog.fingerprint(), n_products=len(catalog),
                          n_without_image=int((~catalog.has_image).sum()), cache_dir=str(store.root))
    text_encoder = LazyTextEncoder(resolve(world.text_encoder, TEXT_ENCODERS, "text encoder"))
    text = store.text(catalog, text_encoder)
    report.shapes["text"] = text.shape
    modalities = {"text": text}
    present = {"text": np.ones(len(catalog), dtype=bool)}
    image_name = ""
    if world.image_encoder:
        image_encoder, trained = build_image_encoder(world.image_encoder, catalog, text, text_encoder, store,
                                                     world.encoder_seed, world.progress, config.epochs)
        if trained:
            report.trained.append(f"image-encoder {image_encoder.name}")
        modalities["image"] = store.image(catalog, image_encoder)
        present["image"] = catalog.has_image
        report.shapes["image"] = modalities["image"].shape
        image_name = image_encoder.name
    if fusion_factory is not None:
        fusion = fusion_factory(world.fused_dim, world.image_weight)
        key = (f"{fusion.name}-{text_encoder.name}-{image_name or 'none'}-s{world.encoder_seed}-"
               f"{TEXT_VIEWS_VERSION}").replace("/", "_")

        def fuse_rows(rows: np.ndarray) -> np.ndarray:
            if not getattr(fuse_rows, "ready", False):
                views = None
                if hasattr(fusion, "state_dict"):
                    views = text_views(catalog, text_encoder, 2, world.encoder_seed, store=store)
                if fit_or_load_fusion(fusion, catalog, modalities, present, store, key, views, world.progress):
                    report.trained.append(f"fusion {fusion.name}")
                fuse_rows.ready = True
            return fusion.fuse({m: v[rows] for m, v in modalities.items()},
                               {m: p[rows] for m, p in present.items()})

        fused = store.get_or_compute(catalog, "fused", key, fuse_rows)
        report.shapes["fused"] = fused.shape
    report.computed = list(store.computed)
    report.seconds = time.perf_counter() - start
    return report


def parse_args(argv: Sequence[str] | None) -> EncodeConfig:
    """Parse ``shoprank encode`` arguments into an :class:`EncodeConfig`."""
    d = EncodeConfig().world
    p = argparse.ArgumentParser(prog="shoprank encode", description="Build and cache all product vectors.")
    p.add_argument("--catalog", default=d.catalog, help="'synthetic' or a CSV catalog folder/file")
    p.add_argument("--n-products", type=int, default=d.n_products, help="synthetic catalog size")
    p.add_argument("--catalog-seed", type=int, default=d.catalog_seed, help="synthetic catalog seed")
    p.add_argument("--allow-missing-images", action="store_true",
                   help="keep products whose photo is missing/unreadable (counted, masked in the fusion)")
    p.add_argument("--text-encoder", default=d.text_encoder, help=f"one of {sorted(TEXT_ENCODERS)} or module:attr")
    p.add_argument("--image-encoder", default=d.image_encoder,
                   help=f"one of {sorted(IMAGE_ENCODERS)}, module:attr, or '' for none")
    p.add_argument("--fusion", default=d.fusion, help=f"one of {sorted(FUSIONS)}, module:attr, or '' for none")
    p.add_argument("--fused-dim", type=int, default=d.fused_dim, help="fused vector width")
    p.add_argument("--image-weight", type=float, default=d.image_weight, help="image prior weight in the fusion")
    p.add_argument("--seed", type=int, default=d.encoder_seed, help="seed of all training")
    p.add_argument("--epochs", type=int, default=None, help="max epochs of the contrastive image encoder")
    p.add_argument("--cache-dir", default=d.cache_dir, help="cache folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    a = p.parse_args(list(argv) if argv is not None else None)
    try:
        world = replace(d, catalog=a.catalog, n_products=a.n_products, catalog_seed=a.catalog_seed,
                        allow_missing_images=a.allow_missing_images, text_encoder=a.text_encoder,
                        image_encoder=a.image_encoder, fusion=a.fusion, fused_dim=a.fused_dim,
                        image_weight=a.image_weight, encoder_seed=a.seed, cache_dir=a.cache_dir,
                        progress=not a.no_progress)
    except ConfigError as exc:
        p.error(str(exc))
    return EncodeConfig(world=world, epochs=a.epochs)


@command_errors("encode")
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``shoprank encode``; returns the exit status (0 ok, 2 bad input)."""
    config = parse_args(argv)
    report = encode(config)
    print(f"catalog {report.catalog} ({report.n_products} products, {report.n_without_image} without a photo), "
          f"fingerprint {report.fingerprint}")
    for modality, shape in report.shapes.items():
        print(f"  {modality:<6} {shape}")
    print(f"  computed: {', '.join(report.computed) or 'nothing (all cached)'}")
    print(f"  trained:  {', '.join(report.trained) or 'nothing (all cached)'}")
    print(f"  cache:    {report.cache_dir}/{report.fingerprint}  ({report.seconds:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
