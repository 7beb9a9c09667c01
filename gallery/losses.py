"""Losses

The registry's losses: elementwise ones (squared and absolute error, binary
cross-entropy on a logit, hinge) with derivatives symdl derives from the
declarations, and row losses over logits (softmax cross-entropy, negative
log-likelihood, multiclass SVM hinge) with their declared, SymPy-checked
gradients; a worked batch; maximum likelihood; output-layer pairing; plots.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import sympy as sp

from symdl.backends.numpy_backend import compile_graph
from symdl.commands.gallery import evaluate, figure, num, pyplot, save_figure, section, table, text
from symdl.derive import grad
from symdl.derive.layers import layer_derivation
from symdl.derive.opfuncs import expand_ops
from symdl.derive.steps import derive
from symdl.graph import Graph
from symdl.nn import make_model
from symdl.ops import OPS
from symdl.ops.claims import check_equal
from symdl.printing import latex
from symdl.printing.layers import layer_latex

ORDER = 50
YHAT, Y = sp.Symbol("yhat", real=True), sp.Symbol("y", real=True)
ELEMENTWISE = (("mse", "Squared error", "regression"), ("mae", "Absolute error", "regression"),
               ("bce_logits", "Binary cross-entropy on a logit", "labels $y \\in \\{0, 1\\}$, "
                "$\\hat y$ the logit"),
               ("hinge", "Hinge loss", "labels $y = \\pm 1$, margin 1, $\\hat y$ the score"))
#: the CS231n-style batch: scores of 3 examples over 3 classes, and their labels
SCORES = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
LABELS = np.array([0, 1, 2])


def _elementwise(name: str, title: str, note: str) -> str:
    op = OPS[name]
    x, t = op.inputs
    expr = op.expr.xreplace({x: YHAT, t: Y})
    dv = derive(expr, YHAT)
    rows = [rf"\ell(\hat y, y) &= {latex(expr)}",
            rf"\frac{{\partial \ell}}{{\partial \hat y}} &= {latex(dv.result)} && "
            rf"\text{{{len(dv.steps)} rule steps, " + ("verified" if dv.all_verified else "NOT verified")
            + "}"]
    simple = sp.expand(dv.result)
    if simple != dv.result:
        ok = check_equal(expand_ops(simple), op.diff(0).xreplace({x: YHAT, t: Y})).ok
        rows.append(rf"&= {latex(simple)} && \text{{expanded; " + ("checked" if ok else "NOT checked")
                    + "}")
    mean_ok = layer_derivation(name).verified
    head = f"\\subsection*{{{text(title)} \\normalfont\\small ({note})}}\n"
    return (head + "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}\n"
            + ("Averaged over a batch of $N$, each example contributes $1/N$ of its own derivative "
               "(verified by symdl on an explicit $N = 2$ instance).\n" if mean_ok else
               "The batch-mean rule did NOT verify.\n"))


def _row_losses() -> str:
    z = sp.symbols("z1:4", real=True)
    ce, nll, svm = OPS["softmax_cross_entropy"], OPS["nll"], OPS["multi_hinge"]
    delta = sp.Symbol("Delta", real=True)
    margin = next(s for s in svm.params if s.name == "margin")
    how_tex = {"max": "\\max_j", "sum": "\\sum_j", "dot": "\\sum_j t_j"}  # dot: Σ_j t_j e_j
    stats = ", \\quad ".join(f"{latex(s)} = {how_tex[how]} {latex(e)}" for s, how, e in ce.stats)
    stats = stats.replace("\\sum_j", "{\\textstyle\\sum_j}")
    one_hot = (1, 0, 0)
    log_p = sp.symbols("p1:4", positive=True)
    parts = ["\\subsection*{Categorical cross-entropy with softmax}",
             "For one-hot targets the cross-entropy $-\\sum_i y_i \\log \\hat y_i$ reduces to "
             "$-\\log$ of the true class's probability. symdl's plain definition on 3 logits "
             "with the true class first:",
             f"\\[ \\operatorname{{CE}}(z, e_1) = {latex(ce.plain(z, one_hot))}. \\]",
             "Its layer rules, verified for every one-hot label of an explicit 3-class instance; "
             "with softmax the gradient is $\\hat y - y$:",
             layer_latex(layer_derivation("softmax_cross_entropy")),
             "The kernels evaluate the declared stable form (row statistics first, no overflow):",
             f"\\[ {stats}, \\qquad L = {latex(ce.loss)}, \\qquad "
             f"\\frac{{\\partial L}}{{\\partial z_j}} = {latex(ce.grad)}. \\]",
             "\\subsection*{Negative log-likelihood and maximum likelihood}",
             "On log-probabilities $z$ the negative log-likelihood is declared as "
             f"$L = {latex(nll.loss)}$ with gradient ${latex(nll.grad)}$. Maximum likelihood "
             "multiplies the probabilities of independent examples; the logarithm turns the product "
             "into a sum (SymPy's \\texttt{expand\\_log}, three examples):",
             f"\\[ {latex(-sp.log(sp.Mul(*log_p)))} = {latex(sp.expand_log(-sp.log(sp.Mul(*log_p))))}. \\]",
             "\\subsection*{Multiclass SVM hinge}",
             "Plain definition on 3 scores, true class first, margin $\\Delta$ "
             f"(default {num(svm.params[margin])}):",
             f"\\[ L = {latex(svm.plain(z, one_hot).xreplace({margin: delta}))}, \\qquad "
             f"\\frac{{\\partial L}}{{\\partial z_j}} = {latex(svm.grad.xreplace({margin: delta}))}, \\]",
             "with $c$ the number of classes inside the margin.\n"]
    return "\n".join(parts)


def _batch() -> str:
    """Per-example and mean losses of a small batch through compiled symdl graphs."""
    rows = {}
    for name, params in (("multi_hinge", {}), ("softmax_cross_entropy", {})):
        g = Graph()
        z, y = g.input("z", ("N", 3), "float64"), g.input("y", ("N",), "int64")
        per = g.add(name, z, y, name="per", **params)
        L = g.add("mean", per, name="L")
        gg = grad(g, L, wrt=["z"])
        prog = compile_graph(gg.graph, [per, L, gg.grads["z"]], dims={"N": len(LABELS)},
                             flavor="numpy")
        prog.inputs["z"][...] = SCORES
        prog.inputs["y"][...] = LABELS
        prog.run()
        rows[name] = (prog.value(per).copy(), float(prog.value(L)), prog.value(gg.grads["z"]).copy())
    body = []
    for i in range(len(LABELS)):
        body.append((f"${num(i + 1)}$", "$(" + ", ".join(num(v) for v in SCORES[i]) + ")$",
                     f"${num(int(LABELS[i]) + 1)}$", f"${num(rows['multi_hinge'][0][i])}$",
                     f"${num(rows['softmax_cross_entropy'][0][i])}$"))
    body.append(("mean", "", "", f"${num(rows['multi_hinge'][1])}$",
                 f"${num(rows['softmax_cross_entropy'][1])}$"))
    g_ce = rows["softmax_cross_entropy"][2][0]
    return ("\\subsection*{A worked batch}\nThree examples, three classes; both losses computed by "
            "compiled symdl graphs and averaged over the batch:\n"
            + table(["example", "scores $z$", "true class", "SVM hinge", "cross-entropy"], body,
                    "rcrrr")
            + "The gradient of the mean cross-entropy with respect to the first example's scores,\n"
            "\\[ \\frac{\\hat y - y}{N} = (" + ", ".join(num(v) for v in g_ce) + "), \\]\n"
            "sums to zero, as $\\hat y$ and $y$ both sum to 1 (in floating point: "
            f"${num(float(abs(g_ce.sum())), 2)}$).\n")


def _pairing() -> str:
    reg = make_model("mlp", 4, 1, (8,), task="regression")
    cls = make_model("mlp", 4, 3, (8,), task="classification")
    mse = derive(OPS["mse"].expr.xreplace(dict(zip(OPS["mse"].inputs, (YHAT, Y)))), YHAT).result
    ce_rule = layer_derivation("softmax_cross_entropy").rules[0].rhs_latex
    last = {m: type(s.module.layers[-1]).__name__ for m, s in (("reg", reg), ("cls", cls))}
    rows = [("real values", f"{last['reg']} (linear)", f"\\texttt{{{text(reg.loss)}}}",
             f"${latex(mse)}$"),
            ("class probabilities", f"{last['cls']} (logits) + softmax",
             f"\\texttt{{{text(cls.loss)}}}", f"${ce_rule}$")]
    return ("\\subsection*{Output layer and loss go together}\n"
            "What \\texttt{make\\_model} pairs for each task; in both cases the gradient at the "
            "output is proportional to the error $\\hat y - y$:\n"
            + table(["targets", "output layer", "loss", "$\\partial L / \\partial$ output"], rows,
                    "llll"))


def _figure(out: Path) -> str:
    plt = pyplot()
    u = np.linspace(-3, 3, 601)
    fig, (a, b) = plt.subplots(1, 2, figsize=(6.3, 2.6))
    for name, color in (("mse", "C0"), ("mae", "C1")):
        f, df = evaluate(name, u, np.zeros_like(u))
        a.plot(u, f, color=color, label=f"{name}")
        a.plot(u, df, color=color, ls="--", label=f"{name}, derivative")
    a.set_xlabel(r"prediction $\hat y$ (target $y = 0$)")
    a.set_ylim(-3, 5)
    a.legend()
    for name, color, target in (("bce_logits", "C2", 1.0), ("hinge", "C3", 1.0)):
        f, df = evaluate(name, u, np.full_like(u, target))
        b.plot(u, f, color=color, label=name)
        b.plot(u, df, color=color, ls="--", label=f"{name}, derivative")
    f01, _ = evaluate("step", -u)
    b.plot(u, f01, color="0.4", lw=1, label="0-1 loss (step of $-\\hat y$)")
    b.set_xlabel(r"score or logit $\hat y$ (label $y = 1$)")
    b.set_ylim(-1.5, 3.5)
    b.legend()
    fig.tight_layout()
    png = save_figure(fig, out / "losses.png")
    return figure(png, "Losses (solid) and their derivatives (dashed) with respect to the "
                  "prediction, computed by compiled symdl graphs. Left: regression losses. Right: "
                  "binary cross-entropy on a logit and hinge loss, both convex surrogates of the 0-1 "
                  "loss.")


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    parts = [section("Losses", "losses"),
             "Every loss is declared once in the registry; the derivatives below are derived by "
             "symdl from those declarations ($\\hat y$ the prediction, $y$ the target).\n"]
    parts += [_elementwise(*e) for e in ELEMENTWISE]
    parts += [_row_losses(), _batch(), _pairing(), _figure(out)]
    (out / "losses.tex").write_text("\n".join(parts))
    return {"title": "Losses", "files": ["losses.tex", "losses.png"], "seeds": [seed]}


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
