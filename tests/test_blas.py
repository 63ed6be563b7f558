"""``encoders.blas.blas_threads``: one BLAS thread inside the block, the previous limits after it."""

from __future__ import annotations

import pytest

from encoders.blas import blas_threads

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]


def test_blas_threads_limits_inside_the_block_and_restores_after():
    import numpy as np  # loads the BLAS

    np.ones((2, 2)) @ np.ones((2, 2))
    before = _blas_threads()
    with blas_threads(1):
        assert _blas_threads() and all(n == 1 for n in _blas_threads())
    assert _blas_threads() == before
    with blas_threads(None):
        assert _blas_threads() == before
