"""Checks of stated forms against the declarations, by SymPy.

A *claim* is an expression symdl states instead of deriving at run time:
a stable form, a derivative in terms of the output, a fused row-loss
gradient.  :func:`check_equal` proves a claim symbolically where SymPy can
(splitting the real line at 0 for ``Abs``/``Min``/``Max``/``Piecewise``),
and otherwise falls back to exact numeric spot checks at rational points
(50 significant digits).  Nothing here runs at import time.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from .losses import ZY, RowLossOp, t_j, z_j
from .registry import OPS, ElementwiseOp, Y

_KINKY = (sp.Abs, sp.Min, sp.Max, sp.Piecewise, sp.sign, sp.Heaviside)
_POINTS = [Fraction(n, d) for n, d in ((3, 7), (-5, 3), (11, 4), (-1, 9), (7, 2), (-13, 5))]


@dataclass(frozen=True)
class ClaimResult:
    """``ok`` and how it was decided: ``"symbolic"`` or ``"numeric"``."""

    ok: bool
    method: str
    detail: str = ""


def _plain(e: sp.Expr) -> sp.Expr:
    return e.replace(log1p, lambda u: sp.log(1 + u)).replace(expm1, lambda u: sp.exp(u) - 1)


def _zero_symbolic(d: sp.Expr) -> bool:
    d = sp.expand(d.rewrite(sp.exp))
    if d == 0:
        return True
    return sp.simplify(d) == 0


def check_equal(a: sp.Expr, b: sp.Expr, points=_POINTS) -> ClaimResult:
    """Is ``a == b`` for every real value of their free symbols?"""
    d = _plain(sp.sympify(a)) - _plain(sp.sympify(b))
    syms = sorted(d.free_symbols, key=lambda s: s.name)
    try:
        if not d.has(*_KINKY):
            if _zero_symbolic(d):
                return ClaimResult(True, "symbolic")
        elif len(syms) == 1:
            p = sp.Symbol("p", positive=True)
            at0 = d.subs(syms[0], 0)
            if at0.is_number and at0 != 0:
                return ClaimResult(False, "symbolic", f"differs by {at0} at 0")
            halves = [d.subs(syms[0], p), d.subs(syms[0], -p), at0]
            if all(not h.has(*_KINKY) and _zero_symbolic(h) for h in halves):
                return ClaimResult(True, "symbolic", "split at 0")
    except (TypeError, ValueError, NotImplementedError):  # SymPy could not decide
        pass
    return _numeric(d, syms, points)


def _numeric(d, syms, points) -> ClaimResult:
    n = len(points)
    for k in range(max(n, 1)):
        vals = {s: sp.Rational(*_frac(points[(k + 3 * i) % n])) for i, s in enumerate(syms)}
        v = d.subs(vals).evalf(50)
        if not v.is_number or abs(complex(v)) > 1e-40:
            return ClaimResult(False, "numeric", f"differs by {v} at {vals}")
    return ClaimResult(True, "numeric", f"{n} exact points")


def _frac(f: Fraction):
    return (f.numerator, f.denominator)


# ------------------------------------------------------------------ per op
@lru_cache(maxsize=None)
def check_op(name: str) -> dict:
    """Check every claim of one op; ``{claim: ClaimResult}``."""
    op = OPS[name]
    if isinstance(op, ElementwiseOp):
        return _check_elementwise(op)
    if isinstance(op, RowLossOp):
        return _check_rowloss(op)
    return {}


def _check_elementwise(op: ElementwiseOp) -> dict:
    out = {}
    if op.stable is not None:
        out["stable form"] = check_equal(op.stable, op.expr)
    for i, form in op.grad_forms.items():
        out[f"d/d{op.inputs[i]} form"] = check_equal(form.subs(Y, op.expr), op.diff(i))
    return out


def row_instance(op: RowLossOp, z, t, params: dict):
    """The declared statistics, loss and gradient on an explicit row."""
    env = {ZY: sum(ti * zi for zi, ti in zip(z, t)), **params}
    for sym, how, elem in op.stats:
        terms = [elem.subs(env).subs({z_j: zi, t_j: ti}) for zi, ti in zip(z, t)]
        env[sym] = sp.Max(*terms) if how == "max" else sum(terms)
    loss = op.loss.subs(env)
    grad = [op.grad.subs(env).subs({z_j: zi, t_j: ti}) for zi, ti in zip(z, t)]
    return loss, grad


def _check_rowloss(op: RowLossOp, width: int = 3) -> dict:
    z = sp.symbols(f"z0:{width}", real=True)
    params = {s: sp.Integer(1) if s.name == "margin" else sp.Integer(0) for s in op.params}
    targets = [tuple(sp.Integer(int(i == y)) for i in range(width)) for y in range(width)]
    if not op.onehot_only:  # a general target distribution summing to one
        t = sp.symbols(f"t0:{width - 1}", real=True)
        targets.append((*t, 1 - sum(t)))
    out = {}
    for k, t in enumerate(targets):
        plain = op.plain(z, t).subs(params)
        loss, grad = row_instance(op, z, t, params)
        out[f"loss, target {k}"] = check_equal(loss, plain)
        for i, zi in enumerate(z):
            out[f"d/dz{i}, target {k}"] = check_equal(grad[i], sp.diff(plain, zi))
    return out
