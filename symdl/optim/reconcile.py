"""The study notes against symdl: each rule in both forms, and SymPy's verdict on them.

The course notes symdl was conceived from write some rules differently from
symdl (which follows PyTorch).  Each :class:`Reconciliation` holds both forms as
SymPy expressions, symdl's taken from its own declarations (optimizer rules,
the op registry), and a *computed* verdict:

- ``equal``: the forms agree as written;
- ``equal after renaming``: they agree once symbols are renamed (a permutation
  of the given symbol groups, found by search);
- ``equal after substitution``: they agree after a change of variables;
- ``different``: none of these; a witness (the difference, a condition, a ratio)
  is computed.

Only the prose sentence (what differs, which form PyTorch implements) is typed.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import sympy as sp

from ..ops import OPS
from . import rules_adaptive as ra
from .rules import SGD_RULE, g, p, sgd_rule

__all__ = ["Reconciliation", "RECONCILIATIONS", "reconcile", "reconciliations", "same"]

EQUAL, RENAMED, SUBSTITUTED, DIFFERENT = ("equal", "equal after renaming",
                                          "equal after substitution", "different")


@dataclass(frozen=True)
class Reconciliation:
    """One rule as the notes write it and as symdl declares it, with SymPy's verdict.

    ``notes`` and ``symdl`` are tuples of ``(lhs LaTeX, SymPy expression)`` rows;
    ``verdict`` is one of ``equal``, ``equal after renaming``, ``equal after
    substitution``, ``different``; ``mapping`` the renaming or substitution that
    made them equal; ``witness`` ``(label, expression)`` rows saying how they
    differ; ``sentence`` the one-line explanation."""

    key: str
    title: str
    notes: tuple
    symdl: tuple
    verdict: str
    mapping: dict = field(default_factory=dict)
    witness: tuple = ()
    sentence: str = ""

    @property
    def equal(self) -> bool:
        return self.verdict != DIFFERENT


def same(a, b) -> bool:
    """SymPy's decision that ``a == b``: a difference that SymPy evaluates to a clearly
    non-zero number at an exact rational point is a proof of inequality (fast); otherwise
    the difference must expand, or simplify, to 0."""
    d = sp.sympify(a) - sp.sympify(b)
    free = sorted(d.free_symbols, key=lambda s: s.name)
    if not d.atoms(sp.core.function.AppliedUndef):
        point = {s: sp.Rational(3 + 2 * i, 7 + i) for i, s in enumerate(free)}
        value = sp.N(d.xreplace(point), 30)
        if value.is_number and value.is_finite and abs(value) > 1e-20:
            return False
    d = sp.expand(d)
    return d == 0 or sp.simplify(d) == 0


def _all_same(pairs) -> bool:
    return all(same(a, b) for a, b in pairs)


def _search(notes, ours, groups) -> dict | None:
    """The first non-identity permutation of ``groups`` (tuples of symbols moved
    together) under which every notes expression equals symdl's; None if none."""
    for perm in itertools.permutations(range(len(groups))):
        if perm == tuple(range(len(groups))):
            continue
        ren = {s: t for i, j in enumerate(perm) for s, t in zip(groups[i], groups[j])}
        if _all_same((e.xreplace(ren), o) for e, o in zip(notes, ours)):
            return {s: t for s, t in ren.items() if s != t and any(e.has(s) for e in notes)}
    return None


def _decide(notes, ours, groups=(), substitution=None) -> tuple:
    """``(verdict, mapping)`` for the expression lists ``notes`` and ``ours``."""
    if _all_same(zip(notes, ours)):
        return EQUAL, {}
    if groups:
        ren = _search(notes, ours, groups)
        if ren is not None:
            return RENAMED, ren
    if substitution is not None:
        new_ours = [o.xreplace(substitution[0]) for o in ours]
        new_notes = [e.xreplace(substitution[1]) for e in notes]
        if _all_same(zip(new_notes, new_ours)):
            return SUBSTITUTED, dict(substitution[0])
    return DIFFERENT, {}


#: names of the symbols the notes' forms use (printed as themselves, never by the rule names)
_DISPLAY: set = set()


