"""Log-mel audio encoder and fusion with a missing audio modality."""

from __future__ import annotations

import numpy as np
import pytest

from encoders.audio import (LogMelAudioEncoder, LogMelConfig, encode_optional_clips, log_mel_spectrogram,
                            mel_filterbank)
from encoders.fusion import FusionTrainingConfig, GatedAttentionFusion
from encoders.protocols import AudioEncoder

SR = 16_000


def tone(freq: float, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    noise = np.random.default_rng(seed).standard_normal(len(t)) * 0.01
    return (0.5 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def test_filterbank_shape_and_normalisation():
    config = LogMelConfig()
    bank = mel_filterbank(config)
    assert bank.shape == (40, 257) and bank.dtype == np.float32
    np.testing.assert_allclose(bank.sum(axis=1), 1.0, atol=1e-5)
    assert (bank >= 0).all()


def test_log_mel_peaks_at_the_tone():
    config = LogMelConfig()
    spec = log_mel_spectrogram(tone(1000.0), config)
    assert spec.shape == (1 + (8000 - 512) // 160, 40)
    centres = 700 * (10 ** (np.linspace(2595 * np.log10(1 + 20 / 700), 2595 * np.log10(1 + 8000 / 700), 42)[1:-1] / 2595) - 1)
    peak = centres[int(np.argmax(spec.mean(axis=0)))]
    assert 800 < peak < 1250
    assert log_mel_spectrogram(np.zeros(100, np.float32), config).shape == (1, 40)  # shorter than n_fft: padded


def test_encoder_protocol_length_invariance_and_discrimination():
    encoder = LogMelAudioEncoder(dim=32)
    assert isinstance(encoder, AudioEncoder)
    vectors = encoder.encode([tone(440, 0.4), tone(440, 1.1, seed=1), tone(3000, 0.6)])
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert encoder.encode([]).shape == (0, 32)


def test_bad_clips_have_clear_messages():
    encoder = LogMelAudioEncoder(dim=8)
    with pytest.raises(ValueError, match=r"^audio clip 1 is empty \(zero samples\)\.$"):
        encoder.encode([tone(440), np.zeros(0, np.float32)])
    with pytest.raises(ValueError, match=r"^audio clip 0 must be a mono 1-D waveform, got shape \(2, 100\)\.$"):
        encoder.encode([np.zeros((2, 100), np.float32)])
    with pytest.raises(ValueError, match=r"^audio clip 0 contains NaN or infinite samples\.$"):
        encoder.encode([np.full(600, np.nan, np.float32)])
    with pytest.raises(ValueError, match=r"win_length must be in \(0, n_fft=256\], got 400\."):
        LogMelConfig(n_fft=256)


def test_fit_projection_maps_into_target_space():
    rng = np.random.default_rng(0)
    freqs = rng.uniform(200, 4000, size=40)
    clips = [tone(f, 0.3, seed=i) for i, f in enumerate(freqs)]
    targets = np.cos(np.outer(np.log(freqs), np.arange(1, 9))).astype(np.float32)  # smooth in pitch
    encoder = LogMelAudioEncoder(dim=8)
    before = encoder.name
    encoder.fit_projection(clips, targets, ridge=0.1)
    assert encoder.name != before
    pred = encoder.encode(clips)
    tn = targets / np.linalg.norm(targets, axis=1, keepdims=True)
    assert float(np.mean(np.sum(pred * tn, axis=1))) > 0.8
    with pytest.raises(ValueError, match=r"targets must be \(40, 8\), got \(3, 8\)\."):
        encoder.fit_projection(clips, targets[:3])


def test_fusion_masks_missing_audio():
    rng = np.random.default_rng(0)
    n = 24
    encoder = LogMelAudioEncoder(dim=8)
    clips = [tone(300 + 100 * i, 0.2) if i % 2 == 0 else None for i in range(n)]
    audio, present_audio = encode_optional_clips(encoder, clips)
    assert present_audio.sum() == 12 and (audio[~present_audio] == 0).all()
    modalities = {"text": rng.standard_normal((n, 10)).astype(np.float32),
                  "image": rng.standard_normal((n, 6)).astype(np.float32), "audio": audio}
    present = {"text": np.ones(n, bool), "image": np.ones(n, bool), "audio": present_audio}
    fusion = GatedAttentionFusion(8, config=FusionTrainingConfig(epochs=2, batch_size=8, n_threads=1))
    fusion.fit(modalities, present)
    w = fusion.modality_weights(modalities, present)
    assert (w["audio"][~present_audio] == 0).all() and (w["audio"][present_audio] > 0).all()
    np.testing.assert_allclose(w["audio"] + w["image"] + w["text"], 1.0, atol=1e-6)
    # products and queries without audio can leave the modality out entirely
    no_audio = fusion.fuse({"text": modalities["text"], "image": modalities["image"]},
                           {"text": present["text"], "image": present["image"]})
    with_masked = fusion.fuse(modalities, present)
    np.testing.assert_allclose(no_audio[~present_audio], with_masked[~present_audio], atol=1e-6)
