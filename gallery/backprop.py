"""Backpropagation

Reverse mode as symdl runs it: the local rules of a dense layer and an
activation, the chain rule per parameter along a graph (derive_graph), a
worked backprop through a 2-2-2 sigmoid network with the backend's numbers
at every node, gradients summed where a value is used twice, the memory that
stored activations cost, and finite differences against the derived gradient.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import sympy as sp

from symdl.backends.numpy_backend import backend_for
from symdl.backends.trace import numeric_backprop
from symdl.commands.gallery import figure, num, pyplot, save_figure, section, table, text
from symdl.derive.chains import derive_graph
from symdl.derive.layers import layer_derivation
from symdl.graph import Graph
from symdl.nn import Parameter, ParamPack, make_model
from symdl.optim import SGD
from symdl.printing import latex
from symdl.printing.chains import factor_latex
from symdl.printing.layers import layer_latex
from symdl.testing import check_grad
from symdl.train import build_training_graph

ORDER = 60
#: the worked example's numbers (inputs, targets, initial parameters)
X0, T0 = np.array([[0.05, 0.10]]), np.array([[0.01, 0.99]])
PARAMS = {"W1": np.array([[0.15, 0.20], [0.25, 0.30]]), "b1": np.array([0.35, 0.35]),
          "W2": np.array([[0.40, 0.45], [0.50, 0.55]]), "b2": np.array([0.60, 0.60])}
ORDERED = ("x", "W1", "b1", "W1t", "xW1t", "z1", "h", "W2", "b2", "W2t", "hW2t", "z2", "o", "y",
           "e", "L")
LR = 0.5


#: each graph node of the worked example as a mathematical quantity (node ids are code names)
SYMBOLS = {"x": "x", "y": "y", "W1": "W_1", "b1": "b_1", "W1t": r"W_1^{\top}",
           "xW1t": r"x W_1^{\top}", "z1": "z_1", "h": "h", "W2": "W_2", "b2": "b_2",
           "W2t": r"W_2^{\top}", "hW2t": r"h W_2^{\top}", "z2": "z_2", "o": "o",
           "e": "e", "L": "L", "w": "w", "u": "u"}


def _tt(name: str) -> str:
    """The quantity node ``name`` holds, as mathematics (products in parentheses)."""
    sym = SYMBOLS[name]
    return f"({sym})" if " " in sym else sym


def _symbols(tex: str) -> str:
    """A printer's LaTeX with node ids (``\\mathtt{hW2t}``) replaced by their quantities."""
    def sub(m):
        name = m.group(1).replace(r"\_", "_")
        return _tt(name) if name in SYMBOLS else m.group(0)
    return re.sub(r"\\(?:mathtt|mathrm|texttt|mathit)\{([^}]*)\}", sub, tex)


def _factor(f) -> str:
    """A local factor in LaTeX: the matrix products with the operand's quantity, the rest
    as symdl's printer gives it (node ids replaced)."""
    sym = _tt(f.operand) if f.kind in ("right", "left") else ""
    sym = f"({sym})" if "^" in sym and not sym.startswith("(") else sym
    if f.kind == "right":
        return r"\cdot\, " + sym + r"^{\top}"
    if f.kind == "left":
        return sym + r"^{\top} \cdot"
    return _symbols(factor_latex(f))  # parenthesises a sum after the ⊙


