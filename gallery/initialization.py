"""Initialization

Why the variance of the initial weights matters: the variance rules of
symdl's initializers (Glorot/Xavier and He/Kaiming), printed by running
symdl.nn.init.variance on symbols, checked on drawn weights, and the signal
and gradient variance through a 10-layer network under four initializations,
measured with compiled symdl graphs (forward values and reverse-mode
gradients at every layer).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import sympy as sp

from symdl.backends.numpy_backend import compile_graph
from symdl.commands.gallery import figure, num, pyplot, save_figure, section, table
from symdl.derive import grad
from symdl.nn import Activation, Dense, Sequential, initializer
from symdl.nn.init import variance, xavier_variances
from symdl.printing import latex
from symdl.train import build_training_graph

ORDER = 85
WIDTH, DEPTH, BATCH = 256, 10, 256
INITS = (("small", "$N(0, 0.02^2)$", 0.02), ("xavier_normal", "Xavier", None),
         ("he_normal", "He", None), ("large", "$N(0, 0.2^2)$", 0.2))


def _rules() -> str:
    n_in, n_out = sp.symbols("n_in n_out", positive=True, integer=True)
    xavier = sp.nsimplify(variance("xavier", (n_out, n_in)))
    he = sp.nsimplify(variance("he", (n_out, n_in)))
    rng = np.random.default_rng(0)
    rows = []
    for shape in ((64, 64), (10, 64), (256, 784), (1000, 1000)):
        cells = [f"${shape[0]} \\times {shape[1]}$"]
        for kind in ("xavier", "he"):
            target = variance(kind, shape)
            drawn = initializer(f"{kind}_uniform")(shape, rng, "float64")
            cells += [f"${num(target, 3)}$", f"${num(float(drawn.var()), 3)}$",
                      f"${num(float(np.abs(drawn).max()), 3)}$"]
        rows.append(cells)
    return ("For a weight matrix of shape $n_{\\mathrm{out}} \\times n_{\\mathrm{in}}$, the variance "
            "rules of \\texttt{symdl.nn.init.variance}, evaluated on SymPy symbols:\n"
            f"\\[ \\operatorname{{Var}}_{{\\mathrm{{Xavier}}}} = {latex(xavier)}, \\qquad "
            f"\\operatorname{{Var}}_{{\\mathrm{{He}}}} = {latex(he)}. \\]\n"
            "Xavier (Glorot) balances the forward pass ($1/n_{\\mathrm{in}}$) and the backward "
            "pass ($1/n_{\\mathrm{out}}$) for tanh and sigmoid, which are linear near 0; He "
            "(Kaiming) doubles $1/n_{\\mathrm{in}}$ because ReLU zeroes half of its inputs. "
            "\\texttt{make\\_model} uses He for ReLU-like activations and Xavier otherwise. The "
            "uniform initializers draw from $[-a, a]$ with $a^2/3$ the target variance; drawn by "
            "symdl:\n"
            + table(["shape", "Xavier Var", "drawn Var", r"$\max|w|$", "He Var", "drawn Var",
                     r"$\max|w|$"], rows, "lrrrrrr", "small")
            + _xavier_one_over_n(n_in, n_out))


def _xavier_one_over_n(n_in, n_out) -> str:
    """Xavier's 1/n (forward, backward) beside the compromise 2/(n_in + n_out), computed."""
    forms = xavier_variances((n_out, n_in))
    comp = sp.nsimplify(forms["2/(n_in+n_out)"])
    harmonic = sp.simplify(2 / (1 / forms["1/n_in"] + 1 / forms["1/n_out"]))
    rows = []
    for shape in ((64, 64), (10, 64), (256, 784), (10, 4096)):
        v = xavier_variances(shape)
        rows.append([f"${shape[0]} \\times {shape[1]}$"]
                    + [f"${num(v[k], 3)}$" for k in ("1/n_in", "1/n_out", "2/(n_in+n_out)")])
    return ("Glorot and Bengio start from $\\operatorname{Var}(w) = 1/n$: $n = n_{\\mathrm{in}}$ "
            "keeps the forward signal's variance, $n = n_{\\mathrm{out}}$ the backward gradient's. "
            "Both hold only for square layers; \\texttt{xavier\\_variances} computes the two and "
            f"their compromise ${latex(comp)}$, which SymPy confirms is their harmonic mean "
            + ("(equal)" if sp.simplify(harmonic - comp) == 0 else "(NOT equal)") + ":\n"
            + table(["shape", "$1/n_{\\mathrm{in}}$", "$1/n_{\\mathrm{out}}$",
                     "$2/(n_{\\mathrm{in}} + n_{\\mathrm{out}})$"], rows, "lrrr", "small"))


