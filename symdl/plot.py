"""Figures: an activation with its derived derivative, training curves, learning-rate schedules.

Every function draws with matplotlib's object API on the Agg canvas (no ``pyplot``, no global
figure state, no TeX: labels are mathtext) and returns the :class:`~matplotlib.figure.Figure`.
:func:`save` and :func:`to_svg` write it byte for byte the same for the same input: SVG ids are
salted by a constant (``svg.hashsalt``), text is drawn as paths and no date is stored.

Examples
--------
>>> from symdl import plot
>>> fig = plot.activation("tanh")
>>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
['$f(x)$', "$f'(x)$"]
>>> plot.to_svg(fig) == plot.to_svg(plot.activation("tanh"))
True
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp

from .codegen.printers import ArrayPrinter
from .derive.opfuncs import expand_ops, op_function, op_names
from .derive.steps import derive
from .draw import FORMATS, new_figure, save, to_png, to_svg
from .errors import UsageError
from .ops import OPS, ElementwiseOp

__all__ = ["activation", "history", "schedule", "save", "to_svg", "to_png", "evaluate",
           "default_domain", "FORMATS"]

_SIZE = (5.0, 3.2)
_VAR = sp.Symbol("v_", real=True)  # the variable in generated code (user names may be keywords)
#: functions no op uses, which the kernel printer leaves as bare ``math`` names: NumPy's
_BARE = {"acos": np.arccos, "asin": np.arcsin, "atan": np.arctan, "acosh": np.arccosh,
         "asinh": np.arcsinh, "atanh": np.arctanh, "atan2": np.arctan2, "floor": np.floor,
         "ceil": np.ceil, "log10": np.log10, "log2": np.log2, "hypot": np.hypot,
         "erfc": np.vectorize(math.erfc, otypes=[float])}


def _figure(ax, ncols: int = 1):
    """``(figure, axes list)``: new ones on the Agg canvas unless ``ax`` is given."""
    if ax is not None:
        return ax.figure, [ax]
    return new_figure(_SIZE, ncols)


def _math(tex: str, fallback: str) -> str:
    """``$tex$`` when mathtext can draw it (no ``cases``), else the plain ``fallback``."""
    from matplotlib.mathtext import MathTextParser
    try:
        MathTextParser("path").parse(f"${tex}$")
    except (ValueError, RuntimeError):
        return fallback.replace("$", r"\$")
    return f"${tex}$"


# ---------------------------------------------------------------- activations
def _expression(op) -> tuple:
    """``(expr, name)`` for a registry op name, an expression's text or a SymPy expression."""
    if isinstance(op, sp.Expr):
        return op, None
    if not isinstance(op, str):
        raise UsageError(f"plot an op name, an expression or a SymPy expression, not {op!r}")
    name = op.strip()
    defn = OPS.get(name) if name.isidentifier() else None
    if isinstance(defn, ElementwiseOp) and defn.derived_from is None:
        if defn.arity != 1:
            raise UsageError(f"op {name!r} takes {defn.arity} inputs; a plot needs a one-input op")
        if name in op_names():
            return op_function(name)(sp.Symbol("x", real=True)), name
        return defn.expr, name
    from .derive.parse import parse
    return parse(op), None


def _variable(expr: sp.Expr) -> sp.Symbol:
    free = sorted(expr.free_symbols, key=lambda s: s.name)
    if len(free) != 1:
        names = ", ".join(s.name for s in free) or "none"
        raise UsageError(f"a plot needs an expression of one variable (it has: {names})")
    return free[0]


