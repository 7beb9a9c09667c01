"""Update rules and schedules printed as equations: plain text and LaTeX.

The printed equations are the declarations themselves (the rules of
:mod:`symdl.optim.rules` / :mod:`symdl.optim.rules_adaptive`, the schedules
of :mod:`symdl.optim.schedules`), with symbols shown as in the papers:
``p`` → θ, ``lr`` → α, ``beta1`` → β₁, state with its step (``m_{t-1}`` on
the right, ``m_t`` on the left), bias corrections inlined (``1 − β₁^t``).
Only the order of terms and factors is chosen here (coefficients before
variables, the updated quantity's old value first), so output is
deterministic bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..errors import UsageError
from ..printing.notebook import display_latex, rule_repr
from .rules import UpdateRule, g, p
from .rules_adaptive import T, unflushed
from .schedules import display_name, make_schedule
from .schedules import t as T_SCHED
from .rule_printers import NAMED_SCALARS, NAMES, SHOWN_AS_SYMBOL, _SUB, _printers  # noqa: F401 (NAMES is public)

# ------------------------------------------------------------------- rules
@dataclass(frozen=True)
class RuleDerivation:
    """A rule's equations as printed lines (``text``, ``latex`` properties)."""

    name: str
    doc: str
    text_lines: tuple
    latex_lines: tuple
    legend_text: str
    legend_latex: str

    @property
    def text(self) -> str:
        return "\n".join([f"{self.name}: {self.doc}", *("  " + s for s in self.text_lines),
                          f"  where {self.legend_text}", ""])

    @property
    def latex(self) -> str:
        body = " \\\\\n".join(self.latex_lines)
        return (f"% {self.name}: {self.doc}\n\\begin{{align*}}\n{body}\n\\end{{align*}}\n"
                f"where {self.legend_latex}.\n")

    def __str__(self) -> str:
        return self.text

    def _repr_latex_(self) -> str:
        return display_latex(self.latex)

    def __repr__(self) -> str:
        return rule_repr(self)


def _display(sym, when=None):
    text, tex, _ = NAMES.get(sym.name, (sym.name, sym.name, None))
    if when is None:
        return sp.Symbol(text, **sym.assumptions0), tex
    return sp.Symbol(text + when.translate(_SUB), **sym.assumptions0), f"{tex}_{{{when}}}"


def _tt(name: str) -> str:
    return "\\texttt{" + name.replace("_", "\\_") + "}"


def _tex_num(v) -> str:
    """A number for math mode: ``1e-08`` -> ``10^{-8}``."""
    mant, e, ex = f"{float(v):g}".partition("e")
    if not e:
        return mant
    return f"10^{{{int(ex)}}}" if mant == "1" else rf"{mant} \times 10^{{{int(ex)}}}"


def rule_derivation(rule: UpdateRule, values: dict | None = None) -> RuleDerivation:
    """Print ``rule``; ``values`` (``{hyper name: value}``) fill the legend (else the defaults)."""
    step_sym = _display(T)[0]
    names, base = {step_sym: "t"}, {T: step_sym}
    for s in (*rule.hyper, *(x for x in rule.scalars if x.name in NAMED_SCALARS + SHOWN_AS_SYMBOL)):
        d, tex = _display(s)
        base[s], names[d] = d, tex
    inline = {s: e for s, e in rule.scalars.items() if s.name not in NAMED_SCALARS + SHOWN_AS_SYMBOL}
    text_lines, tex_lines = [], []
    for s in rule.scalars:
        if s.name in NAMED_SCALARS:
            tp, lp = _printers(names)
            lhs, tex = _display(s)
            e = rule.scalars[s].xreplace(base)
            text_lines.append(f"{lhs.name} = {tp.doprint(e)}")
            tex_lines.append(f"{tex} &= {lp.doprint(e)}")
    assigned = set()
    states = set(rule.state) | {p}
    for target, expr in rule.equations:
        env, variables = dict(base), set()
        for s in unflushed(expr).free_symbols | {g}:
            if s in base:
                continue
            when = "t-1" if s in states and s not in assigned else "t"
            env[s], tex = _display(s, when)
            names[env[s]] = tex
            variables.add(env[s])
        own = env.get(p if target == p else g if target.name == "g_w" else target)
        lhs, lhs_tex = _display(target, "t")
        rhs = unflushed(expr).xreplace(inline).xreplace(env)
        tp, lp = _printers(names, variables, own if target in states or target.name == "g_w" else None)
        arrow = ("←", r"\leftarrow") if target.name == "g_w" else ("=", "=")
        text_lines.append(f"{lhs.name} {arrow[0]} {tp.doprint(rhs)}")
        tex_lines.append(f"{lhs_tex} &{arrow[1]} {lp.doprint(rhs)}")
        assigned.add(target)
    inits = [(s, v) for s, v in ((s, rule.init.get(s, 0)) for s in rule.state) if sp.sympify(v).is_Number]
    if inits:
        text_lines.append(", ".join(f"{_display(s, '0')[0].name} = {float(v):g}" for s, v in inits))
        tex_lines.append(r", \quad ".join(f"{_display(s, '0')[1]} {'&' if i == 0 else ''}= {float(v):g}"
                                          for i, (s, v) in enumerate(inits)))
    values = {s.name: (values or {}).get(s.name, d) for s, d in rule.hyper.items()}
    legend_t, legend_l = [], []
    for s in rule.hyper:
        text, tex, torch_name = NAMES.get(s.name, (s.name, s.name, s.name))
        legend_t.append(f"{text} = {torch_name} = {float(values[s.name]):g}")
        legend_l.append(f"${tex} = {_tex_num(values[s.name])}$ ({_tt(torch_name)})")
    return RuleDerivation(rule.name, rule.doc, tuple(text_lines), tuple(tex_lines),
                          ", ".join(legend_t), ", ".join(legend_l))


