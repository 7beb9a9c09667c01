"""Optimization

Gradient descent from the Taylor expansion of the loss (SymPy's series),
batch against mini-batch against stochastic training on the digits, and
every optimizer symdl declares (momentum, Nesterov, AdaGrad, RMSprop,
AdaDelta, Adam, AdamW, Adamax, NAdam) printed from the update rule the
optimizer class runs; Adam's bias correction measured on the real class;
optimizer paths on two surfaces; what a too-large learning rate does.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import sympy as sp

from symdl.commands.gallery import figure, num, pct, pyplot, save_figure, section, table, text
from symdl.data import load_digits
from symdl.backends.numpy_backend import backend_for
from symdl.nn import Parameter, ParamPack, make_model
from symdl.optim import OPTIMIZERS, SGD, Adagrad, Adam
from symdl.optim.derivation import derivation, rule_latex
from symdl.optim.trajectories import SURFACES, gradient, run
from symdl.printing import latex
from symdl.train import Trainer

ORDER = 70
NUMPY = backend_for("numpy")  # one-off runs: the NumPy reference kernels, nothing to compile
ADAPTIVE = (
    ("adagrad", "AdaGrad", "divides by the root of all past squared gradients: rarely updated "
     "(sparse) features keep large steps, frequent ones slow down, and every rate only decays"),
    ("rmsprop", "RMSprop", "a running average of squared gradients instead of the sum, so the "
     "rate stops decaying"),
    ("adadelta", "AdaDelta", "no learning rate in the original: the ratio of two running averages "
     "(of squared updates and of squared gradients) sets the step; torch's $\\alpha$ only scales it"),
    ("adam", "Adam", "momentum (first moment) and RMSprop (second moment), both bias-corrected "
     "because they start at 0"),
    ("adamw", "AdamW", "Adam with weight decay applied to the parameter directly (decoupled), not "
     "through the gradient"),
    ("adamax", "Adamax", "Adam with the infinity norm: a running maximum of $|g|$ instead of the "
     "root mean square"),
    ("nadam", "NAdam", "Adam with Nesterov's look-ahead on the first moment and a warm-up schedule "
     "$\\mu_t$ for it"),
)


def _rule(opt) -> str:
    """The rule an optimizer instance runs, as an align* block (its comment line dropped)."""
    return derivation(opt).latex.split("\n", 1)[1]


def _taylor() -> str:
    th, eta, g, H = sp.symbols("theta eta g H", real=True)
    L = sp.Function("L")
    series = L(th - eta * g).series(eta, 0, 3).doit()
    model = series.subs(sp.Derivative(L(th), (th, 2)), H).subs(sp.Derivative(L(th), th), g)
    change = model.removeO() - L(th)
    best = sp.solve(sp.diff(change, eta), eta)
    zeros = sorted(sp.solve(change, eta), key=sp.default_sort_key)
    return ("\\subsection*{Gradient descent from the Taylor expansion}\n"
            "A step $-\\eta g$ along the gradient $g = L'(\\theta)$, expanded by SymPy with "
            "$H = L''(\\theta)$ the curvature:\n"
            f"\\[ L(\\theta - \\eta g) = {latex(model)}. \\]\n"
            f"The first-order change ${latex(-eta * g**2)}$ is never positive, so a small enough "
            "step against the gradient lowers the loss. On the quadratic model the best step is "
            f"$\\eta = {latex(best[0])}$ and the loss goes up again beyond "
            f"$\\eta = {latex(zeros[-1])}$ (roots of the change: "
            + ", ".join(f"${latex(z)}$" for z in zeros) + "). The update itself, as symdl's SGD "
            "declares it (without momentum):\n" + rule_latex("sgd", momentum=0).split("\n", 1)[1])


def _batches(seed: int) -> str:
    train, test = load_digits("train"), load_digits("test")
    n, epochs, rows = len(train), 3, []
    for name, B in (("stochastic", 1), ("mini-batch", 32), ("batch", n)):
        spec = make_model("logreg", train.n_features, 10, rng=np.random.default_rng(seed))
        tr = Trainer(spec.module, lambda ps: SGD(ps, lr=0.05), spec.loss, spec.loss_params, B,
                     epochs, seed=seed, progress=False, backend=NUMPY)
        hist = tr.fit(train)
        rows.append((name, f"${num(B)}$", f"${num(math.ceil(n / B))}$",
                     f"${num(epochs * math.ceil(n / B))}$", f"${num(hist.train_loss[-1])}$",
                     pct(tr.evaluate(test)[1])))
    seen = 1 - (1 - 1 / n) ** n
    return ("\\subsection*{Batch, mini-batch and stochastic gradient descent}\n"
            "An epoch is one pass over the training set. Batch gradient descent takes one exact "
            "step per epoch, stochastic gradient descent one noisy step per example, mini-batches "
            "sit in between (and use the hardware well). symdl's logistic regression on the "
            f"{num(n)} training digits, plain SGD with $\\alpha = 0.05$, {num(epochs)} epochs each:\n"
            + table(["", "batch size", "steps per epoch", "steps", "training loss", "test accuracy"],
                    rows, "lrrrrr")
            + "symdl's trainer draws each epoch as a permutation (sampling without replacement), "
            f"so every example is used once per epoch; drawing {num(n)} examples with replacement "
            f"would reach only ${num(seen)}$ of them per epoch on average, "
            "$1 - (1 - 1/n)^n \\to 1 - 1/e$.\n")


def _momentum(p) -> str:
    return ("\\subsection*{Momentum and Nesterov}\n"
            "Momentum keeps a running sum $b$ of past gradients, which damps oscillation across a "
            "narrow valley and speeds travel along it. symdl's SGD with momentum, as it runs "
            "(PyTorch's convention: $b$ is the first gradient on the first step):\n"
            + _rule(SGD([p], lr=0.01, momentum=0.9))
            + "Nesterov's variant evaluates the gradient at the look-ahead point; rewritten in the "
            "current parameters (as PyTorch runs it) only the last line changes:\n"
            + _rule(SGD([p], lr=0.01, momentum=0.9, nesterov=True)))


def _adaptive(p) -> str:
    parts = ["\\subsection*{Adaptive learning rates}",
             "Each rule below is printed from the declaration the optimizer class compiles into "
             "its fused update kernel, with the class's default hyperparameters in the legend.\n"]
    for name, title, what in ADAPTIVE:
        opt = OPTIMIZERS[name]([p])
        parts.append(f"\\paragraph{{{title}}} {what}.\n" + _rule(opt))
        if name == "adagrad":
            parts.append(_adagrad_decay())
    return "\n".join(parts)


def _bias_correction() -> str:
    grads = np.array([1e-4, 1.0, 1e4])
    q = _param(np.zeros(3))
    opt = Adam([q])
    q.grad[...] = grads
    opt.step()
    state = opt.state_arrays()
    m, v = (state[k] for k in sorted(state) if k.endswith((".m", ".v")))  # flat.m, flat.v
    raw = m / np.sqrt(v)
    b1, b2 = opt.hyper["beta1"], opt.hyper["beta2"]
    rows = [(f"${num(float(g))}$", f"${num(float(mm))}$", f"${num(float(vv))}$",
             f"${num(float(r))}$", f"${num(float(-d))}$")
            for g, mm, vv, r, d in zip(grads, m, v, raw, q.data)]
    corr = [(f"${t}$", f"${num(1 - b1**t, 6)}$", f"${num(1 - b2**t, 6)}$") for t in (1, 10, 100, 1000)]
    return ("\\subsection*{Adam's bias correction, measured}\n"
            "The moments start at 0, so early on they underestimate. One step of symdl's Adam "
            "(defaults) on three coordinates with very different gradients: the state after the "
            "step, the uncorrected ratio $m_1/\\sqrt{v_1}$, and the step actually taken:\n"
            + table(["$g$", "$m_1$", "$v_1$", "$m_1/\\sqrt{v_1}$", "$|\\Delta\\theta|$"], rows,
                    "rrrrr")
            + f"Uncorrected, the first step would be ${num(float(raw[1]), 3)}$ times $\\alpha$ "
            f"(that is $(1 - \\beta_1)/\\sqrt{{1 - \\beta_2}}$); corrected, it is $\\alpha = "
            f"{num(opt.hyper['lr'])}$ whatever the gradient's scale. The correction factors fade "
            "with the step count:\n"
            + table(["$t$", "$1 - \\beta_1^t$", "$1 - \\beta_2^t$"], corr, "rrr"))


def _adagrad_decay() -> str:
    q = _param(np.zeros(1))
    opt = Adagrad([q], lr=0.1)
    steps, last = {}, 0.0
    for t in range(1, 101):
        q.grad[...] = 1.0
        opt.step()
        if t in (1, 4, 25, 100):
            steps[t] = last - float(q.data[0])
        last = float(q.data[0])
    return ("With a constant gradient $g = 1$, symdl's AdaGrad ($\\alpha = 0.1$) takes steps "
            + ", ".join(f"${num(s)}$ at $t = {t}$" for t, s in steps.items())
            + ": $\\alpha/\\sqrt{t}$, a rate that only decays.\n")


#: how the settings' names print (as in the rules above)
SETTING = {"lr": r"\alpha", "momentum": r"\mu", "weight_decay": r"\lambda"}


def _param(values, name: str = "theta") -> Parameter:
    """A float64 parameter held by the NumPy backend with its reference kernels: one-off
    optimizer runs here compile no numba loops."""
    q = Parameter(np.array(values, dtype=np.float64), name)
    ParamPack([q], "float64", NUMPY)
    return q


def _run(surface, name: str, steps: int) -> np.ndarray:
    """The ``(steps + 1, 2)`` path of optimizer ``name`` on ``surface`` (gradients from
    ``sympy.diff`` of its declaration), with the surface's settings."""
    return run(surface, name, steps, NUMPY)


