"""Optimizer paths on two test surfaces, drawn as one figure.

Each surface is a SymPy expression of ``x, y``; its gradient is
``sympy.diff`` of it (lambdified once), never written by hand.  Every
optimizer of :data:`symdl.optim.OPTIMIZERS` starts from the same point and
runs as the real class on one float64 ``Parameter`` of two elements.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..nn.parameter import Parameter, ParamPack
from . import OPTIMIZERS
from .derivation import expr_latex

x, y = sp.symbols("x y", real=True)


@dataclass(frozen=True)
class Surface:
    """``f(x, y)`` with a start, its minimum, the box to draw and each optimizer's settings."""

    title: str
    f: sp.Expr
    start: tuple
    minimum: tuple
    box: tuple  # (x0, x1, y0, y1)
    settings: dict  # optimizer name -> constructor keywords
    log_levels: bool = False


SURFACES = {
    "quadratic": Surface(
        "ill-conditioned quadratic (condition number 20)",
        x ** 2 / 2 + 10 * y ** 2, (-4.5, 1.5), (0.0, 0.0), (-5, 2, -2, 2),
        {"sgd": dict(lr=0.04, momentum=0.7), "adagrad": dict(lr=1.0), "rmsprop": dict(lr=0.05),
         "adadelta": dict(lr=5.0), "adam": dict(lr=0.2), "adamw": dict(lr=0.2, weight_decay=0.05),
         "adamax": dict(lr=0.3), "nadam": dict(lr=0.2)}),
    "rosenbrock": Surface(
        "Rosenbrock", (1 - x) ** 2 + 100 * (y - x ** 2) ** 2, (-1.2, 1.0), (1.0, 1.0), (-2, 2, -1, 3),
        {"sgd": dict(lr=1e-3, momentum=0.9), "adagrad": dict(lr=1.0), "rmsprop": dict(lr=0.01),
         "adadelta": dict(lr=1.0), "adam": dict(lr=0.1), "adamw": dict(lr=0.1, weight_decay=0.05),
         "adamax": dict(lr=0.3), "nadam": dict(lr=0.05)},
        log_levels=True),
}


def gradient(surface: Surface):
    """``(f, ∇f)`` as NumPy functions of ``(x, y)``, from ``sympy.diff`` of the declaration."""
    f = sp.lambdify((x, y), surface.f, "numpy")
    df = sp.lambdify((x, y), [sp.diff(surface.f, x), sp.diff(surface.f, y)], "numpy")
    return f, df


def run(surface: Surface, name: str, steps: int, backend=None) -> np.ndarray:
    """The ``(steps + 1, 2)`` path of optimizer ``name`` on ``surface`` (its settings);
    ``backend``: whose kernels step it (e.g. ``backend_for("numpy")``, the reference
    kernels, for one-off runs that should compile nothing; default: the usual one)."""
    _, df = gradient(surface)
    q = Parameter(np.array(surface.start, dtype=np.float64), "xy")
    if backend is not None:
        ParamPack([q], "float64", backend)
    opt = OPTIMIZERS[name]([q], **surface.settings.get(name, {}))
    path = [q.data.copy()]
    for _ in range(steps):
        q.grad[...] = df(*q.data)
        opt.step()
        path.append(q.data.copy())
    return np.array(path)


def _label(name: str, kw: dict) -> str:
    sym = {"lr": r"\alpha", "momentum": r"\mu", "weight_decay": r"\lambda"}
    parts = [f"${sym.get(k, k)}={v:g}$" for k, v in kw.items()]
    return f"{name} ({', '.join(parts)})" if parts else name


def plot_trajectories(path, steps: int = 500, surfaces=("quadratic", "rosenbrock"), optimizers=None):
    """Run every optimizer on each surface and save one PNG (one panel per surface).

    Returns ``{surface: {optimizer: (steps + 1, 2) array}}``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(optimizers or OPTIMIZERS)
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]  # no grey: contours are
    colors = {n: palette[i % len(palette)] for i, n in enumerate(names)}
    out = {}
    fig, axes = plt.subplots(1, len(surfaces), figsize=(6.2 * len(surfaces), 5.6), squeeze=False)
    for ax, sname in zip(axes[0], surfaces):
        surf = SURFACES[sname]
        f, _ = gradient(surf)
        x0, x1, y0, y1 = surf.box
        gx, gy = np.meshgrid(np.linspace(x0, x1, 400), np.linspace(y0, y1, 400))
        z = f(gx, gy)
        if surf.log_levels:
            levels = np.logspace(-1, np.log10(z.max()), 14)
            ax.contour(gx, gy, z, levels=levels, colors="0.7", linewidths=0.6,
                       norm=matplotlib.colors.LogNorm())
        else:
            ax.contour(gx, gy, z, levels=np.geomspace(0.05, z.max(), 14), colors="0.7", linewidths=0.6)
        out[sname] = {}
        for name in names:
            p = run(surf, name, steps)
            out[sname][name] = p
            ax.plot(p[:, 0], p[:, 1], "-", color=colors[name], lw=1.2, alpha=0.85,
                    label=_label(name, surf.settings.get(name, {})))
            ax.plot(p[-1, 0], p[-1, 1], "o", color=colors[name], ms=4)
        ax.plot(*surf.start, "ks", ms=6, label="start")
        ax.plot(*surf.minimum, "k*", ms=12, label="minimum")
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xlabel("$x$")
        ax.set_ylabel("$y$")
        ax.set_title(f"{surf.title}\n$f(x, y) = {expr_latex(surf.f)}$", fontsize=11)
        ax.legend(fontsize=7.5, loc="upper left" if surf.log_levels else "lower right",
                  framealpha=0.9)
    fig.suptitle(f"symdl optimizers, {steps} steps from the same start (gradients by sympy.diff)",
                 fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return out
