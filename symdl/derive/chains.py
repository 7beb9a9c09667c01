"""Graph derivations: the chain rule per parameter, along the graph.

For a parameter ``W`` the derivation lists every path ``W → … → L`` and,
on each edge, the local factor ``∂node/∂arg`` as symdl knows it: SymPy's
derivative of an elementwise op (in terms of the node names), the stated
gradient of a row loss, or the transpose of a structural op.  Data only:
:mod:`symdl.printing.chains` renders it; :func:`symdl.backends.trace.numeric_backprop`
adds the worked numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import sympy as sp

from ..display import Displayable
from ..graph import Graph
from ..ops import OPS, ElementwiseOp, RowOp, Y, sum_axes

__all__ = ["Chain", "Factor", "GraphDerivation", "derive_graph", "local_factor", "sym"]


@dataclass(frozen=True)
class Factor:
    """``∂node/∂arg``: ``kind`` is ``"elementwise"`` (``expr`` is a SymPy
    expression in node symbols, applied with ⊙), ``"left"``/``"right"``
    (multiply by ``operand``), ``"transpose"``, ``"reduce"``, ``"linear"`` (``operand``
    says what the transpose does), ``"rowloss"`` (``expr`` is ``∂loss/∂z_j``) or
    ``"rowop"`` (``expr`` is the VJP in the upstream ``g_j``)."""

    node: str
    arg: str
    op: str
    kind: str
    expr: object = None
    operand: str = ""
    shape: tuple = ()
    note: str = ""


@dataclass(frozen=True)
class Chain:
    """One path from a parameter to the loss, factors from the loss down."""

    param: str
    path: tuple
    factors: tuple


@dataclass(frozen=True, repr=False)  # repr, Jupyter: symdl.printing.notebook
class GraphDerivation(Displayable):
    """Chains for each parameter, with the gradient's shape."""

    loss: str
    chains: dict
    shapes: dict


def sym(node: str) -> sp.Symbol:
    """The SymPy symbol that stands for a node's value."""
    return sp.Symbol(node, real=True)


def local_factor(g: Graph, node: str, i: int) -> Factor:
    d = g.node(node)
    op, args = d["op"], d["args"]
    opdef = OPS[op]
    shape = g.shape(node)
    if isinstance(opdef, ElementwiseOp):
        vals = opdef.param_values(d["params"])
        sub = {s: sym(a) for s, a in zip(opdef.inputs, args)}
        sub.update({s: sp.Float(vals[s.name], 6) for s in opdef.params})
        sub[Y] = sym(node)
        expr = opdef.derivative(i).xreplace(sub)
        summed = sum_axes(g.shape(args[i]), shape) if g.shape(args[i]) != shape else ()
        return Factor(node, args[i], op, "elementwise", expr, operand=str(summed) if summed else "",
                      shape=shape)
    if isinstance(opdef, RowOp):
        stats = "; ".join(f"{s} = {how}_j {sp.sstr(e)}"
                          for s, how, e in opdef.stats + opdef.vjp_stats)
        kind = "rowloss" if opdef.output == "row" else "rowop"
        return Factor(node, args[i], op, kind, opdef.grad, operand=",".join(args[1:]), shape=shape,
                      note=stats)
    kind, operand = opdef.local_factor(args, d["params"], i)  # declared with the op
    return Factor(node, args[i], op, kind, operand=operand, shape=shape, note=opdef.transpose_doc)


def _through_value(g: Graph, a: str, n: str) -> bool:
    """Does ``a`` enter ``n`` as a value argument (not only as integer indices)?"""
    skip = getattr(OPS[g.op(n)], "index_args", ())
    return any(arg == a and i not in skip for i, arg in enumerate(g.args(n)))


def derive_graph(g: Graph, loss: str, params=None) -> GraphDerivation:
    """Every path from each parameter to ``loss``, with its local factors."""
    params = list(g.params() if params is None else params)
    chains, shapes = {}, {}
    for p in params:
        # an integer index (argmax's output feeding gather) carries no gradient: a path that
        # reaches a node only through one of its index arguments is not a chain
        paths = sorted(path for path in nx.all_simple_paths(g.nx, p, loss)
                       if all(_through_value(g, a, n) for a, n in zip(path, path[1:])))
        out = []
        for path in paths:
            factors = []
            for a, n in zip(reversed(path[:-1]), reversed(path[1:])):
                for i, arg in enumerate(g.args(n)):
                    if arg == a:
                        factors.append(local_factor(g, n, i))
                        break
            out.append(Chain(p, tuple(path), tuple(factors)))
        chains[p] = tuple(out)
        shapes[p] = g.shape(p)
    return GraphDerivation(loss, chains, shapes)
