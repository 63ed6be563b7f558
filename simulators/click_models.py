"""Click models: attractiveness in display order -> click probabilities and samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PositionBasedModel:
    """Position-based model (PBM): slot ``k`` is examined with probability ``examination[k]``,
    independently of the other slots, and an examined result is clicked with its attractiveness.

    ``P(click_k) = examination[k] * attractiveness_k``.

    Attributes:
        examination: ``float (N,)`` examination probability per slot, in ``[0, 1]``.
    """

    examination: tuple[float, ...]

    def __post_init__(self) -> None:
        exam = np.asarray(self.examination, dtype=float)
        if exam.ndim != 1 or len(exam) == 0 or np.any((exam < 0) | (exam > 1)) or np.any(np.isnan(exam)):
            raise ValueError(f"examination must be a non-empty sequence of probabilities, got {self.examination}.")

    @classmethod
    def geometric(cls, n_slots: int, decay: float = 0.85) -> "PositionBasedModel":
        """Examination ``decay ** k`` for slots ``k = 0 .. n_slots - 1``."""
        return cls(tuple(float(decay**k) for k in range(n_slots)))

    def click_probs(self, attractiveness: np.ndarray) -> np.ndarray:
        """``float (B, N)`` marginal click probabilities."""
        attractiveness = np.asarray(attractiveness, dtype=float)
        n = attractiveness.shape[-1]
        if n > len(self.examination):
            raise ValueError(f"slate has {n} slots but the PBM knows {len(self.examination)} positions.")
        return attractiveness * np.asarray(self.examination[:n])

    def sample(self, attractiveness: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``bool (B, N)`` sampled clicks."""
        probs = self.click_probs(attractiveness)
        return rng.random(probs.shape) < probs