def _paths(out: Path) -> str:
    steps = 300
    plt = pyplot()
    names = list(OPTIMIZERS)
    colors = {n: f"C{i if i < 7 else i + 1}" for i, n in enumerate(names)}  # C7 is grey
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.3))
    paths = {}
    for ax, sname in zip(axes, ("quadratic", "rosenbrock")):
        surf = SURFACES[sname]
        f, _ = gradient(surf)
        x0, x1, y0, y1 = surf.box
        gx, gy = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
        z = f(gx, gy)
        ax.contour(gx, gy, z, levels=np.geomspace(max(float(z.min()), 0.05), float(z.max()), 12),
                   colors="0.75", linewidths=0.5)
        paths[sname] = {}
        for name in names:
            pth = _run(surf, name, steps)
            paths[sname][name] = pth
            ax.plot(pth[:, 0], pth[:, 1], "-", color=colors[name], lw=1.0, alpha=0.9, label=name)
            ax.plot(pth[-1, 0], pth[-1, 1], "o", color=colors[name], ms=3)
        ax.plot(*surf.start, "ks", ms=4, label="start")
        ax.plot(*surf.minimum, "k*", ms=8, label="minimum")
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_title("quadratic" if sname == "quadratic" else "Rosenbrock")
    handles, labels = axes[0].get_legend_handles_labels()
    # one legend below both panels: nothing covers the paths
    fig.legend(handles, labels, loc="lower center", ncol=5, frameon=False,
               bbox_to_anchor=(0.5, -0.01), handlelength=1.5, columnspacing=1.0)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    png = save_figure(fig, out / "optimization-paths.png")
    rows = []
    for name in names:
        cells = [f"\\texttt{{{text(name)}}}"]
        for sname, by in paths.items():
            d = float(np.linalg.norm(by[name][-1] - np.array(SURFACES[sname].minimum)))
            cells.append(f"${num(d, 3)}$")
        settings = [", ".join(f"${SETTING.get(k, k)} = {num(v)}$" for k, v in
                              SURFACES[s].settings.get(name, {}).items()) or "defaults"
                    for s in paths]
        rows.append(cells + settings)
    surfaces = "; ".join(f"{SURFACES[s].title}: $f = {latex(SURFACES[s].f)}$" for s in paths)
    return ("\\subsection*{Optimizer paths}\n"
            f"Every symdl optimizer, {num(steps)} steps from the same start on two surfaces "
            f"({surfaces}); the gradients come from \\texttt{{sympy.diff}} of each surface.\n"
            + figure(png, f"Every symdl optimizer, {steps} steps from the same start (square) "
                     "towards the minimum (star); settings in the table.", 0.98)
            + f"Distance to the minimum after {num(steps)} steps, and the settings used:\n"
            + table(["optimizer", "quadratic", "Rosenbrock", "settings (quadratic)",
                     "settings (Rosenbrock)"], rows, "lrrll", "small"))


