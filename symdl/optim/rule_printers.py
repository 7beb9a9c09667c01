"""Printers for update rules: symbol names as in the papers, a chosen term order.

Used by :mod:`symdl.optim.derivation`; text (Unicode) and LaTeX.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

_SUB = str.maketrans("0123456789+-=()t", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₜ")
_SUP = str.maketrans("0123456789+-t", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻ᵗ")

#: symbol name -> (text, LaTeX, torch name or None)
NAMES = {
    "p": ("θ", r"\theta", None), "g": ("g", "g", None), "g_w": ("g", "g", None),
    "m": ("m", "m", None), "v": ("v", "v", None), "vmax": ("vᵐᵃˣ", r"v^{\max}", None),
    "mhat": ("m̂", r"\hat{m}", None), "vhat": ("v̂", r"\hat{v}", None), "vtilde": ("ṽ", r"\tilde{v}", None),
    "gbar": ("ḡ", r"\bar{g}", None), "s": ("s", "s", None), "u": ("u", "u", None), "b": ("b", "b", None),
    "delta": ("Δθ", r"\Delta\theta", None),
    "lr": ("α", r"\alpha", "lr"), "beta1": ("β₁", r"\beta_{1}", "betas[0]"),
    "beta2": ("β₂", r"\beta_{2}", "betas[1]"), "eps": ("ε", r"\epsilon", "eps"),
    "weight_decay": ("λ", r"\lambda", "weight_decay"), "momentum": ("μ", r"\mu", "momentum"),
    "dampening": ("τ", r"\tau", "dampening"), "alpha": ("ρ", r"\rho", "alpha"), "rho": ("ρ", r"\rho", "rho"),
    "lr_decay": ("η", r"\eta", "lr_decay"), "initial_accumulator_value": ("s₀", "s_{0}", "initial_accumulator_value"),
    "momentum_decay": ("ψ", r"\psi", "momentum_decay"),
    "mu_t": ("μₜ", r"\mu_{t}", None), "mu_next": ("μₜ₊₁", r"\mu_{t+1}", None),
    "first": ("[t = 1]", r"[t = 1]", None),
}
#: per-step scalars shown as their own line (the rest are inlined or shown as a symbol)
NAMED_SCALARS = ("mu_t", "mu_next")
SHOWN_AS_SYMBOL = ("first",)

# ---------------------------------------------------------------- ordering
class _Order:
    """Term and factor order shared by both printers."""

    def _setup(self, variables=(), own=None):
        self.variables, self.own = frozenset(variables), own
        return self

    def _terms(self, expr):
        terms = list(expr.args)
        if len(terms) == 2 and terms[1].is_Symbol and terms[0].is_Number:
            return [terms[1], terms[0]]  # t - 1, t + 1

        def key(term):
            fs = term.free_symbols
            return (self.own not in fs, not fs & self.variables, term.could_extract_minus_sign(),
                    not term.is_Number, any(s.name == "t" for s in fs), sp.default_sort_key(term))
        return sorted(terms, key=key)

    def _factor_key(self, f):
        if f.is_Number or f.is_NumberSymbol or f.is_Symbol:
            return (0 if f.is_Number else 1 if f.is_NumberSymbol else 2), False, 0, sp.default_sort_key(f)
        kind = 4 if f.is_Add else 6 if isinstance(f, sp.Piecewise) else 3 if f.is_Pow else 5
        return 3, any(s.name == "t" for s in f.free_symbols), kind, sp.default_sort_key(f)

    @staticmethod
    def _iverson(expr):
        """``Piecewise((1, c), (0, True))`` is the Iverson bracket ``[c]``."""
        return len(expr.args) == 2 and expr.args[0].expr == 1 and expr.args[1].expr == 0 \
            and expr.args[1].cond == sp.true

    @staticmethod
    def _oriented(rel):
        """``t ≥ m`` rather than ``m ≤ t``: the step on the left."""
        def stepped(e):
            return e.is_Symbol and (e.name == "t" or e.name.endswith("ₜ"))
        return rel.reversed if stepped(rel.rhs) and not stepped(rel.lhs) else rel

    def _groups(self, expr):
        """``(negative, coef_num, coef_den, var_num, var_den)`` factor lists, ordered."""
        c, rest = expr.as_coeff_Mul()
        neg = c < 0
        c = -c if neg else c
        num, den = [], []
        if c.is_Rational:
            num += [sp.Integer(c.p)] if c.p != 1 else []
            den += [sp.Integer(c.q)] if c.q != 1 else []
        elif c != 1:
            num.append(c)
        for f in sp.Mul.make_args(rest):
            if f.is_Pow and f.exp.is_Number and f.exp.is_negative:
                den.append(f.base ** -f.exp)
            else:
                num.append(f)
        out = []
        for part in (num, den):
            out.append(sorted([f for f in part if not f.free_symbols & self.variables], key=self._factor_key))
        for part in (num, den):
            out.append(sorted([f for f in part if f.free_symbols & self.variables], key=self._factor_key))
        return (neg, *out)

    def _print_Add(self, expr, order=None):
        out = ""
        for i, term in enumerate(self._terms(expr)):
            neg = term.could_extract_minus_sign()
            body = self._print(-term if neg else term)
            out += ("-" if neg else "") + body if i == 0 else (" - " if neg else " + ") + body
        return out

    def _print_Mul(self, expr):
        neg, cn, cd, vn, vd = self._groups(expr)
        if not cn and cd and vn and not vd:  # m/(1 - β^t): one fraction
            body = self._frac(vn, cd)
        else:
            parts = [self._frac(cn, cd) if cn or cd else "", self._frac(vn, vd) if vn or vd else ""]
            body = self._join(parts, bool(cd))
        return ("-" if neg else "") + body


class _Text(_Order, StrPrinter):
    def _product(self, factors, group=False):
        out = ""
        for f in factors:
            s = self._print(f)
            if ((f.is_Add or isinstance(f, sp.Mod)) and (len(factors) > 1 or not group)) or \
                    (f.is_Number and not f.is_Integer and len(factors) > 1):
                s = f"({s})"
            out += ("" if not out else "·" if s[0].isdigit() else " ") + s
        return out

    def _frac(self, num, den):
        top = self._product(num) if num else "1"
        if not den:
            return top
        bottom = self._product(den, group=True)
        if len(den) > 1 or not (den[0].is_Atom or isinstance(den[0], sp.Function) or den[0].is_Pow):
            bottom = f"({bottom})"
        return f"{top}/{bottom}"

    def _join(self, parts, fraction_first):
        parts = [q for q in parts if q]
        return (" · " if fraction_first else " ").join(parts)

    def _print_Pow(self, expr, rational=False):
        b, e = expr.args
        base = self._print(b)
        if not (b.is_Symbol or (b.is_Number and b >= 0) or isinstance(b, sp.Function)):
            base = f"({base})"
        if e == sp.S.Half:
            return f"√{base}"
        if e.is_Number and e.is_negative:
            return f"1/{self._print(b ** -e) if -e != 1 else base}"
        ex = self._print(e)
        if len(ex) == 1 and ex.translate(_SUP) != ex:
            return base + ex.translate(_SUP)
        return f"{base}^{ex if e.is_Atom else f'({ex})'}"

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Pi(self, expr):
        return "π"

    def _print_Abs(self, expr):
        return f"|{self._print(expr.args[0])}|"

    def _print_floor(self, expr):
        return f"⌊{self._print(expr.args[0])}⌋"

    def _print_MinMaxBase(self, expr):
        return f"{type(expr).__name__.lower()}({', '.join(self._print(a) for a in expr.args)})"

    _print_Max = _print_Min = _print_MinMaxBase

    def _print_Mod(self, expr):
        return f"{self._print(expr.args[0])} mod {self._print(expr.args[1])}"

    def _print_Relational(self, expr):
        expr = self._oriented(expr)
        op = {">=": "≥", "<=": "≤", "==": "=", "!=": "≠"}.get(expr.rel_op, expr.rel_op)
        return f"{self._print(expr.lhs)} {op} {self._print(expr.rhs)}"

    def _print_Piecewise(self, expr):
        if self._iverson(expr):
            return f"[{self._print(expr.args[0].cond)}]"
        parts = [f"{self._print(e)} if {self._print(c)}" for e, c in expr.args[:-1]]
        return "{" + "; ".join(parts + [f"{self._print(expr.args[-1].expr)} otherwise"]) + "}"


class _Latex(_Order, LatexPrinter):
    def _product(self, factors, group=False):
        out = ""
        for f in factors:
            s = self._print(f)
            if (f.is_Add or isinstance(f, sp.Mod)) and (len(factors) > 1 or not group):
                s = rf"\left({s}\right)"
            out += ("" if not out else r" \cdot " if s[0].isdigit() else " ") + s
        return out

    def _frac(self, num, den):
        if not den:
            return self._product(num)
        top = self._product(num, group=True) if num else "1"
        return rf"\frac{{{top}}}{{{self._product(den, group=True)}}}"

    def _join(self, parts, fraction_first):
        return " ".join(q for q in parts if q)

    def _print_Relational(self, expr):
        return super()._print_Relational(self._oriented(expr))

    def _print_Piecewise(self, expr):
        if self._iverson(expr):
            return rf"\left[{self._print(expr.args[0].cond)}\right]"
        return super()._print_Piecewise(expr)


def _printers(latex_names, variables=(), own=None):
    return (_Text({"order": "none"})._setup(variables, own),
            _Latex({"symbol_names": latex_names, "order": "none"})._setup(variables, own))
