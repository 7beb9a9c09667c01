"""Reverse mode over the graph: a gradient *graph*, symbolic to symbolic.

One loop over the nodes in reverse topological order.  Each node's total
upstream gradient is the sum of its consumers' contributions (fan-out is
summed: ``x*x``, shared weights, skip connections).  A contribution is
"upstream gradient times local gradient": for an elementwise op the derived
op ``<op>.grad<i>`` (SymPy's derivative), for a row loss its checked
gradient, for a structural op its declared transpose.  Broadcasts are
reduced with ``sum_to``.  The result can be listed, differentiated again
and compiled like any graph.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import networkx as nx

from ..display import Displayable
from ..errors import UsageError
from ..graph import Graph
from ..ops import OPS, ElementwiseOp, G, RowOp, StructuralOp


@dataclass(frozen=True, repr=False)  # repr, Jupyter's SVG: symdl.printing.notebook
class GradGraph(Displayable):
    """The forward graph plus gradient nodes; ``grads[w]`` is ``∂loss/∂w`` for
    each requested ``w``, ``totals[n]`` the same for every node on the way."""

    graph: Graph
    loss: str
    grads: dict
    totals: dict

    def __getitem__(self, n: str) -> str:
        return self.grads[n]


def grad(graph: Graph, loss: str, wrt=None, unused: str = "warn") -> GradGraph:
    """Differentiate the scalar node ``loss`` with respect to ``wrt``.

    Parameters
    ----------
    graph : the forward graph (not modified).
    loss : id of a node of shape ``()``.
    wrt : node ids (default: every parameter).
    unused : what to do about a ``wrt`` node the loss does not depend on:
        ``"warn"`` (default), ``"error"`` or ``"ignore"``; its gradient is 0.
    """
    if loss not in graph:
        raise UsageError(f"loss node {loss!r} is not in the graph")
    if not nx.is_directed_acyclic_graph(graph.nx):  # a forged graph; Graph.add never makes one
        cycle = " -> ".join(str(e[0]) for e in nx.find_cycle(graph.nx))
        raise UsageError(f"the graph has a cycle ({cycle}); reverse mode needs a DAG")
    if graph.shape(loss) != ():
        raise UsageError(f"loss {loss} must be a scalar, has shape {graph.shape(loss)}")
    if unused not in ("warn", "error", "ignore"):
        raise UsageError(f"unused must be warn, error or ignore, not {unused!r}")
    wrt = list(graph.params() if wrt is None else wrt)
    for w in wrt:
        if w not in graph:
            raise UsageError(f"cannot differentiate with respect to {w!r}: not in the graph")

    needed = nx.ancestors(graph.nx, loss) | {loss}
    reach = set(wrt)
    for w in wrt:
        reach |= nx.descendants(graph.nx, w)
    live = needed & reach
    gb = _Builder(graph.copy(), live)
    totals = {loss: gb.g.add("fill", name=_dname(gb.g, loss), value=1.0, shape=(),
                                dtype=graph.node(loss)["dtype"])}

    for n in reversed(graph.order()):
        if n not in live or graph.op(n) in ("input", "param"):
            continue
        total = gb.total(n, totals)
        if total is None:
            continue
        for i, (a, contrib) in enumerate(zip(graph.args(n), _vjp(gb, n, total))):
            if a in live and contrib is not None:
                gb.contribute(a, contrib)

    grads = {}
    for w in wrt:
        t = gb.total(w, totals)
        if t is None:
            if unused == "error":
                raise UsageError(f"loss {loss} does not depend on {w}")
            if unused == "warn":
                warnings.warn(f"loss {loss} does not depend on {w}; its gradient is 0", stacklevel=2)
            t = gb.g.add("fill", name=_dname(gb.g, w), value=0.0, shape=graph.shape(w),
                         dtype=graph.node(w)["dtype"])
        grads[w] = t
    keep = list(graph.order()) + list(grads.values())
    pruned = gb.g.subgraph(keep)
    totals = {n: t for n, t in totals.items() if n in graph and t in pruned}
    return GradGraph(pruned, loss, grads, totals)


def _dname(g: Graph, n: str) -> str:
    name = "d" + n
    k = 1
    while name in g:
        k += 1
        name = f"d{n}_{k}"
    return name


class _Builder:
    """Emits gradient nodes with a few algebraic simplifications."""

    def __init__(self, g: Graph, live: set):
        self.g = g
        self.parts: dict = {}
        self.live = live
        self.fresh: set = set()

    def add(self, op, *args, **params):
        node = self.g.add(op, *args, **params)
        self.fresh.add(node)
        return node

    def contribute(self, n, node):
        self.parts.setdefault(n, []).append(node)

    def total(self, n, totals):
        if n in totals:
            return totals[n]
        parts = self.parts.get(n)
        if not parts:
            return None
        for op in sorted({self.g.op(p) for p in parts}):  # declared sum rewrites
            rule = getattr(OPS[op], "combine", None) if op in OPS else None
            if rule is not None and len(parts) > 1:
                parts = rule(self, parts)
        acc = parts[0]
        for p in parts[1:]:
            acc = self.add("add", acc, p)
        totals[n] = self.rename(acc, _dname(self.g, n))
        return totals[n]

    def rename(self, old, new):
        """Give a fresh gradient node its readable name ``d<node>``."""
        if old not in self.fresh or self.g.nx.out_degree(old) > 0:
            return old
        self.fresh.discard(old)
        data = dict(self.g.nx.nodes[old])
        preds = list(self.g.nx.predecessors(old))
        self.g.nx.remove_node(old)
        self.g.nx.add_node(new, **data)
        self.g.nx.add_edges_from((p, new) for p in preds)
        return new

    def emit(self, op, *args, **params):
        """Add a gradient node, after the op's own declared rewrite (``simplify``)."""
        rule = getattr(OPS[op], "simplify", None)
        if rule is not None:
            node = rule(self, args, params)
            if node is not None:
                return node
        return self.add(op, *args, **params)

    def rewritable(self, x) -> bool:
        """``x`` is a gradient node of this pass that nothing reads yet."""
        return x not in self.live and self.g.nx.out_degree(x) == 0


