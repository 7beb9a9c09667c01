"""How much work a NumPy-backend lowering is: whether it is worth threads.

Two decisions of :mod:`symdl.backends.numpy_lower`: a fused elementwise
kernel loops in parallel (numba ``prange``) when its entries times its cost
per entry (:func:`kernel_cost`: function calls such as ``exp`` weigh far more
than arithmetic) reach ``PARALLEL_MIN``; a batched product is split over the
pool of :mod:`symdl.backends.threads` (:func:`split_batch`) when its GEMMs are
too small for BLAS's own threads and all of them together pay a dispatch.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

__all__ = ["kernel_cost", "split_batch", "CALLS", "CALL_COST", "BLAS_SPLITS", "POOL_MIN"]

BLAS_SPLITS = 1 << 18  # m·n·k of a GEMM OpenBLAS splits over its threads (4 · 65536)
POOL_MIN = 1 << 20  # multiply-adds of a batched product worth a pool dispatch

#: functions a kernel calls (libm, no SIMD in numba without SVML): each costs
#: about as much as CALL_COST additions per element
CALLS = (sp.exp, sp.log, sp.erf, sp.functions.elementary.hyperbolic.HyperbolicFunction,
         sp.functions.elementary.trigonometric.TrigonometricFunction)
CALL_COST = 8


def kernel_cost(exprs) -> int:
    """Work per element of a kernel, in additions: 1, plus CALL_COST per
    distinct function call (an LSTM cell's five exps make 8192 entries worth
    threads; a backward kernel of products of saved outputs stays serial)."""
    calls = {a for e in exprs for a in sp.preorder_traversal(e) if isinstance(a, CALLS)}
    return 1 + CALL_COST * len(calls)


def split_batch(prog, n: str) -> bool:
    """A batched product of at least two slices, each below OpenBLAS's own
    threading threshold, with enough work in all to pay a pool dispatch."""
    a, b = prog.graph.args(n)
    sa, sb, so = prog.shapes[a], prog.shapes[b], prog.shapes[n]
    if len(so) < 3 or so[0] < 2 or len(sa) < 2 or len(sb) < 2:
        return False
    each = so[-2] * so[-1] * sa[-1]
    return each < BLAS_SPLITS and each * int(np.prod(so[:-2])) >= POOL_MIN
