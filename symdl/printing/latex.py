r"""LaTeX printing: op calls by name, indicators for steps, derivations in ``align*``.

``σ(x)²`` prints as ``\sigma^{2}\left(x\right)`` (the ``exp=`` argument SymPy
passes for powers of functions is honoured), ``Heaviside(x)`` as
``\mathbf{1}\left[x > 0\right]``, Greek symbol names as Greek.  Output uses
``amsmath`` (``align*``) and ``amssymb`` (``\mathbb``).
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pretty.pretty_symbology import greek_unicode

from .common import (ARRAY_SETTINGS, indicator_condition, op_indicator, op_latex_name,
                     positive_first, product_signs, split_mul)

__all__ = ["SymdlLatexPrinter", "latex", "latex_text"]

_TEXT_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}"}


_SUPERS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻ⁿᵏᵗ", "0123456789-nkt"))
_SUBS = dict(zip("₀₁₂₃₄₅₆₇₈₉ⱼᵢₜ", "0123456789jit"))
#: Unicode maths in notes and rule names, as LaTeX that pdflatex reads in ``\text{...}``
_TEXT_MATH = {"·": r"\cdot", "−": "-", "√": r"\surd", "𝟙": r"\mathbf{1}", "½": r"\tfrac12",
              "∂": r"\partial", "→": r"\to", "≥": r"\geq", "≤": r"\leq", "≠": r"\neq",
              "⊙": r"\odot", "|": r"\vert", "ᵀ": r"^{\top}", "Σ": r"\Sigma", "∈": r"\in",
              "×": r"\times",
              "←": r"\leftarrow", "∧": r"\wedge", "≈": r"\approx", "⁄": "/",
              **{v: "\\" + k for k, v in greek_unicode.items() if k[0].islower() or
                 k in ("Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Phi", "Psi",
                       "Omega")}}


def latex_text(s: str) -> str:
    r"""``s`` escaped for ``\text{...}``; Unicode maths (``σ``, ``²``, ``·``) as LaTeX.

    Examples
    --------
    >>> latex_text("1 + tan² = sec²")
    '1 + tan$^{2}$ = sec$^{2}$'
    """
    out, i = [], 0
    while i < len(s):
        c = s[i]
        for table, fmt in ((_SUPERS, "$^{%s}$"), (_SUBS, "$_{%s}$")):
            if c in table:
                j = i
                while j < len(s) and s[j] in table:
                    j += 1
                out.append(fmt % "".join(table[k] for k in s[i:j]))
                i = j
                break
        else:
            if c in _TEXT_MATH:
                tex = _TEXT_MATH[c]
                out.append(tex if tex in ("-", "/") else f"${tex}$")
            else:
                out.append(_TEXT_ESCAPES.get(c, c))
            i += 1
    return "".join(out).replace("$$", "")


class SymdlLatexPrinter(LatexPrinter):
    r"""SymPy's LaTeX printer with symdl's op calls, indicators and derivations.

    Examples
    --------
    >>> import sympy as sp
    >>> from symdl.derive.opfuncs import op_function
    >>> z = sp.Symbol("z", real=True)
    >>> SymdlLatexPrinter().doprint(op_function("sigmoid")(z)**2)
    '\\sigma^{2}\\left(z\\right)'
    """

    _default_settings = {**LatexPrinter._default_settings, "inv_trig_style": "full",
                         **ARRAY_SETTINGS}

    # products ----------------------------------------------------------
    def _as_ordered_terms(self, expr, order=None):
        return positive_first(super()._as_ordered_terms(expr, order=order))

    def _join(self, factors: list) -> str:
        if len(factors) == 1:  # alone above or below a bar: no brackets
            return self._print(factors[0])
        out, printed = "", []
        for i, f in enumerate(factors):
            s = self.parenthesize(f, PRECEDENCE["Mul"], strict=False)
            if isinstance(f, sp.Derivative) and i < len(factors) - 1:
                s = r"\left(%s\right)" % s
            printed.append(s)

        def plain(i):
            s = printed[i + 1]
            numeric = s[:1].isdigit() or s.startswith("-") or (
                factors[i].is_Number and s.startswith(r"\frac"))
            return r" \cdot " if numeric else " "
        signs = product_signs(factors, self._settings, plain, " ", r" \odot ") + [""]
        for s, sg in zip(printed, signs):
            out += s + sg
        return out

    def _print_Mul(self, expr):
        negative, num, den = split_mul(expr, lambda e: e.as_ordered_factors())
        top = self._join(num) or "1"
        out = r"\frac{%s}{%s}" % (top, self._join(den)) if den else top
        return ("- " if negative else "") + out

    # functions ---------------------------------------------------------
    def _with_exp(self, name: str, args: str, exp=None, brackets="()") -> str:
        if exp is not None:
            name = "%s^{%s}" % (name, exp)
        return r"%s\left%s%s\right%s" % (name, brackets[0], args, brackets[1])

    def _print_OpFunctionBase(self, expr, exp=None):
        cond = op_indicator(expr)  # declared as 1[c] (the step function)
        if cond is not None:
            return self._indicator(cond, exp)
        args = ", ".join(self._print(a) for a in expr.args)
        return self._with_exp(op_latex_name(expr), args, exp)

    def _indicator(self, cond, exp=None) -> str:
        tex = r"\mathbf{1}\left[%s\right]" % self._print(cond)
        return r"\left(%s\right)^{%s}" % (tex, exp) if exp is not None else tex

    def _print_Heaviside(self, expr, exp=None):
        return self._indicator(indicator_condition(expr), exp)

    def _print_Piecewise(self, expr, exp=None):
        cond = indicator_condition(expr)
        if cond is not None:
            return self._indicator(cond, exp)
        tex = super()._print_Piecewise(expr)
        return r"\left(%s\right)^{%s}" % (tex, exp) if exp is not None else tex

    # derivations -------------------------------------------------------
    def _annotation(self, step) -> str:
        out = r"\text{%s}" % latex_text(step.rule)
        if step.u is not None:
            out += r",\ u = %s" % self._print(step.u)
        if not step.verified:
            out += r"\ \text{(not verified)}"
        return out

    def _print_Step(self, step) -> str:
        return r"&= %s && %s" % (self._print(step.after), self._annotation(step))

    def _print_Derivation(self, dv) -> str:
        rows = [self._print_Step(s) for s in dv.steps]
        if rows:
            rows[0] = self._print(dv.start) + " " + rows[0]
        else:
            rows = [self._print(dv.start) + r" &= " + self._print(dv.result)]
        if not dv.verified:
            rows.append(r"&\text{(the result was not verified against SymPy's diff)}")
        return "\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}"


_PRINTER = SymdlLatexPrinter()


def latex(expr, **settings) -> str:
    """``expr`` (a SymPy expression, a Step or a Derivation) as LaTeX;
    ``symbol_names={symbol: "W_{1}"}`` prints those symbols by those names."""
    return (SymdlLatexPrinter({"inv_trig_style": "full", **settings}) if settings
            else _PRINTER).doprint(expr)
