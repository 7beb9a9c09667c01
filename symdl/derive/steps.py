"""Step-by-step differentiation of one scalar expression, as data.

:func:`derive` rewrites ``d/dx f`` one rule at a time (constant, identity,
sum, constant multiple, product, quotient, power, chain, exp, log, trig,
hyperbolic, abs, max/min, piecewise, known op) until no derivative is left,
then, where it applies, rewrites the result in terms of the op's output
(``e^{-z}/(1 + e^{-z})^2 → σ(z)·(1 − σ(z))``).  Pending derivatives of the
same rule are rewritten together (all terms of a sum at once).

Every step is checked equal to the one before, and the check is part of the
:class:`Step`: each replaced derivative, evaluated by SymPy, against its
replacement (:func:`symdl.derive.checks.verify_equal`).  Op calls are first
kept whole, SymPy differentiating them by the op's derivative forms, which
are themselves checked once per op against ``sympy.diff`` of the registry
declaration (:func:`symdl.derive.checks.op_forms_check`); a known-op step
reports that check.  Where that is not decisive, op calls are expanded to
their declarations and :func:`symdl.ops.claims.check_equal` decides.  The
result is checked the same way against SymPy's derivative of the input.
Nothing prints here; :mod:`symdl.printing` renders a :class:`Derivation`.
No ``simplify()`` on the main path: targeted rewrites only.  The work is
bounded in time and size (:mod:`symdl.derive.budget`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import sympy as sp

from ..display import Displayable
from ..errors import UsageError
from .budget import TIME_LIMIT, Budget, OutOfTime
from .checks import op_forms_check, op_forms_verified, verify_equal, weakest
from .opfuncs import OpFunctionBase, cites_grad_form, expand_ops, op_derivative, \
    op_expansion_of
from .rules import TRIVIAL_RULES, Applied, apply_rule, d, show
from .textbook import RewriteError, textbook_steps

__all__ = ["Step", "Derivation", "derive", "verify_equal", "register_renderer", "RewriteError"]

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
    phase : ``"rule"`` for a differentiation rule, ``"rewrite"`` for a step that
        brings the result to its textbook form (``--steps brief`` keeps these).
    """

    rule: str
    before: sp.Expr
    after: sp.Expr
    note: str = ""
    verified: bool = False
    method: str = ""
    u: sp.Expr | None = None
    phase: str = "rule"


@dataclass(frozen=True, repr=False)
class Derivation(Displayable):
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

    def brief(self) -> "Derivation":
        """The same derivation with the differentiation rules folded into one step
        (named after the rules used) and the textbook rewrites kept."""
        rules = [s for s in self.steps if s.phase == "rule"]
        if len(rules) < 2:
            return self
        names = list(dict.fromkeys(r.strip() for s in rules for r in s.rule.split(",")))
        ok = all(s.verified for s in rules)
        folded = Step("rules: " + ", ".join(names), rules[0].before, rules[-1].after,
                      f"{len(rules)} steps folded (--steps full shows each)", ok,
                      weakest(*(s.method for s in rules)))
        rest = tuple(s for s in self.steps if s.phase != "rule")
        return dataclasses.replace(self, steps=(folded, *rest))

    def render(self, fmt: str = "text") -> str:
        """This derivation as ``text``, ``latex``, ``markdown`` or ``json``.

        The printers live in :mod:`symdl.printing`, a later layer; it registers
        them on import, and an import hook of the package root loads it right
        after :mod:`symdl.derive`, so this layer never imports upward.
        """
        if fmt not in _RENDERERS:
            raise UsageError(f"unknown format {fmt!r} (known: {', '.join(_RENDERERS)})")
        return _RENDERERS[fmt](self)

    def __str__(self) -> str:  # repr and Jupyter's LaTeX: symdl.printing.notebook
        return self.render("text")


def register_renderer(fmt: str, fn) -> None:
    """Let a printer render derivations in format ``fmt`` (``fn(derivation) -> str``)."""
    _RENDERERS[fmt] = fn


# ---------------------------------------------------------------- engine
def _pending(e: sp.Expr) -> list:
    """The unevaluated derivatives in ``e``, outermost, in SymPy's argument order."""
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


def _value(e: sp.Expr, expand: bool) -> sp.Expr:
    """``e`` with pending derivatives evaluated by SymPy (op calls expanded first
    when ``expand``; otherwise SymPy differentiates them by their checked forms)."""
    if expand:
        e = expand_ops(e)
    return e.xreplace({n: n.doit() for n in _pending(e)})


