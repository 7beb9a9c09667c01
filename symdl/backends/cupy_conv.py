"""CuPy lowerings of ``unfold``/``fold`` and max pooling's ``argmax``, ``gather``, ``scatter_add``.

Rows of :data:`symdl.backends.cupy_lower.CUPY`, launching the kernels
:mod:`symdl.codegen.cuda_grid` renders (the ones ``kernels/cuda/`` lists).  As in
the numba flavour of the NumPy backend: ``unfold``/``fold`` of 1-D and 2-D maps
(1-D as 2-D of height 1) over the N·C maps, padding by bounds; ``argmax`` along
any axis of an array seen as (before, axis, after); ``gather`` and its transpose
``scatter_add`` where the index has one entry per column (max pooling).  Indices
out of range are counted on the device and raise the NumPy backend's one-line
error (one device-to-host read of the count per such launch).  Whole-row
gathers (an embedding lookup) stay ``np.take``/``np.add.at`` (``cupy`` there);
anything else runs the op's NumPy ``impl`` on host copies.
"""
from __future__ import annotations

from math import prod

from ..codegen.cuda_grid import grid_kernel
from ..errors import DataError
from ..ops.conv import conv_params
from .cupy_lower import CUPY, launch, on_host, operand
from .numpy_lower import NUMPY

__all__ = ["checked_launch"]


def _params(prog, n) -> dict:
    return prog.graph.node(n)["params"]


def _own(prog, n: str, shape) -> str | None:
    """Node ``n``'s own (contiguous) buffer viewed with ``shape``, else None."""
    arr = prog.buffers[n]
    if not arr.flags.c_contiguous:
        return None
    return prog.alias(f"{n}@{'x'.join(map(str, shape))}", arr.reshape(shape))


# --------------------------------------------------------------- unfold, fold
def _maps(prog, n, op: str, image: str, columns: str, reads_image: bool) -> list | None:
    """The launch of ``op`` between ``image`` (N, C, *S) and ``columns`` (N, C·∏K, ∏O)."""
    shape = prog.shapes[image]
    d = len(shape) - 2
    if d not in (1, 2) or 0 in shape:
        return None
    k, s, p, dl = conv_params(_params(prog, n), d)
    out = tuple((a + 2 * q - e * (kk - 1) - 1) // st + 1
                for a, q, e, kk, st in zip(shape[2:], p, dl, k, s))
    lift = (1,) * (2 - d)   # a 1-D map is a 2-D one of height 1
    k, s, p, dl, out = (1,) * (2 - d) + k, lift + s, (0,) * (2 - d) + p, lift + dl, lift + out
    hw = lift + tuple(shape[2:])
    m = shape[0] * shape[1]
    copies: list = []
    if reads_image:
        src, dst = operand(prog, image, (m, *hw), copies), _own(prog, columns, (m, *k, *out))
        total = m * prod(k) * prod(out)
    else:
        src, dst = operand(prog, columns, (m, *k, *out), copies), _own(prog, image, (m, *hw))
        total = m * prod(hw)
    if dst is None:
        return None
    dtype = prog.dtype(image)
    sizes = (total, *hw, *k, *out, *s, *p, *dl)
    fn = launch(prog, grid_kernel(op, "kernel", dtype), "aa" + "n" * len(sizes), dtype, span=1)
    return [prog.comment(n)] + copies + [f"    {fn}({src}, {dst}, {', '.join(map(str, sizes))})"]


@CUPY.register("unfold")
def _unfold(prog, n):
    (a,) = prog.graph.args(n)
    return _maps(prog, n, "unfold", a, n, reads_image=True) or on_host(prog, n)


@CUPY.register("fold")
def _fold(prog, n):
    (a,) = prog.graph.args(n)
    return _maps(prog, n, "fold", n, a, reads_image=False) or on_host(prog, n)


# ------------------------------------------------- argmax, gather, scatter_add
def _akb(shape, axis: int) -> tuple:
    """``shape`` seen as (before, axis, after)."""
    axis %= len(shape)
    return prod(shape[:axis]), shape[axis], prod(shape[axis + 1:])


