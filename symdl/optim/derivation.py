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
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from ..errors import UsageError
from .rules import SGD_RULE, UpdateRule, g, p, sgd_rule
from .rules_adaptive import RULES, T, unflushed
from .schedules import display_name, make_schedule
from .schedules import t as T_SCHED

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
        return "$$\\begin{aligned}" + " \\\\ ".join(self.latex_lines) + "\\end{aligned}$$"


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
    if name == "sgd":
        return sgd_rule(float(options.get("momentum", 0.9)), bool(options.get("nesterov"))) if options else SGD_RULE
    if name not in RULES:
        raise UsageError(f"unknown optimizer {name!r} (choose from: sgd, {', '.join(RULES)})")
    return RULES[name](**options)


def rule_text(name, **options) -> str:
    """The update rule of optimizer ``name`` (``rule_text("adam", amsgrad=True)``) as text."""
    return rule_derivation(_rule(name, **options)).text


def rule_latex(name, **options) -> str:
    """The update rule of optimizer ``name`` as a LaTeX ``align*`` block and legend."""
    return rule_derivation(_rule(name, **options)).latex


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

