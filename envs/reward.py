"""How a shopper's response becomes a scalar reward."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encoders.errors import ConfigError
from simulators.validation import check_field_types


MAX_WEIGHT = 1e6
"""Largest magnitude of a reward weight: rewards and returns are float32 in the agents' buffers."""


@dataclass(frozen=True)
class RewardSpec:
    """Reward = ``click * #clicks + purchase * #purchases + revenue * sum(price of purchases)``.

    Attributes:
        click: Weight per click.
        purchase: Weight per purchase.
        revenue: Weight per currency unit of purchased products' prices.
        expected: Reward the agent with the *expected* value of the same weighted sum under the shopper's
            true click and purchase probabilities (Rao-Blackwellised: same mean, far less variance), instead
            of the sampled outcome. A simulation-only training aid that needs a privileged simulator
            (``expected_response``); the shopper still samples and reacts to real clicks, and ``info`` still
            reports the sampled clicks, purchases and revenue. Evaluate with ``expected=False``.
    """

    click: float = 1.0
    purchase: float = 1.0
    revenue: float = 0.02
    expected: bool = False

    def __post_init__(self) -> None:
        check_field_types(self)  # weights: finite floats (not bools, not text); expected: a bool
        for name in ("click", "purchase", "revenue"):
            value = getattr(self, name)
            if abs(value) > MAX_WEIGHT:
                raise ConfigError(f"RewardSpec.{name} must be between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}, got {value}.")

    def parts(self, clicks: np.ndarray, purchases: np.ndarray, prices: np.ndarray) -> np.ndarray:
        """``float64 (..., 3)`` reward parts of slates: clicks, purchases, revenue (see :data:`PARTS`).

        Args:
            clicks: ``bool (..., N)`` sampled clicks, or ``float`` click probabilities (expected parts).
            purchases: ``bool (..., N)`` sampled purchases, or ``float`` purchase probabilities.
            prices: ``(..., N)`` price of each slot's product (any value on empty slots).
        """
        out = np.empty(np.shape(clicks)[:-1] + (3,))
        clicks, purchases = np.asarray(clicks), np.asarray(purchases)
        out[..., 0] = clicks.sum(axis=-1)
        out[..., 1] = purchases.sum(axis=-1)
        if purchases.dtype == bool:
            out[..., 2] = np.where(purchases, prices, 0.0).sum(axis=-1)
        else:
            out[..., 2] = (purchases * prices).sum(axis=-1)
        return out

    def position_rewards(self, click: np.ndarray, purchase: np.ndarray, prices: np.ndarray) -> np.ndarray:
        """``float (..., N)`` each slot's share of the reward: ``click * click_n + purchase * purchase_n +
        revenue * price_n * purchase_n``. Takes sampled outcomes (bool) or probabilities (float); sums to
        :meth:`total` of the matching parts. Agents use it for per-slot credit (a SlateQ-style decomposition
        of the slate reward into items; valid because every slot's outcome is observed)."""
        click = np.asarray(click, dtype=np.float64)
        purchase = np.asarray(purchase, dtype=np.float64)
        return self.click * click + self.purchase * purchase + self.revenue * np.asarray(prices) * purchase

    def total(self, parts: np.ndarray) -> np.ndarray:
        """``float64 (...,)`` weighted sum of :meth:`parts` ``(..., 3)``."""
        return self.click * parts[..., 0] + self.purchase * parts[..., 1] + self.revenue * parts[..., 2]


PARTS = ("clicks", "purchases", "revenue")
"""Names of the reward parts, in the order of :meth:`RewardSpec.parts`' last axis (also ``info`` keys)."""