def _rule(name, **options) -> UpdateRule:
    if isinstance(name, UpdateRule):
        return name
    from .declare import OPTIMIZERS  # the registry, filled when symdl.optim is imported
    if name not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {name!r} (choose from: {', '.join(OPTIMIZERS)})")
    return OPTIMIZERS[name].declaration.rule_for(options)


def _values(options) -> dict:
    """Numeric options (``momentum=0.9``) for the legend; flags choose the rule only."""
    return {k: float(v) for k, v in options.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def rule_text(name, **options) -> str:
    """The update rule of optimizer ``name`` (``rule_text("adam", amsgrad=True)``) as text."""
    return rule_derivation(_rule(name, **options), _values(options)).text


def rule_latex(name, **options) -> str:
    """The update rule of optimizer ``name`` as a LaTeX ``align*`` block and legend."""
    return rule_derivation(_rule(name, **options), _values(options)).latex


def derivation(optimizer) -> RuleDerivation:
    """The rule an optimizer instance runs, with its hyperparameter values."""
    return rule_derivation(optimizer.rule, optimizer.hyper)


# --------------------------------------------------------------- schedules
def _schedule_lines(schedule):
    names, env = {}, {}
    syms = schedule.expr.free_symbols | {T_SCHED} | {s for s, _ in schedule.params}
    for _, e in schedule.where:
        syms |= e.free_symbols
    for s in syms | {w for w, _ in schedule.where}:
        text, tex = display_name(s.name)
        env[s] = sp.Symbol(text, **s.assumptions0)
        names[env[s]] = tex
    tp, lp = _printers(names)
    lines = [(sp.Symbol("ηₜ"), r"\eta_{t}", schedule.expr)]
    lines += [(env[w], names[env[w]], e) for w, e in schedule.where]
    text = [f"{lhs.name} = {tp.doprint(e.xreplace(env))}" for lhs, _, e in lines]
    tex = [rf"{ltex} &= {lp.doprint(e.xreplace(env))}" for _, ltex, e in lines]
    legend_t, legend_l = [], []
    for s, v in schedule.params:
        torch_name = f"milestones[{int(s.name[2:]) - 1}]" if s.name[:2] in ("m_", "M_") else s.name
        shown = env[s].name
        legend_t.append(f"{shown} = {v:g}" if shown == torch_name else f"{shown} = {torch_name} = {v:g}")
        legend_l.append(f"${names[env[s]]} = {_tex_num(v)}$ ({_tt(torch_name)})")
    return text, tex, ", ".join(legend_t), ", ".join(legend_l)


def schedule_text(schedule, lr: float = 0.1) -> str:
    """A schedule (or a spec string, with ``lr``) as text: ``ηₜ = ...`` and its parameters."""
    sc = make_schedule(schedule, lr) if isinstance(schedule, str) else schedule
    text, _, legend, _ = _schedule_lines(sc)
    return "\n".join([f"{sc.name}: {sc.doc}", *("  " + s for s in text), f"  where {legend}", ""])


def schedule_latex(schedule, lr: float = 0.1) -> str:
    """A schedule as a LaTeX ``align*`` block and legend."""
    sc = make_schedule(schedule, lr) if isinstance(schedule, str) else schedule
    _, tex, _, legend = _schedule_lines(sc)
    body = " \\\\\n".join(tex)
    return f"% {sc.name}: {sc.doc}\n\\begin{{align*}}\n{body}\n\\end{{align*}}\nwhere {legend}.\n"


def expr_latex(expr, names: dict | None = None) -> str:
    """Any expression in this module's LaTeX style (``names``: ``{symbol: LaTeX}``)."""
    return _printers(dict(names or {}))[1].doprint(expr)

