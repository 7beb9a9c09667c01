"""The graph IR: a ``networkx.DiGraph`` of op applications.

Each node stores ``op``, an ordered ``args`` tuple of node ids, ``params``,
``shape`` and ``dtype``; leaves have ``op`` ``"input"`` or ``"param"``
(``"fill"`` for constants).  Operand order lives on the node, not on the
edges (a DiGraph keeps one edge per pair, and ``x*x`` must still work).
Node ids are readable strings.  Errors (cycles, unknown ops, arity, shapes)
are raised when a node is added, naming the nodes and their shapes.

>>> g = Graph()
>>> x = g.input("x", ("N", 3))
>>> W = g.param("W", (2, 3))
>>> h = g.add("matmul", x, g.add("transpose", W), name="h")
>>> g.shape(h)
('N', 2)
"""
from __future__ import annotations

import hashlib
import json

import networkx as nx

from .display import Displayable
from .errors import UsageError
from .ops import OPS, ElementwiseOp, RowOp, StructuralOp, broadcast_shapes

LEAVES = ("input", "param")


class Graph(Displayable):
    """A builder around ``self.nx``, the ``networkx.DiGraph`` it fills (drawn in Jupyter,
    :mod:`symdl.printing.notebook`)."""

    def __init__(self, nx_graph: nx.DiGraph | None = None):
        self.nx = nx_graph if nx_graph is not None else nx.DiGraph()
        self._counts: dict = {}

    # ------------------------------------------------------------ leaves
    def input(self, name: str, shape, dtype: str = "float32") -> str:
        """A data input; dims may be ints or names (``"N"``, the batch)."""
        return self._leaf("input", name, shape, dtype)

    def param(self, name: str, shape, dtype: str = "float32") -> str:
        """A trainable parameter (concrete shape)."""
        if not all(isinstance(d, int) for d in shape):
            raise UsageError(f"parameter {name} needs a concrete shape, got {tuple(shape)}")
        return self._leaf("param", name, shape, dtype)

    def _leaf(self, kind, name, shape, dtype) -> str:
        self._check_new(name)
        self.nx.add_node(name, op=kind, args=(), params={}, shape=tuple(shape), dtype=dtype)
        return name

    # ------------------------------------------------------------- nodes
    def add(self, op: str, *args: str, name: str | None = None, dtype: str | None = None,
            **params) -> str:
        """Apply ``op`` to existing nodes ``args``; returns the new node's id.
        ``dtype`` is only for nodes without float arguments (constants)."""
        opdef = OPS[op]
        for a in args:
            if a not in self.nx:
                raise UsageError(f"{op}: argument {a!r} is not a node of the graph")
        if len(args) != opdef.arity and not (opdef.arity is None and args):  # None: 1 or more
            raise UsageError(f"{op} takes {opdef.arity} argument(s), got {len(args)}: {', '.join(args)}")
        name = name or self._fresh(op)
        self._check_new(name)
        shapes = [self.shape(a) for a in args]
        shape = infer_shape(opdef, shapes, params, args)
        dtype = dtype or self._dtype(opdef, args, name)
        self.nx.add_node(name, op=op, args=tuple(args), params=dict(params), shape=shape, dtype=dtype)
        for a in args:
            self.nx.add_edge(a, name)
        return name

    def _dtype(self, opdef, args, name) -> str:
        index = getattr(opdef, "index_args", ())  # integer index arguments (gather)
        for i in index:
            if not self.nx.nodes[args[i]]["dtype"].startswith(("int", "uint")):
                raise UsageError(f"{name}: {opdef.name} needs integer indices, "
                                 f"{args[i]} is {self.nx.nodes[args[i]]['dtype']}")
        if getattr(opdef, "out_dtype", None):
            return opdef.out_dtype
        floats = {self.nx.nodes[a]["dtype"] for i, a in enumerate(args) if i not in index
                  and not (isinstance(opdef, RowOp) and opdef.operands[i - 1:i] == ("target",))}
        if len(floats) > 1:
            detail = ", ".join(f"{a} {self.nx.nodes[a]['dtype']}" for a in args)
            raise UsageError(f"{name}: mixed dtypes ({detail}); cast the data to the parameters' dtype")
        return floats.pop() if floats else "float32"

    def _fresh(self, op: str) -> str:
        base = op.replace(".", "_")
        while True:
            self._counts[base] = self._counts.get(base, 0) + 1
            cand = f"{base}{self._counts[base]}"
            if cand not in self.nx:
                return cand

    def _check_new(self, name: str):
        if not isinstance(name, str) or not name:
            raise UsageError(f"node ids are non-empty strings, got {name!r}")
        if name in self.nx:
            raise UsageError(f"node {name!r} already exists (adding it again would make a cycle or a clash)")

    # ----------------------------------------------------------- queries
    def node(self, n: str) -> dict:
        return self.nx.nodes[n]

    def shape(self, n: str) -> tuple:
        return self.nx.nodes[n]["shape"]

    def op(self, n: str) -> str:
        return self.nx.nodes[n]["op"]

    def args(self, n: str) -> tuple:
        return self.nx.nodes[n]["args"]

    def order(self) -> list:
        """Deterministic topological order (lexicographic among ties)."""
        return list(nx.lexicographical_topological_sort(self.nx))

    def params(self) -> list:
        return [n for n in self.order() if self.op(n) == "param"]

    def inputs(self) -> list:
        return [n for n in self.order() if self.op(n) == "input"]

    def consumers(self, n: str) -> list:
        return sorted(self.nx.successors(n))

    def copy(self) -> "Graph":
        g = Graph(self.nx.copy())
        g._counts = dict(self._counts)
        return g

    def subgraph(self, outputs) -> "Graph":
        """The graph restricted to ``outputs`` and everything they need."""
        keep = set(outputs)
        todo = list(keep)
        while todo:  # one walk for all outputs (an ancestors() per output is quadratic)
            for a in self.nx.predecessors(todo.pop()):
                if a not in keep:
                    keep.add(a)
                    todo.append(a)
        g = Graph(self.nx.subgraph(keep).copy())
        g._counts = dict(self._counts)
        return g

    def validate(self) -> None:
        """Re-check acyclicity, ops, arity and shapes of every node."""
        if not nx.is_directed_acyclic_graph(self.nx):
            cycle = " -> ".join(a for a, _ in nx.find_cycle(self.nx))
            raise UsageError(f"graph has a cycle: {cycle}")
        for n in self.order():
            d = self.node(n)
            if d["op"] in LEAVES:
                continue
            opdef = OPS[d["op"]]
            shape = infer_shape(opdef, [self.shape(a) for a in d["args"]], d["params"], d["args"])
            if shape != d["shape"]:
                raise UsageError(f"node {n}: stored shape {d['shape']} but its args give {shape}")

    def fingerprint(self) -> str:
        """SHA-256 of the canonical listing (ops, args, params, shapes)."""
        rows = [[n, d["op"], list(d["args"]), _jsonable(d["params"]), list(d["shape"]), d["dtype"]]
                for n in self.order() for d in [self.node(n)]]
        return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()

    def __contains__(self, n) -> bool:
        return n in self.nx

    def __len__(self) -> int:
        return len(self.nx)


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in sorted(v.items())}
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return v