def _sym(name: str, **kw) -> sp.Symbol:
    _DISPLAY.add(name)
    return sp.Symbol(name, real=True, **kw)


class NablaL(sp.Function):
    """``∇L(w)``, the gradient of the loss at a point (an undefined function)."""

    def _latex(self, printer, exp=None):
        tex = r"\nabla L\left(" + printer._print(self.args[0]) + r"\right)"
        return tex if exp is None else rf"\left({tex}\right)^{{{exp}}}"


# ------------------------------------------------------------ the entries
def _nesterov() -> Reconciliation:
    """Notes: u_t = βu + η∇L(w − βu), w_t = w − u_t.  symdl: torch.optim.SGD(nesterov=True)."""
    w, u, eta, beta = (_sym(n) for n in ("w_{t-1}", "u_{t-1}", "eta", "beta"))
    G = NablaL
    u_new = beta * u + eta * G(w - beta * u)
    w_new = w - u_new
    rule = sgd_rule(momentum=True, nesterov=True)
    final = rule.final()
    b = rule.state[0]
    later = {sp.Symbol("first", real=True): 0, sp.Symbol("dampening", real=True): 0,
             sp.Symbol("weight_decay", real=True): 0}
    names = {sp.Symbol("lr", real=True): eta, sp.Symbol("momentum", real=True): beta}
    theta, b_old = _sym(r"\theta_{t-1}"), _sym("b_{t-1}")
    ours = [e.xreplace(later).xreplace(names).xreplace({g: G(p)}).xreplace({p: theta, b: b_old})
            for e in (final[b], final[p])]
    # the look-ahead point is the parameter torch keeps: θ = w − βu, b = u/η
    change = {theta: w - beta * u, b_old: u / eta}
    targets = [u_new / eta, w_new - beta * u_new]
    verdict, mapping = _decide(targets, ours, substitution=(change, {}))
    return Reconciliation(
        "nesterov", "Nesterov momentum",
        ((r"u_{t}", u_new), (r"w_{t}", w_new)),
        ((r"b_{t}", ours[0]), (r"\theta_{t}", ours[1])), verdict, mapping,
        ((r"\text{with } \theta_{t-1} = w_{t-1} - \beta u_{t-1},\ b_{t-1} = u_{t-1}/\eta"
          r":\ \theta_{t} - (w_{t} - \beta u_{t})",
          sp.simplify(ours[1].xreplace(change) - targets[1])),),
        r"The notes evaluate the gradient at the look-ahead point $w - \beta u$; PyTorch "
        r"(\texttt{SGD(nesterov=True)}) and symdl keep that look-ahead point as the parameter "
        r"itself and step along $g + \mu b$, so the gradient is taken where the parameter is.")


def _l2() -> Reconciliation:
    """Notes: w ← w − η∇L − ηαw.  symdl: SGD with weight decay, θ ← θ − α(g + λθ)."""
    eta, alpha, lam, w = _sym("eta"), _sym("alpha"), _sym("lambda"), _sym("w")
    notes = w - eta * g - eta * alpha * w
    rule = sgd_rule()
    names = {sp.Symbol("lr", real=True): alpha, sp.Symbol("weight_decay", real=True): lam, p: w}
    ours = rule.final()[p].xreplace(names)
    verdict, mapping = _decide([notes], [ours], groups=[(eta,), (alpha,), (lam,)])
    return Reconciliation(
        "l2", "L2 penalty as weight decay", ((r"w", notes),), ((r"\theta", ours),),
        verdict, mapping, (),
        r"The notes call the rate $\eta$ and the penalty $\alpha$; symdl prints PyTorch's "
        r"\texttt{lr} as $\alpha$ and \texttt{weight\_decay} as $\lambda$: the same update, "
        r"which \texttt{torch.optim.SGD(weight\_decay=...)} implements.")