def evaluate(expr: sp.Expr, x: sp.Symbol, values) -> np.ndarray:
    """``expr`` at ``x = values`` through the NumPy reference printer, in float64.

    Op calls are replaced by their registry declarations; where the expression is undefined
    (log of a negative number, a division by zero) the result is NaN, never a warning.
    """
    body = expand_ops(expr).xreplace({x: _VAR})
    try:
        code = ArrayPrinter("float64").doprint(body)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot evaluate {sp.sstr(expr)} with NumPy: {exc}") from None
    # the code is printed from a SymPy tree (as the NumPy backend's), and sees NumPy only
    space = {"np": np, "math": math, "_erf": np.vectorize(math.erf, otypes=[float]),
             "__builtins__": {}, **_BARE}
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(all="ignore"):
        try:
            out = eval(compile(code, "<symdl.plot>", "eval"), space, {_VAR.name: v})  # noqa: S307
        except (NameError, TypeError, AttributeError) as exc:
            raise UsageError(f"cannot evaluate {sp.sstr(expr)} with NumPy: {exc}") from None
        out = np.broadcast_to(np.asarray(out, dtype=np.float64), v.shape).copy()
    out[~np.isfinite(out)] = np.nan
    return out


def default_domain(expr: sp.Expr, name: str | None = None) -> tuple:
    """``(lo, hi)`` within ``(-5, 5)``: all of it where ``f`` is defined but at a few poles
    (1/x), else the longest stretch where it is defined, its ends rounded to a half
    (``(0, 5)`` for log, sqrt and x**x, ``(-1, 1)`` for acos); an op whose declared domain is
    positive gets ``(0, 5)``."""
    if name is not None and "positive" in OPS[name].domain:
        return (0.0, 5.0)
    grid = np.linspace(-5.0, 5.0, 1001)
    ok = np.isfinite(evaluate(expr, _variable(expr), grid))
    if ok.mean() > 0.95 or not ok.any():
        return (-5.0, 5.0)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(np.int8), [0]])))
    starts, stops = edges[::2], edges[1::2] - 1  # the runs of defined points
    k = int(np.argmax(stops - starts))
    lo, hi = grid[starts[k]], grid[stops[k]]
    step = grid[1] - grid[0]
    nice_lo, nice_hi = np.floor(lo * 2) / 2, np.ceil(hi * 2) / 2
    return (float(nice_lo if lo - nice_lo <= 2 * step else lo) + 0.0,  # + 0.0: no -0.0
            float(nice_hi if nice_hi - hi <= 2 * step else hi) + 0.0)


def _clip_ylim(ax, curves) -> None:
    """Keep the axis on the bulk of the values when a pole sends a few of them far away."""
    vals = np.concatenate([c[np.isfinite(c)] for c in curves])
    if vals.size == 0:
        return
    lo, hi = np.percentile(vals, [3, 97])
    if vals.max() - vals.min() > 4 * max(hi - lo, 1e-12):
        pad = 0.25 * max(hi - lo, 1.0)
        ax.set_ylim(lo - pad, hi + pad)


def activation(op, domain=None, ax=None, points: int = 401, derivation=None):
    """Plot ``f`` and ``f′`` (the derivative :func:`symdl.derive.steps.derive` finds).

    Parameters
    ----------
    op : a one-input registry op (``"gelu"``), an expression's text (``"x*tanh(softplus(x))"``)
        or a SymPy expression of one variable.
    domain : ``(lo, hi)``; by default ``(-5, 5)``, or the part of it where ``f`` is defined
        (:func:`default_domain`: ``(0, 5)`` for log and sqrt, ``(-1, 1)`` for acos).  Points
        where ``f`` or ``f′`` is undefined are left out.
    ax : draw into these axes instead of a new figure.
    derivation : ``derive(f)`` when already at hand (the command line has it).

    Returns
    -------
    matplotlib.figure.Figure
    """
    expr, name = _expression(op)
    x = _variable(expr)
    dv = derivation if derivation is not None else derive(expr, x)
    lo, hi = default_domain(expr, name) if domain is None else map(float, domain)
    if not lo < hi:
        raise UsageError(f"the plot's domain needs lo < hi, not ({lo:g}, {hi:g})")
    grid = np.linspace(lo, hi, int(points))
    f, fp = evaluate(expr, x, grid), evaluate(dv.result, dv.wrt, grid)
    fig, (ax,) = _figure(ax)
    ax.axhline(0.0, color="0.8", lw=0.8)
    ax.axvline(0.0, color="0.8", lw=0.8)
    ax.plot(grid, f, lw=2.0, label="$f(x)$")
    ax.plot(grid, fp, lw=1.6, ls="--", label="$f'(x)$")
    _clip_ylim(ax, [f, fp])
    from .printing import latex, text
    ax.set_title(_math(f"f({latex(x)}) = {latex(expr)}", f"f({text(x)}) = {text(expr)}"))
    ax.set_xlabel(f"${latex(x)}$")
    ax.set_xlim(lo, hi)
    ax.legend(loc="best", frameon=False)
    ax.grid(alpha=0.3)
    return fig


