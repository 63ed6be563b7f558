"""Fusions: masking of missing modalities, modality weights, query side, persistence, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encoders.fusion import (ConcatProjectionFusion, FusionTrainingConfig, GatedAttentionFusion,
                             WeightedMeanFusion, query_vectors)
from encoders.registry import FUSIONS, IMAGE_ENCODERS

FAST = FusionTrainingConfig(epochs=3, batch_size=32, n_threads=1)


def _data(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    modalities = {"text": rng.standard_normal((n, 12)).astype(np.float32),
                  "image": rng.standard_normal((n, 6)).astype(np.float32)}
    present = {"text": np.ones(n, dtype=bool), "image": np.arange(n) % 3 != 0}
    return modalities, present


@pytest.mark.parametrize("cls", [WeightedMeanFusion, GatedAttentionFusion])
def test_fuse_shapes_weights_and_masking(cls):
    modalities, present = _data()
    fusion = cls(8, config=FAST).fit(modalities, present)
    fused = fusion.fuse(modalities, present)
    assert fused.shape == (60, 8) and fused.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    w = fusion.modality_weights(modalities, present)
    assert set(w) == {"image", "text"}
    np.testing.assert_allclose(w["image"] + w["text"], 1.0, atol=1e-6)
    assert (w["image"][~present["image"]] == 0).all() and (w["image"][present["image"]] > 0).all()
    # a missing modality is masked: whatever sits in its rows cannot change the output
    scrambled = {**modalities, "image": modalities["image"] * 0 + 123.0}
    changed = fusion.fuse(scrambled, present)
    np.testing.assert_allclose(changed[~present["image"]], fused[~present["image"]], atol=1e-6)
    # and a product without its image equals the text-only query encoding of its text
    absent = ~present["image"]
    np.testing.assert_allclose(fusion.encode_query(modalities["text"][absent]), fused[absent], atol=1e-5)


def test_weighted_mean_uses_prior_weights():
    modalities, present = _data()
    fusion = WeightedMeanFusion(8, {"image": 3.0}, config=FAST).fit(modalities, present)
    w = fusion.modality_weights(modalities, present)
    np.testing.assert_allclose(w["image"][present["image"]], 0.75, atol=1e-6)
    np.testing.assert_allclose(w["text"][~present["image"]], 1.0, atol=1e-6)


def test_gated_weights_vary_per_product():
    modalities, present = _data(seed=1)
    fusion = GatedAttentionFusion(8, config=FusionTrainingConfig(epochs=5, batch_size=32, n_threads=1))
    fusion.fit(modalities, present)
    w = fusion.modality_weights(modalities, present)["image"][present["image"]]
    assert w.std() > 1e-4


def test_errors_have_clear_messages():
    modalities, present = _data()
    fusion = GatedAttentionFusion(8, config=FAST)
    with pytest.raises(RuntimeError, match=r"GatedAttentionFusion is not fitted: call fit\(\) or load_state_dict\(\) first\."):
        fusion.fuse(modalities, present)
    fusion.fit(modalities, present)
    nothing = {"text": np.zeros(60, bool), "image": np.zeros(60, bool)}
    with pytest.raises(ValueError, match=r"^60 product\(s\) have no modality present \(first row 0\); at least one is needed\.$"):
        fusion.fuse(modalities, nothing)
    with pytest.raises(ValueError, match=r"fusion was fitted on modalities \['image', 'text'\]; got unknown \['audio'\]\."):
        fusion.fuse({**modalities, "audio": modalities["image"]}, present)
    with pytest.raises(ValueError, match=r"modality 'image' must be \(60, 6\), got \(60, 5\)\."):
        fusion.fuse({**modalities, "image": modalities["image"][:, :5]}, present)
    with pytest.raises(ValueError, match="the query modality 'text' must be among the modalities"):
        GatedAttentionFusion(8, config=FAST).fit({"image": modalities["image"]}, {"image": present["image"]})
    with pytest.raises(ValueError, match="modality weight for 'image' must be a finite number >= 0, got -1.0."):
        WeightedMeanFusion(8, {"image": -1.0})


def test_state_dict_round_trip(tmp_path):
    modalities, present = _data()
    fusion = GatedAttentionFusion(8, config=FAST).fit(modalities, present)
    torch.save(fusion.state_dict(), tmp_path / "f.pt")
    loaded = GatedAttentionFusion(8, config=FAST).load_state_dict(torch.load(tmp_path / "f.pt", weights_only=True))
    np.testing.assert_allclose(loaded.fuse(modalities, present), fusion.fuse(modalities, present), atol=1e-6)
    assert loaded.modalities == ["image", "text"]


def test_fit_is_deterministic_under_seed():
    modalities, present = _data()
    a = GatedAttentionFusion(8, config=FAST, seed=3).fit(modalities, present).fuse(modalities, present)
    b = GatedAttentionFusion(8, config=FAST, seed=3).fit(modalities, present).fuse(modalities, present)
    np.testing.assert_array_equal(a, b)


def test_fusion_learns_what_only_the_image_knows():
    """Targets need facts only the image carries: fused product vectors retrieve them better than text alone."""
    rng = np.random.default_rng(0)
    n = 300
    a, b = rng.standard_normal((n, 2)), rng.standard_normal((n, 8))
    text = np.concatenate([a, np.zeros((n, 8))], 1).astype(np.float32)   # the text lacks b
    image = b.astype(np.float32)                                          # the photo shows b
    targets = np.concatenate([a, b], 1).astype(np.float32)                 # queries mention both
    modalities = {"text": text, "image": image}
    present = {"text": np.ones(n, bool), "image": np.ones(n, bool)}
    fusion = GatedAttentionFusion(16, config=FusionTrainingConfig(epochs=60, n_threads=1, patience=60,
                                                                  p_drop_modality=0.1)).fit(modalities, present, targets=targets)
    q = fusion.encode_query(targets)

    def recall_at_1(products: np.ndarray) -> float:
        return float((np.argmax(q @ products.T, axis=1) == np.arange(n)).mean())

    fused_r1 = recall_at_1(fusion.fuse(modalities, present))
    text_r1 = recall_at_1(fusion.encode_query(text))
    assert fused_r1 > text_r1 + 0.2, (fused_r1, text_r1)


def test_concat_encode_query_and_helper():
    modalities, present = _data()
    fusion = ConcatProjectionFusion(8, {"image": 1.0}).fit(modalities, present)
    q = query_vectors(fusion, modalities["text"][:5])
    assert q.shape == (5, 8)
    absent = np.flatnonzero(~present["image"])[:3]
    assert q.dtype == np.float32 and np.isfinite(q).all()
    text_only = fusion.fuse({m: v[:5] for m, v in modalities.items()},
                            {"text": np.ones(5, bool), "image": np.zeros(5, bool)})
    np.testing.assert_allclose(q, text_only, atol=1e-5)  # a text query lands where a text-only product would
    np.testing.assert_allclose(fusion.encode_query(modalities["text"][absent]),
                               fusion.fuse(modalities, present)[absent], atol=1e-5)
    with pytest.raises(ValueError, match=r"query modality 'audio' is not one of the fitted modalities \['image', 'text'\]\."):
        fusion.encode_query(modalities["text"], "audio")
    with pytest.raises(TypeError, match="has no encode_query"):
        query_vectors(object(), modalities["text"])


def test_registry_entries():
    assert isinstance(FUSIONS["gated"](16, 1.0), GatedAttentionFusion)
    assert isinstance(FUSIONS["mean"](16, 0.5), WeightedMeanFusion)
    assert FUSIONS["mean"](16, 0.5).weights == {"image": 0.5}
    assert {"contrastive", "openclip", "pixel-stats"} <= set(IMAGE_ENCODERS)
