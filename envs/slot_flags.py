"""Per-slot outcomes from a step's ``info``: the one reader of ``info["clicked_positions"]``,
``info["purchased_positions"]`` and ``info["position_rewards"]`` that logging, the warm start, per-slot credit
(SB3 and RLlib) and the auxiliary heads share."""

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


def slot_rewards_row(info: Mapping[str, Any], n_slots: int) -> np.ndarray:
    """``float32 (n_slots,)`` what each slot of one step earned: ``info["position_rewards"]``, cut or zero-padded to
    ``n_slots``.

    Raises:
        KeyError: ``info`` has no ``position_rewards``.
    """
    if "position_rewards" not in info:
        raise KeyError("per-slot credit needs info['position_rewards'] on every step (ShopRank-v0 and "
                       "its vector env provide it).")
    shares = np.asarray(info["position_rewards"], dtype=np.float32)[:n_slots]
    row = np.zeros(n_slots, dtype=np.float32)
    row[: len(shares)] = shares
    return row


__all__ = ["OUTCOME_POSITION_KEYS", "slot_flags", "slot_rewards_row"]
