"""SymPy printers that emit kernel expressions, per dtype.

Every number is printed as a typed constant (``np.float32(0.5)``): in numba,
an int or float64 constant next to a float32 value silently promotes the
whole expression to float64.  Two flavours:

* :class:`ScalarPrinter` for loops (numba, or plain Python): ``Piecewise``
  prints as a conditional expression, so only the taken branch is evaluated
  (no overflow in the branch that is not used).
* :class:`ArrayPrinter` for whole NumPy arrays (the reference path):
  ``Piecewise`` prints as ``np.where``.

``Heaviside`` prints with its value at 0 made explicit, ``sign`` as PyTorch's
(0 at NaN); ``DiracDelta`` is refused.
"""
from __future__ import annotations

import functools

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

__all__ = ["KinkRewrites", "ScalarPrinter", "ArrayPrinter", "assignments", "tanh_form"]

_FUNCS = {
    "exp": "np.exp", "log": "np.log", "sqrt": "np.sqrt", "tanh": "np.tanh", "sinh": "np.sinh",
    "cosh": "np.cosh", "sin": "np.sin", "cos": "np.cos", "tan": "np.tan", "atan": "np.arctan",
    "log1p": "np.log1p", "expm1": "np.expm1", "Abs": "np.abs",
}


class KinkRewrites:
    """Printing shared by every kernel printer (Python, NumPy, CUDA): kinks as
    ``Piecewise``, which each printer renders its own way."""

    def _print_Heaviside(self, e):
        x = e.args[0]
        h0 = e.args[1] if len(e.args) > 1 else sp.S.Half
        return self._print(sp.Piecewise((0, x < 0), (h0, sp.Eq(x, 0)), (1, True)))

    def _print_sign(self, e):
        # PyTorch's sign: 0 at NaN (np.sign gives NaN), so |x|' and mae' at NaN are 0 as in torch
        x = e.args[0]
        return self._print(sp.Piecewise((1, x > 0), (-1, x < 0), (0, True)))

    def _print_DiracDelta(self, e):
        raise ValueError("DiracDelta cannot be compiled (a derivative of a kink was taken twice)")


@functools.cache
def _tanh_terms():
    """Taylor coefficients of tanh at 0 up to x¹⁵ (x, x³, ...); derived on first use, since
    SymPy's series takes 0.1 s that a run loading cached kernels need not spend."""
    x = sp.Symbol("x", real=True)
    series = sp.series(sp.tanh(x), x, 0, 17).removeO()
    return [series.coeff(x, k) for k in range(1, 17, 2)]


#: below this |x| the series is used (its first omitted term is under 2e-16 of tanh x there)
TANH_SERIES_BELOW = sp.Rational(1, 8)


def tanh_form(u: sp.Symbol, fresh) -> tuple:
    """tanh(u) in operations a loop computes fast (``libm``'s tanh costs three
    to four exps): ``(1 − e)/(1 + e)`` with ``e = exp(−2|u|)``, sign restored,
    loses at most a few ulps for ``|u| ≥ 1/8``; below that, the odd Taylor
    series to u¹⁵ (Horner in u²).  Within 4 ulps of tanh in float32 and
    float64 (tests/test_unrolled.py).  Returns ``(rows, value)``: assignments
    to fresh symbols, then the value in terms of them."""
    w, a, e, b = (fresh() for _ in range(4))
    terms = _tanh_terms()
    poly = terms[-1]
    for c in reversed(terms[:-1]):
        poly = c + w * poly
    rows = [(w, u * u), (a, sp.Abs(u)), (e, sp.exp(-2 * a)), (b, (1 - e) / (1 + e))]
    return rows, sp.Piecewise((u * poly, a < TANH_SERIES_BELOW), (-b, u < 0), (b, True))


def _one_exp(e: sp.Expr) -> sp.Expr:
    """``exp(min(0, v))`` (a stable sigmoid's numerator) as ``1`` or ``exp(−|v|)``,
    the exp its denominator already takes: one exp per element instead of two."""
    def swap(x):
        m = x.args[0]
        if isinstance(m, sp.Min) and len(m.args) == 2 and sp.S.Zero in m.args:
            v = m.args[0] if m.args[1] == 0 else m.args[1]
            return sp.Piecewise((sp.S.One, v >= 0), (sp.exp(-sp.Abs(v)), True))
        return x
    return e.replace(lambda x: isinstance(x, sp.exp), swap)


