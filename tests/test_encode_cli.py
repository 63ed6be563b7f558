"""``shoprank encode``: builds every product vector, and a second run does no model work."""

from __future__ import annotations

from pathlib import Path

import pytest

import encoders.image_contrastive as image_contrastive
from experiments.encode_cli import EncodeConfig, LazyTextEncoder, encode, main
from encoders.text import MiniLMTextEncoder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = image_contrastive.ContrastiveImageConfig(embed_dim=16, channels=(8, 16), hidden=32, batch_size=32,
                                               min_steps_per_epoch=2, n_text_views=1, n_threads=1)


@pytest.fixture(autouse=True)
def tiny_image_encoder(monkeypatch):
    """Keep the image encoder tiny: the point here is caching, not quality."""
    monkeypatch.setattr(image_contrastive, "ContrastiveImageConfig", lambda: TINY)


ARGS = ["--catalog", "synthetic", "--n-products", "100", "--text-encoder", "hashing", "--image-encoder",
        "contrastive", "--fusion", "gated", "--fused-dim", "8", "--epochs", "1", "--no-progress"]


def test_second_run_does_no_model_work(tmp_path, capsys):
    assert main(ARGS + ["--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "trained:  image-encoder contrastive-" in out and "fusion gated8-" in out
    assert "text (100, 256)" in out.replace("  ", " ") or "(100, 256)" in out

    config = EncodeConfig(catalog="synthetic", n_products=100, text_encoder="hashing", image_encoder="contrastive",
                          fusion="gated", fused_dim=8, epochs=1, cache_dir=str(tmp_path), progress=False)
    report = encode(config)
    assert report.computed == [] and report.trained == []
    assert report.shapes == {"text": (100, 256), "image": (100, 16), "fused": (100, 8)}
    folder = tmp_path / report.fingerprint
    assert len(list(folder.glob("image-contrastive-*.pt"))) == 1 and len(list(folder.glob("fusion-*.pt"))) == 1
    assert len(list(folder.glob("fused-*.npy"))) == 1

    assert main(ARGS + ["--cache-dir", str(tmp_path)]) == 0
    assert "computed: nothing (all cached)" in capsys.readouterr().out


def test_other_fusions_and_no_image(tmp_path):
    for fusion in ("concat", "mean"):
        report = encode(EncodeConfig(n_products=100, text_encoder="hashing", fusion=fusion, fused_dim=8, epochs=1,
                                     cache_dir=str(tmp_path), progress=False))
        assert report.shapes["fused"] == (100, 8)
    report = encode(EncodeConfig(n_products=100, text_encoder="hashing", image_encoder="", fusion="concat",
                                 fused_dim=8, cache_dir=str(tmp_path), progress=False))
    assert "image" not in report.shapes and report.trained == []


def test_lazy_text_encoder_does_not_load_minilm():
    lazy = LazyTextEncoder(MiniLMTextEncoder)
    assert lazy.name == "all-MiniLM-L6-v2" and lazy.dim == 384 and not lazy.loaded


def test_errors_exit_2_with_message(tmp_path, capsys):
    assert main(["--catalog", str(tmp_path / "nowhere"), "--cache-dir", str(tmp_path), "--no-progress"]) == 2
    assert "shoprank encode: error: catalog file not found:" in capsys.readouterr().err
    assert main(ARGS + ["--cache-dir", str(tmp_path), "--fusion", "nope"]) == 2
    assert "unknown fusion 'nope'; choose one of ['concat', 'gated', 'mean']" in capsys.readouterr().err
    assert main(ARGS + ["--cache-dir", ""]) == 2
    assert "encode needs a cache folder" in capsys.readouterr().err
