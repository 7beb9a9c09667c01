"""A worked backprop: every node's value and upstream gradient, for one input.

The numbers come from the compiled program itself (unfused, so every value
is kept), so they are exactly what training uses.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..derive import grad
from ..graph import Graph
from .numpy_backend import compile_graph


@dataclass(frozen=True)
class NodeValues:
    """A worked backprop row: a node's value and ``∂L/∂node`` (or None)."""

    node: str
    op: str
    value: object
    upstream: object


def numeric_backprop(g: Graph, loss: str, feeds: dict, params: dict, flavor: str = "auto") -> list:
    """Forward values and upstream gradients at every node for one input,
    computed by the NumPy backend (unfused, so every value is kept); ``flavor``
    ``"numpy"`` skips numba compilation, quicker for one-off small graphs."""
    gg = grad(g, loss)
    outs = [loss, *gg.totals.values()]
    dims = {"N": len(next(iter(feeds.values())))}
    prog = compile_graph(gg.graph, outs + [n for n in g.order()], dict(params), dims, flavor,
                        fuse=False)
    for k, v in feeds.items():
        prog.inputs[k][...] = v
    prog.run()
    rows = []
    for n in g.order():
        up = gg.totals.get(n)
        rows.append(NodeValues(n, g.op(n), prog.value(n).copy(),
                               None if up is None else prog.value(up).copy()))
    return rows
