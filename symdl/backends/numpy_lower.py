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
from ..ops import OPS, StructuralOp
from ..ops.structural import norm_axes, sum_axes
from .lowering import Lowerings

__all__ = ["NUMPY", "PARALLEL_MIN"]

PARALLEL_MIN = 1 << 16  # elements; below this a serial loop beats starting threads
REDUCTIONS = ("sum", "mean", "sum_to")


class NumpyLowerings(Lowerings):
    """The table, plus fused elementwise units and reductions absorbed into kernels."""

    def fused(self, prog, unit) -> list:
        return _emit_fused(prog, unit)

    def absorbable(self, prog, c: str, how: str = "rows"):
        """``"sum"``/``"mean"`` when node ``c`` reduces the leading axis of a
        2-D value (``how="rows"``) or all of a 1-D one (``"all"``), else None."""
        g = prog.graph
        if prog.flavor != "numba" or g.op(c) not in REDUCTIONS:
            return None
        src = prog.shapes[g.args(c)[0]]
        if len(src) != (2 if how == "rows" else 1) or 0 in src:
            return None
        if tuple(a % len(src) for a in reduced_axes(prog, c)) != (0,):
            return None
        return "mean" if g.op(c) == "mean" else "sum"


NUMPY = NumpyLowerings("numpy")


def reduced_axes(prog, n: str) -> tuple:
    """The axes a ``sum``, ``mean`` or ``sum_to`` node reduces over."""
    d = prog.graph.node(n)
    src = prog.shapes[d["args"][0]]
    if d["op"] == "sum_to":
        return sum_axes(prog.shapes[n], src)
    return norm_axes(d["params"].get("axes"), len(src))


def view_as(prog, n: str, shape) -> str:
    """Name of a view of buffer ``n`` with ``shape`` (a contiguous reshape)."""
    return prog.alias(f"{n}@{'x'.join(map(str, shape))}", prog.buffers[n].reshape(shape))


# ------------------------------------------------------------ leaves, views
def _fill_buffer(prog, n):
    p = prog.graph.node(n)["params"]
    return prog.backend.full(prog.shapes[n], p.get("value", 0.0), prog.dtype(n))


def _transpose_view(prog, n):
    src = prog.buffers[prog.graph.args(n)[0]]
    return np.transpose(src, prog.graph.node(n)["params"].get("axes"))


def _reshape_view(prog, n):
    src = prog.buffers[prog.graph.args(n)[0]]
    return src.reshape(prog.shapes[n]) if src.flags.c_contiguous else None


@NUMPY.register("fill", view=_fill_buffer)
@NUMPY.register("transpose", view=_transpose_view)
def _free(prog, n):
    return []


@NUMPY.register("reshape", view=_reshape_view)
def _reshape(prog, n):
    a = prog.graph.args(n)[0]
    if np.shares_memory(prog.buffers[n], prog.buffers[a]):
        return []
    return [prog.comment(n), f"    np.copyto({prog.var(n)}, {prog.var(a)}.reshape({prog.shapes[n]}))"]


@NUMPY.register("matmul")
def _matmul(prog, n):
    """BLAS with ``out=``; a batched ``(..., n, k) @ (k, m)`` with a contiguous
    left operand is one GEMM over the stacked rows, else ``np.matmul`` runs
    one BLAS call per 2-D slice."""
    a, b = prog.graph.args(n)
    sa, sb = prog.shapes[a], prog.shapes[b]
    if len(sa) > 2 and len(sb) == 2 and prog.buffers[a].flags.c_contiguous:
        rows = int(np.prod(sa[:-1]))
        a2, out = view_as(prog, a, (rows, sa[-1])), view_as(prog, n, (rows, sb[-1]))
        return [prog.comment(n), f"    np.matmul({a2}, {prog.var(b)}, out={out})"]
    return [prog.comment(n), f"    np.matmul({prog.var(a)}, {prog.var(b)}, out={prog.var(n)})"]


