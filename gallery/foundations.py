"""Foundations: learning, perceptrons and XOR

Learning paradigms and the train/validation/test protocol on symdl's digits;
the perceptron as a symdl model (weighted sum, step, the perceptron
criterion and its SGD update, all printed from declarations); which of the
2^(2^n) boolean functions a perceptron learns (trained, not asserted); a
2-2-1 network that learns XOR; k-NN against a linear classifier.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import sympy as sp

from symdl.backends.numpy_backend import backend_for
from symdl.commands.gallery import num, pct, section, table, text
from symdl.data import Dataset, load_digits, train_val_split, xor_table
from symdl.derive.parse import parse
from symdl.nn import Activation, Dense, Parameter, Sequential, make_model
from symdl.ops import OPS
from symdl.optim import SGD, Adam
from symdl.optim.derivation import derivation
from symdl.printing import latex
from symdl.train import Trainer

ORDER = 10
NUMPY = backend_for("numpy")  # the NumPy reference kernels: nothing to compile
NAMES2 = {0b0110: "XOR", 0b1001: "XNOR"}


def _protocol() -> str:
    train, test = load_digits("train"), load_digits("test")
    fit, val = train_val_split(train, 0.1, np.random.default_rng(0))
    rows = [("training (fit the parameters)", num(len(fit))),
            ("validation (choose hyperparameters, stop early)", num(len(val))),
            ("test (report once, at the end)", num(len(test)))]
    return ("\\subsection*{Learning paradigms and protocol}\n"
            "\\textbf{Supervised} learning fits a map from inputs to given targets (labels or "
            "values); \\textbf{unsupervised} learning finds structure in inputs alone (clusters, "
            "densities, codes); \\textbf{reinforcement} learning chooses actions to maximise a "
            "reward received from an environment. The protocol of supervised learning keeps three "
            f"disjoint sets. symdl's embedded digits ({num(train.n_features)} pixels, "
            f"{num(train.n_classes)} classes), split as \\texttt{{symdl train}} splits them "
            "(10\\,\\% of the training set held out):\n"
            + table(["set", "examples"], rows, "lr"))


def _perceptron_formulas() -> str:
    out = parse("step(w1*x1 + w2*x2 + b)")
    crit = OPS["multi_hinge"]
    margin = next(s for s in crit.params if s.name == "margin")
    grad = crit.grad.xreplace({margin: sp.Integer(0)})
    return ("\\subsection*{The perceptron}\n"
            "A perceptron takes a weighted sum of its inputs plus a bias and thresholds it with "
            "the registry's step op:\n"
            f"\\[ \\hat y = {latex(out)}. \\]\n"
            "symdl's \\texttt{perceptron} model is one dense layer trained with the perceptron "
            "criterion, the registry's multiclass hinge loss with margin "
            f"{num(float(make_model('perceptron', 2, 2).loss_params['margin']))}; its declared "
            "gradient with respect to logit $z_j$ (target $t$ one-hot, $c$ the number of classes "
            "that beat the true one) is\n"
            f"\\[ \\frac{{\\partial L}}{{\\partial z_j}} = {latex(grad)}, \\]\n"
            "zero for a correctly classified example. Plain SGD on it (symdl's declared rule "
            "below) is the perceptron rule: a misclassified example adds $\\alpha x$ to its true "
            "class's weights and subtracts it from the winner's; nothing changes otherwise.\n"
            + derivation(SGD([Parameter(np.zeros(1), "theta")], lr=1.0)).latex.split("\n", 1)[1])


def _boolean(seed: int) -> tuple:
    """Train symdl's perceptron on all 16 boolean functions of two (±1-coded) inputs."""
    X = xor_table().X * 2 - 1
    learned, failed = [], []
    for k in range(16):
        y = np.array([(k >> i) & 1 for i in range(4)], dtype=np.int64)
        ds = Dataset(X=X, y=y, n_classes=2, name=f"boolean{k}")
        spec = make_model("perceptron", 2, 2, rng=np.random.default_rng(seed))
        tr = Trainer(spec.module, lambda ps: SGD(ps, lr=1.0), spec.loss, spec.loss_params, 1, 50,
                     seed=seed, progress=False, backend=NUMPY)
        hist = tr.fit(ds)
        acc = tr.evaluate(ds)[1]
        (learned if acc == 1.0 else failed).append((k, y, acc, max(hist.train_accuracy)))
    counts = [(n, 2**n, 2 ** (2**n)) for n in range(1, 6)]
    rows = [(f"${n}$", f"${num(r)}$", f"${num(f)}$") for n, r, f in counts]
    fail_rows = [(NAMES2.get(k, str(k)), "$" + ", ".join(str(int(v)) for v in y) + "$", pct(acc),
                  pct(best)) for k, y, acc, best in failed]
    tex = ("\\subsection*{Boolean functions and XOR}\n"
           "$n$ binary inputs have $2^n$ input patterns, and each pattern can be mapped to 0 or 1, "
           "so there are $2^{2^n}$ boolean functions of $n$ inputs (computed):\n"
           + table(["inputs $n$", "patterns $2^n$", "functions $2^{2^n}$"], rows, "rrr")
           + f"symdl's perceptron was trained on each of the {num(len(learned) + len(failed))} "
           "functions of two inputs (inputs coded $\\pm 1$, SGD with $\\alpha = 1$, 50 epochs of "
           f"single examples): it learns {num(len(learned))} of them exactly. The "
           f"{num(len(failed))} it cannot learn are exactly the ones no line separates:\n"
           + table(["function", "labels of $(-1,-1), (1,-1), (-1,1), (1,1)$", "final accuracy",
                    "best epoch"], fail_rows, "lcrr"))
    return tex, len(learned), failed


