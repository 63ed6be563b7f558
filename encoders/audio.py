"""Audio modality: a log-mel feature encoder plus a projection, for short clips (a spoken query, a jingle).

:func:`log_mel_spectrogram` is plain numpy (Hann-windowed STFT, triangular mel filterbank, ``log``);
:class:`LogMelAudioEncoder` summarises a clip by the per-band mean and standard deviation of its log-mel
frames (``2 * n_mels`` numbers, independent of the clip's length) and projects them to ``dim``: by default
with a fixed seeded random orthogonal map, or with a ridge regression fitted by
:meth:`LogMelAudioEncoder.fit_projection` onto target vectors (e.g. the text vectors of what was said),
which puts audio into another modality's space. Audio is optional: products without a clip are masked in
the fusion (``present["audio"] = False``), never zero-filled.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from encoders.errors import CatalogError, ConfigError


@dataclass(frozen=True)
class LogMelConfig:
    """Log-mel front end.

    Attributes:
        sample_rate: Expected sample rate of the clips (Hz).
        n_fft: FFT size (samples).
        win_length: Hann window length (samples, ``<= n_fft``).
        hop_length: Hop between frames (samples).
        n_mels: Mel bands.
        f_min: Lowest band edge (Hz).
        f_max: Highest band edge (Hz); ``None`` = Nyquist.
        max_seconds: Clips are cut to this length.
    """

    sample_rate: int = 16_000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 40
    f_min: float = 20.0
    f_max: float | None = None
    max_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.n_fft <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
            raise ConfigError("sample_rate, n_fft, hop_length and n_mels must be positive.")
        if not 0 < self.win_length <= self.n_fft:
            raise ConfigError(f"win_length must be in (0, n_fft={self.n_fft}], got {self.win_length}.")
        f_max = self.sample_rate / 2 if self.f_max is None else self.f_max
        if not 0 <= self.f_min < f_max <= self.sample_rate / 2:
            raise ConfigError(f"need 0 <= f_min < f_max <= sample_rate / 2, got {self.f_min}, {f_max}.")


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(config: LogMelConfig) -> np.ndarray:
    """Triangular HTK-mel filters, each normalised to unit area.

    Returns:
        ``float32 (n_mels, n_fft // 2 + 1)``.
    """
    f_max = config.sample_rate / 2 if config.f_max is None else config.f_max
    freqs = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(config.f_min), _hz_to_mel(f_max), config.n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - freqs[None]) / np.maximum(upper - centre, 1e-9)
    bank = np.maximum(0.0, np.minimum(rising, falling))
    bank /= np.maximum(bank.sum(axis=1, keepdims=True), 1e-9)
    return bank.astype(np.float32)


def _check_clip(clip: np.ndarray, index: int) -> np.ndarray:
    wave = np.asarray(clip)
    if wave.ndim != 1:
        raise CatalogError(f"audio clip {index} must be a mono 1-D waveform, got shape {wave.shape}.")
    if wave.size == 0:
        raise CatalogError(f"audio clip {index} is empty (zero samples).")
    if not np.issubdtype(wave.dtype, np.number):
        raise CatalogError(f"audio clip {index} must be numeric, got dtype {wave.dtype}.")
    wave = wave.astype(np.float32)
    if not np.isfinite(wave).all():
        raise CatalogError(f"audio clip {index} contains NaN or infinite samples.")
    return wave


def log_mel_spectrogram(clip: np.ndarray, config: LogMelConfig = LogMelConfig(),
                        filterbank: np.ndarray | None = None) -> np.ndarray:
    """Log-mel spectrogram of one clip.

    Args:
        clip: ``(t,)`` mono waveform in ``[-1, 1]`` at ``config.sample_rate``; shorter than ``n_fft`` is
            zero-padded.
        config: Front-end settings.
        filterbank: Precomputed :func:`mel_filterbank` (optional).

    Returns:
        ``float32 (frames, n_mels)``: ``log(1e-6 + mel power)``.
    """
    wave = _check_clip(clip, 0)[: int(config.max_seconds * config.sample_rate)]
    if len(wave) < config.n_fft:
        wave = np.pad(wave, (0, config.n_fft - len(wave)))
    n_frames = 1 + (len(wave) - config.n_fft) // config.hop_length
    frames = np.lib.stride_tricks.sliding_window_view(wave, config.n_fft)[:: config.hop_length][:n_frames]
    window = np.zeros(config.n_fft, dtype=np.float32)
    offset = (config.n_fft - config.win_length) // 2
    window[offset:offset + config.win_length] = np.hanning(config.win_length)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    bank = mel_filterbank(config) if filterbank is None else filterbank
    return np.log(1e-6 + power @ bank.T).astype(np.float32)


class LogMelAudioEncoder:
    """:class:`~encoders.protocols.AudioEncoder`: log-mel summary statistics, then a linear projection.

    Args:
        dim: Output width.
        config: Log-mel front end.
        seed: Seed of the default random orthogonal projection.
    """

    def __init__(self, dim: int = 64, config: LogMelConfig = LogMelConfig(), seed: int = 0) -> None:
        if dim <= 0:
            raise ConfigError(f"dim must be positive, got {dim}.")
        self.dim = dim
        self.config = config
        self.seed = seed
        self._bank = mel_filterbank(config)
        n_in = 2 * config.n_mels
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((max(n_in, dim), max(n_in, dim))))
        self._projection = q[:n_in, :dim].astype(np.float32)  # (2 n_mels, dim)
        self._center = np.zeros(n_in, dtype=np.float32)
        self._scale = np.ones(n_in, dtype=np.float32)
        self._fitted = "random"
        self._update_name()

    def _update_name(self) -> None:
        digest = hashlib.sha256(repr((asdict(self.config), self.seed, self._fitted)).encode())
        digest.update(self._projection.tobytes())
        self.name = f"logmel{self.config.n_mels}-{self.dim}-{digest.hexdigest()[:8]}"

    def features(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Per-band mean and std of each clip's log-mel frames: ``float32 (b, 2 * n_mels)``.

        Raises:
            ValueError: naming the clip index for an empty, non-1-D, non-numeric or non-finite clip.
        """
        out = np.zeros((len(clips), 2 * self.config.n_mels), dtype=np.float32)
        for i, clip in enumerate(clips):
            _check_clip(clip, i)
            spec = log_mel_spectrogram(clip, self.config, self._bank)
            out[i] = np.concatenate([spec.mean(axis=0), spec.std(axis=0)])
        return out

    def fit_projection(self, clips: Sequence[np.ndarray], targets: np.ndarray, ridge: float = 1.0) -> "LogMelAudioEncoder":
        """Fit the projection by ridge regression of ``targets`` on standardised features.

        Args:
            clips: ``b`` waveforms.
            targets: ``float32 (b, dim)`` vectors the clips should map to (e.g. text vectors of their words).
            ridge: L2 penalty.

        Returns:
            ``self`` (its ``name`` changes with the fitted projection).
        """
        targets = np.asarray(targets, dtype=np.float32)
        if targets.shape != (len(clips), self.dim):
            raise ValueError(f"targets must be ({len(clips)}, {self.dim}), got {targets.shape}.")
        feats = self.features(clips)
        self._center = feats.mean(axis=0)
        self._scale = np.maximum(feats.std(axis=0), 1e-3)
        z = (feats - self._center) / self._scale
        gram = z.T @ z + ridge * np.eye(z.shape[1], dtype=np.float32)
        self._projection = np.linalg.solve(gram, z.T @ targets).astype(np.float32)
        self._fitted = "ridge"
        self._update_name()
        return self

    def encode(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Encode ``b`` mono waveforms (any length) into L2-normalised ``float32 (b, dim)``."""
        if len(clips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        z = (self.features(clips) - self._center) / self._scale
        out = z @ self._projection
        return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def encode_optional_clips(encoder: LogMelAudioEncoder, clips: Sequence[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """Encode a column where some products have no clip.

    Returns:
        ``(vectors float32 (n, dim), present bool (n,))``; rows without a clip are zeros *and* marked absent,
        ready for ``fusion.fuse({..., "audio": vectors}, {..., "audio": present})``.
    """
    present = np.array([c is not None for c in clips], dtype=bool)
    out = np.zeros((len(clips), encoder.dim), dtype=np.float32)
    if present.any():
        out[present] = encoder.encode([c for c in clips if c is not None])
    return out, present