def _network(act: str, init: str, scale, rng) -> Sequential:
    layers = []
    for _ in range(DEPTH):
        d = Dense(WIDTH, WIDTH, rng, "xavier_normal" if scale else init, dtype="float64")
        if scale:
            d.W.data[...] = scale * rng.standard_normal(d.W.shape)
        layers += [d, Activation(act)]
    layers.append(Dense(WIDTH, 10, rng, dtype="float64"))
    model = Sequential(*layers)
    model.name_parameters()
    return model


def _propagation(out: Path, seed: int) -> tuple:
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(6.0, 4.0), sharex=True)
    rows, ratios = [], {}
    for col, act in enumerate(("tanh", "relu")):
        for init, label, scale in INITS:
            rng = np.random.default_rng(seed)
            model = _network(act, init, scale, rng)
            g, _, L = build_training_graph(model, WIDTH, "softmax_cross_entropy", {}, "float64")
            gg = grad(g, L)
            prog = compile_graph(gg.graph, [L, *gg.totals.values(), *g.order()],
                                 {n: p.data for n, p in model.named_parameters()},
                                 {"N": BATCH}, flavor="numpy", fuse=False)
            prog.inputs["x"][...] = rng.standard_normal((BATCH, WIDTH))
            prog.inputs["y"][...] = rng.integers(0, 10, BATCH)
            prog.run()
            fwd = [float(np.var(prog.value(f"{2 * i + 1}.{act}"))) for i in range(DEPTH)]
            bwd = [float(np.var(prog.value(gg.totals[f"{2 * i}.z"]))) for i in range(DEPTH)]
            layers = np.arange(1, DEPTH + 1)
            axes[0, col].semilogy(layers, np.maximum(fwd, 1e-300), "o-", ms=3, label=label)
            axes[1, col].semilogy(layers, np.maximum(bwd, 1e-300), "o-", ms=3, label=label)
            rows.append((act, label, f"${num(fwd[0], 3)}$", f"${num(fwd[-1], 3)}$",
                         f"${num(bwd[0], 3)}$", f"${num(bwd[-1], 3)}$"))
            ratios[(act, init)] = (fwd[-1] / fwd[0], bwd[0] / bwd[-1])
        axes[0, col].set_title(f"{act}: variance of the activations")
        axes[1, col].set_title(f"{act}: variance of " + r"$\partial L/\partial z$")
        axes[1, col].set_xlabel("layer")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False,
               bbox_to_anchor=(0.5, -0.01))  # below the panels: no curve hidden
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    png = save_figure(fig, out / "initialization.png")
    return png, rows, ratios


def _factor(r: float) -> str:
    return f"${num(r, 2)}$"


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    png, rows, ratios = _propagation(out, seed)
    r = ratios
    parts = [section("Initialization", "initialization"),
             "A layer multiplies the variance of its input by about $n_{\\mathrm{in}}"
             "\\operatorname{Var}(w)$ (times a factor of the activation); through many layers "
             "that factor compounds, so signals and gradients vanish or explode unless it is "
             "close to 1.\n", _rules(),
             "\\subsection*{Signals through ten layers}\n"
             f"{num(DEPTH)} dense layers of width {num(WIDTH)}, a batch of {num(BATCH)} Gaussian "
             "inputs, softmax cross-entropy on random labels; the variances are measured on the "
             "compiled symdl graph's own values and reverse-mode gradients:\n"
             + table(["activation", "weights", "Var $a$, layer 1", f"Var $a$, layer {DEPTH}",
                      "Var $\\partial L/\\partial z$, layer 1",
                      f"Var $\\partial L/\\partial z$, layer {DEPTH}"], rows, "llrrrr", "small")
             + "Reading the table as ratios (last layer over first for the signal, first over "
             "last for the gradient): small weights multiply the tanh signal's variance by "
             f"{_factor(r[('tanh', 'small')][0])} over the ten layers and the gradient reaching "
             f"the first layer by {_factor(r[('tanh', 'small')][1])} (vanishing gradients); large "
             f"weights multiply the ReLU signal by {_factor(r[('relu', 'large')][0])} and its "
             f"gradient by {_factor(r[('relu', 'large')][1])} (exploding), and saturate tanh near "
             f"$\\pm 1$. He keeps the ReLU network's variances within "
             f"{_factor(r[('relu', 'he_normal')][0])} and {_factor(r[('relu', 'he_normal')][1])}; "
             f"Xavier with tanh loses the signal slowly ({_factor(r[('tanh', 'xavier_normal')][0])}), "
             "as tanh's slope is at most 1.\n"
             + figure(png, "Variance of the activations (top) and of the backpropagated gradient "
                      "with respect to each layer's pre-activation (bottom), per layer.", 0.9)]
    (out / "initialization.tex").write_text("\n".join(parts))
    return {"title": "Initialization", "files": ["initialization.tex", png], "seeds": [seed]}


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