def _label_smoothing(k: int = 4) -> Reconciliation:
    """Notes: [1 − ε, ε/K, …].  symdl: t_j = (1 − ε)[j = y] + ε/K (torch's label_smoothing)."""
    eps = _sym("varepsilon")
    notes = sp.Matrix([1 - eps] + [eps / k] * (k - 1)).T
    ours = sp.Matrix([(1 - eps) + eps / k] + [eps / k] * (k - 1)).T
    verdict, _ = _decide(list(notes), list(ours))
    return Reconciliation(
        "label_smoothing", f"Label smoothing (K = {k} classes, true class first)",
        ((r"t", notes),), ((r"t", ours),), verdict, {},
        ((r"\textstyle\sum_j t_j \text{ (notes)}", sp.expand(sum(notes))),
         (r"\textstyle\sum_j t_j \text{ (symdl)}", sp.expand(sum(ours)))),
        r"The notes give the true class $1 - \varepsilon$ and every other class "
        r"$\varepsilon/K$, which sums to less than one; PyTorch's \texttt{label\_smoothing} "
        r"(and symdl's cross-entropy) mixes the one-hot target with the uniform distribution, so "
        r"the true class gets $1 - \varepsilon + \varepsilon/K$.")


def _adam() -> Reconciliation:
    """Notes: θ ← θ − m/(√v̂ + ε).  symdl: θ ← θ − α m̂/(√v̂ + ε), m̂ = m/(1 − β₁ᵗ)."""
    rule = ra.adam_rule(flush_state=False)
    eqs = dict(rule.equations)
    vhat_expr = eqs[ra.vhat].xreplace({ra.c2: rule.scalars[ra.c2]})
    step_ours = (p - eqs[p]).xreplace({ra.mhat: eqs[ra.mhat]}).xreplace(
        {ra.c1: rule.scalars[ra.c1]})
    step_notes = ra.m / (sp.sqrt(ra.vhat) + ra.eps)
    verdict, _ = _decide([step_notes], [step_ours])
    ratio = sp.simplify(step_ours / step_notes)
    return Reconciliation(
        "adam", "Adam's update", ((r"\theta_{t} - \theta_{t-1}", -step_notes),),
        ((r"\theta_{t} - \theta_{t-1}", -step_ours),), verdict, {},
        ((r"\text{symdl's step} / \text{the notes' step}", ratio),
         (r"\hat{v}_{t}", vhat_expr)),
        r"The notes' line has no learning rate and uses $m$ where Adam uses the "
        r"bias-corrected $\hat{m}$; \texttt{torch.optim.Adam} (and symdl) step by "
        r"$\alpha \hat{m}/(\sqrt{\hat{v}} + \epsilon)$.")


def _nadam() -> Reconciliation:
    """Notes (Dozat's simplified rule) against torch.optim.NAdam's μ_t schedule."""
    rule = ra.nadam_rule(flush_state=False)
    eqs = dict(rule.equations)
    step = (p - eqs[p]).xreplace({ra.gw: g})
    den = sp.sqrt(ra.vhat) + ra.eps
    ours = [sp.simplify(sp.diff(step, g) * den), sp.simplify(sp.diff(step, ra.m) * den)]
    c = 1 - ra.beta1 ** ra.T
    notes_step = ra.lr / den * (ra.beta1 * ra.m / c + (1 - ra.beta1) * g / c)
    notes = [sp.simplify(sp.diff(notes_step, g) * den),
             sp.simplify(sp.diff(notes_step, ra.m) * den)]
    constant = {ra.mu_t: ra.beta1, ra.mu_next: ra.beta1, ra.mu_prod: ra.beta1 ** ra.T}
    verdict, _ = _decide(notes, [o.xreplace(constant) for o in ours])
    at1 = {ra.mu_t: ra.mu_schedule(1), ra.mu_next: ra.mu_schedule(2),
           ra.mu_prod: ra.mu_schedule(1), ra.T: 1}
    defaults = {s: sp.nsimplify(v) for s, v in rule.hyper.items()}
    num = [sp.N(e.xreplace(at1).xreplace(defaults) / ra.lr.xreplace(defaults), 4)
           for e in (*notes, *ours)]
    num = [sp.Integer(round(v)) if abs(v - round(v)) < 1e-9 else v for v in num]
    return Reconciliation(
        "nadam", "NAdam", ((r"\theta_{t-1} - \theta_{t}", notes_step),),
        ((r"\theta_{t-1} - \theta_{t}", step),), verdict, {},
        ((r"\text{coefficient of } m_t \text{ with } \mu_t = \beta_1 \text{ (notes / symdl)}",
          sp.simplify(notes[1] / ours[1].xreplace(constant))),
         (r"t = 1\text{: coefficient of } m_t \text{ over } \alpha \text{ (notes)}", num[1]),
         (r"t = 1\text{: coefficient of } m_t \text{ over } \alpha \text{ (symdl)}", num[3])),
        r"The notes use a constant $\beta_1$ and one bias correction $1 - \beta_1^t$ for both "
        r"terms; \texttt{torch.optim.NAdam} (and symdl) use the warming-up schedule $\mu_t$ and "
        r"the products of the $\mu_i$, and even with a constant $\mu$ the momentum term is "
        r"corrected by $1 - \beta_1^{t+1}$.")


