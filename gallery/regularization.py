"""Regularization and generalization

L1 and L2 penalties (layer rules and SGD's weight decay, printed from the
declarations), early stopping, inverted dropout, bagging, data augmentation
and input noise, label smoothing, all measured with symdl models on the
digits; the bias-variance trade-off and double descent measured in NumPy.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import sympy as sp

from symdl.backends.numpy_backend import backend_for, compile_graph
from symdl.commands.gallery import evaluate, figure, num, pct, pyplot, save_figure, section, text, \
    table
from symdl import plot
from symdl.data import load_digits, sine, subset
from symdl.data.augment import AugmentSpec, augment, shift
from symdl.derive import grad
from symdl.derive.layers import layer_derivation
from symdl.graph import Graph
from symdl.nn import Parameter, make_model
from symdl.optim import SGD, Adam
from symdl.optim.derivation import NAMES, derivation, expr_latex
from symdl.printing.layers import layer_latex
from symdl.train import Trainer
from symdl.train.ensemble import bagging

ORDER = 80
NUMPY = backend_for("numpy")  # the NumPy reference kernels: nothing to compile


def _penalties(out: Path) -> str:
    p = Parameter(np.zeros(1), "theta")
    opt = SGD([p], lr=0.1, weight_decay=1e-3)
    rule = opt.rule
    target = next(t for t, _ in rule.equations if t.name == "p")
    update = sp.expand(rule.final()[target])
    names = {s: NAMES[s.name][1] for s in update.free_symbols}
    plt = pyplot()
    w = np.linspace(-2, 2, 401)
    fig, (a, b) = plt.subplots(1, 2, figsize=(7.0, 2.4))
    for op, label, color in (("abs", r"L1: $|w|$", "C0"), ("square", r"L2: $w^2$", "C3")):
        f, df = evaluate(op, w)
        a.plot(w, f, color=color, label=label)
        b.plot(w, df, color=color, label=label)
    a.set_title("penalty")
    b.set_title("its gradient")
    a.legend()
    png = save_figure(fig, out / "regularization-penalties.png")
    return ("\\subsection*{L1 and L2 penalties}\n"
            "A penalty on the weights is added to the loss. symdl's layer rules, verified on "
            "explicit $2 \\times 2$ instances:\n"
            + layer_latex(layer_derivation("l1")) + layer_latex(layer_derivation("l2"))
            + "The L1 gradient keeps its size $\\lambda$ however small the weight, so it drives "
            "weights to exactly zero (sparsity); the L2 gradient shrinks with the weight, so it "
            "only makes them small (Figure~\\ref{fig:penalties}). L2 is weight decay; symdl's SGD "
            "with \\texttt{weight\\_decay} declares\n" + derivation(opt).latex.split("\n", 1)[1]
            + "Substituting its equations forward (the fused kernel's form, "
            "\\texttt{rule.final()}) gives the decayed update\n"
            f"\\[ \\theta \\leftarrow {expr_latex(update, names)}. \\]\n"
            + figure(png, "L1 and L2 penalties and their gradients, evaluated by compiled symdl "
                     "graphs of the registry's \\texttt{abs} and \\texttt{square} ops.", 0.8)
            .replace(r"\caption{", r"\caption{\label{fig:penalties}"))


def _early_stopping(out: Path, seed: int) -> str:
    train, test = load_digits("train"), load_digits("test")
    small = subset(train, np.arange(150))
    spec = make_model("mlp", train.n_features, 10, (256,), "relu", np.random.default_rng(seed))
    tr = Trainer(spec.module, lambda ps: Adam(ps, lr=0.003), spec.loss, spec.loss_params, 50, 60,
                 seed=seed, progress=False, backend=NUMPY)
    h = tr.fit(small, test)
    best = int(np.argmin(h.val_loss))
    acc_best, acc_end = h.val_accuracy[best], h.val_accuracy[-1]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 2.5))
    plot.history(h, ax=ax)
    ax.set_yscale("log")
    ax.axvline(best + 1, color="0.5", ls=":", label=f"lowest held-out loss (epoch {best + 1})")
    ax.legend(loc="upper right", frameon=False, fontsize=7)
    ax.set_title("")
    png = save_figure(fig, out / "regularization-early-stopping.png")
    if acc_best < acc_end:
        verdict = (f"Here it is not free: the kept weights classify {pct(acc_best)} of the held-out "
                   f"digits against {pct(acc_end)} at the end. The held-out loss also measures "
                   "confidence, and the later, overconfident network is wrong more expensively but "
                   "slightly less often; stopping on the loss trades that accuracy for calibrated "
                   "probabilities (stopping on the accuracy would keep another epoch).")
    else:
        verdict = (f"The kept weights classify {pct(acc_best)} of the held-out digits against "
                   f"{pct(acc_end)} at the end, for {num(h.epochs - best - 1)} fewer epochs of "
                   "training.")
    return ("\\subsection*{Early stopping}\n"
            f"A 64-256-10 ReLU MLP trained by symdl (Adam) on only {num(len(small))} digits: the "
            "training loss keeps falling, the held-out loss bottoms out and climbs. Early stopping "
            "keeps the weights of the epoch with the lowest held-out loss (epoch "
            f"{num(best + 1)} of {num(h.epochs)}: held-out loss ${num(h.val_loss[best])}$ against "
            f"${num(h.val_loss[-1])}$ at the end). {verdict}\n"
            + figure(png, "Training and held-out loss (log scale) and accuracy per epoch, drawn "
                     "by \\texttt{symdl.plot.history}; the dotted line marks the epoch early "
                     "stopping keeps.", 0.65))


def _dropout(seed: int) -> str:
    rng = np.random.default_rng(seed)
    x = 1.0 + rng.random(100_000)
    rows = []
    for p in (0.1, 0.5, 0.8):
        keep = rng.random(x.shape) >= p
        plain, inverted = x * keep, x * keep / (1 - p)
        rows.append((f"${num(p)}$", f"${num(float(np.mean(keep)), 3)}$",
                     f"${num(float(plain.mean() / x.mean()), 3)}$",
                     f"${num(float(inverted.mean() / x.mean()), 3)}$"))
    return ("\\subsection*{Dropout}\n"
            "Dropout zeroes each unit with probability $p$ during training. Inverted dropout "
            "divides the kept units by $1 - p$, so the expected activation is unchanged and "
            "evaluation needs no rescaling. Measured in NumPy on $10^5$ activations:\n"
            + table(["$p$", "fraction kept", "mean / original, plain",
                     "mean / original, inverted"], rows, "rrrr"))


def _logreg(i, ss):
    spec = make_model("logreg", 64, 10, rng=np.random.default_rng(ss))
    return Trainer(spec.module, lambda ps: SGD(ps, lr=0.05, momentum=0.9), spec.loss,
                   spec.loss_params, 64, 8, seed=ss, progress=False, backend=NUMPY)


def _bagging(seed: int) -> str:
    train, test = load_digits("train"), load_digits("test")
    ens = bagging(_logreg, train, 5, seed=seed)
    accs = ens.member_accuracies(test)
    covered = np.mean([len(np.unique(s)) / len(train) for s in ens.samples])
    return ("\\subsection*{Ensembles and bagging}\n"
            "Bagging trains each model on a bootstrap resample (drawn with replacement: each "
            f"resample here holds {pct(covered)} of the distinct training digits, about "
            "$1 - 1/e$) and averages their predicted probabilities "
            "(\\texttt{symdl.train.ensemble.bagging}, also \\texttt{symdl train --ensemble 5}). "
            "Five symdl logistic regressions on the digits: test accuracies "
            + ", ".join(pct(a) for a in accs)
            + f" (mean {pct(np.mean(accs))}); the averaged ensemble reaches "
            f"{pct(ens.accuracy(test))}.\n")


def _augmentation(seed: int) -> str:
    train, test = load_digits("train"), load_digits("test")
    moves = ((1, 0), (-1, 0), (0, 1), (0, -1))
    shifted_test = np.concatenate([shift(test.X, *m) for m in moves])
    shifted_y = np.tile(test.y, len(moves))
    specs = {"original only": None,
             "+ 4 noisy copies": AugmentSpec(copies=4, shift=0, degrees=0, noise=0.15),
             "+ 4 shifted and rotated copies": AugmentSpec(copies=4, shift=1, degrees=10)}
    rows = []
    for name, aug in specs.items():
        ds = train if aug is None else augment(train, aug, np.random.default_rng(seed))
        spec = make_model("mlp", 64, 10, (64,), "relu", np.random.default_rng(seed))
        tr = Trainer(spec.module, lambda ps: SGD(ps, lr=0.05, momentum=0.9), spec.loss,
                     spec.loss_params, 64, 4, seed=seed, progress=False, backend=NUMPY)
        tr.fit(ds)
        acc_shift = float(np.mean(tr.predict(shifted_test).argmax(1) == shifted_y))
        rows.append((text(name), f"${num(len(ds))}$", pct(tr.evaluate(test)[1]), pct(acc_shift)))
    return ("\\subsection*{Data augmentation and noise on the inputs}\n"
            "New training examples made by transformations that keep the label teach the "
            "invariance. A 64-64-10 ReLU MLP trained by symdl for 4 epochs on the digits, tested "
            "on the test set and on the test set shifted by one pixel; the copies (shifts, small "
            "rotations, noise; seeded) come from the library's augmentation module, "
            "\\texttt{symdl.data.augment}, which \\texttt{symdl train --augment} uses too:\n"
            + table(["training set", "examples", "test accuracy", "shifted test accuracy"], rows,
                    "lrrr"))


def _label_smoothing() -> str:
    eps, K = 0.1, 10
    g = Graph()
    z, y = g.input("z", ("N", K), "float64"), g.input("y", ("N",), "int64")
    L = g.add("sum", g.add("softmax_cross_entropy", z, y, name="ce", epsilon=eps), name="L")
    gg = grad(g, L, wrt=["z"])
    prog = compile_graph(gg.graph, [gg.grads["z"]], dims={"N": 1}, flavor="numpy")
    prog.inputs["z"][...] = 0.0
    prog.inputs["y"][...] = 0
    prog.run()
    target = 1.0 / K - prog.value(gg.grads["z"])[0]  # ∂L/∂z = softmax(z) - t, softmax(0) = 1/K
    return ("\\subsection*{Label smoothing}\n"
            "Label smoothing trains against a softened target, so the network is not pushed "
            f"towards infinite logits. With $\\varepsilon = {num(eps)}$ and $K = {K}$ classes, the "
            "target symdl's cross-entropy uses (read off its gradient at $z = 0$, where "
            "$\\partial L/\\partial z = 1/K - t$) is $("
            + ", ".join(num(float(v), 3) for v in target[:3]) + ", \\ldots)$ with true class "
            f"${num(float(target[0]), 3)}$ and ${num(float(target[1]), 3)}$ elsewhere, summing to "
            f"${num(float(target.sum()), 6)}$.\n")


def _bias_variance(seed: int) -> str:
    test = sine(400, seed=seed + 7, noise=0.0)
    x, f = test.X[:, 0], test.y[:, 0]
    rows, totals = [], []
    for deg in (1, 3, 5, 7, 9):
        preds = []
        for r in range(60):
            d = sine(30, seed=seed + 1000 + r, noise=0.3)
            poly = np.polynomial.Polynomial.fit(d.X[:, 0], d.y[:, 0], deg)
            preds.append(poly(x))
        preds = np.array(preds)
        mean = preds.mean(0)
        bias2 = float(np.mean((mean - f) ** 2))
        var = float(np.mean(preds.var(0)))
        rows.append((f"${deg}$", f"${num(bias2, 3)}$", f"${num(var, 3)}$",
                     f"${num(bias2 + var, 3)}$"))
        totals.append((bias2 + var, deg))
    return ("\\subsection*{Bias and variance}\n"
            "Polynomials of growing degree fitted by least squares (NumPy) to 60 independent "
            "training sets of 30 noisy points from symdl's sine data set. Low degrees underfit: the "
            "average fit is far from the sine (squared bias). High degrees overfit: the fits "
            "differ wildly between training sets (variance). Their sum, the expected squared error "
            f"against the noiseless sine, is smallest at degree {min(totals)[1]}:\n"
            + table(["degree", "bias$^2$", "variance", "bias$^2$ + variance"], rows, "rrrr"))


def _double_descent(out: Path, seed: int) -> str:
    train, test = load_digits("train"), load_digits("test")
    n = 100
    ps = np.unique(np.concatenate([np.geomspace(5, 4000, 26).astype(int), [n]]))
    Yte = np.eye(10)[test.y]
    err, acc = [], []
    for p in ps:
        e_r, a_r = [], []
        for r in range(5):
            rng = np.random.default_rng(seed + r)
            idx = rng.choice(len(train), n, replace=False)
            W = rng.standard_normal((64, p)) / 8
            F, Ft = np.maximum(train.X[idx] @ W, 0), np.maximum(test.X @ W, 0)
            Y = np.eye(10)[train.y[idx]]
            # the minimum-norm solution through the smaller Gram matrix (at most n x n): a
            # pseudo-inverse of 100 x 4000 features costs seconds on a busy machine
            if p >= n:
                B = F.T @ (np.linalg.pinv(F @ F.T, rcond=1e-13, hermitian=True) @ Y)
            else:
                B = np.linalg.pinv(F.T @ F, rcond=1e-13, hermitian=True) @ (F.T @ Y)
            P = Ft @ B
            e_r.append(float(np.mean((P - Yte) ** 2)))
            a_r.append(float(np.mean(P.argmax(1) == test.y)))
        err.append(np.median(e_r))
        acc.append(np.mean(a_r))
    k = int(np.argmax(err))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 2.7))
    ax.loglog(ps, err, "o-", ms=3)
    ax.axvline(n, color="0.5", ls=":", label=f"$p = n = {n}$ (interpolation)")
    ax.set_xlabel("random ReLU features $p$")
    ax.set_ylabel("test squared error")
    ax.legend()
    png = save_figure(fig, out / "regularization-double-descent.png")
    first = int(np.argmin(err[:k]))
    return ("\\subsection*{Double descent}\n"
            f"Minimum-norm least squares (NumPy) on $p$ random ReLU features of {num(n)} digits, "
            "one-hot targets: as $p$ grows the test error first falls, then rises sharply near the "
            f"interpolation threshold $p = n$ (here it peaks at $p = {num(int(ps[k]))}$: squared "
            f"error ${num(err[k], 3)}$, accuracy {pct(acc[k])}), then falls again below the first "
            f"minimum (${num(err[first], 3)}$ at $p = {num(int(ps[first]))}$) as the features "
            f"become many: ${num(err[-1], 3)}$, accuracy {pct(acc[-1])}, at $p = {num(int(ps[-1]))}$.\n"
            + figure(png, "Test error against the number of random features (median of 5 draws).",
                     0.62))


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    parts = [section("Regularization and generalization", "regularization"),
             _penalties(out), _early_stopping(out, seed), _dropout(seed), _bagging(seed),
             _augmentation(seed), _label_smoothing(), _bias_variance(seed),
             _double_descent(out, seed),
             "\\subsection*{Implicit regularization}\n"
             "Stochastic gradient descent itself regularises: its noise keeps the iterate out of "
             "sharp minima, and started from small weights it tends towards small-norm solutions "
             "(as the minimum-norm fits above do exactly).\n"]
    (out / "regularization.tex").write_text("\n".join(parts))
    return {"title": "Regularization and generalization",
            "files": ["regularization.tex", "regularization-penalties.png",
                      "regularization-early-stopping.png", "regularization-double-descent.png"],
            "seeds": sorted({seed, seed + 1, seed + 2, seed + 3, seed + 4})}


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
