"""How much work a NumPy-backend lowering is: whether it is worth threads.

A batched product is split over the pool of :mod:`symdl.backends.threads`
(:func:`split_batch`) when its GEMMs are too small for BLAS's own threads and
all of them together pay a dispatch.  (Small fused kernels stay serial: an
LSTM's 64 x 128 cell kernels looping in numba's ``prange`` at every step were
neutral on two threads and 4-25x slower steps while another process used a
core: OpenMP's fork-join waited on a descheduled thread at each of 32 steps.)
"""
from __future__ import annotations

import numpy as np

__all__ = ["split_batch", "BLAS_SPLITS", "POOL_MIN"]

BLAS_SPLITS = 1 << 18  # m·n·k of a GEMM OpenBLAS splits over its threads (4 · 65536)
POOL_MIN = 1 << 20  # multiply-adds of a batched product worth a pool dispatch


def split_batch(prog, n: str) -> bool:
    """A batched product of at least two slices, each below OpenBLAS's own
    threading threshold, with enough work in all to pay a pool dispatch."""
    a, b = prog.graph.args(n)
    sa, sb, so = prog.shapes[a], prog.shapes[b], prog.shapes[n]
    if len(so) < 3 or so[0] < 2 or len(sa) < 2 or len(sb) < 2:
        return False
    each = so[-2] * so[-1] * sa[-1]
    return each < BLAS_SPLITS and each * int(np.prod(so[:-2])) >= POOL_MIN
