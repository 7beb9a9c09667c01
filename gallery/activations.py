"""Activations

Each activation of symdl's op registry: its declaration, its derivative as
symdl derives it (every step checked by SymPy), the derivative in terms of
the output where the registry states one, numbers at the interesting points
and a plot of both, evaluated by a compiled symdl graph (forward node and
reverse-mode gradient).  Then the softmax Jacobian and a dying-ReLU run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import sympy as sp

from symdl.commands.gallery import evaluate, figure, fit, num, pct, pyplot, save_figure, section, \
    table, text
from symdl.data import load_digits
from symdl.derive.layers import layer_derivation
from symdl.derive.steps import derive
from symdl.graph import Graph
from symdl.nn import Sequential, make_model
from symdl.ops import OPS, Y
from symdl.optim import SGD
from symdl.printing import latex
from symdl.printing.layers import layer_latex
from symdl.train import Trainer

ORDER = 40
#: the activations of the notes, in reading order (all declared in the registry)
ACTIVATIONS = ("identity", "step", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus",
               "gelu", "silu", "softsign")
NAMES = {"identity": "linear (identity)", "step": "step (Heaviside)", "sigmoid": "sigmoid",
         "tanh": "tanh", "relu": "ReLU", "leaky_relu": "leaky ReLU", "elu": "ELU",
         "softplus": "softplus", "gelu": "GELU", "silu": "SiLU (swish)", "softsign": "softsign"}
Z = sp.Symbol("z", real=True)
GRID = np.linspace(-6.0, 6.0, 1201)  # includes 0 exactly (index 600)


def _block(name: str) -> tuple:
    """LaTeX of one activation: definition, derived derivative, output form; the numbers."""
    op = OPS[name]
    (x,) = op.inputs
    call = derive(f"{name}(z)")          # the op call, as the printer names it
    dv = derive(op.expr.xreplace({x: Z}), Z)  # the declaration, differentiated rule by rule
    lhs, dlhs = latex(call.input), latex(call.start)
    definition = latex(op.expr.xreplace({x: Z}))
    rows = [rf"{lhs} &= {definition}"] if definition != lhs else []
    rows.append(rf"{dlhs} &= {latex(dv.result)} && \text{{{len(dv.steps)} rule steps, "
                + ("all verified" if dv.all_verified else "NOT verified") + "}")
    form = op.grad_forms.get(0)
    if form is not None and Y in form.free_symbols:
        y = sp.Symbol("y", real=True)
        rows.append(rf"&= {latex(form.xreplace({Y: y}))} && \text{{with }} y = {lhs}")
    params = ", ".join(f"${latex(s)} = {num(v)}$" for s, v in op.params.items())
    tex = [rf"\subsection*{{{text(NAMES[name])}}}",
           r"\begin{align*}", " \\\\\n".join(rows), r"\end{align*}"]
    if params:
        tex.append(f"Default parameter: {params} (the registry's).")
    f, df = evaluate(name, GRID)
    top = np.flatnonzero(df >= df.max() - 1e-12)
    where = num(float(GRID[top[0]])) if len(top) == 1 else \
        f"[{num(float(GRID[top[0]]))}, {num(float(GRID[top[-1]]))}]"
    zero = int(np.flatnonzero(GRID == 0.0)[0])
    numbers = [num(float(f[zero])), num(float(df[zero])), num(float(df.max())), where,
               num(float(df[0])), num(float(df[-1]))]
    return "\n".join(tex) + "\n", f, df, numbers


def _softmax_check(seed: int) -> str:
    """softmax's Jacobian diag(s) - s s^T against finite differences, both from symdl graphs."""
    z = np.array([1.0, 2.0, 3.0])

    def probs(v):  # the gradient of CE w.r.t. the logits is s - onehot(label 0): s = grad + e_0
        g = Graph()
        zz, yy = g.input("z", ("N", 3), "float64"), g.input("y", ("N",), "int64")
        L = g.add("sum", g.add("softmax_cross_entropy", zz, yy, name="ce"), name="L")
        from symdl.backends.numpy_backend import compile_graph
        from symdl.derive import grad
        gg = grad(g, L, wrt=["z"])
        prog = compile_graph(gg.graph, [gg.grads["z"]], dims={"N": 1}, flavor="numpy")
        prog.inputs["z"][...] = v
        prog.inputs["y"][...] = 0
        prog.run()
        return prog.value(gg.grads["z"])[0] + np.eye(3)[0]

    s = probs(z)
    J = np.diag(s) - np.outer(s, s)  # the rule the layer derivation states and verifies
    eps = 1e-6
    fd = np.stack([(probs(z + eps * e) - probs(z - eps * e)) / (2 * eps) for e in np.eye(3)], 1)
    err = float(np.max(np.abs(J - fd)))
    mat = r"\begin{pmatrix}" + r" \\ ".join(" & ".join(num(v, 3) for v in row) for row in J) \
        + r"\end{pmatrix}"
    return (f"For $z = ({', '.join(num(v) for v in z)})$ symdl's softmax gives "
            f"$s = ({', '.join(num(v) for v in s)})$ and\n"
            rf"\[ \operatorname{{diag}}(s) - s s^{{\top}} = {mat}, \]"
            f"\nwhose rows sum to zero (probabilities stay normalised; largest row sum in floating "
            f"point ${num(float(np.abs(J.sum(1)).max()), 2)}$); central differences of symdl's "
            f"softmax agree with it to ${num(err, 2)}$.\n")


