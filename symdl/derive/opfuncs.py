"""Registry ops as SymPy functions: ``sigmoid(z)``, ``softplus(x)``, ``relu(x)``, …

A derivation may mention an op by name instead of spelling out its
declaration.  Each elementwise op of :data:`symdl.ops.OPS` (except plain
arithmetic and the elementary functions SymPy already has) gets a SymPy
``Function`` subclass of the same name.  Its arguments are the op's inputs
followed, optionally, by its parameters (``leaky_relu(x, alpha)``; an omitted
parameter takes the registry default).  :func:`expand_ops` replaces every call
by the registry declaration ``OPS[name].expr``; :func:`op_derivative` gives
``∂op/∂arg_k`` as the registry states it (the output form ``y(1 − y)`` with
``y`` replaced by the call) or, without a stated form, SymPy's derivative of
the declaration rewritten with :func:`to_ops`.

:func:`to_ops` is the targeted rewrite that recognises logistic patterns:
``e^{kw} / (1 + e^w)^n = σ(w)^k σ(−w)^(n−k)``, written with σ of the argument
that carries no minus sign (``σ(−z) = 1 − σ(z)``).
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp
from mpmath.libmp import prec_to_dps

from ..errors import UsageError
from ..ops import OPS, ElementwiseOp, Y
from ..ops.elementwise import SIGMOID_STABLE
from ..ops.elementwise import x as _X

__all__ = ["OpFunctionBase", "ELEMENTARY", "ELEMENTARY_ARITY", "op_function", "op_names",
           "expand_ops", "op_derivative", "to_ops", "op_expansion_of"]

#: Names the parser maps to SymPy's own functions (never to op functions).
ELEMENTARY = {
    "exp": sp.exp, "log": sp.log, "ln": sp.log, "sqrt": sp.sqrt, "cbrt": sp.cbrt, "root": sp.root,
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "cot": sp.cot, "sec": sp.sec, "csc": sp.csc,
    "asin": sp.asin, "acos": sp.acos, "atan": sp.atan, "acot": sp.acot, "asec": sp.asec,
    "acsc": sp.acsc, "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan,
    "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "coth": sp.coth, "sech": sp.sech,
    "csch": sp.csch, "asinh": sp.asinh, "acosh": sp.acosh, "atanh": sp.atanh, "acoth": sp.acoth,
    "abs": sp.Abs, "erf": sp.erf, "max": sp.Max, "min": sp.Min,
}
#: How many arguments each elementary function takes (``(least, most)``; 1 when absent):
#: ``log(x, 2)`` is the logarithm to base 2, ``root(x, 3)`` the cube root.
ELEMENTARY_ARITY = {"log": (1, 2), "ln": (1, 1), "root": (2, 2), "max": (2, 100), "min": (2, 100)}
# Registry ops that are plain arithmetic: written with + - * / ** instead.
_ARITHMETIC = {"add", "sub", "mul", "div", "pow"}


class OpFunctionBase(sp.Function):
    """A call of a registry op; subclasses are made by :func:`op_function`.

    The name ends in ``Base`` so that SymPy printers find
    ``_print_OpFunctionBase`` for every op class.
    """

    op_name: str = ""

    @property
    def op(self) -> ElementwiseOp:
        """The registry declaration this call stands for."""
        return OPS[self.op_name]

    def _eval_is_extended_real(self):
        return True if all(a.is_extended_real for a in self.args) else None

    def _eval_evalf(self, prec):
        # a number by the registry declaration: not unevaluated (relu), nor by an
        # mpmath function that happens to share the name (mpmath.sigmoid overflows)
        if all(a.is_number for a in self.args):
            return self.expansion().evalf(prec_to_dps(prec))
        return super()._eval_evalf(prec)

    def expansion(self) -> sp.Expr:
        """The registry declaration applied to this call's arguments."""
        return _substitute(self.op.expr, self, self.args)

    def fdiff(self, argindex=1):
        return op_derivative(self, argindex - 1)


def op_names() -> list:
    """Names callable as op functions (sorted), read from the registry now."""
    return sorted(name for name, op in OPS.items()
                  if isinstance(op, ElementwiseOp) and op.derived_from is None
                  and name not in ELEMENTARY and name not in _ARITHMETIC
                  and name.isidentifier())


@lru_cache(maxsize=None)
def op_function(name: str) -> type:
    """The SymPy ``Function`` class for registry op ``name``.

    Examples
    --------
    >>> from sympy import Symbol
    >>> sigmoid = op_function("sigmoid")
    >>> sigmoid(Symbol("z", real=True)).expansion()
    1/(1 + exp(-z))
    """
    op = OPS[name]
    if not isinstance(op, ElementwiseOp) or name not in op_names():
        raise UsageError(f"op {name!r} cannot be called in an expression")
    nargs = tuple(range(op.arity, op.arity + len(op.params) + 1))
    return type(name, (OpFunctionBase,), {"op_name": name, "nargs": nargs,
                                          "__module__": __name__})


