"""The tiny worked conv + pool example ``symdl explain --model cnn --numeric`` prints."""
from __future__ import annotations

import numpy as np

from ..backends.trace import numeric_backprop
from ..graph import Graph
from ..nn import Conv2d, MaxPool2d
from ..nn.layers import Activation
from ..printing import chains as pc

__all__ = ["TINY", "tiny_conv_pool", "tiny_rows"]

# a 5×5 image, one 2×2 filter, ReLU, 2×2 max pooling, L = Σ c ⊙ y: every number fits on a line
TINY = {
    "x": np.array([[1, 3, 0, 2, 1], [0, 2, 4, 1, 0], [2, 1, 0, 3, 2], [1, 0, 2, 1, 4],
                   [3, 1, 1, 0, 2]], dtype=float).reshape(1, 1, 5, 5),
    "weight": np.array([[1, -1], [2, 0]], dtype=float).reshape(1, 1, 2, 2),
    "bias": np.array([-1.0]),
    "c": np.array([[1, -2], [3, 1]], dtype=float).reshape(1, 1, 2, 2),
}


def tiny_rows() -> list:
    """Every node's value and ``∂L/∂node`` for :data:`TINY`, from the NumPy backend."""
    g = Graph()
    x = g.input("x", ("N", 1, 5, 5), "float64")
    conv = Conv2d(1, 1, 2, dtype="float64")
    z = conv.build(g, x, prefix="conv.")
    a = Activation("relu").build(g, z, prefix="act.")
    y = MaxPool2d(2).build(g, a, prefix="pool.")
    c = g.input("c", g.shape(y), "float64")
    L = g.add("sum", g.add("mul", c, y, name="cy"), name="L")
    params = {"conv.weight": TINY["weight"], "conv.bias": TINY["bias"]}
    return numeric_backprop(g, L, {"x": TINY["x"], "c": TINY["c"]}, params, flavor="numpy")


def _matrix(v, indent: str) -> list:
    a = np.asarray(v)
    if a.ndim == 0:
        return [f"{indent}{float(a):g}"]
    a = a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(1, -1)
    cells = [[f"{float(e):g}" for e in row] for row in a]
    w = max(len(e) for row in cells for e in row)
    return [indent + "  ".join(e.rjust(w) for e in row) for row in cells]


def tiny_conv_pool(fmt: str = "text") -> str:
    """The worked example as text (matrices, row by row), LaTeX, Markdown or JSON."""
    rows = tiny_rows()
    if fmt == "json":
        return pc.backprop_json(rows)
    if fmt == "latex":
        return pc.backprop_latex(rows)
    out = ["worked backprop on a tiny conv + pool example: a 5×5 image x, one 2×2 filter "
           "(bias −1), ReLU, 2×2 max pooling, L = Σ c ⊙ y",
           "(each array printed as rows of its last axis; the values are the NumPy backend's)"]
    for r in rows:
        out.append(f"{r.node}  ({r.op}, shape {tuple(np.shape(r.value))})")
        out += _matrix(r.value, "    ")
        if r.upstream is not None:
            out.append("  ∂L/∂" + r.node + ":")
            out += _matrix(r.upstream, "    ")
    return "\n".join(out) + "\n"