def derive(expr, wrt=None, *, max_steps: int = 200, time_limit: float | None = TIME_LIMIT
           ) -> Derivation:
    """Differentiate ``expr`` with respect to ``wrt``, rule by rule.

    Parameters
    ----------
    expr : sympy expression, or text for :func:`symdl.derive.parse.parse`.
    wrt : the variable (symbol or name); may be omitted when ``expr`` has one.
    max_steps : after this many steps, what is left is evaluated by SymPy.
    time_limit : seconds (None: no limit); past it, or when the expression grows
        past :data:`symdl.derive.budget.MAX_NODES`, a one-line
        :class:`~symdl.errors.UsageError` "too large to derive in N s".

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
    budget = Budget(time_limit)
    try:
        with budget.alarm():
            if isinstance(expr, str):
                from .parse import parse
                expr = parse(expr)
            return _derive(_real(sp.sympify(expr)), wrt, max_steps, budget)
    except (OutOfTime, RecursionError, MemoryError):
        raise budget.error() from None


def _derive(expr, wrt, max_steps: int, budget: Budget) -> Derivation:
    x = resolve_wrt(expr, wrt)
    cur = d(expr, x)
    # With every op's derivative form checked against its declaration, values
    # keep op calls whole (fast); otherwise op calls are expanded first.
    ops = sorted({f.op_name for f in expr.atoms(OpFunctionBase)})
    expand = not all(op_forms_verified(name) for name in ops)
    steps: list = []
    while (pending := _pending(cur)) and len(steps) < max_steps:
        budget.check(cur)
        batch = [(pending[0], _apply(pending[0]))]
        rule = batch[0][1].rule
        for n in pending[1:]:  # the same rule on every pending derivative at once
            more = _apply(n)
            if more.rule == rule or (rule in TRIVIAL_RULES and more.rule in TRIVIAL_RULES):
                batch.append((n, more))
        rules = list(dict.fromkeys(app.rule for _, app in batch))
        mapping = {n: app.after for n, app in batch}
        claims = {}  # kept whole, a known-op step rests on the op's checked forms
        if not expand:
            claims = {n: op_forms_check(n.expr.op_name) for n, app in batch
                      if "known op" in app.rule}
        u = batch[0][1].u if len(batch) == 1 else None
        cur = _step(steps, ", ".join(rules), cur, mapping, _note(batch), expand, u, claims)
    if _pending(cur):
        mapping = {n: n.doit() for n in _pending(cur)}
        cur = _step(steps, "sympy", cur, mapping, "the rest by SymPy's diff", expand)
    budget.check(cur)
    ok, method = verify_equal(_value(d(expr, x), expand), _value(cur, expand))
    if ok:  # only a checked result is brought to its textbook form, each rewrite checked
        n = len(steps)
        cur = _rewrite(expr, x, cur, steps, expand)
        budget.check(cur)
        method = weakest(method, *(s.method for s in steps[n:]))
        ok = all(s.verified for s in steps[n:])
    return Derivation(expr, x, tuple(steps), cur, ok, method)


def _apply(node: sp.Derivative) -> Applied:
    app = apply_rule(node)
    if node in _pending(app.after):  # no progress: let SymPy finish this one
        app = Applied("sympy", node.doit(), "evaluated by SymPy's diff")
    return app


def _note(batch) -> str:
    if len(batch) == 1:
        return batch[0][1].note
    rules = list(dict.fromkeys(app.rule for _, app in batch))
    if set(rules) <= set(TRIVIAL_RULES):
        says = {"constant": "constants have derivative 0", "identity": "dx/dx = 1"}
        return "; ".join(says[r] for r in rules)
    notes = list(dict.fromkeys(app.note for _, app in batch))
    head = "; ".join(notes[:3]) + ("; ..." if len(notes) > 3 else "")
    return f"{len(batch)} derivatives: {head}"


def _step(steps, rule, cur, mapping, note, expand, u=None, claims=None, keep_failed=True,
          phase="rule"):
    """Append the step ``cur → cur.xreplace(mapping)``; return the new expression.

    Replacing equals by equals keeps the whole equal, so each replaced
    derivative is checked against its replacement (linear, not quadratic, in
    the number of steps).
    """
    ok, method = True, "identical"
    for node, repl in mapping.items():
        ok_n, m = verify_equal(_value(node, expand), _value(repl, expand))
        if claims and node in claims and ok_n:
            ok_n, m = claims[node]
        ok, method = ok and ok_n, weakest(method, m)
    after = cur.xreplace(mapping)
    if ok or keep_failed:
        steps.append(Step(rule, cur, after, note, ok, method, u, phase))
        return after
    return cur


def _rewrite(expr, x, cur, steps, expand):
    """The last steps: where the input is a registry op's declaration, its derivative in
    terms of the output (or of known ops, where that is smaller); then the textbook
    rewrites (:mod:`symdl.derive.textbook`, σ patterns among them)."""
    call = None if expr.has(OpFunctionBase) else op_expansion_of(expr, x)
    if call is not None:
        new = op_derivative(call, 0)
        uses_y = cites_grad_form(call, 0) and new.has(type(call))
        rule = "rewrite in terms of the output" if uses_y else "rewrite in terms of known ops"
        note = (f"{show(expr)} is the registry op {call.op_name}: "
                f"d/d{show(x)} {show(call)} = {show(new)}")
        if new != cur and (uses_y or sp.count_ops(new) < sp.count_ops(cur)):
            cur = _step(steps, rule, cur, {cur: new}, note, expand, keep_failed=False,
                        phase="rewrite")
    return _textbook(cur, steps)


def _textbook(cur, steps):
    """Append the textbook rewrites of ``cur`` (:mod:`symdl.derive.textbook`) as steps."""
    for rw, before, after, method in textbook_steps(cur):
        steps.append(Step(rw.name, before, after, rw.note, True, method, phase="rewrite"))
        cur = after
    return cur


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
