"""Step-by-step differentiation of one scalar expression, as data.

:func:`derive` rewrites ``d/dx f`` one rule at a time (constant, identity,
sum, constant multiple, product, quotient, power, chain, exp, log, trig,
hyperbolic, abs, max/min, piecewise, known op) until no derivative is left,
then, where it applies, rewrites the result in terms of the op's output
(``e^{-z}/(1 + e^{-z})^2 → σ(z)·(1 − σ(z))``).  Every step is checked equal
to the one before (op calls expanded to their registry declarations,
pending derivatives evaluated by SymPy) and the check is part of the
:class:`Step`.  Nothing prints here; :mod:`symdl.printing` renders a
:class:`Derivation`.  No ``simplify()``: targeted rewrites only.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import sympy as sp

from ..errors import UsageError
from ..ops.claims import check_equal
from .opfuncs import OpFunctionBase, cites_grad_form, expand_ops, op_derivative, \
    op_expansion_of, to_ops
from .rules import TRIVIAL_RULES, Applied, apply_rule, d

__all__ = ["Step", "Derivation", "derive", "verify_equal", "register_renderer"]

_KINKY = (sp.Abs, sp.Min, sp.Max, sp.Piecewise, sp.sign, sp.Heaviside)
_RENDERERS: dict = {}


@dataclass(frozen=True)
class Step:
    """One rewrite ``before = after`` by one rule.

    Parameters
    ----------
    rule : the rule's name (``"sum"``, ``"chain (exp)"``, ``"known op"``, …).
    before : the whole expression before, holding unevaluated derivatives.
    after : the whole expression after.
    note : what the rule says, in words (the chain substitution ``u = …``).
    verified : whether ``after`` was checked equal to ``before``.
    method : how: ``"identical"``, ``"symbolic"`` or ``"numeric"``.
    u : the inner expression of a chain rule, for printers (else None).
    """

    rule: str
    before: sp.Expr
    after: sp.Expr
    note: str = ""
    verified: bool = False
    method: str = ""
    u: sp.Expr | None = None


@dataclass(frozen=True)
class Derivation:
    """``d input / d wrt`` by ``steps``, ending in ``result``.

    ``verified`` and ``method`` record the check of ``result`` against
    ``sympy.diff`` of the input with op calls expanded.
    """

    input: sp.Expr
    wrt: sp.Symbol
    steps: tuple
    result: sp.Expr
    verified: bool = False
    method: str = ""

    @property
    def start(self) -> sp.Expr:
        """The unevaluated derivative the first step starts from."""
        return self.steps[0].before if self.steps else d(self.input, self.wrt)

    @property
    def all_verified(self) -> bool:
        """Every step and the final result were checked."""
        return self.verified and all(s.verified for s in self.steps)

    def _render(self, kind: str) -> str:
        if kind not in _RENDERERS:  # the printing layer registers itself on import
            importlib.import_module("symdl.printing")
        return _RENDERERS[kind](self)

    def _repr_latex_(self) -> str:
        return "$\\displaystyle " + self._render("latex") + "$"

    def __str__(self) -> str:
        return self._render("text")


def register_renderer(kind: str, fn) -> None:
    """Let a printer render derivations (``"latex"``, ``"text"``)."""
    _RENDERERS[kind] = fn


# ---------------------------------------------------------------- checks
def verify_equal(a: sp.Expr, b: sp.Expr) -> tuple:
    """``(ok, method)``: is ``a == b`` for all real values? Cheap forms first."""
    if a == b:
        return True, "identical"
    diff = a - b
    try:
        if diff == 0 or _fast_zero(diff):
            return True, "symbolic"
    except (TypeError, ValueError, NotImplementedError):  # SymPy could not decide
        pass
    r = check_equal(a, b)
    return r.ok, r.method


def _fast_zero(e: sp.Expr) -> bool:
    if isinstance(e, sp.Piecewise) or e.has(sp.Piecewise):
        e = sp.piecewise_fold(e)
        if isinstance(e, sp.Piecewise):
            return all(_fast_zero(piece) for piece, _ in e.args)
    e = sp.expand(e)
    if e == 0:
        return True
    if e.has(*_KINKY):
        return False
    return sp.cancel(sp.together(e)) == 0


def _pending(e: sp.Expr) -> list:
    """The unevaluated derivatives in ``e``, outermost, in printing order."""
    out: list = []

    def walk(n):
        if isinstance(n, sp.Derivative):
            if n not in out:
                out.append(n)
            return
        for a in n.args:
            walk(a)

    walk(e)
    return out


def _value(e: sp.Expr) -> sp.Expr:
    """``e`` with op calls expanded and pending derivatives evaluated."""
    e = expand_ops(e)
    return e.xreplace({n: n.doit() for n in _pending(e)})


# ---------------------------------------------------------------- engine
def derive(expr, wrt=None, *, max_steps: int = 200) -> Derivation:
    """Differentiate ``expr`` with respect to ``wrt``, rule by rule.

    Parameters
    ----------
    expr : sympy expression, or text for :func:`symdl.derive.parse.parse`.
    wrt : the variable (symbol or name); may be omitted when ``expr`` has one.
    max_steps : after this many steps, what is left is evaluated by SymPy.

    Returns
    -------
    Derivation

    Examples
    --------
    >>> dv = derive("1/(1+exp(-z))")
    >>> [s.rule for s in dv.steps][:2]
    ['chain (power)', 'sum']
    >>> dv.result
    (1 - sigmoid(z))*sigmoid(z)
    """
    if isinstance(expr, str):
        from .parse import parse
        expr = parse(expr)
    expr = _real(sp.sympify(expr))
    x = resolve_wrt(expr, wrt)
    cur = d(expr, x)
    target = sp.diff(expand_ops(expr), x)
    value, steps = target, []
    while (pending := _pending(cur)) and len(steps) < max_steps:
        app = apply_rule(pending[0])
        if pending[0] in _pending(app.after):  # no progress: let SymPy finish this one
            app = Applied("sympy", pending[0].doit(), "evaluated by SymPy's diff")
        mapping, rules = {pending[0]: app.after}, [app.rule]
        if app.rule in TRIVIAL_RULES:  # all constants and d x/d x at once
            for n in pending[1:]:
                more = apply_rule(n)
                if more.rule in TRIVIAL_RULES:
                    mapping[n] = more.after
                    rules += [more.rule] if more.rule not in rules else []
        new = cur.xreplace(mapping)
        rule = ", ".join(rules)
        note = app.note if len(mapping) == 1 else _trivial_note(rules)
        value, cur = _append(steps, rule, cur, new, note, value, app.u), new
    if _pending(cur):
        new = cur.xreplace({n: n.doit() for n in _pending(cur)})
        value, cur = _append(steps, "sympy", cur, new, "the rest by SymPy's diff", value), new
    cur, value = _rewrite(expr, x, cur, value, steps)
    ok, method = verify_equal(target, value)
    return Derivation(expr, x, tuple(steps), cur, ok, method)


def _append(steps, rule, before, after, note, prev, u=None):
    value = _value(after)
    ok, method = verify_equal(prev, value)
    steps.append(Step(rule, before, after, note, ok, method, u))
    return value


def _trivial_note(rules) -> str:
    says = {"constant": "constants have derivative 0", "identity": "dx/dx = 1"}
    return "; ".join(says[r] for r in rules)


def _rewrite(expr, x, cur, value, steps):
    """The last step: the result in terms of the op's output, or of σ."""
    call = None if expr.has(OpFunctionBase) else op_expansion_of(expr, x)
    if call is not None:
        new = op_derivative(call, 0)
        uses_y = cites_grad_form(call, 0) and new.has(type(call))
        rule = "rewrite in terms of the output" if uses_y else "rewrite in terms of known ops"
        note = (f"{sp.sstr(expr)} is the registry op {call.op_name}: "
                f"d/d{x} {sp.sstr(call)} = {sp.sstr(new)}")
    else:
        new = to_ops(cur)
        rule = "rewrite in terms of known ops"
        note = "e^(k w) / (1 + e^w)^n = sigmoid(w)^k sigmoid(-w)^(n-k), sigmoid(-w) = 1 - sigmoid(w)"
    if new == cur:
        return cur, value
    value = _append(steps, rule, cur, new, note, value)
    return new, value


