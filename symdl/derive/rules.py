"""The differentiation rules of the step engine, one function per rule family.

:func:`apply_rule` takes one unevaluated ``Derivative(f, x)`` and returns an
:class:`Applied`: the rule's name, the expression that replaces the node
(which may hold new unevaluated derivatives of the parts of ``f``), a note,
and the inner expression ``u`` when the chain rule was used.  Rules never
simplify; SymPy's automatic evaluation (``0·a = 0``, ``x·x = x²``) is all the
tidying there is.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..ops import OPS, Y
from .opfuncs import OpFunctionBase, cites_grad_form, op_derivative
from .textbook import textbook_form

__all__ = ["Applied", "apply_rule", "TRIVIAL_RULES", "d", "register_expr_printer", "show"]

#: Rules so small that one step applies them to every pending derivative.
TRIVIAL_RULES = ("constant", "identity")

_FAMILY = {
    **dict.fromkeys(("sin", "cos", "tan", "cot", "sec", "csc"), "trig"),
    **dict.fromkeys(("asin", "acos", "atan", "acot", "asec", "acsc"), "inverse trig"),
    **dict.fromkeys(("sinh", "cosh", "tanh", "coth", "sech", "csch"), "hyperbolic"),
    **dict.fromkeys(("asinh", "acosh", "atanh", "acoth"), "inverse hyperbolic"),
    "exp": "exp", "log": "log", "erf": "erf", "Abs": "abs", "Max": "max", "Min": "min",
    "sign": "sign",
}
#: Rules whose statement is a convention rather than SymPy's derivative at ``u``.
_CONVENTION = {
    "Abs": "d/du |u| = sign(u), with |u|'(0) = sign(0) = 0 as in PyTorch",
    "Max": ("d max(u, v) = 𝟙[u > v] du + 𝟙[v > u] dv; at a tie each side gets ½, "
            "as torch.maximum"),
    "Min": ("d min(u, v) = 𝟙[u < v] du + 𝟙[v < u] dv; at a tie each side gets ½, "
            "as torch.minimum"),
}
_U = sp.Symbol("u", real=True)
_SHOW = {"text": sp.sstr, "latex": sp.latex}


def register_expr_printer(fn, fmt: str = "text") -> None:
    """Let the printing layer say how notes show expressions (``fn(expr) -> str``).

    Notes are words with expressions in them; they are built while deriving, and
    this layer never imports the printers (a later layer), so the printing
    package registers its text and LaTeX printers here when it is imported.
    """
    _SHOW[fmt] = fn


def show(e, fmt: str = "text") -> str:
    """``e`` as the registered printer writes it (text: ``σ(z)·(1 − σ(z))``; or LaTeX)."""
    return _SHOW[fmt](e)


@dataclass(frozen=True)
class Applied:
    """One rule applied to one derivative: name, replacement, note, chain ``u``."""

    rule: str
    after: sp.Expr
    note: str
    u: sp.Expr | None = None


def d(f: sp.Expr, x: sp.Symbol) -> sp.Expr:
    """The unevaluated derivative ``df/dx`` (a later step evaluates it)."""
    return sp.Derivative(f, x, evaluate=False)


def apply_rule(node: sp.Derivative) -> Applied:
    """Apply the one rule that fits the outermost operation of ``node.expr``."""
    f, x = node.expr, node.variables[0]
    if len(node.variables) != 1:
        return Applied("sympy", node.doit(), "higher derivative, evaluated by SymPy")
    if not f.has(x):
        return Applied("constant", sp.S.Zero, f"{show(f)} does not depend on {show(x)}")
    if f == x:
        return Applied("identity", sp.S.One, f"d{show(x)}/d{show(x)} = 1")
    if f.is_Add:
        return Applied("sum", sp.Add(*[d(t, x) for t in f.args]),
                       "(f + g)' = f' + g': differentiate term by term")
    if f.is_Mul:
        return _mul(f, x)
    if f.is_Pow:
        return _pow(f, x)
    if isinstance(f, sp.Piecewise):
        return Applied("piecewise", sp.Piecewise(*[(d(e, x), c) for e, c in f.args]),
                       "differentiate each piece; at a kink the piece whose condition holds "
                       "gives the value, so relu'(0) = 0 as in PyTorch")
    if isinstance(f, (sp.Function, sp.Max, sp.Min)):
        return _function(f, x)
    return Applied("sympy", node.doit(), f"{type(f).__name__} has no named rule; SymPy's diff")


# ------------------------------------------------------------ products
def _mul(f: sp.Expr, x: sp.Symbol) -> Applied:
    const, rest = f.as_independent(x, as_Add=False)
    if const != 1:
        return Applied("constant multiple", const * d(rest, x),
                       f"(c·f)' = c·f' with c = {show(const)}")
    num, den = [], []
    for g in f.args:
        if g.is_Pow and g.exp.is_number and g.exp.is_negative:
            den.append(g.base ** -g.exp)
        else:
            num.append(g)
    if num and den:
        top, bottom = sp.Mul(*num), sp.Mul(*den)
        after = (d(top, x) * bottom - top * d(bottom, x)) / bottom**2
        return Applied("quotient", after, "(f/g)' = (f'·g − f·g')/g² with "
                       f"f = {show(top)}, g = {show(bottom)}")
    args = f.args
    after = sp.Add(*[sp.Mul(*args[:i], d(a, x), *args[i + 1:]) for i, a in enumerate(args)])
    note = "(f·g)' = f'·g + f·g'" if len(args) == 2 else "(f·g·h)' = f'·g·h + f·g'·h + f·g·h'"
    return Applied("product", after, note)


def _chain(name: str, outer: sp.Expr, u: sp.Expr, x: sp.Symbol, formula: str) -> Applied:
    """``outer`` is the derivative of the outer function at ``u``."""
    if u == x:
        return Applied(name, outer, formula)
    return Applied(f"chain ({name})", outer * d(u, x),
                   f"u = {show(u)}: df/d{show(x)} = df/du · du/d{show(x)}; {formula}", u)


def _pow(f: sp.Pow, x: sp.Symbol) -> Applied:
    b, e = f.base, f.exp
    if not e.has(x):
        return _chain("power", e * b ** (e - 1), b, x,
                      f"d/du uⁿ = n·uⁿ⁻¹ with n = {show(e)}")
    # a symbolic exponent: a^b = e^(b log a)
    return Applied("power (exp/log)", f * d(e * sp.log(b), x),
                   f"a^b = exp(b·log(a)), so d(a^b) = a^b·d(b·log(a)) with a = {show(b)}, "
                   f"b = {show(e)}")


# ----------------------------------------------------------- functions
def _function(f: sp.Expr, x: sp.Symbol) -> Applied:
    dep = [k for k, a in enumerate(f.args) if a.has(x)]
    if isinstance(f, OpFunctionBase):
        name, formula = "known op", _op_note(f, dep)
        parts = [op_derivative(f, k) for k in dep]
    else:
        cls = type(f).__name__
        name = _FAMILY.get(cls, "function")
        parts = [_outer(f, k) for k in dep]
        formula = _CONVENTION.get(cls) or _formula(f, dep)
        if cls == "tanh" and "tanh" in OPS and 0 in OPS["tanh"].grad_forms:
            formula = (f"registry op tanh: d/du tanh(u) = {show(OPS['tanh'].grad_forms[0])} "
                       f"with y = tanh(u)")
    if len(dep) == 1:
        return _chain(name, parts[0], f.args[dep[0]], x, formula)
    after = sp.Add(*[p * (1 if f.args[k] == x else d(f.args[k], x)) for p, k in zip(parts, dep)])
    chained = any(f.args[k] != x for k in dep)
    return Applied(f"chain ({name})" if chained else name, after,
                   f"sum over the arguments of df/darg · darg/d{show(x)}; {formula}")


def _formula(f: sp.Function, dep: list) -> str:
    """The rule in words: SymPy's derivative at ``u``, in its textbook form."""
    if len(f.args) != 1:
        return f"d/du {type(f).__name__}(…) by SymPy's rule"
    g = f.func(_U)
    return f"d/du {show(g)} = {show(textbook_form(_outer(g, 0)))}"


