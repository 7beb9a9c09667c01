"""Second order, symbolically: the Hessian-vector product as a graph.

``H v`` for a scalar loss ``L`` and nodes ``w`` is the gradient of the
scalar ``⟨∇_w L, v⟩`` with ``v`` a new input node per ``w`` (Pearlmutter's
trick, reverse over reverse): two passes of :func:`symdl.derive.grad`, so
every rule is the first pass's rule differentiated again (``tanh.grad0``
has its own gradient ``tanh.grad0.grad0``, derived by SymPy).  The Hessian
itself is ``H e_i`` for each unit vector ``e_i``, one row per run of the
same compiled graph (see :mod:`symdl.backends.hessian`).

>>> from symdl.graph import Graph
>>> g = Graph()
>>> w = g.param("w", (3,), "float64")
>>> L = g.add("sum", g.add("tanh", w), name="L")
>>> hv = hvp_graph(g, L, [w])
>>> hv.vectors, g.shape(w) == hv.graph.shape(hv.products[w])
({'w': 'v_w'}, True)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..display import Displayable
from ..errors import UsageError
from ..graph import Graph
from .reverse import grad

__all__ = ["HVPGraph", "hvp_graph"]


@dataclass(frozen=True, repr=False)  # repr, Jupyter's SVG: symdl.printing.notebook
class HVPGraph(Displayable):
    """A graph computing ``H v``.

    Attributes
    ----------
    graph : the forward graph, its gradient and the gradient of ``⟨∇L, v⟩``.
    loss : the loss node.
    wrt : the differentiated nodes, in order.
    vectors : ``{w: v}``, the input node holding ``w``'s part of ``v``.
    grads : ``{w: ∂L/∂w}`` (first order).
    inner : the scalar node ``⟨∇L, v⟩``.
    products : ``{w: (H v)_w}``.
    """

    graph: Graph
    loss: str
    wrt: tuple
    vectors: dict
    grads: dict
    inner: str
    products: dict


def hvp_graph(graph: Graph, loss: str, wrt=None, unused: str = "warn") -> HVPGraph:
    """The Hessian-vector product of ``loss`` with respect to ``wrt`` as a graph.

    Parameters
    ----------
    graph : the forward graph (not modified).
    loss : a scalar node.
    wrt : node ids (default: every parameter); float nodes.
    unused : passed to the first :func:`grad` (a ``wrt`` node the loss does
        not depend on has gradient 0 and a zero product).

    Notes
    -----
    A loss linear in some ``w`` has a first gradient that does not depend on
    it: its product is an honest zero, so the second pass never warns.
    """
    wrt = tuple(graph.params() if wrt is None else ([wrt] if isinstance(wrt, str) else wrt))
    if not wrt:
        raise UsageError("hvp needs at least one node to differentiate with respect to")
    if len(set(wrt)) != len(wrt):
        raise UsageError(f"wrt names a node twice: {', '.join(wrt)}")
    for w in wrt:
        if w in graph and not graph.node(w)["dtype"].startswith("float"):
            raise UsageError(f"cannot differentiate with respect to {w}: it is "
                             f"{graph.node(w)['dtype']}, not a float node")
    first = grad(graph, loss, list(wrt), unused=unused)
    g = first.graph
    vectors, terms = {}, []
    for w in wrt:
        v = g.input(_fresh(g, f"v_{w}"), graph.shape(w), graph.node(w)["dtype"])
        vectors[w] = v
        terms.append(g.add("sum", g.add("mul", first.grads[w], v)))
    inner = terms[0]
    for t in terms[1:]:
        inner = g.add("add", inner, t)
    second = grad(g, inner, list(wrt), unused="ignore")
    return HVPGraph(second.graph, loss, wrt, vectors, dict(first.grads), inner,
                    dict(second.grads))


def _fresh(g: Graph, name: str) -> str:
    out, k = name, 1
    while out in g:
        k += 1
        out = f"{name}_{k}"
    return out
