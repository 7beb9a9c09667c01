"""The NumPy backend: a graph compiled into one generated step function.

Buffers are allocated once per program (per batch size) and reused every
step; views (transposes, reshapes) are taken once, at compile time.
Matrix products go to BLAS with ``out=``; fused elementwise groups and row
losses run as generated kernels (numba loops, or the NumPy reference).  The
step function's source is kept on the program and registered in
``linecache``, one line per step with the node it computes as a comment.
"""
from __future__ import annotations

import re

import numpy as np
import sympy as sp

from ..codegen.kernels import (KernelInput, elementwise_kernel, module_header, reduction_kernel,
                               rowloss_kernel)
from ..errors import UsageError
from ..graph import Graph
from ..ops import OPS, G, RowGradOp, RowLossOp, Y
from ..ops.structural import count, sum_axes
from .loader import exec_source, load_function, numba_available
from .plan import plan

PARALLEL_MIN = 1 << 16  # elements; below this a serial loop beats starting threads


def concrete(shape, dims: dict) -> tuple:
    try:
        return tuple(d if isinstance(d, int) else int(dims[d]) for d in shape)
    except KeyError as e:
        raise UsageError(f"no size given for dimension {e.args[0]!r} of shape {shape}") from None


def layout(shape, out_shape) -> str | None:
    """How an input of ``shape`` is indexed inside an ``out_shape`` loop."""
    if tuple(shape) == tuple(out_shape):
        return "full"
    if int(np.prod(shape)) == 1:
        return "scalar"
    pad = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    if len(out_shape) and pad[-1] == out_shape[-1] and all(d == 1 for d in pad[:-1]):
        return "row"
    if len(out_shape) and pad[-1] == 1 and pad[:-1] == tuple(out_shape[:-1]):
        return "col"
    return None


def as2d(a: np.ndarray, how: str) -> np.ndarray:
    if how in ("row", "col", "scalar"):
        return a.reshape(-1)
    return a.reshape(1, -1) if a.ndim < 2 else a.reshape(-1, a.shape[-1])


