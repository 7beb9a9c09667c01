"""Checks that two expressions are equal, cheap ways first, for the step engine.

:func:`verify_equal` tries, in order: identical trees; ``expand``/``powsimp``/
``cancel`` with op calls kept whole; the same with op calls expanded to their
registry declarations; :func:`symdl.ops.claims.check_equal` (which may split
at kinks or use ``simplify``).  Expressions too large for symbolic work go
straight to exact spot checks at rational points (50 digits), which is what
``check_equal`` falls back to as well.  :func:`op_forms_verified` checks, once
per op, that the derivative forms of :mod:`symdl.derive.opfuncs` equal
``sympy.diff`` of the declaration, so derivations may keep op calls whole.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import sympy as sp
from sympy.functions.elementary.hyperbolic import HyperbolicFunction
from sympy.functions.elementary.trigonometric import TrigonometricFunction

from ..ops import OPS
from ..ops.claims import check_equal
from .opfuncs import OpFunctionBase, expand_ops, op_derivative, op_function

__all__ = ["verify_equal", "spot_check", "op_forms_check", "op_forms_verified", "weakest",
           "SYMBOLIC_LIMIT"]

#: Above this many operations, equality is decided by spot checks only.
SYMBOLIC_LIMIT = 60
_POINTS = tuple(Fraction(n, d) for n, d in ((3, 7), (-5, 3), (11, 4), (-1, 9), (7, 2), (-13, 5)))


def verify_equal(a: sp.Expr, b: sp.Expr) -> tuple:
    """``(ok, method)``: is ``a == b`` for all real values of their symbols?

    ``method`` is ``"identical"``, ``"symbolic"`` or ``"numeric"``.
    """
    if a == b:
        return True, "identical"
    if _cheap_zero(a - b):
        return True, "symbolic"
    if a.has(OpFunctionBase) or b.has(OpFunctionBase):
        a, b = expand_ops(a), expand_ops(b)
        if a == b or _cheap_zero(a - b):
            return True, "symbolic"
    if _small(a - b):
        r = check_equal(a, b)
        if not r.ok and ("nan" in r.detail or "zoo" in r.detail) and _zero_each_side(a - b):
            return True, "symbolic"  # undefined at 0 on both sides, equal elsewhere
        return r.ok, r.method
    return spot_check(a, b), "numeric"


def _zero_each_side(e: sp.Expr) -> bool:
    """``e`` simplifies to 0 with each variable (at most two) positive, and negative:
    ``|u|`` and ``sign(u)`` resolve there (``u²·√(1 − 1/u²) = |u|·√(u² − 1)``)."""
    syms = sorted(e.free_symbols, key=lambda s: s.name)
    if not syms or len(syms) > 2:
        return False
    p = [sp.Symbol(f"p{i}", positive=True) for i in range(len(syms))]
    try:
        return all(sp.simplify(e.xreplace({s: k * q for s, k, q in zip(syms, signs, p)})) == 0
                   for signs in ((1, 1), (1, -1), (-1, 1), (-1, -1))[:2 ** len(syms)])
    except (TypeError, ValueError, NotImplementedError, RecursionError):
        return False


def _small(e: sp.Expr) -> bool:
    return sp.count_ops(e) <= SYMBOLIC_LIMIT


def _cheap_zero(e: sp.Expr) -> bool:
    if e == 0:
        return True
    if not _small(e):
        return False
    try:
        return _fast_zero(e)
    except (TypeError, ValueError, NotImplementedError):  # SymPy could not decide
        return False


def _fast_zero(e: sp.Expr) -> bool:
    if e.has(sp.Piecewise):
        e = sp.piecewise_fold(e)
        if isinstance(e, sp.Piecewise):
            return all(_fast_zero(piece) for piece, _ in e.args)
    e = sp.expand(e)
    if e == 0 or sp.powsimp(e) == 0:  # powsimp: x**n/x against x**(n - 1)
        return True
    # kinked atoms (|u|, sign(u)) are opaque to cancel: zero with them as free symbols is
    # zero for every value they take (1/(|u| + 1) − |u|/(|u| + 1)² = 1/(|u| + 1)²)
    if sp.cancel(sp.together(e)) == 0:
        return True
    # 1 + cot²u − csc²u: trigsimp knows the identities (quick here; simplify takes seconds)
    return e.has(TrigonometricFunction, HyperbolicFunction) and sp.trigsimp(e) == 0


def spot_check(a: sp.Expr, b: sp.Expr, points=_POINTS) -> bool:
    """``a`` and ``b`` agree (relative 1e-35) at exact rational points, 50 digits.

    A point where both are undefined (a pole, ``0**-y``, a complex ``min``) is
    skipped; where only one is, they differ.  At least two points must be checked.
    """
    syms = sorted(a.free_symbols | b.free_symbols, key=lambda s: s.name)
    n, checked = len(points), 0
    for k in range(n):
        vals = {s: sp.Rational(points[(k + 3 * i) % n].numerator,
                               points[(k + 3 * i) % n].denominator) for i, s in enumerate(syms)}
        va, vb = _number_at(a, vals), _number_at(b, vals)
        if va is None and vb is None:
            continue
        if va is None or vb is None:
            return False
        try:  # compared as SymPy numbers: values beyond float range (x^(e^x)) are fine
            if abs(va - vb).evalf(50) > sp.Float("1e-35", 50) * max(1, abs(va), abs(vb)):
                return False
        except (TypeError, ValueError, ArithmeticError, RecursionError):
            return False
        checked += 1
    return checked >= min(2, n) if syms else checked == 1


def _number_at(e: sp.Expr, vals: dict):
    """``e`` at ``vals`` to 50 digits, or None where it is not a finite number."""
    try:
        v = e.xreplace(vals).evalf(50)
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        return None
    return v if _finite_number(v) else None


def _finite_number(v: sp.Expr) -> bool:
    return v.is_number and not v.has(sp.zoo, sp.nan, sp.oo, -sp.oo) and v.is_finite is not False


_STRENGTH = {"identical": 0, "symbolic": 1, "numeric": 2}


def weakest(*methods: str) -> str:
    """The weakest of check methods: ``numeric`` < ``symbolic`` < ``identical``."""
    return max(methods, key=_STRENGTH.__getitem__, default="identical")


@lru_cache(maxsize=None)
def op_forms_check(name: str) -> tuple:
    """``(ok, method)``: do the derivative forms of op ``name`` (one per argument,
    parameters included) equal ``sympy.diff`` of its declaration ``OPS[name].expr``?
    ``method`` is the weakest method any argument needed."""
    fn = op_function(name)
    args = sp.symbols(f"u0:{max(fn.nargs)}", real=True)
    call = fn(*args)
    ok, method = True, "identical"
    for k, u in enumerate(args):
        ok_k, m = verify_equal(expand_ops(op_derivative(call, k)), sp.diff(call.expansion(), u))
        ok = ok and ok_k
        method = weakest(method, m)
    return ok and OPS[name] is not None, method


def op_forms_verified(name: str) -> bool:
    """Whether :func:`op_forms_check` of op ``name`` passed."""
    return op_forms_check(name)[0]
