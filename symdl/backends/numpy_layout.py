"""Batch-second buffer layouts of the NumPy backend: a convolution's products as one GEMM.

A convolution multiplies one (O, K) matrix by the (K, L) columns of every sample:
stored as (K, N, L) (and the product as (O, N, L)), that is one GEMM of
(O, K) @ (K, N·L) instead of N small ones, and the weight's gradient, summed over
the batch, one GEMM of (O, N·L) @ (N·L, K).  The graph keeps its (N, K, L) shapes;
only the buffers are laid out batch-second, chosen when they are allocated (the
``view`` hooks of ``unfold``, ``matmul`` and elementwise outputs in the lowering
table), and only where everything reading them reads strided buffers as they are.
"""
from __future__ import annotations

import numpy as np

__all__ = ["batch_second", "batch_second_buffer", "reads_strided", "wants_batch_second",
           "reshape_layout", "matmul_layout", "matmul_view", "one_gemm"]


def batch_second(arr) -> bool:
    """``arr`` (N, A, ...) is stored as a contiguous (A, N, ...)."""
    return arr.ndim >= 3 and not arr.flags.c_contiguous \
        and np.swapaxes(arr, 0, 1).flags.c_contiguous


def batch_second_buffer(prog, n: str):
    """A zero buffer for ``n`` (N, A, ...) stored batch-second."""
    s = prog.shapes[n]
    return np.swapaxes(prog.backend.zeros((s[1], s[0], *s[2:]), prog.dtype(n)), 0, 1)


def reads_strided(prog, n: str) -> bool:
    """Every consumer of ``n`` reads a strided buffer as it is: its lowering row says
    so (``strided``: products, reductions, reshapes, permutes, unfold/fold and fused
    elementwise kernels; others view their arguments as contiguous)."""
    g = prog.graph
    return all(getattr(prog.table.find(g.op(c)), "strided", False) for c in g.consumers(n))


def wants_batch_second(prog, n: str, depth: int = 2) -> bool:
    """Some consumer's lowering row would read ``n`` best stored batch-second
    (its ``layout`` hook: :func:`reshape_layout`, :func:`matmul_layout`), and
    nothing reading ``n`` needs it contiguous."""
    g = prog.graph
    if prog.flavor != "numba" or len(prog.shapes[n]) < 3 or not reads_strided(prog, n) \
            or n in prog.outputs:
        return False
    rows = ((c, prog.table.find(g.op(c))) for c in g.consumers(n))
    return any(row is not None and row.layout is not None and row.layout(prog, c, n, depth)
               for c, row in rows)


def reshape_layout(prog, c: str, n: str, depth: int) -> bool:
    """A reshape keeping ``n``'s first two axes passes the wish on to its own readers."""
    return bool(depth) and prog.shapes[c][:2] == prog.shapes[n][:2] \
        and wants_batch_second(prog, c, depth - 1)


def matmul_layout(prog, c: str, n: str, depth: int) -> bool:
    """``n`` is the batched right operand of a 2-D left one, or the left operand of a
    product summed over the batch (a weight's gradient)."""
    g = prog.graph
    a, b = g.args(c)
    if len(prog.shapes[c]) != 3:
        return False
    if b == n and len(prog.shapes[a]) == 2:
        return True
    users = g.consumers(c)
    return a == n and len(prog.shapes[b]) == 3 and len(users) == 1 \
        and len(prog.shapes[users[0]]) == 2


def matmul_view(prog, n):
    """``(O, K) @ (N, K, L)`` with the right operand stored batch-second: the
    product too (one GEMM writes it)."""
    a, b = prog.graph.args(n)
    if len(prog.shapes[a]) == 2 and len(prog.shapes[b]) == 3 and batch_second(prog.buffers[b]) \
            and reads_strided(prog, n) and n not in prog.outputs:
        return batch_second_buffer(prog, n)
    return None


def one_gemm(prog, n):
    """The lines of ``(O, K) @ (N, K, L)`` as one GEMM over batch-second buffers, else None."""
    a, b = prog.graph.args(n)
    x, y = prog.buffers[b], prog.buffers[n]
    if len(prog.shapes[a]) != 2 or not (x.ndim == 3 and batch_second(x) and batch_second(y)):
        return None
    (k, nb, m), o = np.swapaxes(x, 0, 1).shape, prog.shapes[a][0]
    right = prog.alias(f"{b}@K,NL", np.swapaxes(x, 0, 1).reshape(k, nb * m))
    out = prog.alias(f"{n}@O,NL", np.swapaxes(y, 0, 1).reshape(o, nb * m))
    return [prog.comment(n), f"    np.matmul({prog.var(a)}, {right}, out={out})"]