class Program:
    """A compiled graph.  ``run()`` executes one step; ``inputs`` are the
    input buffers to fill; ``value(n)`` is a node's current array (every
    node's with ``fuse=False``; a value that lives only inside a fused
    kernel has no buffer)."""

    def __init__(self, graph: Graph, outputs, bind=None, dims=None, flavor="auto", fuse=True):
        self.graph = graph.subgraph(list(outputs))
        self.outputs = list(outputs)
        self.flavor = ("numba" if numba_available() else "numpy") if flavor == "auto" else flavor
        self.dims = dict(dims or {})
        g = self.graph
        self.shapes = {n: concrete(g.shape(n), self.dims) for n in g.order()}
        self.buffers: dict = {}
        self.kernels: dict = {}
        self._ns: dict = {"np": np}
        self._names: dict = {}
        units = plan(g, self.shapes, self.outputs, fuse)
        self._inside = {m for u in units if u.fused for m in u.nodes if m not in u.outputs}
        self._bind(dict(bind or {}))
        # nodes computed from constants alone (the 1/N seed of a mean's
        # gradient) are computed once, here, not every step
        const: set = set()
        for n in g.order():
            if g.op(n) == "fill" or (g.op(n) not in ("input", "param") and g.args(n)
                                     and all(a in const for a in g.args(n))):
                const.add(n)
        lines, once = ["def step():"], ["def once():"]
        self._single = {u.name for u in units if not u.fused} if fuse else set()
        twins = _rowloss_twins(g, units) if fuse else {}
        done = set(const)
        self._merged: set = set()  # units computed inside an earlier kernel
        for unit in units:
            if unit.name in self._merged:
                continue
            twin = twins.get(unit.name)
            if twin is not None and all(a in done for u in (unit.name, twin) for a in g.args(u)):
                lines += self._emit_rowloss_pair(*sorted((unit.name, twin), key=g.op))
                self._merged.add(twin)
                done |= {unit.name, twin} | self._merged
                continue
            (once if all(n in const for n in unit.nodes) else lines).extend(self._emit(unit))
            done.update(unit.nodes)
            done |= self._merged
        self.source = "\n".join(once + ["    return None", ""] + lines + ["    return None", ""])
        exec_source(self.source, self._ns, "step")
        self._ns["once"]()
        self.run = self._ns["step"]
        self.inputs = {n: self.buffers[n] for n in g.inputs()}

    # ----------------------------------------------------------- buffers
    def _var(self, n: str) -> str:
        if n not in self._names:
            base = "b_" + re.sub(r"\W", "_", n)
            name, k = base, 1
            while name in self._ns:
                k += 1
                name = f"{base}_{k}"
            self._names[n] = name
            self._ns[name] = self.buffers[n]
        return self._names[n]

    def _bind(self, bind: dict):
        g = self.graph
        for n, arr in bind.items():
            if n not in g:
                continue
            want = (self.shapes[n], np.dtype(g.node(n)["dtype"]))
            if (arr.shape, arr.dtype) != want or not arr.flags.c_contiguous:
                raise UsageError(f"array bound to {n} is {arr.shape} {arr.dtype}, "
                                 f"the graph needs a contiguous {want[0]} {want[1]}")
        for n in g.order():
            d = g.node(n)
            if n in bind:
                self.buffers[n] = bind[n]
            elif n in self._inside:
                continue
            elif d["op"] == "fill":
                self.buffers[n] = np.full(self.shapes[n], d["params"].get("value", 0.0), d["dtype"])
            elif d["op"] == "transpose":
                self.buffers[n] = np.transpose(self.buffers[d["args"][0]], d["params"].get("axes"))
            elif d["op"] == "reshape" and self.buffers[d["args"][0]].flags.c_contiguous:
                self.buffers[n] = self.buffers[d["args"][0]].reshape(self.shapes[n])
            else:
                self.buffers[n] = np.zeros(self.shapes[n], d["dtype"])

    def value(self, n: str) -> np.ndarray:
        if n in self._inside:
            raise UsageError(f"node {n} is computed inside a fused kernel and has no buffer; "
                             "compile with fuse=False to keep every value")
        return self.buffers[n]

    # ------------------------------------------------------------- steps
    def _emit(self, unit) -> list:
        g = self.graph
        if unit.fused:
            return self._emit_fused(unit)
        n = unit.name
        d = g.node(n)
        op, args, p = d["op"], d["args"], d["params"]
        b = self._var
        comment = f"    # {n} = {op}({', '.join(args)})"
        if op in ("input", "param", "fill", "transpose") or (
                op == "reshape" and np.shares_memory(self.buffers[n], self.buffers[args[0]])):
            return []
        if op == "reshape":
            return [comment, f"    np.copyto({b(n)}, {b(args[0])}.reshape({self.shapes[n]}))"]
        if op == "matmul":
            return [comment, f"    np.matmul({b(args[0])}, {b(args[1])}, out={b(n)})"]
        if op in ("sum", "mean", "sum_to"):
            src = self.shapes[args[0]]
            axes = self._reduced_axes(n)
            kept = tuple(s for i, s in enumerate(src) if i not in {a % len(src) for a in axes})
            view = f"{b(n)}" if kept == self.shapes[n] else self._view(n, kept)
            fast = self._fast_reduction(n, args[0], axes, src, op == "mean", view)
            if fast:
                return [comment, fast]
            fn = "np.mean" if op == "mean" else "np.sum"
            return [comment, f"    {fn}({b(args[0])}, axis={axes}, out={view})"]
        opdef = OPS[op]
        if isinstance(opdef, (RowLossOp, RowGradOp)):
            return [comment] + self._emit_rowloss(n, opdef, args, p)
        raise UsageError(f"the NumPy backend cannot run op {op} (node {n})")

    def _reduced_axes(self, n: str) -> tuple:
        """The axes a ``sum``, ``mean`` or ``sum_to`` node reduces over."""
        d = self.graph.node(n)
        src = self.shapes[d["args"][0]]
        if d["op"] == "sum_to":
            return sum_axes(self.shapes[n], src)
        axes = d["params"].get("axes")
        return tuple(range(len(src))) if axes is None else axes

    def _fast_reduction(self, n, arg, axes, src, mean, view) -> str | None:
        """A generated loop for the reductions training does every step (bias
        gradients, the batch mean): NumPy's call overhead dominates at these sizes."""
        x = self.buffers[arg]
        if self.flavor != "numba" or not x.flags.c_contiguous or x.dtype.kind != "f":
            return None
        if len(src) == 2 and tuple(axes) == (0,) and src[0] >= 1:
            how = "rows"
        elif len(src) == 1 and tuple(axes) == (0,) and src[0] >= 1:
            how = "all"
        else:
            return None
        lines = module_header("numba") + reduction_kernel(
            "kernel", how, x.dtype.name, mean, [f"{'mean' if mean else 'sum'} over {how}"])
        return f"    {self._kernel(lines)}({self._var(arg)}, {view})"

    def _view(self, n, shape) -> str:
        key = f"{n}@view{len(shape)}"
        self.buffers[key] = self.buffers[n].reshape(shape)
        return self._var(key)

    def _emit_rowloss(self, n, opdef, args, p) -> list:
        loss = opdef.loss if isinstance(opdef, RowGradOp) else opdef
        grad = isinstance(opdef, RowGradOp)
        labels, dtype, big = self._rowloss_layout(n, args)
        src = module_header(self.flavor) + rowloss_kernel(
            "kernel", loss, dtype, labels, grad, self.flavor, comment=[f"{opdef.name}, {labels} labels"],
            parallel=big)
        kname = self._kernel(src)
        vals = loss.param_values(p)
        params = "".join(f", {vals[s.name]!r}" for s in loss.params)
        return [f"    {kname}({', '.join(self._var(a) for a in args)}, {self._var(n)}{params})"]

    def _rowloss_layout(self, n, args) -> tuple:
        """``(labels, dtype, parallel)`` of a row-loss kernel on logits ``args[0]``."""
        labels = "index" if len(self.shapes[args[1]]) == 1 else "dense"
        if labels == "index" and self.graph.node(args[1])["dtype"] != "int64":
            raise UsageError(f"{n}: class labels {args[1]} must be int64")
        big = int(np.prod(self.shapes[args[0]])) >= PARALLEL_MIN
        return labels, self.graph.node(args[0])["dtype"], big

    def _emit_rowloss_pair(self, loss_node, grad_node) -> list:
        """One kernel for a row loss and its gradient on the same logits and
        targets: the row statistics (max, sum of exponentials) are computed once."""
        g = self.graph
        opdef, args = OPS[g.op(loss_node)], g.args(grad_node)
        labels, dtype, big = self._rowloss_layout(grad_node, args)
        total = colsum = None
        if not big:  # the batch loss and the bias gradient on the way
            total, colsum = self._absorb(loss_node, "all"), self._absorb(grad_node, "rows")
        src = module_header(self.flavor) + rowloss_kernel(
            "kernel", opdef, dtype, labels, flavor=self.flavor, parallel=big, both=True,
            comment=[f"{opdef.name} and its gradient, {labels} labels"],
            loss_total=total and total[1], grad_colsum=colsum and colsum[1])
        vals = opdef.param_values(g.node(loss_node)["params"])
        params = "".join(f", {vals[s.name]!r}" for s in opdef.params)
        argv = [self._var(a) for a in (*args, loss_node, grad_node)]
        argv += [r[2] for r in (total, colsum) if r]
        nodes = [loss_node, grad_node] + [r[0] for r in (total, colsum) if r]
        return [f"    # {n} = {g.op(n)}({', '.join(g.args(n))})" for n in nodes] + [
            f"    {self._kernel(src)}({', '.join(argv)}{params})"]

    def _absorb(self, n: str, how: str):
        """A reduction of ``n`` alone (over rows of a 2-D ``n``: ``how="rows"``,
        or all of a 1-D one: ``"all"``) that the kernel producing ``n`` can
        compute on the way: ``(node, "sum" | "mean", view)``, marked as merged;
        else None.  numba only (the reduction's order is the fast path's)."""
        g = self.graph
        src = self.shapes[n]
        if self.flavor != "numba" or len(src) != (2 if how == "rows" else 1) or 0 in src:
            return None
        for c in g.consumers(n):
            op = g.op(c)
            if c not in self._single or c in self._merged or op not in ("sum", "mean", "sum_to"):
                continue
            if tuple(a % len(src) for a in self._reduced_axes(c)) != (0,):
                continue
            kept = src[1:]
            view = self._var(c) if kept == self.shapes[c] else self._view(c, kept)
            self._merged.add(c)
            return c, "mean" if op == "mean" else "sum", view
        return None

    def _kernel(self, lines: list) -> str:
        fn = load_function("\n".join(lines))
        name = f"k{len(self.kernels)}"
        self.kernels[name] = fn
        self._ns[name] = fn
        return name

    def _emit_fused(self, unit) -> list:
        g = self.graph
        inside = set(unit.nodes)
        out_shape = self.shapes[unit.outputs[0]]
        ext: dict = {}      # outside node -> symbol
        params: list = []   # (symbol, value)
        expr: dict = {}
        for n in unit.nodes:
            d = g.node(n)
            argx = []
            for a in d["args"]:
                if a in inside:
                    argx.append(expr[a])
                else:
                    ext.setdefault(a, sp.Symbol(f"v{len(ext)}", real=True))
                    argx.append(ext[a])
            expr[n] = self._node_expr(n, d, argx, params)
        layouts = [layout(self.shapes[a], out_shape) for a in ext]
        flavor = self.flavor if None not in layouts else "numpy"
        inputs = [KernelInput(s, lay or "full") for s, lay in zip(ext.values(), layouts)]
        size = int(np.prod(out_shape))
        parallel = size >= PARALLEL_MIN
        sums = [] if flavor != "numba" or parallel else [
            (k, r) for k, o in enumerate(unit.outputs) if (r := self._absorb(o, "rows"))]
        comment = [f"{n} = {g.op(n)}({', '.join(g.args(n))})"
                   for n in unit.nodes + [r[0] for _, r in sums]]
        src = module_header(flavor) + elementwise_kernel(
            "kernel", inputs, [s for s, _ in params], [expr[o] for o in unit.outputs],
            g.node(unit.outputs[0])["dtype"], flavor, parallel, comment,
            colsums=tuple((k, r[1] == "mean") for k, r in sums))
        kname = self._kernel(src)
        if flavor == "numba":
            argv = [self._var2d(a, lay) for a, lay in zip(ext, layouts)]
            argv += [self._var2d(o, "full") for o in unit.outputs] + [r[2] for _, r in sums]
        else:
            argv = [self._var(a) for a in ext] + [self._var(o) for o in unit.outputs]
        argv += [repr(v) for _, v in params]
        return [f"    # {c}" for c in comment] + [f"    {kname}({', '.join(argv)})"]

    def _var2d(self, n, how) -> str:
        key = f"{n}@2d{how}"
        if key not in self.buffers:
            self.buffers[key] = as2d(self.buffers[n], how)
        return self._var(key)

    def _node_expr(self, n, d, argx, params):
        op = d["op"]
        if op == "broadcast_to":
            return argx[0]
        if op == "scale":
            f = d["params"]["factor"]
            if isinstance(f, tuple):  # a mean's 1/count, on concrete shapes
                f = 1.0 / count(concrete(f[1], self.dims), f[2])
            return argx[0] * sp.Float(float(f), 17)
        opdef = OPS[op]
        vals = opdef.param_values(d["params"])
        sub = dict(zip(opdef.inputs, argx))
        for sym in opdef.params:
            psym = sp.Symbol(f"p{len(params)}", real=True)
            params.append((psym, vals[sym.name]))
            sub[sym] = psym
        return opdef.kernel_expr.xreplace(sub)


def _rowloss_twins(g: Graph, units) -> dict:
    """``{node: twin}`` for each row loss whose gradient (same logits, targets
    and parameters) is also computed, both ways round."""
    def opdef(n):
        return OPS.get(g.op(n)) if g.op(n) not in ("input", "param") else None

    def key(n, loss):
        return (loss.name, g.args(n)[:2], repr(sorted(g.node(n)["params"].items())))

    single = [u.name for u in units if not u.fused]
    losses = {key(n, opdef(n)): n for n in single if isinstance(opdef(n), RowLossOp)}
    twins = {}
    for n in single:
        if isinstance(opdef(n), RowGradOp) and key(n, opdef(n).loss) in losses:
            twins[n] = losses[key(n, opdef(n).loss)]
            twins[twins[n]] = n
    return twins


def compile_graph(graph: Graph, outputs, bind=None, dims=None, flavor="auto", fuse=True) -> Program:
    """Compile ``graph`` to a :class:`Program` computing ``outputs``; with
    ``fuse=False`` every node keeps its value (for diagnostics)."""
    return Program(graph, outputs, bind, dims, flavor, fuse)


__all__ = ["Program", "compile_graph", "G", "Y"]
