"""Universal approximation

Why one hidden layer is enough in principle: two sigmoids make a "tower", a
sum of towers approximates a continuous function, and in two dimensions four
sigmoid neurons and an output sigmoid make a closed tower.  Every curve is a
symdl network (Dense, sigmoid, Dense) with hand-set weights, evaluated by a
compiled symdl graph; the formulas are symdl's parse of the network.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import sympy as sp

from symdl.backends.numpy_backend import compile_graph
from symdl.commands.gallery import figure, num, pyplot, save_figure, section, table
from symdl.derive.parse import parse
from symdl.graph import Graph
from symdl.nn import Activation, Dense, Sequential
from symdl.printing import latex

ORDER = 20
X_SYM = sp.Symbol("x", real=True)
TARGET = sp.sin(2 * sp.pi * X_SYM) + X_SYM / 2  # the function to approximate on [0, 1]


def _run(model: Sequential, X: np.ndarray, out_act: str | None = None) -> np.ndarray:
    """Forward pass of ``model`` (then ``out_act``) on ``X`` by a compiled symdl graph."""
    model.name_parameters()
    g = Graph()
    x = g.input("x", ("N", X.shape[1]), "float64")
    y = model.build(g, x)
    if out_act:
        y = g.add(out_act, y, name="out")
    prog = compile_graph(g, [y], {n: p.data for n, p in model.named_parameters()},
                         {"N": len(X)}, flavor="numpy")
    prog.inputs["x"][...] = X
    prog.run()
    return prog.value(y).copy()


def towers(edges: np.ndarray, heights: np.ndarray, k: float) -> Sequential:
    """1 -> 2n sigmoid -> 1: tower i is h_i (sigma(k(x - a_i)) - sigma(k(x - b_i)))."""
    n = len(heights)
    model = Sequential(Dense(1, 2 * n, dtype="float64"), Activation("sigmoid"),
                       Dense(2 * n, 1, dtype="float64"))
    first, second = model.layers[0], model.layers[2]
    first.W.data[:, 0] = k
    first.b.data[:n], first.b.data[n:] = -k * edges[:-1], -k * edges[1:]
    second.W.data[0, :n], second.W.data[0, n:] = heights, -heights
    second.b.data[:] = 0.0
    return model


def closed_tower(k: float, K: float) -> Sequential:
    """2 -> 4 sigmoid -> 1 (then a sigmoid): a bump over [0.4, 0.6]^2."""
    model = Sequential(Dense(2, 4, dtype="float64"), Activation("sigmoid"), Dense(4, 1, dtype="float64"))
    first, second = model.layers[0], model.layers[2]
    first.W.data[...] = [[k, 0], [-k, 0], [0, k], [0, -k]]
    first.b.data[...] = [-0.4 * k, 0.6 * k, -0.4 * k, 0.6 * k]
    second.W.data[...] = K
    second.b.data[...] = -3.5 * K
    return model


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    plt = pyplot()
    f = sp.lambdify(X_SYM, TARGET, "numpy")
    xs = np.linspace(0, 1, 1001)[:, None]
    fig, (a, b) = plt.subplots(1, 2, figsize=(7.6, 2.8))
    k = 60.0
    single = towers(np.array([0.4, 0.6]), np.array([1.0]), k)
    a.plot(xs, _run(single, xs), color="C0", label="tower")
    a.plot(xs, 1 / (1 + np.exp(-k * (xs - 0.4))), color="0.6", ls="--", lw=1,
           label="its two sigmoids")
    a.plot(xs, 1 / (1 + np.exp(-k * (xs - 0.6))), color="0.6", ls="--", lw=1)
    a.legend(loc="upper left")
    a.set_xlabel("$x$")
    rows = []
    b.plot(xs, f(xs), color="k", lw=2, label="target")
    for n in (5, 10, 20, 50, 200):
        edges = np.linspace(0, 1, n + 1)
        heights = f((edges[:-1] + edges[1:]) / 2)
        kn = 20.0 * n
        approx = _run(towers(edges, heights, kn), xs)
        err = np.abs(approx[:, 0] - f(xs[:, 0]))
        inner = (xs[:, 0] > 0.05) & (xs[:, 0] < 0.95)
        rows.append((f"${n}$", f"${num(2 * n)}$", f"${num(kn)}$", f"${num(float(err[inner].mean()), 3)}$",
                     f"${num(float(err[inner].max()), 3)}$"))
        if n in (5, 20):
            b.plot(xs, approx, label=f"{n} towers")
    b.set_xlabel("$x$")
    b.legend(fontsize=7)
    png = save_figure(fig, out / "approximation-1d.png")
    g2 = np.linspace(0, 1, 101)
    P = np.array([(u, v) for v in g2 for u in g2])
    bump = _run(closed_tower(60.0, 10.0), P, "sigmoid").reshape(len(g2), len(g2))
    fig, ax = plt.subplots(figsize=(3.4, 2.9))
    im = ax.imshow(bump, origin="lower", extent=(0, 1, 0, 1), cmap="viridis")
    fig.colorbar(im, ax=ax)
    ax.set_xlabel("$x$")
    ax.set_ylabel("$y$")
    ax.grid(False)
    png2 = save_figure(fig, out / "approximation-2d.png")
    inside = float(bump[50, 50])
    outside = float(max(bump[0, 0], bump[50, 0], bump[0, 50], bump[100, 100]))
    tower_1d = parse("h*(sigmoid(k*(x - a)) - sigmoid(k*(x - b)))")
    tower_2d = parse("sigmoid(K*(sigmoid(k*(x - a)) + sigmoid(k*(b - x)) + sigmoid(k*(y - c))"
                     " + sigmoid(k*(d - y)) - 7/2))")
    parts = [section("Universal approximation", "approximation"),
             "One hidden layer of sigmoids can approximate any continuous function on a bounded "
             "interval as closely as wanted, given enough units. The construction: two steep "
             "sigmoids with opposite signs make a tower of height $h$ over $[a, b]$,\n"
             f"\\[ T(x) = {latex(tower_1d)}, \\]\n"
             "a network with two hidden units; a sum of towers is a staircase, and narrower "
             f"towers follow the function more closely. Approximating $f(x) = {latex(TARGET)}$ on "
             "$[0, 1]$ with $n$ towers of the height of $f$ at their centres, built as symdl "
             "networks (weights set by hand) and evaluated by compiled graphs; errors away from "
             "the interval's ends, where the outermost sigmoids are only half on:\n",
             table(["towers $n$", "hidden units", "steepness $k$", "mean $|f - \\hat f|$",
                    "max $|f - \\hat f|$"], rows, "rrrrr"),
             figure(png, "Left: a tower from two sigmoids ($k = 60$). Right: the target and sums "
                    "of 5 and 20 towers.", 0.95),
             "In two dimensions four sigmoid neurons (one per side of a square) and a steep output "
             "sigmoid that fires only when all four are on make a closed tower:\n",
             f"\\[ {latex(tower_2d)} \\]\n",
             f"With $k = 60$, $K = 10$ over $[0.4, 0.6]^2$ the network outputs ${num(inside, 3)}$ "
             f"at the centre and at most ${num(outside, 3)}$ at the corners and edges; sums of such "
             "towers approximate continuous functions of two variables the same way.\n",
             figure(png2, "The closed tower of four sigmoid neurons and an output sigmoid, "
                    "computed by a compiled symdl graph.", 0.45)]
    (out / "approximation.tex").write_text("\n".join(parts))
    return {"title": "Universal approximation", "files": ["approximation.tex", png, png2],
            "seeds": [seed]}


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