# ---------------------------------------------------------------- training
def _series(history) -> dict:
    if hasattr(history, "as_dict"):
        history = history.as_dict()
    if not isinstance(history, dict):
        raise UsageError("plot.history needs a History or its as_dict(), "
                         f"not {type(history).__name__}")
    return history


def _curve(ax, values, label, **kw) -> bool:
    pts = [(i + 1, v) for i, v in enumerate(values or []) if v is not None]
    if not pts:
        return False
    ep, v = zip(*pts)
    ax.plot(ep, v, marker="o" if len(pts) < 30 else None, ms=3, label=label, **kw)
    return True


def history(history, ax=None):
    """Loss and accuracy per epoch (training and validation), from a training ``History``.

    With ``ax`` given, the loss is drawn there and the accuracy on a twin axis; otherwise loss
    and accuracy get one panel each (accuracy only where the task has one).

    Returns
    -------
    matplotlib.figure.Figure
    """
    h = _series(history)
    has_acc = any(v is not None for k in ("train_accuracy", "val_accuracy") for v in h.get(k) or [])
    fig, axes = _figure(ax, 2 if has_acc else 1)
    loss_ax = axes[0]
    _curve(loss_ax, h.get("train_loss"), "training", color="C0")
    _curve(loss_ax, h.get("val_loss"), "validation", color="C1", ls="--")
    from matplotlib.ticker import MaxNLocator
    for a in axes:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("loss")
    loss_ax.grid(alpha=0.3)
    if has_acc:
        acc_ax = axes[1] if len(axes) > 1 else loss_ax.twinx()
        _curve(acc_ax, h.get("train_accuracy"), "training accuracy" if ax else "training",
               color="C2" if ax else "C0")
        _curve(acc_ax, h.get("val_accuracy"), "validation accuracy" if ax else "validation",
               color="C3" if ax else "C1", ls="--")
        acc_ax.set_ylabel("accuracy")
        if ax is None:
            acc_ax.set_xlabel("epoch")
            acc_ax.set_title("accuracy")
            acc_ax.grid(alpha=0.3)
            acc_ax.legend(loc="best", frameon=False)
    handles = [hl for a in fig.axes for hl in zip(*a.get_legend_handles_labels())] if ax else None
    if handles:
        loss_ax.legend(*zip(*handles), loc="best", frameon=False)
    elif loss_ax.lines:
        loss_ax.legend(loc="best", frameon=False)
    return fig


def schedule(schedule, steps: int, ax=None, lr: float = 0.1):
    """The learning rate ``η_t`` for ``t = 0 … steps − 1``.

    ``schedule`` is a :class:`symdl.optim.schedules.Schedule` or its command-line spec
    (``"cosine:T_max=50"``, starting from ``lr``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(schedule, str):
        from .optim.schedules import make_schedule
        schedule = make_schedule(schedule, lr)
    steps = int(steps)
    if steps < 1:
        raise UsageError(f"plot.schedule needs steps >= 1, not {steps}")
    t = np.arange(steps)
    eta = np.array([schedule.lr_at(int(s)) for s in t])
    fig, (ax,) = _figure(ax)
    ax.plot(t, eta, drawstyle="steps-post", lw=1.8, label=schedule.name)
    ax.set_xlabel("step $t$")
    ax.set_ylabel(r"$\eta_t$")
    ax.set_title(f"{schedule.name} schedule")
    ax.set_ylim(bottom=min(0.0, float(eta.min())))
    ax.grid(alpha=0.3)
    return fig
