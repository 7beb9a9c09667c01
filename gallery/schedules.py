"""Learning-rate schedules

Each schedule is one SymPy expression of the step count, declared in
symdl.optim.schedules; the same declaration is printed here and evaluated
for the plots and tables.  Then a line search over learning rates and a
training run with a decaying rate, both trained by symdl on the digits.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from symdl import plot
from symdl.backends.numpy_backend import backend_for
from symdl.commands.gallery import figure, num, pct, pyplot, save_figure, section, table, text
from symdl.data import load_digits, train_val_split
from symdl.nn import make_model
from symdl.optim import SGD
from symdl.optim.derivation import schedule_latex
from symdl.optim.line_search import ModelLoss, descend, grid_search
from symdl.optim.schedules import make_schedule
from symdl.train import Trainer

ORDER = 75
NUMPY = backend_for("numpy")  # the NumPy reference kernels: nothing to compile
LR, HORIZON = 0.1, 100
SPECS = (
    ("step:step_size=20,gamma=0.5", "Step decay",
     "halve the rate every $s$ steps (or epochs)"),
    ("exponential:gamma=0.97", "Exponential decay", "multiply by $\\gamma$ every step"),
    ("time:k=0.05", "Time-based decay", "decay like $1/t$"),
    ("warmup_cosine:warmup=10,T_max=90", "Warm-up, then cosine annealing",
     "a linear warm-up keeps the first, large and noisy, updates small"),
    ("cyclic:base_lr=0.01,max_lr=0.1,step_size_up=10", "Cyclic (triangular)",
     "up and down between two rates, which lets the iterate leave sharp minima"),
    ("cosine_restarts:T_0=10,T_mult=2", "Cosine annealing with warm restarts (SGDR)",
     "cosine cycles, each $T_{\\mathrm{mult}}$ times longer than the last"),
)
CHECKPOINTS = (0, 10, 25, 50, 99)


def _schedules(out: Path) -> tuple:
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(6.4, 3.6), sharey=True)
    parts, rows = [], []
    t = np.arange(HORIZON)
    for ax, (spec, title, what) in zip(axes.flat, SPECS):
        sc = make_schedule(spec, LR)
        lr = np.array([sc.lr_at(k) for k in t])
        parts.append(f"\\paragraph{{{title}}} {what[0].upper() + what[1:]}.\n"
                     + schedule_latex(sc).split("\n", 1)[1]
                     + f"\\\\ \\hspace*{{1em}}(symdl spec \\texttt{{{text(spec)}}})\n")
        rows.append([text(title)] + [f"${num(float(lr[k]), 3)}$" for k in CHECKPOINTS])
        plot.schedule(sc, HORIZON, ax=ax)
        ax.set_title(title.split(",")[0].replace(" (SGDR)", ""), fontsize=8)
        ax.set_xlabel("step $t$")
        ax.set_ylabel("")
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$\eta_t$")
    fig.tight_layout()
    png = save_figure(fig, out / "schedules.png")
    tab = table(["schedule"] + [f"$t = {k}$" for k in CHECKPOINTS], rows, "l" + "r" * len(CHECKPOINTS),
                "small")
    return "\n".join(parts), png, tab


def _line_search(seed: int) -> tuple:
    """A grid over rates (validation accuracy of a short run), by the library's grid_search."""
    train, test = load_digits("train"), load_digits("test")
    fit, val = train_val_split(train, 0.1, np.random.default_rng(seed))
    runs = {}

    def score(lr):
        spec = make_model("logreg", train.n_features, 10, rng=np.random.default_rng(seed))
        tr = Trainer(spec.module, lambda ps: SGD(ps, lr=lr), spec.loss, spec.loss_params, 64, 3,
                     seed=seed, progress=False, on_nonfinite="skip", backend=NUMPY)
        hist = tr.fit(fit, val)
        runs[lr] = (hist, tr)
        return hist.val_accuracy[-1]

    best, scores = grid_search(score, (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0))
    rows = [[f"${num(lr)}$", f"${num(runs[lr][0].train_loss[-1])}$", pct(acc), acc]
            for lr, acc in scores]
    return rows, (best, dict(scores)[best], runs[best][1].evaluate(test)[1])


