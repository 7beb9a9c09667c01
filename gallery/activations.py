"""Activations

The derivatives of the elementary functions as symdl derives them; then each
activation of symdl's op registry by group, one page each: its declaration,
its derivative as symdl derives it (every step checked by SymPy), the
derivative in terms of the output, and a plot of both (symdl.plot); GELU
against its two approximations, SELU's constants, softmax's Jacobian derived
entry by entry, maxout, and a dying-ReLU run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import sympy as sp

from symdl import plot
from symdl.backends.numpy_backend import backend_for, compile_graph
from symdl.commands.gallery import evaluate, figure, fit, num, pct, pyplot, save_figure, section, \
    table, text
from symdl.data import load_digits
from symdl.derive import grad
from symdl.derive.jacobian import softmax_jacobian
from symdl.derive.layers import layer_derivation
from symdl.derive.opfuncs import op_function
from symdl.derive.steps import derive
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.nn import Maxout, Sequential, make_model
from symdl.ops import OPS, Y
from symdl.ops.elementwise import GELU_SIGMOID_SCALE, SELU_ALPHA, SELU_CLOSED_FORMS, SELU_LAMBDA
from symdl.optim import SGD
from symdl.printing import latex
from symdl.printing.layers import layer_latex
from symdl.train import Trainer

ORDER = 40
#: the activations of the notes and symdl's additions, by group (one page each)
GROUPS = (
    ("Linear, threshold and saturating activations",
     ("identity", "step", "sigmoid", "tanh", "softsign")),
    ("Rectifiers", ("relu", "leaky_relu", "elu", "selu")),
    ("Smooth rectifiers", ("softplus", "silu", "gelu", "gelu_tanh", "gelu_sigmoid")),
)
NAMES = {"identity": "linear (identity)", "step": "unit step", "sigmoid": "sigmoid",
         "tanh": "tanh", "relu": "ReLU", "leaky_relu": "leaky ReLU", "elu": "ELU",
         "selu": "SELU", "softplus": "softplus", "gelu": "GELU",
         "gelu_tanh": "GELU, tanh approximation", "gelu_sigmoid": "GELU, sigmoid approximation",
         "silu": "SiLU (swish)", "softsign": "softsign"}
#: elementary functions of a calculus course, for the table of derivatives
ELEMENTARY = ("sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "sinh", "cosh",
              "tanh", "exp", "log", "sqrt")
Z = sp.Symbol("z", real=True)
YS = sp.Symbol("y", real=True)
LAM, ALPHA = sp.Symbol("lambda", positive=True), sp.Symbol("alpha", positive=True)
GRID = np.linspace(-6.0, 6.0, 1201)  # includes 0 exactly (index 600)
#: ops printed with decimals or symbols for their constants (plotted from the declaration)
SHOWN_OTHERWISE = ("gelu_tanh", "gelu_sigmoid", "selu")


def _shown(name: str, e: sp.Expr) -> sp.Expr:
    """``e`` (in the op's input) in ``z``, long constants shown as the decimals the papers
    print (SELU's λ and α as symbols; their 40 digits are listed separately)."""
    e = e.xreplace({OPS[name].inputs[0]: Z})
    return e.xreplace({sp.Rational(8943, 200000): sp.Float("0.044715", 7),
                       GELU_SIGMOID_SCALE: sp.Float("1.702", 7),
                       -GELU_SIGMOID_SCALE: -sp.Float("1.702", 7), SELU_LAMBDA: LAM,
                       SELU_ALPHA: ALPHA, -SELU_ALPHA: -ALPHA,
                       SELU_LAMBDA * SELU_ALPHA: LAM * ALPHA})


def _display(name: str) -> sp.Expr:
    """The declaration in ``z`` as printed (:func:`_shown`)."""
    return _shown(name, OPS[name].expr)


def _output_form(name: str, f: sp.Expr, df: sp.Expr):
    """``f'`` in terms of ``y = f(z)``: the registry's checked claim where it states one;
    else, where ``z`` occurs once in a branch (so ``y = f(z)`` inverts by peeling one function
    at a time), SymPy solves for ``z``, substitutes, and checks the result; None otherwise."""
    stated = OPS[name].grad_forms.get(0)
    if stated is not None and Y in stated.free_symbols:
        return stated.xreplace({Y: YS})

    def branch(e, de):
        if not e.has(Z):
            return sp.S.Zero
        if sum(1 for a in sp.preorder_traversal(e) if a == Z) != 1:
            return None
        sols = sp.solve(sp.Eq(YS, e), Z)
        if len(sols) != 1:
            return None
        form = sp.simplify(de.xreplace({Z: sols[0]}))
        ok = not form.has(Z) and sp.simplify(form.xreplace({YS: e}) - de) == 0
        return form if ok else None

    f = sp.piecewise_fold(f)
    if not isinstance(f, sp.Piecewise):
        return branch(f, df)
    out = []
    for e, cond in f.args:
        form = branch(e, sp.diff(e, Z))
        if form is None:
            return None
        # each branch is increasing with f(0) = 0 (checked below), so z <= 0 iff y <= 0
        out.append((form, cond.xreplace({Z: YS}) if cond is not sp.true else True))
    if f.xreplace({Z: 0}) != 0:
        return None
    return sp.Piecewise(*out)


def _block(name: str, dv) -> str:
    """LaTeX of one activation: definition, derived derivative (``dv``), output form."""
    try:
        call = op_function(name)(Z)
    except UsageError:  # an elementary function (tanh) is SymPy's own
        call = getattr(sp, name)(Z)
    lhs, dlhs = latex(call), latex(sp.Derivative(call, Z))
    f = _display(name)
    result = _shown(name, dv.result)
    rows = [rf"{lhs} &= {latex(f)}", rf"{dlhs} &= {latex(result)}"]
    form = _output_form(name, f, result)
    if form is not None:
        rows.append(rf"&= {latex(form)}")
    steps = (f"{len(dv.steps)} rule steps, " + ("all verified" if dv.all_verified else
                                                 "NOT verified")
             + ("; last line in the output $y$" if form is not None else "; no form in $y$ alone"))
    params = ", ".join(f"${latex(s)} = {num(v)}$" for s, v in OPS[name].params.items())
    head = rf"\textbf{{{text(NAMES[name])}}} \hfill {{\footnotesize {steps}}}"
    if params:
        head += rf"\\ {{\footnotesize default {params} (the registry's)}}"
    return (r"\begin{minipage}[t]{0.485\linewidth}" + head + "\n"
            + fit(r"\begin{aligned}" + " \\\\ ".join(rows) + r"\end{aligned}")
            + r"\end{minipage}")


def _pairs(blocks: list) -> str:
    """Blocks two to a row (a group of activations fits its page)."""
    rows = []
    for i in range(0, len(blocks), 2):
        rows.append(r"\noindent" + r"\hfill".join(blocks[i:i + 2]) + "\n\\medskip\n")
    return "\n".join(rows)


def _elementary() -> str:
    rows = []
    for fn in ELEMENTARY:
        d = derive(f"{fn}(x)")
        rules = ", ".join(dict.fromkeys(s.rule for s in d.steps))
        rows.append((f"${latex(d.input)}$", f"${latex(d.result)}$", text(rules),
                     "yes" if d.all_verified else "no"))
    return (r"\subsection*{Derivatives of the elementary functions}" + "\n"
            "Activations are built from these. Each derivative below is symdl's "
            "(\\texttt{symdl derive}), rule by rule, each step checked equal by SymPy; "
            "results are brought to the textbook form by verified rewrites "
            "($1 + \\tan^2 = \\sec^2$).\n"
            + table(["$f(x)$", "$f'(x)$ as symdl derives it", "rules", "verified"], rows,
                    "llll", "small"))


def _group_page(out: Path, title: str, names: tuple, k: int) -> str:
    plt = pyplot()
    cols = 3 if len(names) > 4 else len(names) if len(names) < 4 else 2
    rows_n = -(-len(names) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(6.3, 1.45 * rows_n + 0.25), squeeze=False)
    blocks = []
    for ax, name in zip(axes.flat, names):
        op = OPS[name]
        # the declaration, differentiated rule by rule (long constants as the papers print them)
        own = not (op.params or name in SHOWN_OTHERWISE)
        dv = derive(op.expr, op.inputs[0]) if own else derive(_display(name), Z)
        blocks.append(_block(name, dv))
        # with parameters (α of ELU) the plot derives the op at its defaults itself
        plot.activation(name, domain=(-4, 4), ax=ax, points=401,
                        derivation=dv if own else None)
        ax.set_title(NAMES[name])
        ax.set_xlabel("")
        if ax.get_legend():
            ax.get_legend().remove()
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, ["$f(z)$", "$f'(z)$ (derived)"][:len(handles)], loc="lower center",
               ncol=2, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    png = save_figure(fig, out / f"activations-group{k}.png")
    return ("\n\\clearpage\n" + rf"\subsection{{{title}}}" + "\n"
            + figure(png, f"{text(title)}: each activation (solid) and the derivative symdl "
                     "derives from its declaration (dashed), evaluated by the generated NumPy "
                     "code (\\texttt{symdl.plot.activation}).", 0.95)
            + _pairs(blocks))


def _numbers() -> tuple:
    rows, peak = [], {}
    for names in (g for _, g in GROUPS):
        for name in names:
            f, df = evaluate(name, GRID)
            peak[name] = float(df.max())
            top = np.flatnonzero(df >= df.max() - 1e-12)
            where = num(float(GRID[top[0]])) if len(top) == 1 else \
                f"[{num(float(GRID[top[0]]))}, {num(float(GRID[top[-1]]))}]"
            zero = int(np.flatnonzero(GRID == 0.0)[0])
            rows.append([text(NAMES[name])] + [f"${v}$" for v in (
                num(float(f[zero])), num(float(df[zero])), num(float(df.max())), where,
                num(float(df[0])), num(float(df[-1])))])
    return rows, peak


def _gelu(out: Path) -> str:
    z = np.linspace(-5, 5, 1001)
    exact, _ = evaluate("gelu", z)
    curves = {name: evaluate(name, z)[0] for name in ("gelu_tanh", "gelu_sigmoid")}
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(6.3, 2.4))
    a.plot(z, exact, color="k", lw=2.2, label=r"GELU $= z\,\Phi(z)$")
    for (name, c), color, ls in zip(curves.items(), ("C0", "C3"), ("--", ":")):
        a.plot(z, c, color=color, ls=ls, label=NAMES[name].replace("GELU, ", ""))
        b.semilogy(z, np.maximum(np.abs(c - exact), 1e-17), color=color, ls=ls,
                   label=NAMES[name].replace("GELU, ", ""))
    a.set_xlim(-4, 3)
    a.set_ylim(-0.4, 3)
    a.set_title("GELU and its approximations")
    a.legend(loc="upper left", frameon=False)
    b.set_title("absolute error against GELU")
    b.set_ylim(1e-7, 0.1)
    b.legend(loc="lower center", frameon=False)
    fig.tight_layout()
    png = save_figure(fig, out / "activations-gelu.png")
    err = {n: (float(np.abs(c - exact).max()), float(z[np.argmax(np.abs(c - exact))]))
           for n, c in curves.items()}
    tanh_e, sig_e = _display("gelu_tanh"), _display("gelu_sigmoid")
    return (r"\subsection*{GELU and its two approximations}" + "\n"
            "GELU weighs $z$ by the normal CDF, $z\\,\\Phi(z)$, which needs erf. The registry "
            "declares both classic approximations (Hendrycks and Gimpel, 2016):\n"
            + fit(rf"\operatorname{{GELU}}_{{\tanh}}(z) = {latex(tanh_e)}, \qquad "
                  rf"\operatorname{{GELU}}_{{\sigma}}(z) = {latex(sig_e)}")
            + "Largest absolute errors on $[-5, 5]$, computed by the compiled ops: "
            + "; ".join(f"{text(NAMES[n].replace('GELU, ', ''))} ${num(e, 2)}$ at $z = {num(w, 3)}$"
                        for n, (e, w) in err.items())
            + ". The tanh form is what \\texttt{torch.nn.GELU(approximate='tanh')} computes; "
            "$z\\,\\sigma(1.702 z)$ is cheaper and about ten times less accurate.\n"
            + figure(png, "GELU, its tanh and sigmoid approximations (left), and their "
                     "absolute errors against GELU on a log scale (right), all evaluated by "
                     "symdl's compiled ops.", 0.95))


def _selu() -> str:
    z = np.linspace(-12, 12, 240_001)
    f, _ = evaluate("selu", z)
    phi = np.exp(-z ** 2 / 2) / np.sqrt(2 * np.pi)
    dz = float(z[1] - z[0])
    mean, second = float(np.sum(f * phi) * dz), float(np.sum(f ** 2 * phi) * dz)
    a_cf, l_cf = SELU_CLOSED_FORMS
    return (r"\subsection*{SELU's constants}" + "\n"
            "SELU (Klambauer et al., 2017) scales ELU by $\\lambda$ with $\\alpha$ chosen so that "
            "a standard normal input gives an output of mean 0 and variance 1 (the fixed point "
            "that makes deep SELU networks self-normalising). The constants in closed form and "
            "to the 40 digits the registry declares (checked equal in the tests):\n"
            + fit(rf"\alpha = {latex(a_cf)} = {sp.Float(SELU_ALPHA, 40)}")
            + fit(rf"\lambda = {latex(l_cf)} = {sp.Float(SELU_LAMBDA, 40)}")
            + f"Integrated against the normal density with symdl's compiled \\texttt{{selu}}: "
            f"$\\mathrm{{E}}[\\operatorname{{SELU}}(z)] = {num(mean, 3)}$ and "
            f"$\\mathrm{{E}}[\\operatorname{{SELU}}(z)^2] = {num(second, 6)}$ for "
            "$z \\sim \\mathcal{N}(0, 1)$.\n")


def _softmax_check() -> str:
    """softmax's Jacobian: derived by SymPy, and measured on symdl's compiled softmax."""
    jac = softmax_jacobian(3)
    z = np.array([1.0, 2.0, 3.0])

    def probs(v):
        g = Graph()
        zz = g.input("z", ("N", 3), "float64")
        s = g.add("softmax", zz, name="s")
        prog = compile_graph(g, [s], dims={"N": 1}, flavor="numpy")
        prog.inputs["z"][...] = v
        prog.run()
        return prog.value(s)[0].copy()

    s = probs(z)
    J = np.diag(s) - np.outer(s, s)
    eps = 1e-6
    fd = np.stack([(probs(z + eps * e) - probs(z - eps * e)) / (2 * eps) for e in np.eye(3)], 1)
    err = float(np.max(np.abs(J - fd)))
    mat = r"\begin{pmatrix}" + r" \\ ".join(" & ".join(num(v, 3) for v in row) for row in J) \
        + r"\end{pmatrix}"
    return (r"\subsection*{Softmax as an activation}" + "\n"
            "Softmax maps a vector of logits to probabilities, $s_i = e^{z_i}/\\sum_k e^{z_k}$ "
            "(the layer \\texttt{symdl.nn.Softmax}). Its derivative is a matrix. symdl "
            "differentiates three explicit classes entry by entry, e.g.\n"
            + fit(rf"\frac{{\partial s_1}}{{\partial z_2}} = {latex(jac.derived[0, 1])}")
            + "then names the sum $S$ and replaces $e^{z_i}$ by $s_i S$, which leaves the "
            "Jacobian in the outputs alone"
            + (", checked by SymPy" if jac.verified else " (NOT verified)") + ":\n"
            + fit(rf"\frac{{\partial s}}{{\partial z}} = {latex(jac.in_outputs)} = "
                  r"\operatorname{diag}(s) - s s^{\top}")
            + "The layer rule symdl states for backpropagation, checked on an explicit 3-class "
            "instance, multiplies the upstream gradient $\\delta$ by that Jacobian without "
            "forming it:\n" + layer_latex(layer_derivation("softmax"))
            + f"For $z = ({', '.join(num(v) for v in z)})$ symdl's compiled softmax gives "
            f"$s = ({', '.join(num(v) for v in s)})$ and\n"
            rf"\[ \operatorname{{diag}}(s) - s s^{{\top}} = {mat}, \]"
            f"\nwhose rows sum to zero (probabilities stay normalised; largest row sum in floating "
            f"point ${num(float(np.abs(J.sum(1)).max()), 2)}$); central differences of the "
            f"compiled softmax agree with it to ${num(err, 2)}$.\n")


def _maxout() -> str:
    m = Maxout(1, 1, pieces=2, dtype="float64")
    m.W.data[...] = [[1.0], [0.0]]
    m.b.data[...] = 0.0
    z = np.array([[-2.0], [-0.5], [0.0], [1.5]])
    g = Graph()
    x = g.input("x", ("N", 1), "float64")
    y = m.build(g, x)
    L = g.add("sum", y, name="L")
    gg = grad(g, L, ["x"])
    prog = compile_graph(gg.graph, [y, gg["x"]], bind={n: p.data for n, p in m.named_parameters()},
                         dims={"N": len(z)}, flavor="numpy")
    prog.inputs["x"][...] = z
    prog.run()
    vals, slopes = prog.value(y)[:, 0], prog.value(gg["x"])[:, 0]
    pairs = ", ".join(f"$({num(float(a))}, {num(float(b))})$" for a, b in zip(z[:, 0], vals))
    return (r"\subsection*{Maxout}" + "\n"
            "A maxout unit (Goodfellow et al., 2013) outputs the largest of $k$ affine pieces, "
            "$y_j = \\max_i (x W_{j,i}^{\\top} + b_{j,i})$, learning its activation function "
            "(\\texttt{symdl.nn.Maxout}, the gradient going to the largest piece, as PyTorch's "
            "\\texttt{max}). With two pieces, one of them fixed at zero, it is ReLU: "
            "symdl's compiled layer with pieces $z$ and $0$ maps $(z, y)$ as " + pairs
            + ", with slopes " + ", ".join(f"${num(float(s))}$" for s in slopes) + ".\n")


def _dying_relu(seed: int) -> tuple:
    """Train a 64-64-10 ReLU MLP on digits at several learning rates; count dead units."""
    train, test = load_digits("train"), load_digits("test")
    rows = []
    for lr in (0.05, 0.3, 1.0):
        spec = make_model("mlp", train.n_features, 10, (64,), "relu", np.random.default_rng(seed))
        tr = Trainer(spec.module, lambda ps, lr=lr: SGD(ps, lr=lr, momentum=0.9), spec.loss,
                     spec.loss_params, 64, 4, seed=seed, progress=False, on_nonfinite="skip",
                     backend=backend_for("numpy"))
        tr.fit(train)
        hidden = Sequential(*spec.module.layers[:2])
        hidden.name_parameters()
        g = Graph()
        x = g.input("x", ("N", train.n_features))
        h = hidden.build(g, x)
        prog = compile_graph(g, [h], {n: p.data for n, p in hidden.named_parameters()},
                             {"N": len(train)}, flavor="numpy")
        prog.inputs["x"][...] = train.X
        prog.run()
        dead = float(np.mean(np.all(prog.value(h) <= 0, axis=0)))
        rows.append((num(lr), pct(dead), pct(tr.evaluate(test)[1])))
    return rows, [seed]


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    sig = derive("1/(1+exp(-z))")
    parts = [section("Activations", "activations"),
             "For every activation: the registry's SymPy declaration, the derivative symdl derives "
             "from it rule by rule (each step checked equal by SymPy), and the derivative in terms "
             "of the output $y$, which is what backpropagation can store instead of the input. "
             "How symdl derives the sigmoid from $1/(1+e^{-z})$, one rule per line:\n"
             + sig.render("latex") + "\n", _elementary()]
    files = ["activations.tex"]
    for k, (title, names) in enumerate(GROUPS, 1):
        parts.append(_group_page(out, title, names, k))
        files.append(f"activations-group{k}.png")
    rows, peak = _numbers()
    parts.append(r"\subsection{Activations in numbers}" + "\n"
                 "The numbers below come from compiled symdl graphs (the forward op and its "
                 "reverse-mode gradient) on a grid of "
                 f"${num(GRID.size)}$ points in $[{num(float(GRID[0]))}, {num(float(GRID[-1]))}]$; "
                 "the kink conventions are PyTorch's ($\\operatorname{ReLU}'(0) = 0$). Saturating "
                 "activations (sigmoid, tanh) have derivatives near 0 at $|z| = 6$: stacked, they "
                 "make gradients vanish. The sigmoid's derivative is at most "
                 f"${num(peak['sigmoid'])}$, so every sigmoid layer shrinks the backpropagated "
                 f"signal at least ${num(1 / peak['sigmoid'])}$-fold; tanh's peak slope is "
                 f"${num(peak['tanh'])}$.\n"
                 + table(["activation", "$f(0)$", "$f'(0)$", r"$\max f'$", "at $z$", "$f'(-6)$",
                          "$f'(6)$"], rows, "lrrrrrr", "small"))
    parts += [_gelu(out), _selu(), _softmax_check(), _maxout()]
    files.append("activations-gelu.png")
    drows, seeds = _dying_relu(seed)
    parts.append(r"\subsection*{Dying ReLU}" + "\n" + "A ReLU unit whose pre-activation is "
                 "negative on every input has zero gradient and never recovers. A 64-64-10 ReLU "
                 "MLP trained by symdl on the digits for 4 epochs (SGD, momentum 0.9, batches of "
                 "64): the fraction of hidden units that output 0 on the whole training set grows "
                 "with the learning rate.\n"
                 + table(["learning rate", "dead hidden units", "test accuracy"], drows, "rrr"))
    (out / "activations.tex").write_text("\n".join(parts))
    return {"title": "Activations", "files": files, "seeds": seeds, "new_page": True}


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
