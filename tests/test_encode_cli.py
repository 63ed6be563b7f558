"""``shoprank encode``: builds every product vector, and a second run does no model work."""

from __future__ import annotations

from pathlib import Path

import pytest

import encoders.image_contrastive as image_contrastive
from experiments.encode_cli import EncodeConfig, LazyTextEncoder, encode, main
from encoders.text import MiniLMTextEncoder
from envs.world import WorldConfig

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

    config = EncodeConfig(WorldConfig(catalog="synthetic", n_products=100, text_encoder="hashing",
                                      image_encoder="contrastive", fusion="gated", fused_dim=8,
                                      cache_dir=str(tmp_path), progress=False), epochs=1)
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
        world = WorldConfig(n_products=100, text_encoder="hashing", image_encoder="contrastive", fusion=fusion,
                            fused_dim=8, cache_dir=str(tmp_path), progress=False)
        report = encode(EncodeConfig(world, epochs=1))
        assert report.shapes["fused"] == (100, 8)
    report = encode(EncodeConfig(WorldConfig(n_products=100, text_encoder="hashing", image_encoder="",
                                             fusion="concat", fused_dim=8, cache_dir=str(tmp_path), progress=False)))
    assert "image" not in report.shapes and report.trained == []


def test_parsed_options_fill_the_world_config():
    from experiments.encode_cli import parse_args

    config = parse_args(ARGS + ["--seed", "7", "--cache-dir", "somewhere"])
    assert config.epochs == 1
    assert config.world == WorldConfig(catalog="synthetic", n_products=100, text_encoder="hashing",
                                       image_encoder="contrastive", fusion="gated", fused_dim=8, encoder_seed=7,
                                       cache_dir="somewhere", progress=False)
    assert EncodeConfig().world.image_encoder == "contrastive" and EncodeConfig().world.fusion == "gated"


def test_lazy_text_encoder_does_not_load_minilm():
    lazy = LazyTextEncoder(MiniLMTextEncoder)
    assert lazy.name == "all-MiniLM-L6-v2" and lazy.dim == 384 and not lazy.loaded


def test_errors_exit_2_with_message(tmp_path, capsys):
    assert main(["--catalog", str(tmp_path / "nowhere"), "--cache-dir", str(tmp_path), "--no-progress"]) == 2
    assert "shoprank encode: error: catalog file not found:" in capsys.readouterr().err
    assert main(ARGS + ["--cache-dir", str(tmp_path), "--fusion", "nope"]) == 2
    assert "unknown fusion 'nope'; choose one of ['block', 'concat', 'gated', 'mean']" in capsys.readouterr().err
    assert main(ARGS + ["--cache-dir", ""]) == 2
    assert "encode needs a cache folder" in capsys.readouterr().err


# --- shoprank eval-retrieval ------------------------------------------------------------------------------

def test_rank_metrics_exact_values():
    import numpy as np

    from experiments.retrieval_eval import bootstrap_ci, rank_metrics

    scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.0, 0.1, 0.2, 0.3]])
    m = rank_metrics(scores, [np.array([1]), np.array([0, 3])])
    assert m["recall@10"].tolist() == [1.0, 1.0]
    np.testing.assert_allclose(m["ndcg@10"], [1 / np.log2(3), (1 + 1 / np.log2(5)) / (1 + 1 / np.log2(3))])
    mean, lo, hi = bootstrap_ci(np.array([0.0, 1.0] * 50), 200, np.random.default_rng(0))
    assert mean == 0.5 and lo < 0.5 < hi


def test_eval_retrieval_end_to_end_tiny(tmp_path, monkeypatch, capsys):
    import experiments.retrieval_eval as retrieval_eval

    monkeypatch.setattr(retrieval_eval, "ContrastiveImageConfig", lambda: TINY)
    argv = ["--n-products", "100", "--luma", "", "--text-encoder", "hashing", "--n-queries", "20",
            "--n-boot", "50", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert retrieval_eval.main(argv) == 0
    out = capsys.readouterr().out
    assert "## synthetic/attributes (20 queries)" in out and "| gated |" in out
    assert (tmp_path / "out" / "retrieval.csv").is_file() and (tmp_path / "out" / "photo_text.csv").is_file()
    assert retrieval_eval.main(["--no-synthetic", "--luma", str(tmp_path / "none"), "--cache-dir", ""]) == 2
    assert "Luma catalog not found" in capsys.readouterr().err


@pytest.mark.skipif(not (DATA / "luma" / "products.csv").is_file(), reason="shared Luma data not present")
def test_luma_queries():
    from encoders.csv_catalog import CsvCatalogConfig, load_csv_catalog
    from experiments.retrieval_eval import luma_queries

    catalog = load_csv_catalog(CsvCatalogConfig(path=DATA / "luma"))
    names, reviews = luma_queries(catalog, DATA / "luma")
    assert len(names.texts) == 199 and names.texts[0] == "Kangeroo Hoodie" and names.relevant[0].tolist() == [0]
    assert 0 < len(reviews.texts) <= 500
    assert all(len(r) == 1 for r in reviews.relevant)
