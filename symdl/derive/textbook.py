"""Textbook forms: a table of rewrites that bring a derivative to the form a course writes.

Each :class:`Rewrite` is a recogniser (a subexpression → its replacement, or
None), a name printed as the step's rule, and a note.  The table is data:
adding a form is one entry, not a branch on a function's name.  Two kinds:

* identities (``1 + tan²u = sec²u``, ``(e^u − e^−u)/(e^u + e^−u) = tanh u``,
  ``u·sign(u) = |u|``) apply wherever they match;
* tidy-ups (expand, common denominator, common factor) apply to the whole
  expression, and only when they make it smaller.

Every application is checked equal to the expression before it
(:func:`symdl.derive.checks.verify_equal`, which tries SymPy's ``expand``,
``cancel`` and, for small expressions, ``simplify``); a rewrite that does not
verify raises :class:`RewriteError`, an internal error: its result is never
shown.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp

from ..errors import SymdlError
from .checks import verify_equal
from .opfuncs import to_ops

__all__ = ["Rewrite", "RewriteError", "REWRITES", "textbook_steps", "textbook_form"]

_MAX_PASSES = 20


class RewriteError(SymdlError):
    """A textbook rewrite whose result SymPy did not confirm (a bug in the table; exit 1)."""


@dataclass(frozen=True)
class Rewrite:
    """``find(e)`` is ``e`` rewritten, or None.  ``whole``: ``find`` takes the whole
    expression (it walks it itself); ``tidy``: the whole expression, and only when the
    result is smaller (:func:`sympy.count_ops`).  Otherwise every subexpression."""

    name: str
    find: Callable
    note: str
    tidy: bool = False
    whole: bool = False


# ------------------------------------------------------------ recognisers
def _pythagoras(f, g):
    """A recogniser of ``c + c·f²(u) → c·g²(u)`` (``1 + tan² = sec²``, ``1 + cot² = csc²``)."""
    def find(e):
        if not e.is_Add:
            return None
        for term in e.args:
            c, rest = term.as_coeff_Mul()
            if rest.is_Pow and rest.exp == 2 and isinstance(rest.base, f) and c in e.args:
                others = list(e.args)
                others.remove(term)
                others.remove(c)
                return sp.Add(*others, c * g(rest.base.args[0]) ** 2)
        return None
    return find


def _powers(e) -> list:
    return [f.as_base_exp() for f in sp.Mul.make_args(e)]


def _split_fraction(e):
    """``(B^n + R)/B^n → 1 + R/B^n`` (a numerator holding the denominator)."""
    if not e.is_Mul:
        return None
    for b, n in _powers(e):
        if not (n.is_Integer and n < 0):
            continue
        whole = b ** -n
        for f in e.args:
            if f.is_Add and whole in f.args:
                rest = sp.Mul(*[g for g in e.args if g not in (f, b ** n)])
                return rest * (1 + (f - whole) * b ** n)
    return None


def _exp_pair(b):
    """``u`` when ``b`` is ``e^u + e^−u`` (``+1``) or ``e^u − e^−u`` (``−1``): ``(u, ±1)``."""
    if not (b.is_Add and len(b.args) == 2):
        return None
    for first, second in (b.args, b.args[::-1]):
        c1, f1 = first.as_coeff_Mul()
        c2, f2 = second.as_coeff_Mul()
        if isinstance(f1, sp.exp) and isinstance(f2, sp.exp) and c1 == 1 and abs(c2) == 1 \
                and f1.args[0] == -f2.args[0] and not f1.args[0].could_extract_minus_sign():
            return f1.args[0], int(c2)
    return None


def _tanh_quotient(e):
    """``(e^u − e^−u)^k / (e^u + e^−u)^k → tanh^k(u)``."""
    if not e.is_Mul:
        return None
    pows = _powers(e)
    for b, n in pows:
        p = _exp_pair(b)
        if p is None or p[1] != 1 or not (n.is_Integer and n < 0):
            continue
        u = p[0]
        for a, k in pows:
            q = _exp_pair(a)
            if q is not None and q == (u, -1) and k == -n:
                rest = sp.Mul(*[f for f in e.args if f not in (a ** k, b ** n)])
                return rest * sp.tanh(u) ** k
    return None


def _abs_from_sign(e):
    """``u·sign(u) → |u|`` (for real ``u``)."""
    if not e.is_Mul:
        return None
    for f in e.args:
        if isinstance(f, sp.sign) and f.args[0] in e.args and f.args[0].is_extended_real:
            rest = [g for g in e.args if g not in (f, f.args[0])]
            return sp.Mul(*rest, sp.Abs(f.args[0]))
    return None


def _secant_root(e):
    """``u²·√(1 − 1/u²) → |u|·√(u² − 1)`` (in a denominator: asec′, acsc′)."""
    if not e.is_Mul:
        return None
    pows = _powers(e)
    for b, n in pows:
        if n != sp.Rational(-1, 2) or not b.is_Add or len(b.args) != 2 or 1 not in b.args:
            continue
        other = b.args[0] if b.args[1] == 1 else b.args[1]
        c, inv = other.as_coeff_Mul()
        if c != -1 or not (inv.is_Pow and inv.exp == -2) or inv.base ** -2 not in e.args:
            continue
        u = inv.base
        if not u.is_extended_real:
            continue
        rest = [f for f in e.args if f not in (b ** n, inv)]
        return sp.Mul(*rest, 1 / (sp.Abs(u) * sp.sqrt(u**2 - 1)))
    return None


def _numeric_content(e):
    """``c·(k·a + k·b) → c·k·(a + b)``: a sum's numeric content joins the coefficient."""
    if not e.is_Mul or not e.args[0].is_Number:
        return None
    for f in e.args:
        if f.is_Add:
            k, prim = f.primitive()
            if k != 1:
                rest = [g for g in e.args if g is not f]
                out = sp.Mul(*rest, k, prim)
                return out if out != e else None
    return None


