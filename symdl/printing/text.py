"""Plain-text (Unicode) printing: ``σ(z)·(1 − σ(z))``, ``1 − tanh²(z)``, ``𝟙[x > 0]``."""
from __future__ import annotations

import sympy as sp
from mpmath.libmp import prec_to_dps
from sympy.printing.conventions import split_super_sub
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pretty.pretty_symbology import greek_unicode
from sympy.printing.str import StrPrinter

from ..derive.opfuncs import OpFunctionBase
from .common import (ARRAY_SETTINGS, indicator_condition, op_indicator, op_text_name,
                     positive_first, product_signs, split_mul)

__all__ = ["TextPrinter", "text"]

_SUP = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
#: letters with a Unicode subscript form (``t_j`` prints ``tⱼ``)
_SUB_LETTERS = dict(zip("aehijklmnoprstuvx", "ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ"))
#: function names as a course writes them
_NAMES = {"Max": "max", "Min": "min", "DiracDelta": "δ", "asin": "arcsin", "acos": "arccos",
          "atan": "arctan", "acot": "arccot", "asec": "arcsec", "acsc": "arccsc",
          "asinh": "arsinh", "acosh": "arcosh", "atanh": "artanh", "acoth": "arcoth"}
_REL = {">": ">", "<": "<", ">=": "≥", "<=": "≤", "==": "=", "!=": "≠"}
_MINUS = "−"


