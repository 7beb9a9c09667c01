"""The NumPy backend's lowering table: one row per op or op class.

Matrix products go to BLAS with ``out=``; views (transposes, reshapes) and
constants are made once, at compile time; fused elementwise groups become
one generated kernel (:class:`~symdl.codegen.spec.KernelSpec`, numba loops
or the NumPy reference) over the collapsed broadcast loop nest; any other
structural op runs its declared NumPy ``impl``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import sympy as sp

from ..codegen.kernels import reduction_kernel
from ..codegen.render import module_header, render
from ..codegen.spec import KernelSpec, Operand, collapse, operand_shape
from ..ops import OPS, ElementwiseOp, StructuralOp
from ..ops.shape_ops import pad_index
from ..ops.structural import norm_axes, sum_axes
from .lowering import Lowerings
from .numpy_layout import (batch_second, batch_second_buffer, matmul_layout, matmul_view,
                           one_gemm, reads_strided, reshape_layout, wants_batch_second)
from .numpy_work import split_batch
from .threads import batched_matmul, copyto

__all__ = ["NUMPY", "PARALLEL_MIN"]

PARALLEL_MIN = 1 << 16  # elements; below this a serial loop beats starting threads
REDUCTIONS = ("sum", "mean", "sum_to")


class NumpyLowerings(Lowerings):
    """The table, plus fused elementwise units and reductions absorbed into kernels."""

    def fused(self, prog, unit) -> list:
        return _emit_fused(prog, unit)

    def absorbable(self, prog, c: str, how: str = "rows"):
        """``"sum"``/``"mean"`` when node ``c`` reduces the leading axis of a 2-D value
        (``how="rows"``), all of a 1-D one (``"all"``), or every axis but the second of a
        value of rank 3 or more (``"channels"``: the (N, H, W) statistics of a batch norm,
        a convolution's bias gradient), else None."""
        g = prog.graph
        if prog.flavor != "numba" or g.op(c) not in REDUCTIONS:
            return None
        src = prog.shapes[g.args(c)[0]]
        rank = {"rows": 2, "all": 1}.get(how, 3)
        if len(src) != rank and not (how == "channels" and len(src) > rank) or 0 in src:
            return None
        want = (0,) if how != "channels" else (0, *range(2, len(src)))
        if tuple(sorted(a % len(src) for a in reduced_axes(prog, c))) != want:
            return None
        return "mean" if g.op(c) == "mean" else "sum"


    def placement(self, prog, n: str):
        """``[(argument, region of n's buffer)]`` where ``n``'s arguments land
        (:meth:`~symdl.backends.program.Program._place`), else None."""
        fn = PLACES.get(prog.graph.op(n))
        return fn(prog, n) if fn is not None else None


NUMPY = NumpyLowerings("numpy")
#: op -> ``fn(prog, n) -> [(argument, region)]``: where each argument's entries go
PLACES: dict = {}


def reduced_axes(prog, n: str) -> tuple:
    """The axes a ``sum``, ``mean`` or ``sum_to`` node reduces over."""
    d = prog.graph.node(n)
    src = prog.shapes[d["args"][0]]
    if d["op"] == "sum_to":
        return sum_axes(prog.shapes[n], src)
    return norm_axes(d["params"].get("axes"), len(src))


def view_as(prog, n: str, shape) -> str:
    """Name of a view of buffer ``n`` with ``shape`` (a copy would be a stale snapshot)."""
    view = np.reshape(prog.buffers[n], shape, copy=False)  # raises where it would copy
    return prog.alias(f"{n}@{'x'.join(map(str, shape))}", view)


# ------------------------------------------------------------ leaves, views
def _fill_buffer(prog, n):
    p = prog.graph.node(n)["params"]
    return prog.backend.full(prog.shapes[n], p.get("value", 0.0), prog.dtype(n))


def _transpose_view(prog, n):
    src = prog.buffers[prog.graph.args(n)[0]]
    return np.transpose(src, prog.graph.node(n)["params"].get("axes"))


def _reshape_view(prog, n):
    src = prog.buffers[prog.graph.args(n)[0]]
    if src.flags.c_contiguous:
        return src.reshape(prog.shapes[n])
    if batch_second(src) and prog.shapes[n][:2] == src.shape[:2] and reads_strided(prog, n) \
            and n not in prog.outputs:
        return np.reshape(src, prog.shapes[n], copy=False)  # splits or merges trailing axes
    return None


@NUMPY.register("fill", view=_fill_buffer)
@NUMPY.register("transpose", view=_transpose_view, strided=True)
def _free(prog, n):
    return []


@NUMPY.register("reshape", view=_reshape_view, strided=True, layout=reshape_layout)
def _reshape(prog, n):
    a = prog.graph.args(n)[0]
    if np.shares_memory(prog.buffers[n], prog.buffers[a]):
        return []
    if prog.buffers[n].flags.c_contiguous:  # one strided copy (a.reshape would copy first)
        fn = prog.alias("copyto@fn", copyto)
        return [prog.comment(n), f"    {fn}({view_as(prog, n, prog.shapes[a])}, {prog.var(a)})"]
    return [prog.comment(n), f"    np.copyto({prog.var(n)}, {prog.var(a)}.reshape({prog.shapes[n]}))"]


def _layout_view(prog, n):
    """An elementwise output that products read batch-second is stored so."""
    return batch_second_buffer(prog, n) if wants_batch_second(prog, n) else None


@NUMPY.register(ElementwiseOp, view=_layout_view, strided=True)
def _in_fused_units(prog, n):
    raise AssertionError(f"{n}: elementwise nodes are lowered in fused units")


@NUMPY.register("matmul", view=matmul_view, strided=True, layout=matmul_layout)
def _matmul(prog, n):
    """BLAS with ``out=``; a batched ``(..., n, k) @ (k, m)`` with a contiguous
    left operand is one GEMM over the stacked rows, else ``np.matmul`` runs
    one BLAS call per 2-D slice."""
    a, b = prog.graph.args(n)
    sa, sb = prog.shapes[a], prog.shapes[b]
    wide = one_gemm(prog, n)
    if wide is not None:
        return wide
    folded = _fold_batch(prog, n)
    if folded is not None:
        return folded
    if len(sa) > 2 and len(sb) == 2 and prog.buffers[a].flags.c_contiguous:
        rows = int(np.prod(sa[:-1]))
        a2, out = view_as(prog, a, (rows, sa[-1])), view_as(prog, n, (rows, sb[-1]))
        return [prog.comment(n), f"    np.matmul({a2}, {prog.var(b)}, out={out})"]
    # small GEMMs BLAS would run on one thread each: the pool's threads share them
    fn = prog.alias("batched_matmul@fn", batched_matmul) if split_batch(prog, n) else "np.matmul"
    return [prog.comment(n), f"    {fn}({prog.var(a)}, {prog.var(b)}, out={prog.var(n)})"]


def _fold_batch(prog, n):
    """``Σ_b A_b B_b`` (a batched product whose one consumer sums it over the
    batch: a weight's gradient summed over the steps of a sequence) as one
    GEMM ``[A_0 … A_{b-1}] [B_0; …; B_{b-1}]`` with the batch folded into the
    inner dimension, instead of b small GEMMs and a sum.  Each operand is a
    view where its memory allows, else copied into a buffer of its own."""
    g = prog.graph
    a, b = g.args(n)
    sa, sb = prog.shapes[a], prog.shapes[b]
    cons = g.consumers(n)
    if len(sa) != 3 or len(sb) != 3 or sa[0] != sb[0] or n in prog.outputs or len(cons) != 1:
        return None
    c = cons[0]
    if c not in prog._single or c in prog.merged or g.op(c) not in ("sum", "sum_to") \
            or tuple(x % 3 for x in reduced_axes(prog, c)) != (0,):
        return None
    nb, m, k = sa
    lines = [prog.comment(n), prog.comment(c)]
    left = _folded(prog, lines, f"{n}@left", prog.buffers[a].transpose(1, 0, 2), (m, nb * k))
    right = _folded(prog, lines, f"{b}@folded", prog.buffers[b], (nb * k, sb[2]))
    prog.merged.add(c)
    out = prog.var(c) if prog.shapes[c] == (m, sb[2]) else view_as(prog, c, (m, sb[2]))
    return lines + [f"    np.matmul({left}, {right}, out={out})"]


def _folded(prog, lines, key, arr, shape) -> str:
    """Name of ``arr`` as ``shape``: a view, else a buffer ``lines`` copy it into."""
    if np.shares_memory(arr.reshape(shape), arr):
        return prog.alias(key, arr.reshape(shape))
    buf = prog.backend.empty(shape, arr.dtype)
    lines.append(f"    np.copyto({prog.alias(key + '3', buf.reshape(arr.shape))}, "
                 f"{prog.alias(key + '@src', arr)})")
    return prog.alias(key, buf)


@NUMPY.register(*REDUCTIONS, strided=True)
def _reduce(prog, n):
    g = prog.graph
    arg = g.args(n)[0]
    src = prog.shapes[arg]
    axes = reduced_axes(prog, n)
    kept = tuple(s for i, s in enumerate(src) if i not in {a % len(src) for a in axes})
    out = prog.var(n) if kept == prog.shapes[n] else view_as(prog, n, kept)
    mean = g.op(n) == "mean"
    x = prog.buffers[arg]
    fast = None
    lead = sorted(a % len(src) for a in axes) == list(range(len(axes)))  # the leading axes
    if prog.flavor == "numba" and x.flags.c_contiguous and x.dtype.kind == "f" and src \
            and min(src) >= 1 and lead and (len(src) == 1 or len(axes) < len(src)) \
            and np.shares_memory(prog.buffers[n].reshape(-1), prog.buffers[n]):
        fast = "rows" if len(src) > 1 else "all"
    if fast:
        lines = module_header("numba") + reduction_kernel(
            "kernel", fast, x.dtype.name, mean, [f"{'mean' if mean else 'sum'} over {fast}"])
        rows = int(np.prod(src[:len(axes)]))  # the leading axes as rows: (rows, rest) views
        src_ = view_as(prog, arg, (rows, x.size // rows)) if len(src) > 2 else prog.var(arg)
        out = view_as(prog, n, (x.size // rows,)) if len(src) > 2 else out
        return [prog.comment(n), f"    {prog.kernel(lines)}({src_}, {out})"]
    fn = "np.mean" if mean else "np.sum"
    return [prog.comment(n), f"    {fn}({prog.var(arg)}, axis={tuple(axes)}, out={out})"]


@NUMPY.register(StructuralOp)
def impl_lines(prog, n, **override) -> list:
    """Any other structural op: its declared NumPy ``impl`` (one call, copied
    out), with params made concrete by ``override``."""
    d = prog.graph.node(n)
    params = prog.alias(f"{n}@params", {**d["params"], **override})
    impl = prog.alias(f"{d['op']}@impl", OPS[d["op"]].impl)
    args = ", ".join(prog.var(a) for a in d["args"])
    return [prog.comment(n), f"    np.copyto({prog.var(n)}, {impl}({args}, **{params}))"]


# ------------------------------------------------------------ placements
def _concat_parts(prog, n):
    out, at, regions = prog.buffers[n], 0, []
    axis = prog.graph.node(n)["params"].get("axis", 0) % out.ndim
    for a in prog.graph.args(n):
        size = prog.shapes[a][axis]
        regions.append((a, out[(slice(None),) * axis + (slice(at, at + size),)]))
        at += size
    return regions


def _pad_inner(prog, n):
    (a,) = prog.graph.args(n)
    return [(a, prog.buffers[n][pad_index(prog.shapes[a], prog.graph.node(n)["params"])])]


PLACES.update(concat=_concat_parts, pad=_pad_inner)


# ------------------------------------------------------------ fused units
def pointwise(prog, n: str, argx: list, params: list) -> sp.Expr:
    """Node ``n`` as a SymPy expression of its arguments' expressions ``argx``;
    its numeric parameters become kernel scalars appended to ``params``."""
    d = prog.graph.node(n)
    opdef = OPS[d["op"]]
    if isinstance(opdef, StructuralOp):
        shapes = [prog.shapes[a] for a in d["args"]]
        return opdef.pointwise(argx, d["params"], shapes)
    vals = opdef.param_values(d["params"])
    sub = dict(zip(opdef.inputs, argx))
    for sym in opdef.params:
        psym = sp.Symbol(f"p{len(params)}", real=True)
        params.append((psym, vals[sym.name]))
        sub[sym] = psym
    return opdef.kernel_expr.xreplace(sub)


def _pitched(view):
    """A 2-D input whose rows are contiguous but lie ``pitch`` elements apart
    (a column block of a wider matrix: an LSTM's gate) seen as the C-contiguous
    (rows, pitch) array that starts where it starts: numba indexes a C array
    faster than a strided one (measured 1.5x), and the kernel reads only the
    columns below its own loop bound (the first output's width), never the
    ones after.  Anything else unchanged."""
    if view is None or view.ndim != 2 or view.flags.c_contiguous:
        return view
    rs, cs = view.strides
    if cs != view.itemsize or rs % cs or rs // cs < view.shape[1] or view.shape[0] < 1:
        return view
    return np.lib.stride_tricks.as_strided(view, (view.shape[0], rs // cs), view.strides)


def _as_operand(prog, n: str, shape):
    """A view of buffer ``n`` with ``shape``, or None where that would copy."""
    arr = prog.buffers[n]
    view = arr.reshape(shape)
    return view if np.may_share_memory(view, arr) else None


def _seams(arrays, out_shape) -> set:
    """Dimensions of ``out_shape`` that must start a loop dimension because
    some operand's memory does not continue across them (a slice of a wider
    array, a part of a concatenation): the kernel then reads that operand as
    a strided view instead of the step copying it."""
    r, seams = len(out_shape), set()
    for arr in arrays:
        shape = (1,) * (r - arr.ndim) + arr.shape
        strides = (0,) * (r - arr.ndim) + arr.strides
        prev = None
        for d in range(r):
            if shape[d] == 1:  # dropped from the loop nest, or broadcast
                continue
            if prev is not None and strides[prev] != strides[d] * shape[d]:
                seams.add(d)
            prev = d
    return seams


#: the expressions of fused units by their structure (ops, params, shapes, wiring):
#: the units of every step of an unrolled sequence are built by SymPy once
_UNIT_EXPRS: dict = {}


def _unit_exprs(prog, unit) -> tuple:
    """``(ext, outputs, params)``: outside nodes -> their symbols, the outputs'
    expressions, the kernel scalars ``[(symbol, value)]`` of a fused unit."""
    g = prog.graph
    where: dict = {}  # member -> ("m", index); outside node -> ("x", index)
    ext: dict = {}
    sig = []
    for k, n in enumerate(unit.nodes):
        d = g.node(n)
        refs = []
        for a in d["args"]:
            if a not in where:
                where[a] = ("x", len(ext))
                ext[a] = sp.Symbol(f"v{len(ext)}", real=True)
            refs.append(where[a])
        sig.append((d["op"], repr(sorted(d["params"].items())), tuple(refs),
                    tuple(prog.shapes[a] for a in d["args"])))
        where[n] = ("m", k)
    key = (tuple(sig), tuple(where[o][1] for o in unit.outputs))
    if key not in _UNIT_EXPRS:
        params: list = []
        expr: dict = {}
        for n in unit.nodes:
            argx = [expr[a] if a in expr else ext[a] for a in g.args(n)]
            expr[n] = pointwise(prog, n, argx, params)
        _UNIT_EXPRS[key] = (tuple(expr[o] for o in unit.outputs), tuple(params))
    outs, params = _UNIT_EXPRS[key]
    return ext, outs, list(params)


def _emit_fused(prog, unit) -> list:
    g = prog.graph
    out_shape = prog.shapes[unit.outputs[0]]
    ext, out_exprs, params = _unit_exprs(prog, unit)
    size = int(np.prod(out_shape))
    parallel = size >= PARALLEL_MIN
    dtype = prog.dtype(unit.outputs[0])
    flavor, sums = prog.flavor, []
    # sums absorbed on the way: over the rows of a small 2-D loop, or over all
    # but the channels of (N, C, *S) as a rank-3 loop (N, C, ∏S)
    how = None if flavor != "numba" else "channels" if len(out_shape) >= 3 \
        else "rows" if not parallel and len(out_shape) == 2 else None
    if how is not None:
        for k, o in enumerate(unit.outputs):
            r = prog.reducer_of(o, how)
            if r is not None:
                prog.merged.add(r[0])
                sums.append((k, r))
    seams = _seams([prog.buffers[a] for a in list(ext) + unit.outputs], out_shape)
    cuts = {len(out_shape) - 1} if how == "rows" else {1, 2}
    sizes, spans = collapse(out_shape, [prog.shapes[a] for a in ext],
                            keep=seams | (cuts if sums else set()))
    if sums and (len(sizes) != 2 if how == "rows" else sizes[1:2] != out_shape[1:2]
                 or len(sizes) != 3):
        prog.merged.difference_update(r[0] for _, r in sums)
        sums = []
        sizes, spans = collapse(out_shape, [prog.shapes[a] for a in ext], keep=seams)
    argv = []
    if flavor == "numba":
        views = [_pitched(_as_operand(prog, a, operand_shape(sizes, dims)))
                 for a, dims in zip(ext, spans)]
        views += [_as_operand(prog, o, sizes) for o in unit.outputs]
        if any(v is None for v in views):
            flavor = "numpy"
            prog.merged.difference_update(r[0] for _, r in sums)
            sums = []
        else:
            keys = list(ext) + list(unit.outputs)
            argv = [prog.alias(f"{k}@{'x'.join(map(str, v.shape))}", v) for k, v in zip(keys, views)]
    # an output only its absorbed (N, H, W) sum reads is never stored
    dropped = tuple(k for k, (c, _) in sums if how == "channels"
                    and unit.outputs[k] not in prog.outputs and g.consumers(unit.outputs[k]) == [c])
    if dropped and len(dropped) == len(unit.outputs) and not any(all(d) for d in spans):
        dropped = ()
    argv = [v for k, v in enumerate(argv) if k - len(ext) not in dropped]
    if flavor != "numba":
        argv = [prog.var(a) for a in ext] + [prog.var(o) for o in unit.outputs]
    for _, (c, _) in sums:
        kept = prog.shapes[g.args(c)[0]][1:2 if how == "channels" else None]
        argv.append(prog.var(c) if kept == prog.shapes[c] else view_as(prog, c, kept))
    comment = [f"{n} = {g.op(n)}({', '.join(g.args(n))})" for n in unit.nodes + [r[0] for _, r in sums]]
    spec = KernelSpec("kernel", tuple(Operand(s, d) for s, d in zip(ext.values(), spans)),
                      tuple(s for s, _ in params), out_exprs, dtype,
                      len(sizes), parallel, colsums=tuple((k, kind == "mean") for k, (_, kind) in sums),
                      comment=tuple(comment), dropped=dropped)
    # rendered without the node comments (the step function has them), so the
    # same maths at every step of an unrolled sequence is rendered once
    kname = prog.kernel(module_header(flavor) + render(replace(spec, comment=()), flavor))
    argv += [repr(v) for _, v in params]
    return [f"    # {c}" for c in comment] + [f"    {kname}({', '.join(argv)})"]
