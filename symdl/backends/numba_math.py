"""``exp`` in float32 that numba's loops vectorise, for the generated kernels.

numba lowers ``np.exp`` on a float32 to a call of ``libm``'s ``expf``: one
element at a time, and a loop containing the call is not vectorised, so an
LSTM cell's five exps per element were most of its kernel's time.
:func:`exp32` is the classic Cody-Waite reduction, written in operations LLVM
vectorises: ``x = n·ln 2 + r`` with ``n`` rounded by the 1.5·2²³ trick
(no float-to-int conversion), ``e^r`` by Cephes' degree-6 polynomial on
``|r| ≤ ln 2 / 2``, and ``2ⁿ`` put together from bits (:func:`_pow2`, the one
LLVM intrinsic here).  Measured against float64 ``exp`` over [-104, 88.7] in
2 million points: at most 1 ulp where the result is a normal float32 (libm:
0.5), within one denormal step below that; NaN, ±inf, overflow to inf and
underflow to 0 as ``np.exp`` (tests/test_numba_math.py).

Generated modules import it with the line :data:`symdl.codegen.render.EXP32`,
whose tag ``v<VERSION>`` is part of every kernel's source: after a change here,
bump :data:`VERSION` and that tag (a test keeps them equal), so kernels get new
files and numba recompiles them instead of reusing caches built on the old body.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["exp32", "VERSION"]

VERSION = 2

#: 1.5·2²³ + 127: adding it rounds x·log₂e to an integer n and leaves n + 127 in the low bits
_MAGIC = 12583039.0


@intrinsic
def _pow2(typingctx, k):
    """2ⁿ from ``k = n + _MAGIC`` (float32, ``-126 ≤ n ≤ 127``): k's bits shifted
    left by 23 leave ``n + 127`` in the exponent field and zeros below it."""
    if k != types.float32:
        return None

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], ir.IntType(32))
        return builder.bitcast(builder.shl(bits, ir.Constant(ir.IntType(32), 23)), ir.FloatType())

    return types.float32(types.float32), codegen


# fastmath=False said out loud: numba compiles a callee with its first caller's options where
# the callee sets none, and a caller's "reassoc" (the row kernels') folds (k + M) − M into k,
# which leaves n unrounded (exp32(-1) came out 0.5); the compiled body is then shared, and cached
@njit(cache=True, error_model="numpy", fastmath=False)
def exp32(x):
    """e^x for a float32 ``x`` (see the module docstring for its accuracy)."""
    f = np.float32
    c = min(max(x, f(-103.9)), f(88.8))  # NaN passes through
    k = c * f(1.4426950408889634) + f(_MAGIC)
    n = k - f(_MAGIC)
    r = c - n * f(0.693359375) - n * f(-2.12194440e-4)
    p = ((((f(1.9875691500e-4) * r + f(1.3981999507e-3)) * r + f(8.3334519073e-3)) * r
          + f(4.1665795894e-2)) * r + f(1.6666665459e-1)) * r + f(5.0000001201e-1)
    y = p * (r * r) + r + f(1.0)
    # 2ⁿ as 2ⁿ⁻ʰ·2ʰ with h = round(n/2): each factor stays a normal float, so
    # results near overflow and down into the denormals come out right
    h = (n * f(0.5) + f(12582912.0)) - f(12582912.0)
    v = y * _pow2(k - h) * _pow2(h + f(_MAGIC))
    return v * f(x >= f(-104.0))  # e^x underflows to 0 below -103.97