def _too_large(out: Path) -> str:
    surf = SURFACES["quadratic"]
    x, y = sp.symbols("x y", real=True)
    H = sp.hessian(surf.f, (x, y))
    lam = max(H.eigenvals())
    limit = 2 / lam
    f = sp.lambdify((x, y), surf.f, "numpy")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 2.7))
    rows = []
    for lr in (0.05, 0.095, float(limit) * 1.05):
        p = _run(dataclasses.replace(surf, settings={"sgd": {"lr": lr}}), "sgd", 60)
        vals = f(p[:, 0], p[:, 1])
        ax.semilogy(vals, label=f"$\\alpha$ = {lr:.3g}")
        rows.append((num(lr, 3), num(float(vals[-1]), 3)))
    ax.set_xlabel("step")
    ax.set_ylabel("$f$")
    ax.legend()
    png = save_figure(fig, out / "optimization-lr.png")
    return ("\\subsection*{A too-large learning rate}\n"
            f"On the quadratic $f = {latex(surf.f)}$ SymPy's Hessian has eigenvalues "
            + ", ".join(f"${latex(e)}$" for e in sorted(H.eigenvals(), key=float))
            + f"; gradient descent converges only for $\\alpha < 2/\\lambda_{{\\max}} = {latex(limit)}$ "
            "and oscillates ever wider beyond. symdl's SGD for 60 steps from the same start, "
            "final $f$: "
            + ", ".join(f"$f = {b}$ for $\\alpha = {a}$" for a, b in rows) + ".\n"
            + figure(png, "Plain SGD on the quadratic just below and just above the limit "
                     "$2/\\lambda_{\\max}$.", 0.6)
            + "In general gradient descent converges to a minimum when the rate is small against "
            "the curvature, and stochastic gradient descent needs the rate to decay (so the noise "
            "averages out); on non-convex losses it may stop in a local minimum or a saddle region.\n")


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    p = Parameter(np.zeros(1), "theta")
    parts = [section("Optimization", "optimization"), _taylor(), _batches(seed), _momentum(p),
             _adaptive(p), _bias_correction(), _paths(out), _too_large(out)]
    (out / "optimization.tex").write_text("\n".join(parts))
    return {"title": "Optimization", "files": ["optimization.tex", "optimization-paths.png",
                                               "optimization-lr.png"], "seeds": [seed]}


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