def _momentum() -> Reconciliation:
    """Notes: u_t = βu_{t−1} + g_t, u_0 = 0.  symdl: torch's buffer with the bracket [t = 1]."""
    beta, u = _sym("beta"), _sym("u_{t-1}")
    b, first = SGD_RULE.state[0], sp.Symbol("first", real=True)
    ours = SGD_RULE.final()[b].xreplace({p: 0, sp.Symbol("weight_decay", real=True): 0,
                                         sp.Symbol("dampening", real=True): 0})
    notes = beta * u + g
    ren = {sp.Symbol("momentum", real=True): beta, b: u}
    first_step = _decide([notes.xreplace({u: 0})], [ours.xreplace(ren).xreplace({first: 1})])[0]
    later = _decide([notes], [ours.xreplace(ren).xreplace({first: 0})])[0]
    verdict = EQUAL if first_step == later == EQUAL else DIFFERENT
    return Reconciliation(
        "momentum", "Momentum and the Iverson bracket", ((r"u_{t}", notes),),
        ((r"b_{t}", ours.xreplace({b: _sym("b_{t-1}")})),), verdict, {},
        ((r"t = 1,\ u_0 = 0\text{: notes} - \text{symdl}",
          sp.expand(notes.xreplace({u: 0}) - ours.xreplace(ren).xreplace({first: 1}))),
         (r"t > 1,\ \tau = 0\text{: notes} - \text{symdl}",
          sp.expand(notes - ours.xreplace(ren).xreplace({first: 0})))),
        r"symdl prints \texttt{torch.optim.SGD}'s buffer literally: the Iverson bracket "
        r"$[t = 1]$ is 1 on the first step, where the buffer is set to $g$ (the notes' $u_0 = 0$ "
        r"gives the same), and 0 afterwards; with dampening $\tau = 0$ the two rules agree.")


def _elu() -> Reconciliation:
    """Notes: "ae^x − 1" for x ≤ 0.  symdl: α(e^x − 1), as torch.nn.ELU."""
    op = OPS["elu"]
    (x,) = op.inputs
    alpha = next(iter(op.params))
    ours = op.expr.args[0][0]  # the x <= 0 branch of the declaration
    notes = alpha * sp.exp(x) - 1
    verdict, _ = _decide([notes], [ours])
    return Reconciliation(
        "elu", "ELU for negative inputs", ((r"f(x)", notes),), ((r"f(x)", ours),), verdict, {},
        ((r"\alpha \text{ where the two agree}", sp.FiniteSet(*sp.solve(notes - ours, alpha))),
         (r"\text{notes' value at } x = 0", notes.subs(x, 0))),
        r"The notes drop the parentheses: $\alpha e^x - 1$ jumps at 0 unless $\alpha = 1$; "
        r"\texttt{torch.nn.ELU} (and symdl) use $\alpha(e^x - 1)$, continuous at 0.")


