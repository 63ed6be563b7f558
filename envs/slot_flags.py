"""Per-slot outcome flags from a step's ``info``: the one reader of ``info["clicked_positions"]`` and
``info["purchased_positions"]`` that logging, the warm start and the auxiliary heads share."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

OUTCOME_POSITION_KEYS = {"clicks": "clicked_positions", "purchases": "purchased_positions"}
"""Outcome -> the ``info`` key listing the slots where it happened."""


def slot_flags(info: Mapping[str, Any], outcome: str, n_slots: int, dtype: Any = np.float32) -> np.ndarray:
    """``(n_slots,)`` flags, 1 (``True``) at each slot where ``outcome`` happened this step.

    Args:
        info: A ShopRank step's ``info`` (``ShopRank-v0``/``-v1``, their vector envs).
        outcome: ``"clicks"`` or ``"purchases"``.
        n_slots: Length of the result; listed slots at or past it are dropped.
        dtype: Result dtype (``np.float32`` labels, ``bool`` masks).

    Raises:
        KeyError: with the missing key's name, when ``info`` does not list the slots.
    """
    key = OUTCOME_POSITION_KEYS[outcome]
    if key not in info:
        raise KeyError(f"info[{key!r}] is missing: per-slot {outcome} need it on every step (ShopRank-v0, "
                       "ShopRank-v1 and their vector envs provide it).")
    slots = np.asarray(info[key], dtype=np.int64)
    flags = np.zeros(n_slots, dtype=dtype)
    flags[slots[slots < n_slots]] = 1
    return flags


__all__ = ["OUTCOME_POSITION_KEYS", "slot_flags"]
