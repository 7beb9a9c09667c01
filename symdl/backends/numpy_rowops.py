"""NumPy lowerings of the row losses and their gradients.

A row loss and its gradient on the same logits, targets and parameters are
computed by one kernel (the row statistics once); when that kernel is
serial it also computes the batch mean of the loss and the gradient's sum
over rows (the last bias gradient) on the way.
"""
from __future__ import annotations

import numpy as np

from ..codegen.kernels import rowloss_kernel
from ..codegen.render import module_header
from ..errors import UsageError
from ..ops import OPS, RowGradOp, RowLossOp
from .numpy_lower import NUMPY, PARALLEL_MIN, view_as

__all__ = []


def _layout(prog, n, args) -> tuple:
    """``(labels, dtype, parallel)`` of a row-loss kernel on logits ``args[0]``."""
    labels = "index" if len(prog.shapes[args[1]]) == 1 else "dense"
    if labels == "index" and prog.dtype(args[1]) != "int64":
        raise UsageError(f"{n}: class labels {args[1]} must be int64")
    big = int(np.prod(prog.shapes[args[0]])) >= PARALLEL_MIN
    return labels, prog.dtype(args[0]), big


def _params(loss: RowLossOp, p: dict) -> str:
    vals = loss.param_values(p)
    return "".join(f", {vals[s.name]!r}" for s in loss.params)


def _twin(prog, n: str):
    """The other half of a (loss, gradient) pair on the same logits, targets
    and parameters, when it is a single unit not yet computed and its
    arguments are ready."""
    g = prog.graph

    def key(m):
        opdef = OPS[g.op(m)]
        loss = opdef.loss if isinstance(opdef, RowGradOp) else opdef
        return (loss.name, g.args(m)[:2], repr(sorted(g.node(m)["params"].items())))

    mine = isinstance(OPS[g.op(n)], RowGradOp)
    for m in sorted(prog._single):
        op = g.op(m)
        if m == n or m in prog.done or m in prog.merged or op in ("input", "param"):
            continue
        opdef = OPS[op]
        if isinstance(opdef, (RowLossOp, RowGradOp)) and isinstance(opdef, RowGradOp) != mine \
                and key(m) == key(n) and all(a in prog.done for a in g.args(m)):
            return m
    return None


@NUMPY.register(RowLossOp, RowGradOp)
def _rowloss(prog, n):
    g = prog.graph
    twin = _twin(prog, n) if prog.fuse else None
    if twin is not None:
        loss_node, grad_node = sorted((n, twin), key=g.op)
        prog.merged.add(twin)
        return _pair(prog, loss_node, grad_node)
    opdef = OPS[g.op(n)]
    args = g.args(n)
    loss = opdef.loss if isinstance(opdef, RowGradOp) else opdef
    labels, dtype, big = _layout(prog, n, args)
    src = module_header(prog.flavor) + rowloss_kernel(
        "kernel", loss, dtype, labels, isinstance(opdef, RowGradOp), prog.flavor,
        comment=[f"{opdef.name}, {labels} labels"], parallel=big)
    argv = ", ".join(prog.var(a) for a in (*args, n))
    return [prog.comment(n), f"    {prog.kernel(src)}({argv}{_params(loss, g.node(n)['params'])})"]


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


def _pair(prog, loss_node, grad_node) -> list:
    """One kernel for a row loss and its gradient on the same logits and targets."""
    g = prog.graph
    opdef, args = OPS[g.op(loss_node)], g.args(grad_node)
    labels, dtype, big = _layout(prog, grad_node, args)
    total = colsum = None
    if not big:  # the batch loss and the bias gradient on the way
        total, colsum = _absorb(prog, loss_node, "all"), _absorb(prog, grad_node, "rows")
    src = module_header(prog.flavor) + rowloss_kernel(
        "kernel", opdef, dtype, labels, flavor=prog.flavor, parallel=big, both=True,
        comment=[f"{opdef.name} and its gradient, {labels} labels"],
        loss_total=total and total[1], grad_colsum=colsum and colsum[1])
    argv = [prog.var(a) for a in (*args, loss_node, grad_node)]
    argv += [r[2] for r in (total, colsum) if r]
    nodes = [loss_node, grad_node] + [r[0] for r in (total, colsum) if r]
    return [prog.comment(m) for m in nodes] + [
        f"    {prog.kernel(src)}({', '.join(argv)}{_params(opdef, g.node(loss_node)['params'])})"]
