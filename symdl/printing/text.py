"""Plain-text (Unicode) printing: ``σ(z)·(1 − σ(z))``, ``1 − tanh²(z)``, ``𝟙[x > 0]``."""
from __future__ import annotations

import sympy as sp
from sympy.printing.conventions import split_super_sub
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pretty.pretty_symbology import greek_unicode
from sympy.printing.str import StrPrinter

from ..derive.opfuncs import OpFunctionBase
from .common import indicator_condition, op_text_name, positive_first, split_mul

__all__ = ["TextPrinter", "text"]

_SUP = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
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

    # atoms -------------------------------------------------------------
    def _print_Symbol(self, expr):
        name, sups, subs = split_super_sub(expr.name)
        out = greek_unicode.get(name, name)
        for s in subs:
            s = greek_unicode.get(s, s)
            out += s.translate(_SUB) if s.isdigit() else "_" + s
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
        s = repr(float(expr))
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
        top = "·".join(self.parenthesize(f, PRECEDENCE["Mul"]) for f in num) or "1"
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
        return {"Max": "max", "Min": "min", "DiracDelta": "δ"}.get(type(f).__name__,
                                                                  type(f).__name__)

    def _print_Function(self, expr):
        return f"{self._function_name(expr)}({self._args(expr)})"

    def _print_OpFunctionBase(self, expr):
        if expr.op_name == "step" and len(expr.args) == 1:
            return f"𝟙[{self._print(sp.Gt(expr.args[0], 0, evaluate=False))}]"
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

    def _print_Piecewise(self, expr):
        cond = indicator_condition(expr)
        if cond is not None:
            return f"𝟙[{self._print(cond)}]"
        parts = [f"{self._print(e)} if {self._print(c)}" if c != sp.true
                 else f"{self._print(e)} otherwise" for e, c in expr.args]
        return "{" + "; ".join(parts) + "}"

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


def text(expr) -> str:
    """``expr`` (a SymPy expression, a Step or a Derivation) as Unicode text."""
    return _PRINTER.doprint(expr)
