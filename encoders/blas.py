"""BLAS thread limits for the many small matrix products of envs, shoppers and bandits (the bottom layer, so
every package can use it)."""

from __future__ import annotations

import contextlib
from typing import ContextManager


def blas_threads(n: int | None = 1) -> ContextManager:
    """Limit BLAS threads inside a ``with`` block (``None`` = no limit).

    Batched small products (``(K, d) x (d, d)`` per step in the bandits, ``(256, K, d) x (256, d, K)`` when the
    batched shopper builds its near-duplicate tables) are many times slower with a multi-threaded BLAS on a
    busy 2-core machine (measured: 8.5 CPU-s against 0.18 for the batched shopper's tables at K = 50). Uses
    ``threadpoolctl`` when installed, else does nothing.
    """
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(n), user_api="blas")


__all__ = ["blas_threads"]