def _outer(f: sp.Function, k: int) -> sp.Expr:
    """The derivative of an elementary function in its ``k``-th argument."""
    u = f.args[k]
    if isinstance(f, sp.Abs):
        return sp.sign(u)
    if isinstance(f, sp.tanh) and "tanh" in OPS and 0 in OPS["tanh"].grad_forms:
        return OPS["tanh"].grad_forms[0].xreplace({Y: f})
    out = f.fdiff(k + 1)
    if out.has(sp.Derivative):  # no fdiff of its own: SymPy's diff at a dummy argument
        s = sp.Dummy("u", real=True)
        args = list(f.args)
        args[k] = s
        out = sp.diff(f.func(*args), s).xreplace({s: u})
    return out


def _op_note(f: OpFunctionBase, dep: list) -> str:
    op = f.op
    parts = []
    for k in dep:
        if cites_grad_form(f, k) and k in op.grad_forms:
            parts.append(f"its stated derivative {show(op.grad_forms[k])}")
        else:
            parts.append(f"d/d{_arg_name(op, k)} of its declaration {show(op.expr)}")
    out = "y = " + show(f) if any(Y in op.grad_forms.get(k, sp.S.Zero).free_symbols
                                      for k in dep) else ""
    kink = "" if op.smooth else ("; at a kink the declared piece holds, as in PyTorch "
                                 "(relu'(0) = 0)")
    return f"registry op {op.name}: " + "; ".join(parts) + (f" with {out}" if out else "") + kink


def _arg_name(op, k: int) -> str:
    return show((*op.inputs, *op.params)[k])