def _symbols(op: ElementwiseOp) -> tuple:
    return (*op.inputs, *op.params)


def _substitute(form: sp.Expr, call: OpFunctionBase, args) -> sp.Expr:
    """``form`` (in the registry's symbols and ``Y``) at this call's arguments."""
    op = call.op
    values = list(args) + [sp.nsimplify(v) for v in list(op.params.values())[len(args) - op.arity:]]
    mapping = dict(zip(_symbols(op), values))
    mapping[Y] = call
    return form.xreplace(mapping)


def expand_ops(expr: sp.Expr) -> sp.Expr:
    """Replace every op call by its registry declaration (innermost first)."""
    if not expr.has(OpFunctionBase):
        return expr
    return expr.replace(lambda e: isinstance(e, OpFunctionBase), lambda e: e.expansion())


@lru_cache(maxsize=None)
def _form(name: str, k: int) -> tuple:
    """``(form, cites_registry)``: ``∂op/∂symbol_k`` in the registry's symbols."""
    op = OPS[name]
    sym = _symbols(op)[k]
    if k < op.arity and k in op.grad_forms:
        form = op.grad_forms[k]
        if "sigmoid" in OPS:  # stated in the stable form: name it σ
            form = form.subs(SIGMOID_STABLE, op_function("sigmoid")(_X))
        # a kinked form (relu' = [y > 0], stated for the kernels) reads better derived
        if not form.has(sp.Min, sp.Max, sp.Abs, sp.Piecewise):
            return form, True
    return to_ops(sp.diff(op.expr, sym)), False


def op_derivative(call: OpFunctionBase, k: int) -> sp.Expr:
    """``∂ call / ∂ args[k]`` in terms of op calls (``σ(z)·(1 − σ(z))``)."""
    return _substitute(_form(call.op_name, k)[0], call, call.args)


def cites_grad_form(call: OpFunctionBase, k: int) -> bool:
    """Whether :func:`op_derivative` used the registry's stated ``grad_forms``."""
    return _form(call.op_name, k)[1]


# ------------------------------------------------------------------ rewrites
def _logistic_base(b: sp.Expr):
    """``w`` when ``b`` is ``1 + e^w``, else None."""
    if b.is_Add and len(b.args) == 2 and sp.S.One in b.args:
        other = b.args[0] if b.args[1] == 1 else b.args[1]
        if isinstance(other, sp.exp):
            return other.args[0]
    return None


def _sigma(w: sp.Expr) -> sp.Expr:
    """σ(w), written as ``1 − σ(−w)`` when ``w`` carries a minus sign."""
    sigmoid = op_function("sigmoid")
    if w.could_extract_minus_sign():
        return 1 - sigmoid(-w)
    return sigmoid(w)


def _rewrite_mul(e: sp.Expr) -> sp.Expr:
    factors = list(sp.Mul.make_args(e))
    for i, f in enumerate(factors):
        if not (f.is_Pow and f.exp.is_Integer and f.exp < 0):
            continue
        w = _logistic_base(f.base)
        if w is None:
            continue
        n, k, j = int(-f.exp), 0, None
        for jj, g in enumerate(factors):
            if isinstance(g, sp.exp):
                ratio = g.args[0] / w
                if ratio.is_Integer and 1 <= int(ratio) <= n:
                    k, j = int(ratio), jj
                    break
        new = _sigma(w) ** k * _sigma(-w) ** (n - k)
        rest = [g for jj, g in enumerate(factors) if jj not in (i, j)]
        return sp.Mul(*rest, new)
    return e


def to_ops(expr: sp.Expr) -> sp.Expr:
    """Rewrite logistic patterns as σ calls, bottom-up; nothing else changes.

    Examples
    --------
    >>> from sympy import Symbol, exp
    >>> z = Symbol("z", real=True)
    >>> to_ops(exp(-z) / (1 + exp(-z))**2)
    (1 - sigmoid(z))*sigmoid(z)
    """
    if "sigmoid" not in OPS:
        return expr
    return _to_ops(expr, True)


def _to_ops(expr: sp.Expr, top: bool) -> sp.Expr:
    if not expr.args:
        return expr
    # A power directly inside a product is rewritten with its co-factors.
    args = tuple(_to_ops(a, not (expr.is_Mul and a.is_Pow)) for a in expr.args)
    e = expr.func(*args) if args != expr.args else expr
    if e.is_Mul or (e.is_Pow and top):
        e = _rewrite_mul(e)
    return e


def op_expansion_of(expr: sp.Expr, wrt: sp.Symbol):
    """The call ``op(wrt)`` whose declaration is exactly ``expr``, else None."""
    for name in op_names():
        op = OPS[name]
        if op.arity != 1:
            continue
        call = op_function(name)(wrt)
        if call.expansion() == expr:
            return call
    return None