class TextPrinter(StrPrinter):
    """One-line Unicode text; ``·`` for products, ``−`` for minus, Greek names.

    Examples
    --------
    >>> import sympy as sp
    >>> z = sp.Symbol("z", real=True)
    >>> TextPrinter().doprint(1 - sp.tanh(z)**2)
    '1 − tanh²(z)'
    """

    _default_settings = {**StrPrinter._default_settings, "symbol_names": {}, **ARRAY_SETTINGS}

    # atoms -------------------------------------------------------------
    def _print_Symbol(self, expr):
        names = self._settings["symbol_names"]
        if expr in names:
            return names[expr]
        name, sups, subs = split_super_sub(expr.name)
        out = greek_unicode.get(name, name)
        for s in subs:
            s = greek_unicode.get(s, s)
            if s.isdigit():
                out += s.translate(_SUB)
            elif all(c in _SUB_LETTERS for c in s):
                out += "".join(_SUB_LETTERS[c] for c in s)
            else:
                out += "_" + s
        for s in sups:
            out += s.translate(_SUP) if s.isdigit() else "^" + s
        return out

    _print_Dummy = _print_Symbol

    def _print_Integer(self, expr):
        return (_MINUS + str(-expr.p)) if expr.p < 0 else str(expr.p)

    def _print_Rational(self, expr):
        sign = _MINUS if expr.p < 0 else ""
        return f"{sign}{abs(expr.p)}/{expr.q}"

    def _print_Float(self, expr):
        # the digits the Float carries (a float32 slope 0.01 stored to 6 digits: "0.01")
        s = f"{float(expr):.{min(15, prec_to_dps(expr._prec))}g}"
        if "e" not in s and "." not in s and "inf" not in s and "nan" not in s:
            s += ".0"
        return s.replace("-", _MINUS) if s.startswith("-") else s

    def _print_Pi(self, expr):
        return "π"

    def _print_Exp1(self, expr):
        return "e"

    # operators ---------------------------------------------------------
    def _as_ordered_terms(self, expr, order=None):
        return positive_first(super()._as_ordered_terms(expr, order=order))

    def _print_Add(self, expr, order=None):
        out = []
        for i, term in enumerate(self._as_ordered_terms(expr, order=order)):
            neg = term.could_extract_minus_sign()
            body = self.parenthesize(-term if neg else term, PRECEDENCE["Add"])
            if i == 0:
                out.append((_MINUS if neg else "") + body)
            else:
                out.append((f" {_MINUS} " if neg else " + ") + body)
        return "".join(out)

    def _print_Mul(self, expr):
        return self._fraction(*split_mul(expr, lambda e: e.as_ordered_factors()))

    def _fraction(self, negative: bool, num: list, den: list) -> str:
        signs = product_signs(num, self._settings, lambda i: "·", " ", " ⊙ ") + [""]
        top = "".join(self.parenthesize(f, PRECEDENCE["Mul"]) + sg
                      for f, sg in zip(num, signs)) or "1"
        if den:
            bottom = sp.Mul(*den)
            b = self._print(bottom)
            if not (bottom.is_Atom or (len(den) == 1 and precedence(bottom) >= PRECEDENCE["Pow"]
                                       and not bottom.is_Rational)):
                b = f"({b})"
            top = f"({top})" if len(num) > 1 else top
            top = f"{top}/{b}"
        return (_MINUS if negative else "") + top

    def _print_Pow(self, expr, rational=False):
        b, e = expr.base, expr.exp
        if e.is_number and e.is_negative:
            return self._fraction(False, [], [sp.Pow(b, -e)])
        if e == sp.S.Half:
            inner = self._print(b)
            return f"√{inner}" if b.is_Atom else f"√({inner})"
        if e.is_Integer and isinstance(b, sp.Function) and not isinstance(b, sp.exp) \
                and indicator_condition(b) is None:
            name = self._function_name(b)
            if name is not None:
                return f"{name}{str(e).translate(_SUP)}({self._args(b)})"
        base = self.parenthesize(b, PRECEDENCE["Pow"], strict=True)
        if isinstance(b, sp.exp):
            base = f"({base})"
        if e.is_Integer and e > 0:
            return base + str(e).translate(_SUP)
        ex = self._print(e)
        simple = e.is_Symbol or (e.is_Integer and e > 0)
        return f"{base}^{ex}" if simple else f"{base}^({ex})"

    def _print_exp(self, expr):
        u = expr.args[0]
        s = self._print(u)
        return f"e^{s}" if u.is_Atom and not u.could_extract_minus_sign() else f"e^({s})"

    # functions ---------------------------------------------------------
    def _args(self, f) -> str:
        return ", ".join(self._print(a) for a in f.args)

    def _function_name(self, f):
        if isinstance(f, OpFunctionBase):
            return op_text_name(f)
        if isinstance(f, (sp.Abs, sp.Derivative)):
            return None
        return _NAMES.get(type(f).__name__, type(f).__name__)

    def _print_Function(self, expr):
        return f"{self._function_name(expr)}({self._args(expr)})"

    def _print_OpFunctionBase(self, expr):
        cond = op_indicator(expr)  # declared as 1[c] (the step function)
        if cond is not None:
            return f"𝟙[{self._print(cond)}]"
        return f"{op_text_name(expr)}({self._args(expr)})"

    _print_Max = _print_Min = _print_DiracDelta = _print_Function

    def _print_Abs(self, expr):
        return f"|{self._print(expr.args[0])}|"

    def _print_Heaviside(self, expr):
        return f"𝟙[{self._print(indicator_condition(expr))}]"

    def _print_Relational(self, expr):
        op = _REL.get(expr.rel_op, expr.rel_op)
        return (f"{self.parenthesize(expr.lhs, PRECEDENCE['Relational'])} {op} "
                f"{self.parenthesize(expr.rhs, PRECEDENCE['Relational'])}")

    def _print_BooleanTrue(self, expr):
        return "otherwise"

    def _print_And(self, expr):
        return " ∧ ".join(self.parenthesize(a, PRECEDENCE["And"]) for a in expr.args)

    def _print_Or(self, expr):
        return " ∨ ".join(self.parenthesize(a, PRECEDENCE["Or"]) for a in expr.args)

    def _print_Not(self, expr):
        return "¬" + self.parenthesize(expr.args[0], PRECEDENCE["Not"])

    def _print_Piecewise(self, expr):
        """Indicator brackets: ``x·𝟙[x > 0] + α·x·𝟙[x ≤ 0]``, each piece under its own
        condition and not the earlier ones (the first that holds gives the value)."""
        cond = indicator_condition(expr)
        if cond is not None:
            return f"𝟙[{self._print(cond)}]"
        terms, earlier = [], []
        for e, c in expr.args:
            here = sp.And(c, *[sp.Not(p) for p in earlier])
            earlier.append(c)
            if e == 0 or here == sp.false:
                continue
            neg = bool(e.as_coeff_Mul()[0].is_negative)  # −t·𝟙[…], but (1 − t·x)·𝟙[…]
            e = -e if neg else e
            bracket = "" if here == sp.true else f"𝟙[{self._print(here)}]"
            if e == 1 and bracket:
                body = bracket
            else:
                body = self.parenthesize(e, PRECEDENCE["Mul"], strict=True)
                body = f"{body}·{bracket}" if bracket else body
            terms.append((f" {_MINUS} " if neg else " + ") + body if terms else
                         (_MINUS if neg else "") + body)
        return "".join(terms) or "0"

    def _print_Derivative(self, expr):
        x = expr.variables[0]
        n = len(expr.variables)
        head = f"d/d{self._print(x)}" if n == 1 else \
            f"d{str(n).translate(_SUP)}/d{self._print(x)}{str(n).translate(_SUP)}"
        return f"{head}[{self._print(expr.expr)}]"


    # derivations -------------------------------------------------------
    def _print_Step(self, step) -> str:
        return f"= {self._print(step.after)}"

    def _annotation(self, step) -> str:
        out = step.rule
        if step.u is not None:
            out += f"; u = {self._print(step.u)}"
        return f"[{out}]" + ("" if step.verified else " (not verified)")

    def _print_Derivation(self, dv) -> str:
        lines = [(self._print(dv.start), "")]
        lines += [("  " + self._print_Step(s), self._annotation(s)) for s in dv.steps]
        width = min(max(len(e) for e, _ in lines), 72) + 3
        out = [(e.ljust(width) if len(e) < width else e + "   ") + a if a else e
               for e, a in lines]
        if not dv.verified:
            out.append("(the result was not verified against SymPy's diff)")
        return "\n".join(out)


_PRINTER = TextPrinter()


def text(expr, **settings) -> str:
    """``expr`` (a SymPy expression, a Step or a Derivation) as Unicode text;
    ``symbol_names={symbol: "W₁"}`` prints those symbols by those names."""
    return (TextPrinter(settings) if settings else _PRINTER).doprint(expr)