def _gru() -> Reconciliation:
    """The GRU update with the notes' letters (r and z swapped) against PyTorch's."""
    x, h = _sym("x"), _sym("h_{t-1}")
    W = {k: _sym(f"W_{k}") for k in ("r", "z", "n")}
    U = {k: _sym(f"U_{k}") for k in ("r", "z", "n")}
    sig = lambda a: 1 / (1 + sp.exp(-a))  # noqa: E731
    gate = {k: sig(W[k] * x + U[k] * h) for k in ("r", "z")}

    def update(keep, reset):
        n = sp.tanh(W["n"] * x + gate[reset] * U["n"] * h)
        return (1 - gate[keep]) * n + gate[keep] * h

    ours = update(keep="z", reset="r")     # torch.nn.GRU: z keeps h_{t-1}, r resets
    notes = update(keep="r", reset="z")    # the notes' letters
    verdict, mapping = _decide([notes], [ours], groups=[(W["r"], U["r"]), (W["z"], U["z"])])
    r_, z_, n_ = _sym("r_t"), _sym("z_t"), _sym("n_t")
    sigma = sp.Function("sigma")

    def rows(keep, reset):
        gates = {"r": r_, "z": z_}
        return tuple((f"{k}_{{t}}", sigma(W[k] * x + U[k] * h)) for k in ("r", "z")) + (
            (r"n_{t}", sp.tanh(W["n"] * x + gates[reset] * U["n"] * h)),
            (r"h_{t}", (1 - gates[keep]) * n_ + gates[keep] * h))

    return Reconciliation(
        "gru", "GRU gates", rows("r", "z"), rows("z", "r"), verdict, mapping, (),
        r"The notes call the gate that mixes old and new state $r$ and the one inside the "
        r"candidate $z$; \texttt{torch.nn.GRU} (and symdl) name them the other way round ($z$ "
        r"update, $r$ reset): the same cell with swapped letters.")


RECONCILIATIONS = {"nesterov": _nesterov, "l2": _l2, "label_smoothing": _label_smoothing,
                   "nadam": _nadam, "adam": _adam, "momentum": _momentum, "elu": _elu,
                   "gru": _gru}


def reconcile(key: str) -> Reconciliation:
    """The reconciliation named ``key`` (one of :data:`RECONCILIATIONS`)."""
    from ..errors import UsageError
    if key not in RECONCILIATIONS:
        raise UsageError(f"unknown reconciliation {key!r} (known: {', '.join(RECONCILIATIONS)})")
    return RECONCILIATIONS[key]()


def reconciliations() -> list:
    """Every reconciliation, in the order of :data:`RECONCILIATIONS`."""
    return [reconcile(k) for k in RECONCILIATIONS]


def _names(expr) -> dict:
    from .derivation import NAMES
    syms = expr.free_symbols if hasattr(expr, "free_symbols") else set()
    names = {s: NAMES[s.name][1] for s in syms if s.name in NAMES and s.name not in _DISPLAY}
    names.update({s: r"\Pi_{t}" for s in syms if s.name == "mu_prod"})
    return names


def expr_tex(expr) -> str:
    """An expression of a reconciliation in symdl's LaTeX (rule symbols by their printed
    names: ``lr`` as α, ``beta1`` as β₁)."""
    from .derivation import expr_latex
    return expr_latex(expr, _names(expr))


def to_latex(r: Reconciliation) -> str:
    """Both forms side by side (an ``align*`` with the notes left, symdl right), SymPy's
    verdict, the witness rows and the sentence, as LaTeX for the gallery."""
    def block(title, rows):
        body = [rf"&\text{{{title}}}"] + [f"{lhs} &= {expr_tex(e)}" for lhs, e in rows]
        return r"\begin{aligned}[t]" + " \\\\ ".join(body) + r"\end{aligned}"

    pair = block("notes", r.notes) + r"\qquad\qquad " + block("symdl (PyTorch)", r.symdl)
    out = [r"\begin{center}\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}"
           f"{{$\\displaystyle {pair}$}}\\end{{center}}"]
    verdict = r"\textbf{SymPy's verdict: " + r.verdict + "}"
    if r.mapping:
        pairs = ", ".join(f"${expr_tex(k)} \\to {expr_tex(v)}$" for k, v in r.mapping.items())
        verdict += (" under the renaming " if r.verdict == RENAMED else " with ") + pairs
    out.append(verdict + ".")
    if r.witness:
        out.append(r"\begin{align*}")
        out.append(" \\\\\n".join(f"& {label} && = {expr_tex(e)}" for label, e in r.witness))
        out.append(r"\end{align*}")
    out.append(r.sentence + "\n")
    return "\n".join(out)
