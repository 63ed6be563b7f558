"""How a shopper's response becomes a scalar reward."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from encoders.errors import ConfigError
from envs.kernels import slate_rewards_of
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

    def slate_rewards(self, click: np.ndarray, purchase: np.ndarray, prices: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The reward of ``B`` slates, its parts and each slot's share, in one compiled call.

        Args:
            click: ``bool (B, N)`` sampled clicks, or ``float`` click probabilities (expected reward).
            purchase: ``bool (B, N)`` sampled purchases, or ``float`` purchase probabilities.
            prices: ``(B, N)`` price of each slot's product (any value on empty slots: their click and purchase
                are 0).

        Returns:
            ``(parts float64 (B, 3), position_rewards float64 (B, N), reward float64 (B,))``: the parts
            (clicks, purchases, revenue; see :data:`PARTS`), each slot's share ``click * click_n + purchase *
            purchase_n + revenue * price_n * purchase_n`` (a SlateQ-style decomposition agents use for per-slot
            credit; it sums to the reward up to round-off) and :meth:`total` of the parts.
        """
        return slate_rewards_of(self.click, self.purchase, self.revenue, click, purchase, prices)

    def total(self, parts: np.ndarray) -> np.ndarray:
        """``float64 (...,)`` weighted sum of reward parts ``(..., 3)`` (clicks, purchases, revenue)."""
        return self.click * parts[..., 0] + self.purchase * parts[..., 1] + self.revenue * parts[..., 2]


PARTS = ("clicks", "purchases", "revenue")
"""Names of the reward parts, in the order of the last axis of :meth:`RewardSpec.slate_rewards`' parts (also ``info`` keys)."""