def _lines(facs: list) -> list:
    """Factors in lines of three, never one left alone on the last line."""
    k = len(facs)
    sizes = [3] * (k // 3) + ([k % 3] if k % 3 else [])
    if len(sizes) > 1 and sizes[-1] == 1:
        sizes[-2:] = [2, 2]
    out, i = [], 0
    for n in sizes:
        out.append(facs[i:i + n])
        i += n
    return out


def network() -> tuple:
    """x -> dense -> sigmoid -> dense -> sigmoid -> squared error, mean: a float64 graph."""
    g = Graph()
    x, y = g.input("x", ("N", 2), "float64"), g.input("y", ("N", 2), "float64")
    W1, b1 = g.param("W1", (2, 2), "float64"), g.param("b1", (2,), "float64")
    W2, b2 = g.param("W2", (2, 2), "float64"), g.param("b2", (2,), "float64")
    z1 = g.add("add", g.add("matmul", x, g.add("transpose", W1, name="W1t"), name="xW1t"), b1,
               name="z1")
    h = g.add("sigmoid", z1, name="h")
    z2 = g.add("add", g.add("matmul", h, g.add("transpose", W2, name="W2t"), name="hW2t"), b2,
               name="z2")
    o = g.add("sigmoid", z2, name="o")
    L = g.add("mean", g.add("mse", o, y, name="e"), name="L")
    return g, L


def _arr(v) -> str:
    a = np.asarray(v, dtype=float)
    if a.ndim == 0:
        return num(float(a))
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 1:
        return "(" + ", ".join(num(float(t)) for t in a) + ")"
    return r"\begin{pmatrix}" + r" \\ ".join(" & ".join(num(float(t)) for t in r) for r in a) \
        + r"\end{pmatrix}"


def _chain_latex(gd) -> str:
    """The chain rule per parameter (paths of one parameter summed), products broken after
    every three factors; then each local factor once, two per row."""
    def dd(a, b):
        return rf"\frac{{\partial {_tt(a)}}}{{\partial {_tt(b)}}}"

    out = [r"\begin{align*}"]
    for p, chains in gd.chains.items():
        for k, ch in enumerate(chains):
            facs = [dd(f.node, f.arg) for f in ch.factors]
            lines = [r" \cdot ".join(chunk) for chunk in _lines(facs)]
            head = (dd(gd.loss, p) + " &= ") if k == 0 else r"&\quad + "
            out.append(head + (r" \\" + "\n" + r"&\qquad \cdot ").join(lines) + r" \\")
    cells, seen = [], set()
    for p, chains in gd.chains.items():
        for ch in chains:
            for f in ch.factors:
                if (f.node, f.arg) in seen:
                    continue
                seen.add((f.node, f.arg))
                body = _factor(f)
                cells.append(f"{dd(f.node, f.arg)} &= {body}")
    for i in range(0, len(cells), 2):
        out.append(" & ".join(cells[i:i + 2]) + r" \\")
    out[-1] = out[-1].removesuffix(r" \\")
    return "\n".join(out + [r"\end{align*}"]) + "\n"


def _diagram(rows: dict, out: Path) -> str:
    plt = pyplot()
    v = {n: np.asarray(r.value, dtype=float) for n, r in rows.items()}
    d = {n: (None if r.upstream is None else np.asarray(r.upstream, dtype=float))
         for n, r in rows.items()}
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.axis("off")
    pos = {(layer, i): (col, 1.0 - 1.2 * i) for col, layer in enumerate("xho") for i in range(2)}
    for layer, W, src in (("h", "W1", "x"), ("o", "W2", "h")):
        for j in range(2):
            for i in range(2):
                (x0, y0), (x1, y1) = pos[(src, i)], pos[(layer, j)]
                ax.plot([x0, x1], [y0, y1], color="0.7", lw=0.9, zorder=1)
                t = 0.25
                ax.text(x0 + t * (x1 - x0), y0 + t * (y1 - y0), f"{v[W][j, i]:.2f}", fontsize=7,
                        ha="center", va="center", color="0.2", zorder=3,
                        bbox=dict(fc="white", ec="0.8", pad=1.0, lw=0.5))
    for (layer, i), (px, py) in pos.items():
        ax.add_patch(plt.Circle((px, py), 0.11, fc="#eeeeee" if layer == "x" else "#dde8f6",
                                ec="0.3", zorder=2))
        ax.text(px, py, f"${layer}_{i + 1}$", ha="center", va="center", fontsize=8, zorder=4)
        if layer == "x":
            label = f"{v['x'][0, i]:.4g}"
        else:
            z = "z1" if layer == "h" else "z2"
            label = (f"$z$ = {v[z][0, i]:.4g}\n${layer}$ = {v[layer][0, i]:.4g}\n"
                     + r"$\partial L/\partial z$ = " + f"{d[z][0, i]:.4g}")
        top = i == 0
        ax.text(px, py + (0.15 if top else -0.15), label, ha="center", va="bottom" if top else "top",
                fontsize=7, color="#1f3b73")
    for i in range(2):
        ax.text(2.22, 1.0 - 1.2 * i, f"target {v['y'][0, i]:.4g}\nsquared error {v['e'][0, i]:.4g}",
                fontsize=7, va="center")
    ax.text(2.22, 0.4, f"$L$ = {float(v['L']):.6g}", fontsize=8, va="center")
    ax.set_xlim(-0.3, 2.85)
    ax.set_ylim(-1.0, 1.65)
    ax.set_aspect("equal")
    png = save_figure(fig, out / "backprop-network.png")
    return figure(png, "The worked example's network: weights on the edges, and at each neuron "
                  r"its pre-activation $z$, its output and the upstream gradient $\partial L/\partial z$, "
                  "as symdl's backend computed them (all values in the table).", 0.7)


def _worked(out: Path) -> str:
    g, L = network()
    rows = {r.node: r for r in numeric_backprop(g, L, {"x": X0, "y": T0}, PARAMS,
                                                flavor="numpy")}
    table_rows = []
    for n in ORDERED:
        r = rows[n]
        up = "" if r.upstream is None else f"${_arr(r.upstream)}$"
        table_rows.append((f"${SYMBOLS[n]}$", r"\texttt{" + text(n) + "}", text(r.op),
                           f"${_arr(r.value)}$", up))
    gd = derive_graph(g, L, ["W2", "W1"])
    params = [Parameter(PARAMS[k].copy(), k) for k in ("W1", "b1", "W2", "b2")]
    ParamPack(params, "float64", backend_for("numpy"))  # one step: nothing worth compiling
    for q in params:
        q.grad[...] = rows[q.name].upstream
    SGD(params, lr=LR).step()
    after = numeric_backprop(g, L, {"x": X0, "y": T0}, {q.name: q.data for q in params},
                             flavor="numpy")
    L1 = float(next(r.value for r in after if r.node == "L"))
    return ("\\subsection*{A worked backprop}\n"
            "A 2-2-2 network with sigmoid units, squared error averaged over the two outputs, one "
            "example. symdl derives the chain rule for each weight along the graph (every path from "
            "the parameter to the loss, local factor by local factor):\n"
            + _chain_latex(gd)
            + "The values below are the backend's own (the compiled program, unfused so every "
            "value is kept): each quantity, the graph node that holds it, its value and its "
            "upstream gradient (the derivative of $L$ with respect to it), which is what the "
            "backward pass multiplies by the local factor above.\n"
            + table(["quantity", "graph node", "op", "value", "upstream gradient"], table_rows,
                    "lllll", "small")
            + f"One step of symdl's SGD with $\\alpha = {num(LR)}$ on these gradients moves the loss "
            f"from ${num(float(rows['L'].value), 6)}$ to ${num(L1, 6)}$.\n" + _diagram(rows, out))


def _fanout() -> str:
    g = Graph()
    x = g.input("x", ("N",), "float64")
    w = g.param("w", (1,), "float64")
    u = g.add("mul", w, x, name="u")
    h = g.add("tanh", u, name="h")
    o = g.add("mul", w, h, name="o")
    L = g.add("sum", o, name="L")
    gd = derive_graph(g, L, ["w"])
    rows = {r.node: r for r in numeric_backprop(g, L, {"x": np.array([0.5])},
                                                {"w": np.array([1.5])}, flavor="numpy")}
    via_o = float(rows["o"].upstream[0] * rows["h"].value[0])
    via_u = float(rows["u"].upstream[0] * rows["x"].value[0])
    paths = ", ".join("$" + r" \to ".join(_tt(n) for n in ch.path) + "$" for ch in gd.chains["w"])
    return ("\\subsection*{A value used twice: gradients add}\n"
            "When a node feeds several others, its gradient is the sum over its consumers. In "
            "$o = w \\tanh(w x)$ the weight $w$ is used twice; derive\\_graph finds "
            f"{num(len(gd.chains['w']))} paths, {paths}:\n" + _chain_latex(gd)
            + f"At $x = {num(float(rows['x'].value[0]))}$, $w = {num(float(rows['w'].value[0]))}$ "
            f"the two paths contribute ${num(via_o)}$ and ${num(via_u)}$, and the backend's "
            f"gradient is their sum, ${num(float(rows['w'].upstream[0]))}$.\n")


def _memory() -> str:
    spec = make_model("mlp", 64, 10, (64, 64), "relu", np.random.default_rng(0))
    g, out, L = build_training_graph(spec.module, 64, spec.loss, spec.loss_params, "float32")
    N = 32
    kept = sum(int(np.prod([N if d == "N" else d for d in g.shape(n)]))
               for n in g.order() if g.op(n) not in ("param", "input", "transpose")
               and "N" in g.shape(n))
    n_par = spec.module.num_parameters()
    return ("\\subsection*{Memory}\nThe backward pass needs the forward values, so training keeps "
            "every activation of the batch until the gradients are done. For the default "
            "64-64-64-10 ReLU MLP and a batch of "
            f"{num(N)} that is ${num(kept)}$ numbers of activations (counted on the training "
            f"graph), against ${num(n_par)}$ parameters: activation memory grows with the batch "
            "size and the depth, parameter memory does not.\n")


def _gradcheck(out: Path) -> str:
    spec = make_model("mlp", 4, 3, (5,), "tanh", np.random.default_rng(0), "float64")
    g, _, L = build_training_graph(spec.module, 4, spec.loss, spec.loss_params, "float64")
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((6, 4)), "y": rng.integers(0, 3, 6)}
    params = {p.name: p.data for p in spec.module.parameters()}
    res = check_grad(g, L, feeds=feeds, params=params, full=True, flavor="numpy")
    eps = np.logspace(-1, -13, 25)
    errs = [check_grad(g, L, feeds=feeds, params=params, eps=float(e), rtol=0.0, atol=np.inf,
                       n_directions=4, flavor="numpy").max_abs_err for e in eps]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 2.8))
    ax.loglog(eps, np.maximum(errs, 1e-18), "o-", ms=3)
    k = int(np.argmin(errs))
    ax.set_xlabel(r"step $\epsilon$")
    ax.set_ylabel(r"max $|$numeric $-$ analytic$|$")
    ax.set_title("central differences against symdl's gradient")
    png = save_figure(fig, out / "backprop-gradcheck.png")
    th, e = sp.symbols("theta epsilon", real=True)
    Lf = sp.Function("L")
    central = (Lf(th + e) - Lf(th - e)) / (2 * e)
    return ("\\subsection*{Numeric against analytic gradients}\n"
            "A finite difference approximates the derivative; SymPy's series of the central "
            "difference shows its truncation error is of order $\\epsilon^2$:\n"
            f"\\[ {latex(central)} = {latex(central.series(e, 0, 4).doit())}. \\]\n"
            "symdl's \\texttt{check\\_grad} compares it with the derived gradient. On a float64 "
            "4-5-3 tanh MLP with softmax cross-entropy and a batch of 6 it checked all "
            f"${num(res.n_checks)}$ parameter entries: largest absolute error "
            f"${num(res.max_abs_err, 2)}$, largest relative error ${num(res.max_rel_err, 2)}$. "
            "Smaller steps are not better: below the best step (here "
            f"$\\epsilon \\approx {num(float(eps[k]), 2)}$) rounding error, of order "
            "$\\text{machine precision}/\\epsilon$, takes over.\n"
            + figure(png, "Largest difference between central differences and symdl's gradient, "
                     "over 4 random directions per parameter, against the step.", 0.6))


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    parts = [section("Backpropagation", "backprop"),
             "The forward pass computes every node from its inputs and keeps the values; the "
             "backward pass visits the nodes in reverse order and multiplies each node's upstream "
             "gradient by its local gradient. symdl states the local rules in matrix notation and "
             "verifies each on an explicit instance ($\\delta$ is the upstream gradient "
             "$\\partial L/\\partial Z$ of the layer's output):\n",
             layer_latex(layer_derivation("dense")), layer_latex(layer_derivation("sigmoid")),
             _worked(out), _fanout(), _memory(), _gradcheck(out)]
    (out / "backprop.tex").write_text("\n".join(parts))
    return {"title": "Backpropagation", "files": ["backprop.tex", "backprop-network.png",
                                                  "backprop-gradcheck.png"], "seeds": [seed]}


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