def _no_outer(op, out, shapes, names) -> tuple:
    """Refuse an elementwise broadcast that repeats a named dimension: (N, 1)
    against (N,) gives (N, N), an outer product (torch's mse_loss warns about
    it; here it is an error, since the loss would be silently wrong)."""
    for d in {d for d in out if isinstance(d, str)}:
        if out.count(d) > max(tuple(s).count(d) for s in shapes):
            given = " and ".join(f"{n} {tuple(s)}" for n, s in zip(names, shapes))
            raise UsageError(f"{op}: {given} broadcast to {tuple(out)}, repeating dimension {d}; "
                             "give both the same shape (e.g. reshape the target to (N, 1))")
    return out


def infer_shape(opdef, shapes, params, names) -> tuple:
    """The output shape of ``opdef`` applied to arguments of ``shapes``."""
    if isinstance(opdef, StructuralOp):
        return tuple(opdef.infer(shapes, params, names=tuple(names)))
    if isinstance(opdef, ElementwiseOp):
        opdef.param_values(params)  # unknown parameter names fail here
        return _no_outer(opdef.name, broadcast_shapes(*shapes, names=names), shapes, names)
    if isinstance(opdef, RowOp):
        return opdef.infer(shapes, params, names)
    raise UsageError(f"op {opdef.name} cannot be applied in a graph")