class ScalarPrinter(KinkRewrites, PythonCodePrinter):
    """Scalar kernel code for one dtype (``"float32"`` or ``"float64"``)."""

    printmethod = "_symdl_scalar"

    #: forms a loop evaluates faster (scalar ``libm`` calls are most of a kernel's time)
    fast_forms = True

    def __init__(self, dtype: str = "float32", settings=None):
        super().__init__(settings or {"fully_qualified_modules": False, "standard": "python3"})
        self.dtype = dtype

    # numbers ---------------------------------------------------------
    def _const(self, value) -> str:
        return f"np.{self.dtype}({float(value)!r})"

    def _print_Integer(self, e):
        return self._const(int(e))

    def _print_Rational(self, e):
        return self._const(float(e))

    def _print_Float(self, e):
        return self._const(float(e))

    def _print_NumberSymbol(self, e):
        return self._const(float(e.evalf(20)))

    _print_Pi = _print_Exp1 = _print_NumberSymbol

    def _print_Half(self, e):
        return self._const(0.5)

    # operators -------------------------------------------------------
    def _print_Pow(self, e, rational=False):
        base, ex = e.args
        if ex == sp.S.Half:
            return f"np.sqrt({self._print(base)})"
        if ex == -1:
            return f"({self._print(sp.S.One)} / {self.parenthesize(base, 50)})"
        if ex.is_Integer and 2 <= int(ex) <= 4:
            b = self.parenthesize(base, 50)
            return "(" + " * ".join([b] * int(ex)) + ")"
        if ex.is_Integer and -4 <= int(ex) <= -2:
            b = self.parenthesize(base, 50)
            return f"({self._print(sp.S.One)} / (" + " * ".join([b] * -int(ex)) + "))"
        return f"{self.parenthesize(base, 60)} ** {self.parenthesize(ex, 60)}"

    def _print_Function(self, e):
        name = type(e).__name__
        if name in _FUNCS:
            return f"{_FUNCS[name]}({', '.join(self._print(a) for a in e.args)})"
        if name == "erf":
            return f"{self._erf()}({self._print(e.args[0])})"
        return super()._print_Function(e)

    def _erf(self):
        return "math.erf"

    def _print_exp(self, e):
        """In float32 loops ``_exp32``, which vectorises (``libm``'s expf is a call per element)."""
        if self.fast_forms and self.dtype == "float32":
            return f"_exp32({self._print(e.args[0])})"
        return self._print_Function(e)

    _print_erf = _print_Function

    def _print_Min(self, e):
        return self._fold(e.args, "min")

    def _print_Max(self, e):
        return self._fold(e.args, "max")

    def _fold(self, args, fn):
        out = self._print(args[0])
        for a in args[1:]:
            out = f"{fn}({out}, {self._print(a)})"
        return out

    def _print_Piecewise(self, e):
        *pairs, last = e.args
        if last.cond != sp.true:
            raise ValueError(f"Piecewise without a default branch: {e}")
        out = self._print(last.expr)
        for expr, cond in reversed(pairs):
            out = f"({self._print(expr)} if {self._print(cond)} else {out})"
        return out

    def _print_Relational(self, e):
        return f"({self._print(e.lhs)} {e.rel_op} {self._print(e.rhs)})"

    def _print_And(self, e):
        return "(" + " and ".join(self._print(a) for a in e.args) + ")"

    def _print_Or(self, e):
        return "(" + " or ".join(self._print(a) for a in e.args) + ")"


for _name in _FUNCS:
    if f"_print_{_name}" not in ScalarPrinter.__dict__:
        setattr(ScalarPrinter, f"_print_{_name}", ScalarPrinter._print_Function)


class ArrayPrinter(ScalarPrinter):
    """Whole-array NumPy code: both branches of a ``Piecewise`` are computed."""

    fast_forms = False  # NumPy's exp and tanh over arrays are already vectorised

    def _fold(self, args, fn):
        out = self._print(args[0])
        for a in args[1:]:
            out = f"np.{fn}imum({out}, {self._print(a)})"
        return out

    def _erf(self):
        return "_erf"

    def _print_Piecewise(self, e):
        *pairs, last = e.args
        out = self._print(last.expr)
        for expr, cond in reversed(pairs):
            out = f"np.where({self._print(cond)}, {self._print(expr)}, {out})"
        return out

    def _print_And(self, e):
        return "(" + " & ".join(self._print(a) for a in e.args) + ")"

    def _print_Or(self, e):
        return "(" + " | ".join(self._print(a) for a in e.args) + ")"


def assignments(exprs: list, names: list, printer: ScalarPrinter, indent: str) -> list:
    """Lines computing ``names[i] = exprs[i]``, common subexpressions first.
    A loop printer (``fast_forms``) takes one exp per stable sigmoid and
    computes tanh by :func:`tanh_form`, each of its arguments once."""
    fast = getattr(printer, "fast_forms", False)
    if fast:
        exprs = [_one_exp(sp.sympify(e)) for e in exprs]
    temps, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("t"), optimizations=None,
                            order="canonical")
    rows = list(temps) + list(zip(names, reduced))
    if fast:
        rows = _expand_tanh(rows)
    return [f"{indent}{s} = {printer.doprint(v)}" for s, v in rows]


def _expand_tanh(rows: list) -> list:
    """Rows with each ``tanh(u)`` computed by :func:`tanh_form` in rows of its own."""
    count = iter(range(1 << 30))

    def fresh():
        return sp.Symbol(f"q{next(count)}", real=True)

    out = []
    for s, v in rows:
        v = sp.sympify(v)
        while True:
            found = sorted((t for t in v.atoms(sp.tanh) if not t.args[0].has(sp.tanh)),
                           key=sp.default_sort_key)
            if not found:
                break
            for t in found:
                u = t.args[0]
                if not u.is_Symbol:
                    sym = fresh()
                    out.append((sym, u))
                    u = sym
                rows_t, value = tanh_form(u, fresh)
                r = fresh()
                out += rows_t + [(r, value)]
                v = v.xreplace({t: r})
        out.append((s, v))
    return out
