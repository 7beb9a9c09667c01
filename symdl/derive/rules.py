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

__all__ = ["Applied", "apply_rule", "TRIVIAL_RULES", "d"]

#: Rules so small that one step applies them to every pending derivative.
TRIVIAL_RULES = ("constant", "identity")

_FAMILY = {
    "sin": "trig", "cos": "trig", "tan": "trig", "cot": "trig", "sec": "trig", "csc": "trig",
    "sinh": "hyperbolic", "cosh": "hyperbolic", "tanh": "hyperbolic", "exp": "exp", "log": "log",
    "erf": "erf", "Abs": "abs", "Max": "max", "Min": "min", "sign": "sign",
}
_OUTER = {
    "exp": "d/du e^u = e^u",
    "log": "d/du log(u) = 1/u",
    "sin": "d/du sin(u) = cos(u)",
    "cos": "d/du cos(u) = -sin(u)",
    "tan": "d/du tan(u) = 1 + tan(u)^2",
    "sinh": "d/du sinh(u) = cosh(u)",
    "cosh": "d/du cosh(u) = sinh(u)",
    "erf": "d/du erf(u) = 2 e^(-u^2) / sqrt(pi)",
    "Abs": "d/du |u| = sign(u), with |u|'(0) = sign(0) = 0 as in PyTorch",
    "Max": ("d max(u, v) = 1[u > v] du + 1[v > u] dv; at a tie each side gets 1/2 "
            "(Heaviside(0) = 1/2, as torch.maximum)"),
    "Min": ("d min(u, v) = 1[u < v] du + 1[v < u] dv; at a tie each side gets 1/2 "
            "(Heaviside(0) = 1/2, as torch.minimum)"),
}


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
        return Applied("constant", sp.S.Zero, f"{sp.sstr(f)} does not depend on {x}")
    if f == x:
        return Applied("identity", sp.S.One, f"d{x}/d{x} = 1")
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
                       f"(c f)' = c f' with c = {sp.sstr(const)}")
    num, den = [], []
    for g in f.args:
        if g.is_Pow and g.exp.is_number and g.exp.is_negative:
            den.append(g.base ** -g.exp)
        else:
            num.append(g)
    if num and den:
        top, bottom = sp.Mul(*num), sp.Mul(*den)
        after = (d(top, x) * bottom - top * d(bottom, x)) / bottom**2
        return Applied("quotient", after, "(f/g)' = (f' g - f g') / g^2 with "
                       f"f = {sp.sstr(top)}, g = {sp.sstr(bottom)}")
    args = f.args
    after = sp.Add(*[sp.Mul(*args[:i], d(a, x), *args[i + 1:]) for i, a in enumerate(args)])
    note = "(f g)' = f' g + f g'" if len(args) == 2 else "(f g h)' = f' g h + f g' h + f g h'"
    return Applied("product", after, note)


def _chain(name: str, outer: sp.Expr, u: sp.Expr, x: sp.Symbol, formula: str) -> Applied:
    """``outer`` is the derivative of the outer function at ``u``."""
    if u == x:
        return Applied(name, outer, formula)
    return Applied(f"chain ({name})", outer * d(u, x),
                   f"u = {sp.sstr(u)}: df/d{x} = df/du * du/d{x}; {formula}", u)


def _pow(f: sp.Pow, x: sp.Symbol) -> Applied:
    b, e = f.base, f.exp
    if not e.has(x):
        return _chain("power", e * b ** (e - 1), b, x,
                      f"d/du u^n = n u^(n-1) with n = {sp.sstr(e)}")
    # a symbolic exponent: a^b = e^(b log a)
    return Applied("power (exp/log)", f * d(e * sp.log(b), x),
                   f"a^b = exp(b log a), so d(a^b) = a^b d(b log a) with a = {sp.sstr(b)}, "
                   f"b = {sp.sstr(e)}")


# ----------------------------------------------------------- functions
def _function(f: sp.Expr, x: sp.Symbol) -> Applied:
    dep = [k for k, a in enumerate(f.args) if a.has(x)]
    if isinstance(f, OpFunctionBase):
        name, formula = "known op", _op_note(f, dep)
        parts = [op_derivative(f, k) for k in dep]
    else:
        cls = type(f).__name__
        name = _FAMILY.get(cls, "function")
        formula = _OUTER.get(cls, f"d/du {cls}(u) by SymPy's rule for {cls}")
        parts = [_outer(f, k) for k in dep]
        if cls == "tanh" and "tanh" in OPS and 0 in OPS["tanh"].grad_forms:
            formula = (f"registry op tanh: d/du tanh(u) = {sp.sstr(OPS['tanh'].grad_forms[0])} "
                       f"with y = tanh(u)")
    if len(dep) == 1:
        return _chain(name, parts[0], f.args[dep[0]], x, formula)
    after = sp.Add(*[p * (1 if f.args[k] == x else d(f.args[k], x)) for p, k in zip(parts, dep)])
    chained = any(f.args[k] != x for k in dep)
    return Applied(f"chain ({name})" if chained else name, after,
                   f"sum over the arguments of df/darg * darg/d{x}; {formula}")


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
            parts.append(f"grad_forms[{k}] = {sp.sstr(op.grad_forms[k])}")
        else:
            parts.append(f"d/d{_arg_name(op, k)} of its declaration {sp.sstr(op.expr)}")
    out = "y = " + sp.sstr(f) if any(Y in op.grad_forms.get(k, sp.S.Zero).free_symbols
                                      for k in dep) else ""
    kink = "" if op.smooth else ("; at a kink the declared piece holds, as in PyTorch "
                                 "(relu'(0) = 0)")
    return f"registry op {op.name}: " + "; ".join(parts) + (f" with {out}" if out else "") + kink


def _arg_name(op, k: int) -> str:
    return str((*op.inputs, *op.params)[k])
