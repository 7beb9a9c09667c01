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

from symdl.commands.gallery import figure, num, pct, pyplot, save_figure, section, table, text
from symdl.data import load_digits, train_val_split
from symdl.nn import make_model
from symdl.optim import SGD
from symdl.optim.derivation import schedule_latex
from symdl.optim.schedules import make_schedule
from symdl.train import Trainer

ORDER = 75
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
    fig, axes = plt.subplots(2, 3, figsize=(8.0, 4.2), sharey=True)
    parts, rows = [], []
    t = np.arange(HORIZON)
    for ax, (spec, title, what) in zip(axes.flat, SPECS):
        sc = make_schedule(spec, LR)
        lr = np.array([sc.lr_at(k) for k in t])
        parts.append(f"\\paragraph{{{title}}} {what[0].upper() + what[1:]}.\n"
                     + schedule_latex(sc).split("\n", 1)[1]
                     + f"\\\\ \\hspace*{{1em}}(symdl spec \\texttt{{{text(spec)}}})\n")
        rows.append([text(title)] + [f"${num(float(lr[k]), 3)}$" for k in CHECKPOINTS])
        ax.plot(t, lr, color="C0")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("step $t$")
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$\eta_t$")
    fig.tight_layout()
    png = save_figure(fig, out / "schedules.png")
    tab = table(["schedule"] + [f"$t = {k}$" for k in CHECKPOINTS], rows, "l" + "r" * len(CHECKPOINTS),
                "small")
    return "\n".join(parts), png, tab


def _line_search(seed: int) -> tuple:
    train, test = load_digits("train"), load_digits("test")
    fit, val = train_val_split(train, 0.1, np.random.default_rng(seed))
    rows, best = [], None
    for lr in (1e-3, 1e-2, 1e-1, 1.0, 10.0):
        spec = make_model("logreg", train.n_features, 10, rng=np.random.default_rng(seed))
        tr = Trainer(spec.module, lambda ps, lr=lr: SGD(ps, lr=lr), spec.loss, spec.loss_params, 32,
                     3, seed=seed, progress=False, on_nonfinite="skip")
        hist = tr.fit(fit, val)
        acc = hist.val_accuracy[-1]
        rows.append([f"${num(lr)}$", f"${num(hist.train_loss[-1])}$", pct(acc), acc])
        if best is None or acc > best[1]:
            best = (lr, acc, tr.evaluate(test)[1])
    return rows, best


def _decay_run(seed: int) -> tuple:
    train, test = load_digits("train"), load_digits("test")
    fit, val = train_val_split(train, 0.1, np.random.default_rng(seed))
    epochs, out = 12, {}
    for spec in ("constant", "step:step_size=4,gamma=0.3"):
        sched = make_schedule(spec, 0.3)
        model = make_model("mlp", train.n_features, 10, (64,), "relu", np.random.default_rng(seed))
        tr = Trainer(model.module, lambda ps: SGD(ps, lr=0.3, momentum=0.9), model.loss,
                     model.loss_params, 32, 1, seed=seed, progress=False, on_nonfinite="skip")
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
             "\\subsection*{Line search over learning rates}\n"
             "Try rates a factor of 10 apart, keep the best on the validation set. symdl's "
             "logistic regression, plain SGD, 3 epochs each:\n"
             + table(["learning rate", "training loss", "validation accuracy"], ls_rows, "rrr")
             + f"The search picks $\\alpha = {num(best[0])}$; its test accuracy is {pct(best[2])}. "
             "Too small a rate barely moves in 3 epochs"
             + ("; the largest rate tried is already worse than the best.\n"
                if worse else ".\n"),
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
