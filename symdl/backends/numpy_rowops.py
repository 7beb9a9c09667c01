"""NumPy lowering of the row-op family (softmax, losses over logits, layer norm...).

Every :class:`~symdl.ops.rowops.RowOp` (its VJP is one too) is one generated
kernel (:func:`symdl.codegen.rowops.row_kernel`) over the op's last axis,
the leading axes viewed as rows.  A row op and its VJP on the same inputs
and parameters, when the VJP's upstream gradient is ready first (a loss and
its gradient in a training step), are one kernel: the statistics are
reduced once.  When that kernel is serial it also computes the batch mean
of the loss and the gradient's sum over rows (the last bias gradient).
"""
from __future__ import annotations

from math import prod

from ..codegen.render import module_header
from ..codegen.rowops import row_kernel
from ..errors import UsageError
from ..graph import LEAVES
from ..ops import OPS, RowOp, RowVJPOp
from .numpy_lower import NUMPY, PARALLEL_MIN, view_as

__all__ = ["row_layout", "row_argv", "row_params"]


def _base(opdef: RowOp) -> RowOp:
    return opdef.base if isinstance(opdef, RowVJPOp) else opdef


def row_layout(prog, n, opdef: RowOp) -> tuple:
    """``(labels, dtype, parallel)`` of a kernel for node ``n``."""
    args = prog.graph.args(n)
    labels = "dense"
    if "target" in opdef.operands:
        t = args[1 + opdef.operands.index("target")]
        if len(prog.shapes[t]) < len(prog.shapes[args[0]]):
            labels = "index"
            if prog.dtype(t) != "int64":
                raise UsageError(f"{n}: class labels {t} must be int64")
    big = prod(prog.shapes[args[0]]) >= PARALLEL_MIN
    return labels, prog.dtype(args[0]), big


def _as2d(prog, n: str, rows: int, per_row: bool) -> str:
    """Buffer ``n`` viewed as ``(rows, C)`` (or ``(rows,)`` for per-row values)."""
    shape = prog.shapes[n]
    want = (rows,) if per_row else (rows, shape[-1])
    return prog.var(n) if tuple(shape) == want else view_as(prog, n, want)


def row_argv(prog, opdef: RowOp, args, outs) -> list:
    """Names of the buffers of ``args`` and ``outs`` viewed as the kernel reads them:
    ``(rows, C)``, or ``(rows,)`` for per-row values (class labels, per-row losses)."""
    z = prog.shapes[args[0]]
    rows = prod(z[:-1])
    argv = [_as2d(prog, args[0], rows, False)]
    for a in args[1:]:
        argv.append(_as2d(prog, a, rows, len(prog.shapes[a]) < len(z)))
    return argv + [_as2d(prog, o, rows, len(prog.shapes[o]) < len(z)) for o in outs]


def row_params(opdef: RowOp, p: dict) -> str:
    """``, v1, v2...``: the op's parameter values in the kernel's order (its signature's last)."""
    vals = opdef.param_values(p)
    return "".join(f", {vals[s.name]!r}" for s in opdef.params)


def _twin(prog, n: str):
    """The other half of a (row op, its VJP) pair on the same inputs and
    parameters, when it is a single unit not yet computed and its arguments
    are ready."""
    g = prog.graph
    base = _base(OPS[g.op(n)])

    def key(m):
        return (g.args(m)[:base.arity], repr(sorted(g.node(m)["params"].items())))

    mine = isinstance(OPS[g.op(n)], RowVJPOp)
    for m in sorted(prog._single):
        op = g.op(m)
        if m == n or m in prog.done or m in prog.merged or op in LEAVES:
            continue
        opdef = OPS[op]
        if isinstance(opdef, RowOp) and _base(opdef) is base \
                and isinstance(opdef, RowVJPOp) != mine and key(m) == key(n) \
                and all(a in prog.done for a in g.args(m)):
            return m
    return None


@NUMPY.register(RowOp)
def _rowop(prog, n):
    g = prog.graph
    twin = _twin(prog, n) if prog.fuse else None
    if twin is not None:
        value_node, vjp_node = sorted((n, twin), key=g.op)
        prog.merged.add(twin)
        return _pair(prog, value_node, vjp_node)
    opdef = OPS[g.op(n)]
    labels, dtype, big = row_layout(prog, n, opdef)
    colsum = None
    if isinstance(opdef, RowVJPOp) and not big and prog.flavor == "numba":
        colsum = _absorb(prog, n, "rows")  # a bias gradient below a normalization, on the way
    what = f"{opdef.name}, {labels} labels" if "target" in opdef.operands else opdef.name
    src = module_header(prog.flavor) + row_kernel(
        "kernel", opdef, dtype, labels, prog.flavor, big, comment=[what], colsum=colsum and colsum[1])
    argv = ", ".join(row_argv(prog, opdef, g.args(n), [n]) + ([colsum[2]] if colsum else []))
    head = [prog.comment(m) for m in [n] + ([colsum[0]] if colsum else [])]
    return head + [f"    {prog.kernel(src)}({argv}{row_params(opdef, g.node(n)['params'])})"]


def _absorb(prog, n: str, how: str):
    """A reduction of ``n`` the pair kernel computes on the way: ``(node, how, view)``."""
    for c in prog.graph.consumers(n):
        if c not in prog._single or c in prog.merged:
            continue
        kind = prog.table.absorbable(prog, c, how)
        if kind is None:
            continue
        kept = prog.shapes[n][1:]
        view = prog.var(c) if kept == prog.shapes[c] else view_as(prog, c, kept)
        prog.merged.add(c)
        return c, kind, view
    return None


def _pair(prog, value_node, vjp_node) -> list:
    """One kernel for a row op and its VJP on the same inputs."""
    g = prog.graph
    value, vjp = OPS[g.op(value_node)], OPS[g.op(vjp_node)]
    labels, dtype, big = row_layout(prog, vjp_node, vjp)
    total = colsum = None
    if not big and prog.flavor == "numba":  # the batch loss and the bias gradient on the way
        if value.output == "row":
            total = _absorb(prog, value_node, "all")
        colsum = _absorb(prog, vjp_node, "rows")
    what = f", {labels} labels" if "target" in value.operands else ""
    src = module_header(prog.flavor) + row_kernel(
        "kernel", vjp, dtype, labels, prog.flavor, big, value=value,
        comment=[f"{value.name} and its VJP{what}"], total=total and total[1],
        colsum=colsum and colsum[1])
    argv = row_argv(prog, vjp, g.args(vjp_node), [value_node, vjp_node])
    argv += [r[2] for r in (total, colsum) if r]
    nodes = [value_node, vjp_node] + [r[0] for r in (total, colsum) if r]
    return [prog.comment(m) for m in nodes] + [
        f"    {prog.kernel(src)}({', '.join(argv)}{row_params(value, g.node(value_node)['params'])})"]
