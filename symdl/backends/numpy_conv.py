"""NumPy lowerings of ``unfold`` (im2col) and ``fold`` (col2im): strided views, no pixel loops.

Rows of :data:`symdl.backends.numpy_lower.NUMPY`.  Everything is laid out at
compile time: ``unfold`` reads a strided ``(N, C, *K, *O)`` window view of
its argument (of a zero-padded copy when there is padding: the border zeros
are written once, at allocation, and only the interior is copied each step)
and writes it with one ``np.copyto`` into its output seen as ``(N, C, *K, *O)``.
``fold`` adds, for each of the ∏K kernel offsets, one strided slice of the
columns into one strided slice of the (padded) image: ∏K vectorised adds.
"""
from __future__ import annotations

import numpy as np

from ..ops.conv import conv_params, fold_offsets, windows
from .numpy_lower import NUMPY
from .numpy_lower import impl_lines as _impl_lines

__all__ = ["fold_into"]

_ALL2 = (slice(None), slice(None))


def _geometry(prog, n, spatial: int):
    return conv_params(prog.graph.node(n)["params"], spatial)


def _padded(prog, key: str, like, padding) -> tuple:
    """A zero buffer ``like`` grown by ``padding`` on each spatial side
    (registered under ``key``) and the view of its interior."""
    shape = like.shape[:2] + tuple(a + 2 * p for a, p in zip(like.shape[2:], padding))
    buf = prog.backend.zeros(shape, like.dtype)
    inner = buf[_ALL2 + tuple(slice(p, p + a) for p, a in zip(padding, like.shape[2:]))]
    prog.alias(key, buf)
    return buf, inner


@NUMPY.register("unfold")
def _unfold(prog, n):
    (a,) = prog.graph.args(n)
    x = prog.buffers[a]
    k, s, p, dl = _geometry(prog, n, x.ndim - 2)
    lines = [prog.comment(n)]
    src = x
    if any(p):
        src, inner = _padded(prog, f"{n}@padded", x, p)
        lines.append(f"    np.copyto({prog.alias(f'{n}@inner', inner)}, {prog.var(a)})")
    win = windows(src, k, s, dl)                                   # (N, C, *K, *O), a view
    out = prog.buffers[n].reshape(win.shape)                       # contiguous: a view too
    if not np.shares_memory(out, prog.buffers[n]):                 # a bound odd layout
        return _impl_lines(prog, n)
    lines.append(f"    np.copyto({prog.alias(f'{n}@cols', out)}, "
                 f"{prog.alias(f'{n}@windows', win)})")
    return lines


def fold_into(pairs, img) -> None:
    """``img`` zeroed, then each ``(dst, src)`` pair of views added in place."""
    img.fill(0)
    for dst, src in pairs:
        np.add(dst, src, out=dst)


@NUMPY.register("fold")
def _fold(prog, n):
    (a,) = prog.graph.args(n)
    out = prog.buffers[n]
    k, s, p, dl = _geometry(prog, n, out.ndim - 2)
    sizes = tuple((a_ + 2 * q - d * (kk - 1) - 1) // st + 1
                  for a_, q, d, kk, st in zip(out.shape[2:], p, dl, k, s))
    cols = prog.buffers[a].reshape(out.shape[:2] + k + sizes)
    if not np.shares_memory(cols, prog.buffers[a]):                # reshaping would copy
        return _impl_lines(prog, n)
    lines = [prog.comment(n)]
    img, inner = (_padded(prog, f"{n}@padded", out, p) if any(p) else (out, None))
    pairs = [(img[_ALL2 + where], cols[_ALL2 + off])
             for off, where in fold_offsets(k, s, dl, sizes)]
    lines.append(f"    {prog.alias('fold_into', fold_into)}({prog.alias(f'{n}@pairs', pairs)}, "
                 f"{prog.alias(f'{n}@img', img)})")
    if inner is not None:
        lines.append(f"    np.copyto({prog.var(n)}, {prog.alias(f'{n}@inner', inner)})")
    return lines