@NUMPY.register(*REDUCTIONS)
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
    if prog.flavor == "numba" and x.flags.c_contiguous and x.dtype.kind == "f" and src \
            and src[0] >= 1 and tuple(a % len(src) for a in axes) == (0,) and len(src) <= 2:
        fast = "rows" if len(src) == 2 else "all"
    if fast:
        lines = module_header("numba") + reduction_kernel(
            "kernel", fast, x.dtype.name, mean, [f"{'mean' if mean else 'sum'} over {fast}"])
        return [prog.comment(n), f"    {prog.kernel(lines)}({prog.var(arg)}, {out})"]
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


def _as_operand(prog, n: str, shape):
    """A view of buffer ``n`` with ``shape``, or None where that would copy."""
    arr = prog.buffers[n]
    view = arr.reshape(shape)
    return view if np.may_share_memory(view, arr) else None


def _emit_fused(prog, unit) -> list:
    g = prog.graph
    inside = set(unit.nodes)
    out_shape = prog.shapes[unit.outputs[0]]
    ext: dict = {}      # outside node -> symbol
    params: list = []   # (symbol, value)
    expr: dict = {}
    for n in unit.nodes:
        argx = []
        for a in g.args(n):
            if a in inside:
                argx.append(expr[a])
            else:
                argx.append(ext.setdefault(a, sp.Symbol(f"v{len(ext)}", real=True)))
        expr[n] = pointwise(prog, n, argx, params)
    size = int(np.prod(out_shape))
    parallel = size >= PARALLEL_MIN
    dtype = prog.dtype(unit.outputs[0])
    flavor, sums = prog.flavor, []
    if flavor == "numba" and not parallel and len(out_shape) == 2:
        for k, o in enumerate(unit.outputs):
            r = prog.reducer_of(o)
            if r is not None:
                prog.merged.add(r[0])
                sums.append((k, r))
    sizes, spans = collapse(out_shape, [prog.shapes[a] for a in ext],
                            keep={len(out_shape) - 1} if sums else ())
    if sums and len(sizes) != 2:
        prog.merged.difference_update(r[0] for _, r in sums)
        sums = []
        sizes, spans = collapse(out_shape, [prog.shapes[a] for a in ext])
    argv = []
    if flavor == "numba":
        views = [_as_operand(prog, a, operand_shape(sizes, dims)) for a, dims in zip(ext, spans)]
        views += [_as_operand(prog, o, sizes) for o in unit.outputs]
        if any(v is None for v in views):
            flavor = "numpy"
            prog.merged.difference_update(r[0] for _, r in sums)
            sums = []
        else:
            keys = list(ext) + list(unit.outputs)
            argv = [prog.alias(f"{k}@{'x'.join(map(str, v.shape))}", v) for k, v in zip(keys, views)]
    if flavor != "numba":
        argv = [prog.var(a) for a in ext] + [prog.var(o) for o in unit.outputs]
    for _, (c, how) in sums:
        kept = prog.shapes[g.args(c)[0]][1:]
        argv.append(prog.var(c) if kept == prog.shapes[c] else view_as(prog, c, kept))
    comment = [f"{n} = {g.op(n)}({', '.join(g.args(n))})" for n in unit.nodes + [r[0] for _, r in sums]]
    spec = KernelSpec("kernel", tuple(Operand(s, d) for s, d in zip(ext.values(), spans)),
                      tuple(s for s, _ in params), tuple(expr[o] for o in unit.outputs), dtype,
                      len(sizes), parallel, colsums=tuple((k, how == "mean") for k, (_, how) in sums),
                      comment=tuple(comment))
    # rendered without the node comments (the step function has them), so the
    # same maths at every step of an unrolled sequence is rendered once
    kname = prog.kernel(module_header(flavor) + render(replace(spec, comment=()), flavor))
    argv += [repr(v) for _, v in params]
    return [f"    # {c}" for c in comment] + [f"    {kname}({', '.join(argv)})"]