def _xor_mlp(seed: int) -> str:
    """A 2-2-1 sigmoid network with BCE on the logit learns XOR (from several seeds)."""
    X = xor_table().X * 2 - 1
    labels = xor_table().y
    ds = Dataset(X=X, y=labels.astype(np.float32), n_classes=None, name="xor", task="regression")
    results = []
    for s in range(seed, seed + 10):
        rng = np.random.default_rng(s)
        model = Sequential(Dense(2, 2, rng, "xavier_uniform"), Activation("sigmoid"), Dense(2, 1, rng))
        tr = Trainer(model, lambda ps: Adam(ps, lr=0.1), "bce_logits", {}, 4, 500, seed=s,
                     progress=False, backend=NUMPY)
        hist = tr.fit(ds)
        pred = (tr.predict(X)[:, 0] > 0).astype(np.int64)
        results.append((s, float(np.mean(pred == labels)), hist.train_loss[-1]))
    solved = [r for r in results if r[1] == 1.0]
    best = min(results, key=lambda r: r[2])
    return ("A hidden layer removes the limit. A 2-2-1 network (two sigmoid hidden units, one "
            "output logit, binary cross-entropy, Adam with $\\alpha = 0.1$, 500 full-batch steps), "
            f"trained by symdl from {num(len(results))} seeded initialisations: "
            f"{num(len(solved))} reach {pct(1.0, 0)} training accuracy on XOR (best final loss "
            f"${num(best[2], 3)}$, seed {best[0]}); the others stop at "
            + ", ".join(sorted({pct(r[1], 0) for r in results if r[1] < 1.0}))
            + " in a poor local minimum, which is why several initialisations are worth "
            "trying.\n"), [r[0] for r in results]


def _knn(seed: int) -> str:
    train, test = load_digits("train"), load_digits("test")
    d2 = ((test.X[:, None, :] - train.X[None, :, :]) ** 2).sum(-1)
    order = np.argsort(d2, axis=1, kind="stable")
    rows = []
    for k in (1, 5):
        votes = train.y[order[:, :k]]
        pred = np.array([np.bincount(v, minlength=10).argmax() for v in votes])
        rows.append((f"{k}-NN (NumPy)", pct(np.mean(pred == test.y)), "none",
                     f"${num(train.X.size)}$ numbers", f"${num(train.X.size)}$"))
    spec = make_model("logreg", train.n_features, 10, rng=np.random.default_rng(seed))
    epochs = 20
    tr = Trainer(spec.module, lambda ps: SGD(ps, lr=0.05, momentum=0.9), spec.loss,
                 spec.loss_params, 32, epochs, seed=seed, progress=False,
                 backend=NUMPY)
    tr.fit(train)
    n = spec.module.num_parameters()
    rows.append(("linear (symdl logreg)", pct(tr.evaluate(test)[1]), f"{epochs} epochs",
                 f"${num(n)}$ parameters", f"${num(spec.module.layers[0].W.data.size)}$"))
    return ("\\subsection*{k-NN against a linear classifier}\n"
            "$k$-nearest neighbours needs no training but keeps the whole training set and "
            "compares each query with all of it; a linear classifier is trained once and then "
            "predicts with one small matrix product. On the digits (test set):\n"
            + table(["classifier", "test accuracy", "training", "memory", "multiply-adds per query"],
                    rows, "lrrrr"))


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    parts = [section("Foundations: learning, perceptrons and XOR", "foundations"), _protocol(),
             _perceptron_formulas()]
    tex, n_learned, failed = _boolean(seed)
    parts.append(tex)
    xor_text, seeds = _xor_mlp(seed)
    parts.append(xor_text)
    parts.append(_knn(seed))
    (out / "foundations.tex").write_text("\n".join(parts))
    return {"title": "Foundations: learning, perceptrons and XOR", "files": ["foundations.tex"],
            "seeds": sorted({seed, *seeds}), "perceptron_learned": n_learned,
            "perceptron_failed": [text(NAMES2.get(k, k)) for k, *_ in failed]}


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
