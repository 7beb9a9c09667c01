"""A text listing of a graph, one line per node in deterministic order.

    x        : input   (N, 64) float32
    0.xWt    = matmul(x, 0.Wt)              (N, 64)
"""
from __future__ import annotations


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _params(params: dict) -> str:
    if not params:
        return ""
    return "; " + ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))


def graph_listing(g, outputs=None) -> str:
    """The listing of ``g`` (a :class:`symdl.graph.Graph`); ``outputs`` are marked ``*``."""
    order = g.order()
    width = max((len(n) for n in order), default=1)
    marks = set(outputs or ())
    rows = []
    for n in order:
        d = g.node(n)
        star = "*" if n in marks else " "
        if d["op"] in ("input", "param"):
            rows.append(f"{star}{n:<{width}} : {d['op']:<6} {_shape(d['shape'])} {d['dtype']}")
        else:
            call = f"{d['op']}({', '.join(d['args'])}{_params(d['params'])})"
            rows.append(f"{star}{n:<{width}} = {call:<44} {_shape(d['shape'])}")
    return "\n".join(rows) + "\n"