def _dying_relu(seed: int) -> tuple:
    """Train a 64-64-10 ReLU MLP on digits at several learning rates; count dead units."""
    train, test = load_digits("train"), load_digits("test")
    rows = []
    for lr in (0.05, 0.3, 1.0):
        spec = make_model("mlp", train.n_features, 10, (64,), "relu", np.random.default_rng(seed))
        tr = Trainer(spec.module, lambda ps, lr=lr: SGD(ps, lr=lr, momentum=0.9), spec.loss,
                     spec.loss_params, 32, 5, seed=seed, progress=False, on_nonfinite="skip")
        tr.fit(train)
        hidden = Sequential(*spec.module.layers[:2])
        hidden.name_parameters()
        g = Graph()
        x = g.input("x", ("N", train.n_features))
        h = hidden.build(g, x)
        from symdl.backends.numpy_backend import compile_graph
        prog = compile_graph(g, [h], {n: p.data for n, p in hidden.named_parameters()},
                             {"N": len(train)}, flavor="numpy")
        prog.inputs["x"][...] = train.X
        prog.run()
        dead = float(np.mean(np.all(prog.value(h) <= 0, axis=0)))
        rows.append((num(lr), pct(dead), pct(tr.evaluate(test)[1])))
    return rows, [seed]


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    plt = pyplot()
    parts = [section("Activations", "activations"),
             "For every activation: the registry's SymPy declaration, the derivative symdl derives "
             "from it rule by rule (each step checked equal by SymPy), and, where the registry "
             "states one, the derivative in terms of the output $y$, which is what backpropagation "
             "stores. Figure~\\ref{fig:activations} plots each activation beside its derivative, "
             "both computed by a compiled symdl graph (the forward op and its reverse-mode "
             "gradient).\n"]
    sig = derive("1/(1+exp(-z))")
    parts.append("How symdl derives the sigmoid from $1/(1+e^{-z})$, one rule per line:\n"
                 + sig.render("latex") + "\n")
    fig, axes = plt.subplots(3, 4, figsize=(8.0, 5.6))
    rows, peak = [], {}
    for ax, name in zip(axes.flat, ACTIVATIONS):
        tex, f, df, numbers = _block(name)
        peak[name] = float(df.max())
        parts.append(tex)
        rows.append([text(NAMES[name])] + [f"${v}$" for v in numbers])
        ax.plot(GRID, f, label="$f(z)$", color="C0")
        ax.plot(GRID, df, label="$f'(z)$", color="C3", ls="--")
        ax.set_title(NAMES[name])
        ax.set_xlim(-4, 4)
        ax.set_ylim(-1.5, 2.5)
        ax.axhline(0, color="0.6", lw=0.6)
    axes.flat[-1].axis("off")
    axes.flat[0].legend(loc="upper left")
    fig.tight_layout()
    png = save_figure(fig, out / "activations.png")
    parts.append(figure(png, "Each activation (solid) and its derivative (dashed), both evaluated "
                        f"by compiled symdl graphs on a grid of {num(GRID.size)} points in "
                        f"$[{num(float(GRID[0]))}, {num(float(GRID[-1]))}]$.",
                        0.98).replace(r"\caption{", r"\caption{\label{fig:activations}"))
    parts.append("The numbers below come from the same compiled graphs; the kink conventions "
                 "are PyTorch's ($\\operatorname{ReLU}'(0) = 0$). Saturating activations "
                 "(sigmoid, tanh) have derivatives near 0 at $|z| = 6$: stacked, they make "
                 f"gradients vanish. The sigmoid's derivative is at most ${num(peak['sigmoid'])}$, "
                 f"so every sigmoid layer shrinks the backpropagated signal at least "
                 f"${num(1 / peak['sigmoid'])}$-fold; tanh's peak slope is ${num(peak['tanh'])}$.\n")
    parts.append(table(["activation", "$f(0)$", "$f'(0)$", r"$\max f'$", "at $z$",
                        "$f'(-6)$", "$f'(6)$"], rows, "lrrrrrr", "small"))
    parts.append(r"\subsection*{Softmax}" + "\n" + "The softmax maps logits to probabilities; its "
                 "Jacobian, as symdl states it and verifies on an explicit 3-class instance:\n"
                 + layer_latex(layer_derivation("softmax")) + _softmax_check(seed))
    rows, seeds = _dying_relu(seed)
    parts.append(r"\subsection*{Dying ReLU}" + "\n" + "A ReLU unit whose pre-activation is "
                 "negative on every input has zero gradient and never recovers. A 64-64-10 ReLU "
                 "MLP trained by symdl on the digits for 5 epochs (SGD, momentum 0.9): the fraction "
                 "of hidden units that output 0 on the whole training set grows with the learning "
                 "rate.\n" + table(["learning rate", "dead hidden units", "test accuracy"], rows,
                                   "rrr"))
    fit_note = fit(latex(OPS["gelu_tanh"].expr.xreplace({OPS["gelu_tanh"].inputs[0]: Z})))
    parts.append("The registry also declares the tanh approximation of GELU, "
                 r"$\operatorname{GELU}_{\tanh}(z)$:" + "\n" + fit_note)
    (out / "activations.tex").write_text("\n".join(parts))
    return {"title": "Activations", "files": ["activations.tex", png], "seeds": seeds}


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
