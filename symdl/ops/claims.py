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

from .registry import OPS, ElementwiseOp, G, Y
from .rowops import C, OPERAND_SYMBOLS, RowOp, g_j, u_j, z_j

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
            if at0.is_number and at0 != 0 and at0 is not sp.nan:  # nan: undefined on a side
                return ClaimResult(False, "symbolic", f"differs by {at0} at 0")
            halves = [d.subs(syms[0], p), d.subs(syms[0], -p), at0]
            if all(not h.has(*_KINKY) and _zero_symbolic(h) for h in halves):
                return ClaimResult(True, "symbolic", "split at 0")
    except (TypeError, ValueError, NotImplementedError):  # SymPy could not decide
        pass
    return _numeric(d, syms, points)


def _numeric(d, syms, points) -> ClaimResult:
    """Exact spot checks; a point where the difference is undefined (nan: a side
    undefined there) tells nothing and is skipped, and a claim undefined at every
    point is not proven."""
    n, defined = len(points), 0
    for k in range(max(n, 1)):
        vals = {s: sp.Rational(*_frac(points[(k + 3 * i) % n])) for i, s in enumerate(syms)}
        v = d.subs(vals).evalf(50)
        if v is sp.nan:
            continue
        if not v.is_number or abs(complex(v)) > 1e-40:
            return ClaimResult(False, "numeric", f"differs by {v} at {vals}")
        defined += 1
    if not defined:
        return ClaimResult(False, "numeric", "undefined at every test point")
    return ClaimResult(True, "numeric", f"{defined} exact points")


def _frac(f: Fraction):
    return (f.numerator, f.denominator)


# ------------------------------------------------------------------ per op
@lru_cache(maxsize=None)
def check_op(name: str) -> dict:
    """Check every claim of one op; ``{claim: ClaimResult}``."""
    op = OPS[name]
    if isinstance(op, ElementwiseOp):
        return _check_elementwise(op)
    if isinstance(op, RowOp) and op.derived_from is None:
        return _check_rowop(op)
    return {}


def _check_elementwise(op: ElementwiseOp) -> dict:
    out = {}
    if op.stable is not None:
        out["stable form"] = check_equal(op.stable, op.expr)
    for i, form in op.grad_forms.items():
        out[f"d/d{op.inputs[i]} form"] = check_equal(form.subs(Y, op.expr), op.diff(i))
    return out


def _operand_rows(op: RowOp, width: int) -> list:
    """Explicit operand values to check ``op`` on: one-hot targets of each
    class (and a general distribution unless ``onehot_only``), masks with
    entries left out (one of them every entry)."""
    if op.operands == ("target",):
        rows = [(tuple(sp.Integer(int(i == y)) for i in range(width)),) for y in range(width)]
        if not op.onehot_only:  # a general target distribution summing to one
            t = sp.symbols(f"t0:{width - 1}", real=True)
            rows.append(((*t, 1 - sum(t)),))
        return rows
    if op.operands == ("mask",):
        pats = [(1,) * width, (1, 0) + (1,) * (width - 2), (0,) + (1,) * (width - 1), (0,) * width]
        return [(tuple(map(sp.Integer, p)),) for p in pats]
    if not op.operands:
        return [()]
    raise ValueError(f"{op.name}: no explicit instances for operands {op.operands}")


def row_instance(op: RowOp, z, operands, params: dict, g=None, u=None):
    """The declared statistics, output and VJP of ``op`` on an explicit row:
    ``(out, vjp, vjp2)`` with ``out`` a list (per element) or one expression
    (per row); ``g`` is the upstream gradient (a list, or one symbol per
    row), ``u`` the VJP's upstream (a list) when ``vjp2`` is wanted."""
    kinds = dict(zip(op.operands, operands))
    t = kinds.get("target", (sp.S.Zero,) * len(z))

    def at(e, i, env):
        sub = {z_j: z[i], C: len(z)}
        for kind, vals in kinds.items():
            sub[OPERAND_SYMBOLS[kind]] = vals[i]
        if isinstance(g, (list, tuple)):
            sub[g_j] = g[i]
        if u is not None:
            sub[u_j] = u[i]
        return e.subs(env).subs(sub)

    env = dict(params)
    if g is not None and not isinstance(g, (list, tuple)):
        env[G] = g
    for stats in (op.stats, op.vjp_stats if g is not None else (),
                  op.vjp2_stats if u is not None else ()):
        for sym, how, elem in stats:
            terms = [at(elem, i, env) for i in range(len(z))]
            if how == "max":
                env[sym] = sp.Max(*terms)
            elif how == "dot":
                env[sym] = sum(ti * e for ti, e in zip(t, terms))
            else:
                env[sym] = sum(terms)
    if op.output == "row":
        out = op.out.subs(env).subs(C, len(z))
    else:
        out = [at(op.out, i, env) for i in range(len(z))]
    vjp = [at(op.vjp, i, env) for i in range(len(z))] if g is not None else None
    vjp2 = [at(op.vjp2, i, env) for i in range(len(z))] if u is not None else None
    return out, vjp, vjp2


def _check_rowop(op: RowOp, width: int = 3) -> dict:
    z = sp.symbols(f"z0:{width}", real=True)
    params = {s: sp.nsimplify(d) for s, d in op.params.items()}
    per_row = op.output == "row"
    g = sp.Symbol("g", real=True) if per_row else list(sp.symbols(f"g0:{width}", real=True))
    u = list(sp.symbols(f"u0:{width}", real=True)) if op.vjp2 is not None else None
    out = {}
    for k, operands in enumerate(_operand_rows(op, width)):
        plain = op.plain(z, *operands)
        plain = plain.subs(params) if per_row else [p.subs(params) for p in plain]
        got, vjp, vjp2 = row_instance(op, z, operands, params, g, u)
        tag = f", instance {k}" if len(operands) else ""
        if per_row:
            out[f"value{tag}"] = check_equal(got, plain)
        for i, (a, b) in enumerate(zip(got, plain) if not per_row else ()):
            out[f"value {i}{tag}"] = check_equal(a, b)
        wants = [g * sp.diff(plain, zi) if per_row else sum(
            gk * sp.diff(pk, zi) for gk, pk in zip(g, plain)) for zi in z]
        for i in range(width):
            out[f"vjp d/dz{i}{tag}"] = check_equal(vjp[i], wants[i])
        for i, zi in enumerate(z if u is not None else ()):  # second order: the VJP's own VJP
            want = sum(uk * sp.diff(wk, zi) for uk, wk in zip(u, wants))
            out[f"vjp2 d/dz{i}{tag}"] = check_equal(vjp2[i], want)
    return out
