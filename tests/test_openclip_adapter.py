"""The open_clip adapter, with a tiny randomly initialised CLIP-like model (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from encoders.openclip_adapter import OpenClipImageEncoder, load_openclip, openclip_from_env
from encoders.protocols import ImageEncoder


class TinyClip(nn.Module):
    """The two methods ShopRank uses from an open_clip model, on a few thousand random weights."""

    def __init__(self, dim: int = 12, vocab: int = 50) -> None:
        super().__init__()
        self.visual = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                    nn.Linear(8, dim))
        self.token_embedding = nn.EmbeddingBag(vocab, dim)
        self.seen_sizes: list[tuple[int, int]] = []

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_sizes.append(tuple(x.shape[-2:]))
        return self.visual(x)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(tokens)


def tokenizer(texts: list[str]) -> torch.Tensor:
    return torch.tensor([[sum(map(ord, w)) % 50 for w in (t.split() + ["<pad>"] * 4)[:4]] for t in texts])


def tiny_model(seed: int = 0) -> TinyClip:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TinyClip()


def photos(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 64, 64, 3), dtype=np.uint8)


def test_wraps_any_clip_like_model():
    model = tiny_model()
    encoder = OpenClipImageEncoder(model, name="tiny", image_size=32, tokenizer=tokenizer)
    assert isinstance(encoder, ImageEncoder) and encoder.dim == 12 and encoder.name == "tiny"
    vectors = encoder.encode(photos())
    assert vectors.shape == (5, 12) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert model.seen_sizes[-1] == (32, 32)  # photos resized to the model's input
    assert encoder.encode(photos(0)).shape == (0, 12)
    text = encoder.encode_text(["red striped tee", "blue boots"])
    assert text.shape == (2, 12)


def test_state_dict_checkpoint_round_trip(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_model(seed=1).state_dict(), path)
    loaded = OpenClipImageEncoder.from_state_dict(tiny_model(seed=2), path, image_size=32)
    reference = OpenClipImageEncoder(tiny_model(seed=1), image_size=32)
    np.testing.assert_allclose(loaded.encode(photos()), reference.encode(photos()), atol=1e-6)
    assert loaded.name.startswith("torch-TinyClip-")


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(TypeError, match=r"^Linear has no encode_image\(\); an open_clip model"):
        OpenClipImageEncoder(nn.Linear(2, 2))
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*nope\.pt \(ShopRank never downloads weights"):
        OpenClipImageEncoder.from_state_dict(tiny_model(), missing)
    with pytest.raises(FileNotFoundError, match=r"^open_clip checkpoint not found: .*nope\.pt"):
        load_openclip("ViT-B-32", missing)
    monkeypatch.delenv("SHOPRANK_OPENCLIP_MODEL", raising=False)
    monkeypatch.delenv("SHOPRANK_OPENCLIP_CHECKPOINT", raising=False)
    with pytest.raises(ValueError, match="needs SHOPRANK_OPENCLIP_MODEL"):
        openclip_from_env()
    encoder = OpenClipImageEncoder(tiny_model(), image_size=32)
    with pytest.raises(RuntimeError, match=r"encode_text needs a tokenizer"):
        encoder.encode_text(["x"])
    with pytest.raises(ValueError, match=r"images must be uint8 \(b, H, W, 3\), got float32 \(1, 64, 64, 3\)\."):
        encoder.encode(np.zeros((1, 64, 64, 3), np.float32))


def test_load_openclip_builds_a_tiny_model_from_a_local_file(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    model = open_clip.create_model("RN50", pretrained=None)  # random init, nothing downloaded
    path = tmp_path / "rn50.pt"
    torch.save(model.state_dict(), path)
    encoder = load_openclip("RN50", path)
    assert encoder.encode(photos(2)).shape == (2, encoder.dim)
