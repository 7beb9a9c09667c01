"""Pieces the text and LaTeX printers share: how a product splits, op names."""
from __future__ import annotations

import re

import sympy as sp

from ..derive.opfuncs import OpFunctionBase

__all__ = ["split_mul", "indicator_condition", "op_indicator", "op_latex_name", "op_text_name",
           "positive_first", "product_signs", "ARRAY_SETTINGS"]

#: Printer settings for expressions whose symbols stand for arrays (one entry of an explicit
#: 1×1 instance stands for a whole block): ``arrays`` turns products into ⊙ (entrywise), and a
#: factor in ``matrices`` multiplies what follows it as a matrix (``W x``).
ARRAY_SETTINGS = {"arrays": False, "matrices": frozenset()}

_TEXT_NAMES = {"sigmoid": "σ"}
_NAME_LIKE = re.compile(r"^(\\[A-Za-z]+(\{[^{}() |]*\})?)+(_\{[^{}() |]*\})?$")


def _rank(f: sp.Expr) -> int:
    """Numbers first, then plain factors, sums, and derivatives last."""
    if f.is_Number:
        return 0
    if isinstance(f, sp.Derivative):
        return 3
    return 2 if f.is_Add else 1


def positive_first(terms: list) -> list:
    """A sum's terms with the first positive one moved to the front, as a course writes
    ``σ(z) − t`` rather than ``−t + σ(z)``; otherwise SymPy's order is kept."""
    terms = list(terms)
    for i, t in enumerate(terms):
        if not t.could_extract_minus_sign():
            return [t] + terms[:i] + terms[i + 1:]
    return terms


def product_signs(factors: list, settings: dict, plain, matrix: str, odot: str) -> list:
    """The sign printed after each factor but the last: ``plain(i)`` (the printer's own) for
    scalars; with the ``arrays`` setting, ``matrix`` after a factor in ``matrices`` and
    ``odot`` between two arrays (numbers keep the plain sign)."""
    out = []
    for i in range(len(factors) - 1):
        a, b = factors[i], factors[i + 1]
        if not settings.get("arrays") or a.is_Number or b.is_Number:
            out.append(plain(i))
        else:
            out.append(matrix if a in settings.get("matrices", ()) else odot)
    return out


def split_mul(expr: sp.Expr, ordered) -> tuple:
    """``(negative, numerator factors, denominator factors)`` of a product.

    Only powers with a negative *numeric* exponent go below the bar, so
    ``e^{-z}`` stays a factor of the numerator.  ``ordered`` is the printer's
    factor order; within it numbers come first and sums and unevaluated
    derivatives last (``σ(z)·(1 − σ(z))``, ``2·x·d/dx[…]``).
    """
    coeff, rest = expr.as_coeff_Mul()
    negative = bool(coeff.is_negative)
    coeff = -coeff if negative else coeff
    num, den = [], []
    if coeff.is_Rational and coeff.q != 1:
        den.append(sp.Integer(coeff.q))
        if coeff.p != 1:
            num.append(sp.Integer(coeff.p))
    elif coeff != 1 and not (coeff.is_Float and float(coeff) == 1.0):  # 1.0·e^x reads e^x
        num.append(coeff)
    for f in ordered(rest) if rest != 1 else []:
        if f.is_Pow and f.exp.is_number and f.exp.is_negative:
            den.append(sp.Pow(f.base, -f.exp))
        else:
            num.append(f)
    key = {id(f): (_rank(f), i) for i, f in enumerate(num)}
    num.sort(key=lambda f: key[id(f)])
    return negative, num, den


def indicator_condition(expr: sp.Expr):
    """The condition ``c`` when ``expr`` is an indicator ``1[c]``, else None.

    ``Piecewise((1, c), (0, True))`` is ``1[c]``, ``Piecewise((0, c), (1, True))`` is
    ``1[not c]`` (a relation's negation flips it: ``1[x > 0]``).  ``Heaviside(u)`` is shown
    as ``1[u > 0]`` (``Heaviside(u, 1)`` as ``1[u ≥ 0]``); at ``u = 0`` SymPy's
    default ``Heaviside(0) = 1/2`` is what ties of max/min give, as in PyTorch's
    ``torch.maximum``.
    """
    if isinstance(expr, sp.Piecewise) and len(expr.args) == 2:
        (a, c), (b, last) = expr.args
        if a == 1 and b == 0 and last == sp.true:
            return c
        if a == 0 and b == 1 and last == sp.true:  # 0 where c holds: 1[not c]
            return sp.Not(c)
    if isinstance(expr, sp.Heaviside):
        u = expr.args[0]
        h0 = expr.args[1] if len(expr.args) > 1 else sp.S.Half
        return sp.Ge(u, 0, evaluate=False) if h0 == 1 else sp.Gt(u, 0, evaluate=False)
    return None


def op_indicator(f: OpFunctionBase):
    """The condition ``c`` (in the call's arguments) when the op called is declared as an
    indicator ``1[c]`` (the step function), else None: printed as ``1[c]``, not by name."""
    op = getattr(f, "op", None)
    body, inputs = getattr(op, "expr", None), tuple(getattr(op, "inputs", ()))
    if body is None or len(f.args) != len(inputs):
        return None
    cond = indicator_condition(body)
    return None if cond is None else cond.xreplace(dict(zip(inputs, f.args)))


def op_latex_name(f: OpFunctionBase) -> str:
    """The LaTeX name of an op call: the registry's ``latex`` when it is a name."""
    latex = getattr(f.op, "latex", None)
    if latex and _NAME_LIKE.match(latex) and latex != r"\mathbf{1}":
        return latex
    return r"\operatorname{%s}" % f.op_name.replace("_", r"\_")


def op_text_name(f: OpFunctionBase) -> str:
    """The plain-text name of an op call (``σ`` for sigmoid)."""
    return _TEXT_NAMES.get(f.op_name, f.op_name)