def _real(expr: sp.Expr) -> sp.Expr:
    """Make every symbol real (``d|x|/dx`` is ``sign(x)`` only for real ``x``)."""
    swap = {s: sp.Symbol(s.name, real=True) for s in expr.free_symbols
            if isinstance(s, sp.Symbol) and not s.is_real}
    return expr.xreplace(swap) if swap else expr


def resolve_wrt(expr: sp.Expr, wrt=None) -> sp.Symbol:
    """The variable to differentiate by: ``wrt`` as a real symbol, or the only one."""
    if isinstance(wrt, sp.Symbol):
        return sp.Symbol(wrt.name, real=True)
    if isinstance(wrt, str):
        if not wrt.isidentifier():
            raise UsageError(f"not a variable name: {wrt!r}")
        return sp.Symbol(wrt, real=True)
    if wrt is not None:
        raise UsageError(f"wrt must be a symbol or a name, not {type(wrt).__name__}")
    names = sorted(s.name for s in expr.free_symbols)
    if len(names) == 1:
        return sp.Symbol(names[0], real=True)
    if not names:
        raise UsageError("the expression has no variable; say which one with wrt (--wrt)")
    raise UsageError(f"the expression has several variables ({', '.join(names)}); "
                     "choose one with wrt (--wrt)")