def _together(e):
    if e.is_Add and any(sp.fraction(t)[1] != 1 for t in e.args):
        return sp.together(e)
    return e


def _expand(e):
    # products only: powers of sums stay whole ((1 + e^−z)² is not multiplied out)
    return sp.expand(e, power_exp=False, power_base=False, log=False, multinomial=False)


def _logistic(e):
    """``e^(kw)/(1 + e^w)ⁿ → σ(w)ᵏ·σ(−w)ⁿ⁻ᵏ`` with ``σ(−w) = 1 − σ(w)`` (a power
    with its co-factors, so :func:`to_ops` walks the whole expression itself)."""
    out = to_ops(e)
    return out if out != e else None


REWRITES = (
    Rewrite("rewrite in terms of known ops", _logistic,
            "e^(kw)/(1 + e^w)ⁿ = σ(w)ᵏ·σ(−w)ⁿ⁻ᵏ with σ(−w) = 1 − σ(w)", whole=True),
    Rewrite("1 + tan² = sec²", _pythagoras(sp.tan, sp.sec),
            "Pythagorean identity 1 + tan²u = sec²u; the other form is 1 + tan²u"),
    Rewrite("1 + cot² = csc²", _pythagoras(sp.cot, sp.csc),
            "Pythagorean identity 1 + cot²u = csc²u; the other form is −(1 + cot²u)"),
    Rewrite("split the fraction", _split_fraction,
            "the numerator holds the denominator: (B + R)/B = 1 + R/B"),
    Rewrite("recognise tanh", _tanh_quotient,
            "tanh(u) = (e^u − e^(−u))/(e^u + e^(−u))"),
    Rewrite("u·sign(u) = |u|", _abs_from_sign, "u·sign(u) = |u| for real u"),
    Rewrite("u²·√(1 − 1/u²) = |u|·√(u² − 1)", _secant_root,
            "u²·√(1 − 1/u²) = |u|·√(u² − 1) for real u"),
    Rewrite("cancel a number", _numeric_content,
            "a number common to a sum's terms cancels: (2a + 2b)/2 = a + b"),
    Rewrite("common denominator", _together, "over one denominator", tidy=True),
    Rewrite("expand", _expand, "multiply out: the terms cancel", tidy=True),
)


# ------------------------------------------------------------ application
def _replace(e, find):
    """``e`` with every match of ``find`` replaced, innermost first."""
    if not e.args:
        return e
    args = tuple(_replace(a, find) for a in e.args)
    new = e.func(*args) if args != e.args else e
    out = find(new)
    return new if out is None else out


def _apply(rw: Rewrite, e):
    if rw.whole:
        out = rw.find(e)
        return e if out is None else out
    if rw.tidy:
        try:
            out = rw.find(e)
        except (TypeError, ValueError, NotImplementedError, RecursionError):
            return e
        return out if sp.count_ops(out) < sp.count_ops(e) else e
    return _replace(e, rw.find)


def textbook_steps(e: sp.Expr, table=REWRITES) -> list:
    """``[(rewrite, before, after, method), …]``: the table applied until nothing changes, each
    application checked equal to its input; :class:`RewriteError` when one is not."""
    steps = []
    for _ in range(_MAX_PASSES):
        for rw in table:
            new = _apply(rw, e)
            if new != e:
                ok, method = verify_equal(e, new)
                if not ok:
                    raise RewriteError(f"internal error: the textbook rewrite {rw.name!r} gave "
                                       f"a result SymPy does not confirm ({sp.sstr(e)} → "
                                       f"{sp.sstr(new)})")
                steps.append((rw, e, new, method))
                e = new
                break
        else:
            return steps
    return steps


def textbook_form(e: sp.Expr) -> sp.Expr:
    """``e`` after :func:`textbook_steps` (``1 + tan²(u)`` → ``sec²(u)``)."""
    steps = textbook_steps(e)
    return steps[-1][2] if steps else e
