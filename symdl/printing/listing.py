"""A text listing of a graph, one line per node in deterministic order.

    x        : input   (N, 64) float32
    0.xWt    = matmul(x, 0.Wt)              (N, 64)

Outputs are marked ``•``; parameter values print as values (``shape=(N, 1, 8, 8)``,
a mean's scale ``factor=1/N``), not as Python reprs.
"""
from __future__ import annotations

__all__ = ["graph_listing"]


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _value(v) -> str:
    """A parameter value as a reader writes it: tuples without quotes, a mean's
    ``("1/count", shape, axes)`` as ``1/N`` or ``1/(N·8·8)``."""
    if isinstance(v, tuple) and len(v) == 3 and v[0] == "1/count":
        shape, axes = v[1], v[2]
        dims = [shape[a] for a in (range(len(shape)) if axes is None else axes)]
        dims = [str(d) for d in dims if d != 1] or ["1"]
        return "1/" + (dims[0] if len(dims) == 1 else "(" + "·".join(dims) + ")")
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(_value(e) for e in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:g}".replace("-", "−")
    return str(v)


def _params(params: dict) -> str:
    if not params:
        return ""
    return "; " + ", ".join(f"{k}={_value(v)}" for k, v in sorted(params.items()))


def graph_listing(g, outputs=None) -> str:
    """The listing of ``g`` (a :class:`symdl.graph.Graph`); ``outputs`` are marked ``•``."""
    order = g.order()
    width = max((len(n) for n in order), default=1)
    marks = set(outputs or ())
    rows = []
    for n in order:
        d = g.node(n)
        star = "•" if n in marks else " "
        if d["op"] in ("input", "param"):
            rows.append(f"{star}{n:<{width}} : {d['op']:<6} {_shape(d['shape'])} {d['dtype']}")
        else:
            call = f"{d['op']}({', '.join(d['args'])}{_params(d['params'])})"
            rows.append(f"{star}{n:<{width}} = {call:<44} {_shape(d['shape'])}")
    return "\n".join(rows) + "\n"
