"""The image encoder ShopRank trains on a catalog's own photos, CLIP-style.

A small CNN (:class:`SmallCNN`) maps a photo to a ``embed_dim``-wide vector; a linear text head maps the
*frozen* text vector of the same product (MiniLM, or whatever ``text_vectors`` are given) into the same
space; both are trained with the symmetric InfoNCE loss and a learned temperature so that each photo is
closest to its own product's text. Augmentation:

* images: random translation (white padding + crop), horizontal flips, and a *mild* brightness and
  per-channel gain jitter (``+-5 %`` / ``+-3 %`` by default: colour and shade are what the shopper has
  taste over, so they must survive augmentation; no hue jitter);
* text: ``n_text_views`` augmented texts per product (attribute-value dropout, shuffled and dropped
  description sentences), encoded once by the frozen text encoder and cached
  (:func:`encoders.contrastive.text_views`); without a text encoder, Gaussian noise on the text vectors.

A seeded held-out split (``val_fraction``) drives early stopping (best held-out loss, ``patience`` epochs).

Output space: the encoder returns L2-normalised ``float32 (b, embed_dim)`` (64 by default) vectors in the
*joint* space; :meth:`ContrastiveImageEncoder.encode_text_vectors` maps text vectors (e.g. a query's) into
that space, which is how text queries retrieve by photo alone (image-only retrieval).

Caching: the trained weights (``state_dict`` only, reloaded with ``weights_only=True``) live in
``<store.root>/<catalog fingerprint>/image-contrastive-<key>.pt``; ``key`` hashes the config, the seed and
the text vectors, so training happens once per (catalog, text encoder, config).

Threads: training sets ``torch.set_num_threads(config.n_threads)`` (2) for its own duration only.
On the default 2000-product catalog it takes about two minutes of CPU on 2 cores.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from encoders.errors import CatalogError, ConfigError
from encoders.catalog import IMAGE_SIZE, Catalog
from encoders.contrastive import array_digest, info_nce, split_rows, text_views, torch_threads
from encoders.protocols import TextEncoder
from encoders.store import EmbeddingStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContrastiveImageConfig:
    """How to train the contrastive image encoder.

    Attributes:
        embed_dim: Width of the joint image/text space (the encoder's ``dim``).
        channels: Output channels of the CNN's stem and stride-2 conv blocks.
        hidden: Width of the image projection MLP.
        epochs: Maximum training epochs (an epoch is at least ``min_steps_per_epoch`` steps, so small
            catalogs make several passes per epoch).
        min_steps_per_epoch: Minimum optimiser steps per epoch.
        batch_size: Pairs per step (the in-batch negatives).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        init_temperature: Initial softmax temperature (learned).
        val_fraction: Share of products held out for early stopping.
        patience: Epochs without held-out improvement before stopping.
        crop_padding: Max translation in pixels (white padding then random crop).
        flip_p: Probability of a horizontal flip.
        brightness: Max relative brightness change (mild: colour matters to the shopper).
        channel_gain: Max relative per-channel gain change (mild colour jitter).
        n_text_views: Augmented texts per product (0: only the original text).
        p_drop_attribute: Text augmentation: probability of deleting one attribute value's mentions.
        p_drop_sentence: Text augmentation: probability of dropping one description sentence.
        text_noise: Std of Gaussian noise on text vectors when no text encoder is available for views.
        max_train_products: Train on at most this many products (sampled) of large catalogs.
        n_threads: torch intra-op threads while training (``None``: torch's default).
    """

    embed_dim: int = 64
    channels: tuple[int, ...] = (32, 48, 64)
    hidden: int = 128
    epochs: int = 20
    min_steps_per_epoch: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    init_temperature: float = 0.07
    val_fraction: float = 0.1
    patience: int = 3
    crop_padding: int = 6
    flip_p: float = 0.5
    brightness: float = 0.05
    channel_gain: float = 0.03
    n_text_views: int = 2
    p_drop_attribute: float = 0.5
    p_drop_sentence: float = 0.3
    text_noise: float = 0.02
    max_train_products: int = 20_000
    n_threads: int | None = 2

    def __post_init__(self) -> None:
        if self.embed_dim <= 0 or self.epochs <= 0 or self.batch_size < 2:
            raise ConfigError("embed_dim and epochs must be positive and batch_size >= 2, got "
                             f"{self.embed_dim}, {self.epochs}, {self.batch_size}.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}.")
        if not 0.0 <= self.brightness < 1.0 or not 0.0 <= self.channel_gain < 1.0:
            raise ConfigError("brightness and channel_gain must be in [0, 1).")


@dataclass
class TrainingHistory:
    """What training did (``from_cache=True`` when the weights were loaded instead).

    Attributes:
        train_loss: Mean training loss per epoch.
        val_loss: Held-out loss per epoch (empty without a held-out split).
        best_epoch: Epoch (0-based) whose weights were kept.
        seconds: Wall time of training.
        n_train: Products trained on.
        n_val: Products held out.
        from_cache: Weights were read from disk, nothing was trained.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0
    n_train: int = 0
    n_val: int = 0
    from_cache: bool = False


class SmallCNN(nn.Module):
    """A 4x4 patchify stem, stride-2 conv blocks, global average pooling of the stem and the last block,
    then an MLP.

    Pooling the stem too keeps a short path for colour and shade (what the shopper sees). On a
    ``64 x 64`` photo with the default channels a forward pass costs about 5 MFLOPs.

    Args:
        channels: Output channels of the stem, then of each stride-2 3x3 block.
        hidden: MLP width.
        out_dim: Output width.
    """

    def __init__(self, channels: tuple[int, ...], hidden: int, out_dim: int) -> None:
        super().__init__()
        blocks = [nn.Sequential(nn.Conv2d(3, channels[0], 4, stride=4, bias=False), nn.BatchNorm2d(channels[0]),
                                nn.ReLU(inplace=True))]
        c_in = channels[0]
        for c in channels[1:]:
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False),
                                        nn.BatchNorm2d(c), nn.ReLU(inplace=True)))
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(nn.Linear(channels[0] + channels[-1], hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``float32 (b, 3, H, W)`` in ``[0, 1]`` -> ``(b, out_dim)`` (not normalised)."""
        x = x - 0.5
        first = None
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == 0:
                first = x.mean(dim=(2, 3))
        return self.head(torch.cat([first, x.mean(dim=(2, 3))], dim=1))


class ContrastiveModel(nn.Module):
    """Image tower, text head and the learned temperature.

    Args:
        text_dim: Width of the frozen text vectors.
        config: Architecture settings.
    """

    def __init__(self, text_dim: int, config: ContrastiveImageConfig) -> None:
        super().__init__()
        self.image = SmallCNN(tuple(config.channels), config.hidden, config.embed_dim)
        self.text = nn.Linear(text_dim, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1.0 / config.init_temperature))))

    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, 3, H, W)`` -> L2-normalised ``(b, embed_dim)``."""
        return F.normalize(self.image(x), dim=1)

    def embed_texts(self, t: torch.Tensor) -> torch.Tensor:
        """``(b, text_dim)`` -> L2-normalised ``(b, embed_dim)``."""
        return F.normalize(self.text(t), dim=1)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """``uint8 (b, H, W, 3)`` -> ``float32 (b, 3, IMAGE_SIZE, IMAGE_SIZE)`` in ``[0, 1]``."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (b, H, W, 3), got {images.dtype} {images.shape}.")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return x


def augment_images(x: torch.Tensor, config: ContrastiveImageConfig, generator: torch.Generator) -> torch.Tensor:
    """Random translation, flip and mild brightness / channel-gain jitter.

    Args:
        x: ``float32 (b, 3, S, S)`` in ``[0, 1]``.
        config: Augmentation strengths.
        generator: Seeded source of randomness.

    Returns:
        ``float32 (b, 3, S, S)`` in ``[0, 1]``.
    """
    b, _, s, _ = x.shape
    p = config.crop_padding
    if p > 0:
        padded = F.pad(x, (p, p, p, p), value=1.0)
        offsets = torch.randint(0, 2 * p + 1, (b, 2), generator=generator)
        x = torch.stack([padded[i, :, oy:oy + s, ox:ox + s] for i, (oy, ox) in enumerate(offsets.tolist())])
    flip = torch.rand(b, generator=generator) < config.flip_p
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    gain = 1.0 + config.brightness * (2 * torch.rand(b, 1, 1, 1, generator=generator) - 1)
    gain = gain * (1.0 + config.channel_gain * (2 * torch.rand(b, 3, 1, 1, generator=generator) - 1))
    return (x * gain).clamp_(0.0, 1.0)


class ContrastiveImageEncoder:
    """:class:`~encoders.protocols.ImageEncoder` backed by a trained :class:`ContrastiveModel`.

    Args:
        model: Trained model (put in eval mode).
        key: Weight-cache key (part of :attr:`name`, so cached image vectors follow the weights).
        history: What training did.
        batch_size: Photos per forward pass when encoding.
    """

    def __init__(self, model: ContrastiveModel, key: str, history: TrainingHistory | None = None,
                 batch_size: int = 256) -> None:
        self.model = model.eval()
        self.dim = int(model.text.out_features)
        self.name = f"contrastive-{key}"
        self.history = history or TrainingHistory()
        self.batch_size = batch_size

    @torch.no_grad()
    def encode(self, images: np.ndarray) -> np.ndarray:
        """Encode ``uint8 (b, H, W, 3)`` photos into L2-normalised ``float32 (b, dim)``."""
        out = []
        for start in range(0, len(images), self.batch_size):
            out.append(self.model.embed_images(_to_tensor(images[start:start + self.batch_size])).numpy())
        return np.concatenate(out, axis=0).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    @torch.no_grad()
    def encode_text_vectors(self, text_vectors: np.ndarray) -> np.ndarray:
        """Map frozen text vectors ``(b, d_text)`` into the joint space: L2-normalised ``float32 (b, dim)``."""
        t = torch.from_numpy(np.ascontiguousarray(text_vectors, dtype=np.float32))
        return self.model.embed_texts(t).numpy().astype(np.float32)


def weights_path(store: EmbeddingStore | None, catalog: Catalog, key: str) -> Path | None:
    """Where the weights for ``key`` are cached (``None`` without a disk cache)."""
    if store is None or store.root is None:
        return None
    return store.root / catalog.fingerprint() / f"image-contrastive-{key}.pt"


def cache_key(catalog: Catalog, text_vectors: np.ndarray, config: ContrastiveImageConfig, seed: int,
              text_encoder_name: str | None) -> str:
    """Hash of everything the trained weights depend on."""
    payload = json.dumps({"config": asdict(config), "seed": seed, "catalog": catalog.fingerprint(),
                          "text": array_digest(text_vectors), "text_encoder": text_encoder_name, "v": 2},  # 2: deterministic text views
                         sort_keys=True)
    import hashlib

    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def train_contrastive_image_encoder(
    catalog: Catalog,
    text_vectors: np.ndarray,
    config: ContrastiveImageConfig = ContrastiveImageConfig(),
    seed: int = 0,
    text_encoder: TextEncoder | None = None,
    store: EmbeddingStore | None = None,
    progress: bool = False,
) -> ContrastiveImageEncoder:
    """Train the encoder on ``catalog`` (or load the cached weights of an identical earlier run).

    Args:
        catalog: Products; only rows with ``has_image`` are trained on.
        text_vectors: ``float32 (n, d_text)`` frozen text vectors of ``catalog.texts``.
        config: Training settings.
        seed: Seed of initialisation, split, batches and augmentation.
        text_encoder: The encoder that made ``text_vectors``; used to encode augmented texts. ``None``:
            text augmentation falls back to Gaussian noise (``config.text_noise``).
        store: Cache of text views and trained weights (``None`` or ``store.root=None``: no disk cache).
        progress: Show a progress bar over epochs.

    Returns:
        The trained (or loaded) encoder; ``encoder.history.from_cache`` tells which.

    Raises:
        ValueError: if ``text_vectors`` do not match the catalog or fewer than 2 products have a photo.
    """
    text_vectors = np.asarray(text_vectors, dtype=np.float32)
    if text_vectors.ndim != 2 or len(text_vectors) != len(catalog):
        raise ValueError(f"text_vectors must be (n={len(catalog)}, d), got {text_vectors.shape}.")
    key = cache_key(catalog, text_vectors, config, seed, text_encoder.name if text_encoder else None)
    path = weights_path(store, catalog, key)
    with torch.random.fork_rng():  # constructing draws from torch's global RNG: leave the caller's intact
        model = ContrastiveModel(text_vectors.shape[1], config)
    if path is not None and path.is_file():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return ContrastiveImageEncoder(model, key, TrainingHistory(from_cache=True))

    rows = np.flatnonzero(catalog.has_image)
    if len(rows) < 2:
        raise CatalogError(f"catalog '{catalog.name}' has {len(rows)} products with a photo; "
                         "contrastive training needs at least 2.")
    if len(rows) > config.max_train_products:
        rows = np.sort(np.random.default_rng([seed, 3]).choice(rows, config.max_train_products, replace=False))
    views = (text_views(catalog, text_encoder, config.n_text_views, seed, config.p_drop_attribute,
                        config.p_drop_sentence, store)
             if text_encoder is not None and config.n_text_views > 0 else np.zeros((0,) + text_vectors.shape,
                                                                                    np.float32))
    with torch_threads(config.n_threads):
        history = _train(model, catalog, rows, text_vectors, views, config, seed, progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(path)
    return ContrastiveImageEncoder(model, key, history)


def _train(model: ContrastiveModel, catalog: Catalog, rows: np.ndarray, text_vectors: np.ndarray,
           views: np.ndarray, config: ContrastiveImageConfig, seed: int, progress: bool) -> TrainingHistory:
    start = time.perf_counter()
    with torch.random.fork_rng():  # seeded nn init without touching the caller's global RNG state
        torch.manual_seed(seed)
        model.load_state_dict(ContrastiveModel(text_vectors.shape[1], config).state_dict())
    generator = torch.Generator().manual_seed(seed)
    images = {}
    for s in range(0, len(rows), 512):
        chunk = rows[s:s + 512]
        for r, img in zip(chunk, catalog.load_images(chunk)):
            images[int(r)] = img
    train_rows, val_rows = split_rows(rows, config.val_fraction, seed)
    bank = torch.from_numpy(np.concatenate([text_vectors[None], views], axis=0))  # (1 + V, n, d)
    pixels = torch.from_numpy(np.stack([images[int(r)] for r in rows]))  # uint8 (m, S, S, 3)
    local = {int(r): i for i, r in enumerate(rows)}
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batch_size = min(config.batch_size, len(train_rows))
    per_epoch = max(int(np.ceil(len(train_rows) / batch_size)), config.min_steps_per_epoch)
    steps = config.epochs * per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.15)
    history = TrainingHistory(n_train=len(train_rows), n_val=len(val_rows))
    best, best_state, stale = float("inf"), None, 0
    bar = tqdm(range(config.epochs), desc="contrastive image encoder", disable=not progress, unit="epoch")
    for epoch in bar:
        model.train()
        passes = int(np.ceil(per_epoch * batch_size / len(train_rows)))
        order = np.concatenate([train_rows[torch.randperm(len(train_rows), generator=generator).numpy()]
                                for _ in range(passes)])
        losses = []
        for step in range(per_epoch):
            batch = order[step * batch_size:(step + 1) * batch_size]
            if len(np.unique(batch)) < len(batch) or len(batch) < 2:
                batch = np.unique(batch)  # a batch straddling two passes may repeat a product
            if len(batch) < 2:
                continue
            x = _to_tensor(pixels[[local[int(r)] for r in batch]].numpy())
            x = augment_images(x, config, generator)
            view = torch.randint(0, bank.shape[0], (len(batch),), generator=generator)
            t = bank[view, torch.from_numpy(batch)]
            if bank.shape[0] == 1 and config.text_noise > 0:
                t = t + config.text_noise * torch.randn(t.shape, generator=generator)
            loss = info_nce(model.embed_images(x), model.embed_texts(t), model.logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        history.train_loss.append(float(np.mean(losses)) if losses else float("nan"))
        if len(val_rows):
            model.eval()
            with torch.no_grad():
                x = _to_tensor(pixels[[local[int(r)] for r in val_rows]].numpy())
                t = torch.from_numpy(text_vectors[val_rows])
                val = float(info_nce(model.embed_images(x), model.embed_texts(t), model.logit_scale))
            history.val_loss.append(val)
        else:
            val = history.train_loss[-1]
        bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", val=f"{val:.3f}")
        if val < best - 1e-4:
            best, stale, history.best_epoch = val, 0, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history.seconds = time.perf_counter() - start
    log.info("contrastive image encoder: %d epochs, best %d, %.1fs", len(history.train_loss),
             history.best_epoch, history.seconds)
    return history