def checked_launch(kernel, node: str, length: int, bad, *args) -> None:
    """Launch a gather/scatter kernel; indices it counted out of range are a one-line error."""
    bad.fill(0)
    kernel(*args)
    if int(bad[0]):
        raise DataError(f"{node}: an index is out of range for an axis of length {length}")


def _one_per_column(prog, full: str, idx: str, small: str, axis: int) -> bool:
    """``idx`` has length 1 on ``axis`` and ``small``'s shape; ``full`` differs only there."""
    fs, ish = prog.shapes[full], prog.shapes[idx]
    if not fs or 0 in fs:
        return False
    axis %= len(fs)
    return ish[axis] == 1 and tuple(ish) == tuple(prog.shapes[small]) \
        and all(a == b for k, (a, b) in enumerate(zip(fs, ish)) if k != axis)


def _axis_launch(prog, n, op, full, idx, small, reads_full: bool) -> list:
    A, K, B = _akb(prog.shapes[full], _params(prog, n).get("axis", 0))
    copies: list = []
    if reads_full:   # gather: full and idx in, small out
        src, ix, dst = (operand(prog, full, (A, K, B), copies),
                        operand(prog, idx, (A, 1, B), copies), _own(prog, small, (A, 1, B)))
        total = A * B
    else:            # scatter_add: small and idx in, full out
        src, ix, dst = (operand(prog, small, (A, 1, B), copies),
                        operand(prog, idx, (A, 1, B), copies), _own(prog, full, (A, K, B)))
        total = A * K * B
    if dst is None:
        return on_host(prog, n)
    dtype = prog.dtype(n)
    fn = launch(prog, grid_kernel(op, "kernel", dtype), "aaaannn", dtype, span=1)
    bad = prog.alias(f"{n}@bad", prog.backend.zeros((1,), "uint64"))
    check = prog.alias("checked_launch", checked_launch)
    return [prog.comment(n)] + copies + [
        f"    {check}({fn}, {n!r}, {K}, {bad}, {src}, {ix}, {dst}, {bad}, {total}, {K}, {B})"]


def _whole_rows(prog, table: str, idx: str, axis: int) -> bool:
    """Whole rows of a 2-D ``table`` at indices (B, 1): an embedding lookup (or its
    transpose), which the NumPy row writes as ``np.take``/``np.add.at`` (``cupy`` here)."""
    t, i = prog.shapes[table], prog.shapes[idx]
    return len(t) == 2 and axis % 2 == 0 and len(i) == 2 and i[1] == 1 \
        and prog.buffers[idx].flags.c_contiguous


@CUPY.register("gather")
def _gather(prog, n):
    x, idx = prog.graph.args(n)
    if _one_per_column(prog, x, idx, n, _params(prog, n).get("axis", 0)):
        return _axis_launch(prog, n, "gather", x, idx, n, reads_full=True)
    if _whole_rows(prog, x, idx, _params(prog, n).get("axis", 0)):
        return NUMPY.rows["gather"].emit(prog, n)
    return on_host(prog, n)


@CUPY.register("scatter_add")
def _scatter_add(prog, n):
    g, idx = prog.graph.args(n)
    if _one_per_column(prog, n, idx, g, _params(prog, n).get("axis", 0)):
        return _axis_launch(prog, n, "scatter_add", n, idx, g, reads_full=False)
    if _whole_rows(prog, n, idx, _params(prog, n).get("axis", 0)) \
            and prog.shapes[g][1] == prog.shapes[n][1]:
        return NUMPY.rows["scatter_add"].emit(prog, n)
    return on_host(prog, n)


@CUPY.register("argmax")
def _argmax(prog, n):
    (x,) = prog.graph.args(n)
    if not prog.shapes[x] or 0 in prog.shapes[x]:
        return on_host(prog, n)
    A, K, B = _akb(prog.shapes[x], _params(prog, n).get("axis", 0))
    copies: list = []
    src, dst = operand(prog, x, (A, K, B), copies), _own(prog, n, (A, 1, B))
    if dst is None:
        return on_host(prog, n)
    dtype = prog.dtype(x)
    fn = launch(prog, grid_kernel("argmax", "kernel", dtype), "aannn", dtype, span=1)
    return [prog.comment(n)] + copies + [f"    {fn}({src}, {dst}, {A * B}, {K}, {B})"]
