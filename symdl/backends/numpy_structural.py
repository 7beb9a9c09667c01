"""NumPy lowerings of the structural ops that move entries (permute, slice, pad, concat, gather...).

Rows of :data:`symdl.backends.numpy_lower.NUMPY`.  Permutes and slices are
views taken once at compile time (basic indexing never copies); a pad writes
only the argument's entries each step into a buffer whose zeros were made
when it was allocated; gathers along the leading axis of a table (embedding
lookup) are one ``np.take(..., out=)`` and their transpose one ``np.add.at``
over rows.  Anything else runs the op's declared ``impl``, as the default row.
"""
from __future__ import annotations

import numpy as np

from ..ops import OPS
from ..ops.shape_ops import pad_index, slice_index
from .numpy_lower import NUMPY, impl_lines, view_as

__all__: list = []


def _args(prog, n):
    return prog.graph.args(n)


def _params(prog, n) -> dict:
    return prog.graph.node(n)["params"]


# ------------------------------------------------------------------ views
def _permute_view(prog, n):
    return np.transpose(prog.buffers[_args(prog, n)[0]], _params(prog, n).get("axes") or None)


def _slice_view(prog, n):
    src = prog.buffers[_args(prog, n)[0]]
    return src[slice_index(src.shape, _params(prog, n))]


@NUMPY.register("permute", view=_permute_view)
@NUMPY.register("slice", view=_slice_view)
def _view_only(prog, n):
    return []


# --------------------------------------------------------------- pad, concat
@NUMPY.register("pad")
def _pad(prog, n):
    """Copy into the argument's places; the zeros between stay from allocation
    (the buffer is this node's alone: nothing else writes it)."""
    (a,) = _args(prog, n)
    inner = prog.buffers[n][pad_index(prog.shapes[a], _params(prog, n))]
    return [prog.comment(n), f"    np.copyto({prog.alias(f'{n}@inner', inner)}, {prog.var(a)})"]


@NUMPY.register("concat")
def _concat(prog, n):
    out, lines, at = prog.buffers[n], [prog.comment(n)], 0
    axis = _params(prog, n).get("axis", 0) % out.ndim
    for k, a in enumerate(_args(prog, n)):
        size = prog.shapes[a][axis]
        part = out[(slice(None),) * axis + (slice(at, at + size),)]
        lines.append(f"    np.copyto({prog.alias(f'{n}@part{k}', part)}, {prog.var(a)})")
        at += size
    return lines


# --------------------------------------------------- gather, scatter_add
def _rows(prog, table: str, idx: str, axis) -> bool:
    """Whole rows of a 2-D ``table`` at indices of shape (B, 1): an embedding lookup."""
    t, i = prog.shapes[table], prog.shapes[idx]
    return len(t) == 2 and axis % 2 == 0 and len(i) == 2 and i[1] == 1 \
        and prog.buffers[idx].flags.c_contiguous


@NUMPY.register("gather")
def _gather(prog, n):
    x, idx = _args(prog, n)
    axis = _params(prog, n).get("axis", 0)
    if _rows(prog, x, idx, axis):
        flat = view_as(prog, idx, prog.shapes[idx][:1])
        return [prog.comment(n), f"    np.take({prog.var(x)}, {flat}, axis=0, out={prog.var(n)})"]
    return impl_lines(prog, n)


@NUMPY.register("scatter_add")
def _scatter_add(prog, n):
    g, idx = _args(prog, n)
    axis = _params(prog, n).get("axis", 0)
    if _rows(prog, n, idx, axis) and prog.shapes[g][1] == prog.shapes[n][1]:
        flat = view_as(prog, idx, prog.shapes[idx][:1])
        return [prog.comment(n), f"    {prog.var(n)}.fill(0)",
                f"    np.add.at({prog.var(n)}, {flat}, {prog.var(g)})"]
    return impl_lines(prog, n, shape=prog.shapes[n])


@NUMPY.register("argmax")
def _argmax(prog, n):
    (x,) = _args(prog, n)
    axis = _params(prog, n).get("axis", 0)
    return [prog.comment(n),
            f"    np.argmax({prog.var(x)}, axis={axis}, out={prog.var(n)}, keepdims=True)"]