def _vjp(gb: _Builder, n: str, total: str) -> list:
    g = gb.g
    d = g.node(n)
    opdef = OPS[d["op"]]
    args = d["args"]
    if isinstance(opdef, StructuralOp):
        if opdef.vjp is None:
            return [None] * len(args)
        return opdef.vjp(gb.emit, args, [g.shape(a) for a in args], d["params"], total)
    if isinstance(opdef, RowOp):  # its VJP is a row op of (z, operands..., g); operands get none
        for kind, a in zip(opdef.operands, args[1:]):
            # a float operand that depends on a differentiated node would lose its share
            # silently (soft targets from the model; the upstream g of a VJP in second order)
            if a in gb.live and g.node(a)["dtype"].startswith("float"):
                raise UsageError(f"{d['op']} (node {n}) has no gradient with respect to its "
                                 f"{kind} {a}, which depends on a differentiated node")
        dz = gb.add(opdef.grad_op(0).name, *args, total, **d["params"])
        return [dz] + [None] * (len(args) - 1)
    if isinstance(opdef, ElementwiseOp):
        out = []
        for i, a in enumerate(args):
            if a not in gb.live:
                out.append(None)
                continue
            gop = opdef.grad_op(i)
            if gop.expr == 0:  # e.g. the step function: an honest zero gradient
                contrib = gb.add("fill", value=0.0, shape=g.shape(a), dtype=g.node(a)["dtype"])
            elif gop.expr == G:
                contrib = total
            else:
                env = {"y": n, "g": total}
                contrib = gb.add(gop.name, *(env.get(k) or args[k] for k in gop.sources),
                                 **d["params"])
            out.append(gb.emit("sum_to", contrib, shape=g.shape(a)))
        return out
    raise UsageError(f"no gradient rule for op {d['op']} (node {n})")
