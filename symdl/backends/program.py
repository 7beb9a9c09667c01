"""A compiled graph: buffers allocated once, one generated step function.

:class:`Program` is backend-neutral: it plans the units (fusion), binds and
allocates buffers through its backend, asks the backend's lowering table
(:mod:`symdl.backends.lowering`) for the lines of each unit, and runs the
step function those lines make.  Nodes computed from constants alone (the
1/N seed of a mean's gradient) run once, at compile time.  The step
function's source is kept on the program (``source``) and registered in
``linecache``, one line per step with the node it computes as a comment.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import UsageError
from ..graph import LEAVES, Graph
from .loader import exec_source, load_function
from .plan import plan

__all__ = ["Program", "concrete"]


def concrete(shape, dims: dict) -> tuple:
    """``shape`` with its named dimensions (``"N"``) replaced by ``dims``."""
    try:
        return tuple(d if isinstance(d, int) else int(dims[d]) for d in shape)
    except KeyError as e:
        raise UsageError(f"no size given for dimension {e.args[0]!r} of shape {shape}") from None


class Program:
    """A compiled graph.  ``run()`` executes one step; ``inputs`` are the
    input buffers to fill; ``value(n)`` is a node's current array (every
    node's with ``fuse=False``; a value that lives only inside a fused
    kernel has no buffer)."""

    def __init__(self, backend, graph: Graph, outputs, bind=None, dims=None, fuse=True):
        self.backend = backend
        self.table = backend.lowerings
        self.flavor = backend.flavor
        self.graph = graph.subgraph(list(outputs))
        self.outputs = list(outputs)
        self.dims = dict(dims or {})
        g = self.graph
        self.order = g.order()  # one topological sort (it is most of planning a long sequence)
        self.shapes = {n: concrete(g.shape(n), self.dims) for n in self.order}
        self.buffers: dict = {}
        self.kernels: dict = {}
        self._ns: dict = dict(backend.namespace)
        self._names: dict = {}
        self.units = plan(g, self.shapes, self.outputs, fuse, order=self.order)
        self.fuse = fuse
        self._inside = {m for u in self.units if u.fused for m in u.nodes if m not in u.outputs}
        self._single = {u.name for u in self.units if not u.fused} if fuse else set()
        self._bind(dict(bind or {}))
        self.placed: dict = {}  # node -> the node whose buffer holds its value (in place)
        self._place()
        const: set = set()
        for n in self.order:
            if g.op(n) not in LEAVES and all(a in const for a in g.args(n)):
                const.add(n)
        lines, once = ["def step():"], ["def once():"]
        self.merged: set = set()  # units computed inside an earlier unit's kernel
        self.done = set(const)
        for unit in self.units:
            if unit.name in self.merged or (not unit.fused and self._in_place(unit.name)):
                continue
            body = self._emit(unit)
            (once if all(n in const for n in unit.nodes) else lines).extend(body)
            self.done.update(unit.nodes)
            self.done |= self.merged
        for n, arr in self._copy_out.items():
            lines.append(f"    {self.alias(n + '@bound', arr)}[...] = {self.var(n)}")
        self.source = "\n".join(once + ["    return None", ""] + lines + ["    return None", ""])
        exec_source(self.source, self._ns, "step")
        self._ns["once"]()
        self.run = self._ns["step"]
        self.inputs = {n: self.buffers[n] for n in g.inputs()}

    # ----------------------------------------------------------- buffers
    def var(self, n: str) -> str:
        """The step function's name for buffer ``n`` (created on first use)."""
        if n not in self._names:
            base = "b_" + re.sub(r"\W", "_", n)
            name, k = base, 1
            while name in self._ns:
                k += 1
                name = f"{base}_{k}"
            self._names[n] = name
            self._ns[name] = self.buffers[n]
        return self._names[n]

    def alias(self, key: str, array) -> str:
        """Register an extra array (a reshaped view of a buffer) under ``key``."""
        if key not in self.buffers:
            self.buffers[key] = array
        return self.var(key)

    def dtype(self, n: str) -> str:
        return self.graph.node(n)["dtype"]

    def _bind(self, bind: dict):
        g, be = self.graph, self.backend
        for n, arr in bind.items():
            if n not in g:
                continue
            want = (self.shapes[n], g.node(n)["dtype"])
            if not be.matches(arr, *want):
                raise UsageError(f"array bound to {n} is {arr.shape} {arr.dtype}, "
                                 f"the graph needs a contiguous {want[0]} {want[1]}")
        self._copy_out: dict = {}  # bound view nodes: {node: the bound array}
        self._owned: set = set()  # computed nodes with a buffer of their own
        self._bound = set(bind)
        for n in self.order:
            op = g.op(n)
            row = self.table.find(op) if op not in LEAVES and n not in self._inside else None
            made = row.view(self, n) if row is not None and row.view is not None else None
            if n in bind:
                # a view (a weight's gradient as the transpose of a product) is written by no
                # kernel: it keeps its view and is copied into the bound array after each step
                if made is not None:
                    self.buffers[n], self._copy_out[n] = made, bind[n]
                else:
                    self.buffers[n] = bind[n]
                continue
            if n in self._inside:
                continue
            if made is None and op not in LEAVES:
                self._owned.add(n)
            self.buffers[n] = made if made is not None else be.zeros(self.shapes[n], self.dtype(n))

    def _view(self, n: str):
        op = self.graph.op(n)
        row = self.table.find(op) if op not in LEAVES and n not in self._inside else None
        return row.view(self, n) if row is not None and row.view is not None else None

    # ---------------------------------------------------------- in place
    def _place(self):
        """Compute arguments where their consumer wants them.  The backend's
        ``placement(prog, n)`` gives, for a node such as ``concat``, the
        region of its buffer each argument lands in; an argument whose buffer
        is its own (or a full reshape of one) is made that region, so its
        producer writes there and the node itself has nothing left to do (the
        gradient of a sliced sequence is assembled where it is computed).  A
        region that is not contiguous is taken only by the output of a fused
        kernel, which reads and writes strided views."""
        where = getattr(self.table, "placement", None)
        if where is None or not self.fuse:
            return
        g = self.graph
        fused_out = {o for u in self.units if u.fused for o in u.outputs}
        order = self.order
        for n in reversed(order):
            regions = where(self, n) if n in self._owned else None
            for a, region in regions or ():
                root = self._root(a)
                if root is None or root in self.placed or root == n:
                    continue
                view = region.reshape(self.shapes[root])
                if not np.shares_memory(view, region) or not view.flags.c_contiguous and (
                        root != a or root not in fused_out):
                    continue
                self.buffers[root] = view
                self.placed[root] = n
        joined: set = set()
        for again in (False, True):
            if self.placed or joined:  # views of moved buffers follow them
                for n in order:
                    if n in self.buffers and n not in self._owned and n not in self._bound \
                            and n not in joined and g.op(n) not in LEAVES:
                        made = self._view(n)
                        if made is None:  # no longer a view: a buffer of its own
                            made = self.backend.zeros(self.shapes[n], self.dtype(n))
                            self._owned.add(n)
                        self.buffers[n] = made
            if again:
                break
            joined = {n for n in order if n in self._owned and self._join(n, where)}
            if not joined:
                break

    def _join(self, n: str, where) -> bool:
        """Make ``n`` a view of memory its arguments already fill back to back,
        in its order (a stack of the steps' gradients, each computed in place
        in another node's buffer): nothing is copied into it."""
        args, first, mine = self.graph.args(n), self.buffers.get(self.graph.args(n)[0]), \
            self.buffers[n]
        if n in self.placed.values() or n in self.placed or first is None:
            return False
        base = first
        while isinstance(base.base, np.ndarray):
            base = base.base
        if not base.flags.c_contiguous:
            return False
        offset = first.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        try:
            view = np.ndarray(mine.shape, mine.dtype, buffer=base, offset=offset,
                              strides=mine.strides)
        except (TypeError, ValueError):  # past the end of that memory
            return False
        self.buffers[n] = view
        regions = where(self, n)
        if regions and len(regions) == len(args) and all(
                a in self.buffers and _same(self.buffers[a], r) for a, r in regions):
            self._owned.discard(n)
            return True
        self.buffers[n] = mine
        return False

    def _root(self, a: str):
        """The node owning ``a``'s memory when ``a`` is it or a full reshape of it."""
        g = self.graph
        while a not in self._owned:
            args = g.args(a) if g.op(a) not in LEAVES else ()
            if len(args) != 1 or args[0] not in self.buffers or a not in self.buffers:
                return None
            src, mine = self.buffers[args[0]], self.buffers[a]
            if mine.size != src.size or not (mine.flags.c_contiguous and src.flags.c_contiguous) \
                    or not np.shares_memory(mine, src):
                return None
            a = args[0]
        return a

    def _in_place(self, n: str) -> bool:
        """Every argument of ``n`` is already computed in its place."""
        where = getattr(self.table, "placement", None)
        regions = where(self, n) if where is not None and n in self.buffers else None
        if not regions or len(regions) != len(self.graph.args(n)):
            return False
        return all(_same(self.buffers[a], r) for a, r in regions)

    def value(self, n: str):
        """The buffer holding node ``n``'s value."""
        if n in self._inside:
            raise UsageError(f"node {n} is computed inside a fused kernel and has no buffer; "
                             "compile with fuse=False to keep every value")
        return self.buffers[n]

    # ------------------------------------------------------------- steps
    def _emit(self, unit) -> list:
        if unit.fused:
            return self.table.fused(self, unit)
        n = unit.name
        op = self.graph.op(n)
        if op in LEAVES:
            return []
        return self.table[op].emit(self, n)

    def comment(self, n: str) -> str:
        g = self.graph
        return f"    # {n} = {g.op(n)}({', '.join(g.args(n))})"

    def kernel(self, lines: list) -> str:
        """Load generated kernel source; returns its name in the step function.
        Its node-naming comment lines are left out (the step function has them),
        so kernels of the same maths, one per step of an unrolled sequence,
        share one source and numba compiles it once."""
        fn = load_function("\n".join(ln for k, ln in enumerate(lines)
                                     if k == 0 or not ln.startswith("# ")))
        name = f"k{len(self.kernels)}"
        self.kernels[name] = fn
        self._ns[name] = fn
        return name

    def reducer_of(self, n: str, how: str = "rows"):
        """A single-node ``sum``/``mean``/``sum_to`` unit over the leading axis
        of ``n`` (``how``: as the table's ``absorbable`` reads it) that the kernel
        producing ``n`` may compute on the way: ``(node, mean)``, else None.
        The caller marks it merged."""
        g = self.graph
        for c in g.consumers(n):
            if c not in self._single or c in self.merged:
                continue
            kind = self.table.absorbable(self, c, how)
            if kind is not None:
                return c, kind
        return None


def _same(a, b) -> bool:
    """``a`` and ``b`` are the same view of the same memory."""
    return (a.shape == b.shape and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])