def _armijo(seed: int) -> str:
    """Backtracking (Armijo) along the full-batch gradient of a model's loss."""
    train = load_digits("train")
    spec = make_model("mlp", train.n_features, 10, (32,), "tanh", np.random.default_rng(seed),
                      "float64")
    loss = ModelLoss(spec.module, train.X, train.y, spec.loss, spec.loss_params)
    steps = descend(loss, 12, lr0=8.0)
    rows = [(f"${k}$", f"${num(s.lr)}$", f"${num(s.tries)}$", f"${num(s.f0)}$", f"${num(s.f1)}$")
            for k, s in enumerate(steps, 1) if k in (1, 2, 3, 4, 6, 8, 12)]
    return ("\\subsection*{Line search along the gradient}\n"
            "Instead of fixing $\\eta$, search it at every step: start from a trial rate and halve "
            "it until the loss falls by at least a fraction $c$ of what the first-order Taylor "
            "model promises, $L(\\theta - \\eta g) \\le L(\\theta) - c\\,\\eta \\lVert g "
            "\\rVert^2$ (Armijo's rule, $c = 10^{-4}$; \\texttt{symdl.optim.line\\_search}). "
            "Full-batch gradient descent on a 64-32-10 tanh MLP over the training digits, the "
            "loss and its gradient from one compiled symdl graph, each search starting at twice "
            "the last accepted rate (at most 8):\n"
            + table(["step", "accepted $\\eta$", "trials", "loss before", "loss after"], rows,
                    "rrrrr")
            + f"Every step lowers the loss (it must, by the rule); {num(loss.evaluations)} loss "
            f"evaluations for {num(len(steps))} steps.\n")


def _decay_run(seed: int) -> tuple:
    train, test = load_digits("train"), load_digits("test")
    fit, val = train_val_split(train, 0.1, np.random.default_rng(seed))
    epochs, out = 12, {}
    for spec in ("constant", "step:step_size=4,gamma=0.3"):
        sched = make_schedule(spec, 0.3)
        model = make_model("mlp", train.n_features, 10, (64,), "relu", np.random.default_rng(seed))
        tr = Trainer(model.module, lambda ps: SGD(ps, lr=0.3, momentum=0.9), model.loss,
                     model.loss_params, 32, 1, seed=seed, progress=False, on_nonfinite="skip",
                     backend=NUMPY)
        for epoch in range(epochs):  # one epoch per fit; the schedule sets the rate in between
            sched.apply(tr.optimizer, epoch)
            tr.fit(fit, val)
        out[spec] = (tr.history, tr.evaluate(test)[1])
    return out, epochs


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    blocks, png, tab = _schedules(out)
    ls_rows, best = _line_search(seed)
    worse = ls_rows[-1][3] < best[1]
    ls_rows = [r[:3] for r in ls_rows]
    runs, epochs = _decay_run(seed)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 2.6))
    for spec, (hist, _) in runs.items():
        ax.plot(range(1, epochs + 1), hist.val_loss, marker="o", ms=3, label=spec.split(":")[0])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss")
    ax.legend()
    png2 = save_figure(fig, out / "schedules-run.png")
    run_rows = [(f"\\texttt{{{text(spec)}}}", f"${num(h.val_loss[-1])}$", pct(acc))
                for spec, (h, acc) in runs.items()]
    parts = [section("Learning-rate schedules", "schedules"),
             f"A schedule gives the rate $\\eta_t$ after $t$ scheduler steps. Each one below is printed "
             f"from its SymPy declaration (with $\\eta_0 = {num(LR)}$) and evaluated from the same "
             "expression for Figure~\\ref{fig:schedules} and the table.\n",
             blocks, figure(png, f"The schedules over {num(HORIZON)} steps, evaluated from their "
                            "declarations.").replace(r"\caption{", r"\caption{\label{fig:schedules}"),
             tab,
             "\\subsection*{Search over learning rates}\n"
             "Try rates a factor of 10 apart, keep the best on the validation set "
             "(\\texttt{grid\\_search}). symdl's logistic regression, plain SGD, 3 epochs "
             "each:\n"
             + table(["learning rate", "training loss", "validation accuracy"], ls_rows, "rrr")
             + f"The search picks $\\alpha = {num(best[0])}$; its test accuracy is {pct(best[2])}. "
             "Too small a rate barely moves in 3 epochs"
             + ("; the largest rate tried is already worse than the best.\n"
                if worse else ".\n") + _armijo(seed),
             "\\subsection*{A schedule in training}\n"
             "The same 64-64-10 ReLU MLP trained twice by symdl with SGD (momentum 0.9) at "
             f"$\\eta_0 = {num(0.3)}$ for {num(epochs)} epochs, once at a constant rate and once "
             "with step decay, the schedule setting the optimizer's rate before every epoch:\n"
             + table(["schedule", "final validation loss", "test accuracy"], run_rows, "lrr")
             + figure(png2, "Validation loss per epoch, constant rate against step decay.", 0.6)]
    (out / "schedules.tex").write_text("\n".join(parts))
    return {"title": "Learning-rate schedules", "files": ["schedules.tex", png, png2],
            "seeds": [seed]}


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
