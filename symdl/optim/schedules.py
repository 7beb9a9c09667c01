"""Learning-rate schedules, each one SymPy expression of the step count ``t``.

A :class:`Schedule` holds the expression ``η_t`` in ``t`` and named
parameters (torch.optim.lr_scheduler's names) with their values, and its
``unit``: the trainer steps it once per epoch (default) or once per batch
(``schedule.with_unit("batch")``, or ``Trainer(..., schedule_unit="batch")``).  The same
declaration is evaluated (``lr_at(t)``, lambdified once) and printed
(:func:`symdl.optim.derivation.schedule_text` / ``schedule_latex``).  ``t`` is
the number of scheduler steps taken, so ``lr_at(t)`` is the rate torch's
scheduler gives after ``t`` calls of ``scheduler.step()``.

:func:`make_schedule` builds one from a spec string, ``NAME[:k=v,...]``;
later parts of a sequence are joined with ``+`` and start at ``@milestone``:
``"linear:start_factor=0.1,total_iters=5+cosine@5:T_max=95"``.  Lists are
separated by ``/`` (``multistep:milestones=30/60/90``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import sympy as sp

from ..errors import UsageError

__all__ = ["DISPLAY", "SCHEDULES", "UNITS", "RestartIndex", "Schedule", "constant", "cosine_lr",
           "cosine_restarts", "cyclic_lr", "display_name", "exponential_lr", "linear_lr",
           "make_schedule", "multistep_lr", "sequential", "step_lr", "time_based", "warmup_cosine"]

#: What ``t`` counts: the trainer steps a schedule once per epoch or once per batch.
UNITS = ("epoch", "batch")

t = sp.Symbol("t", integer=True, nonnegative=True)
eta0 = sp.Symbol("lr", positive=True)


class RestartIndex(sp.Function):
    """The warm-restart cycle containing step ``t``: the largest ``n`` with
    ``T_0 (T_mult^n − 1)/(T_mult − 1) <= t``, i.e.
    ``⌊log_{T_mult}(1 + t (T_mult − 1)/T_0)⌋``.  Printed as that (its
    definition); evaluated in exact integer arithmetic, as torch
    counts ``T_cur`` (a floating-point log is off by one at some restarts)."""

    nargs = 3  # (t, T_0, T_mult)

    @staticmethod
    def _imp_(t, T_0, T_mult):
        n, start, length = 0, 0, int(T_0)
        while start + length <= int(t):
            start, length, n = start + length, length * int(T_mult), n + 1
        return n

    def definition(self):
        tt, T0, Tm = self.args
        return sp.floor(sp.log(1 + tt * (Tm - 1) / T0) / sp.log(Tm))

    def _latex(self, printer, exp=None):
        out = printer._print(self.definition())
        return out if exp is None else rf"\left({out}\right)^{{{exp}}}"

    def _sympystr(self, printer):
        return printer._print(self.definition())


@dataclass(frozen=True)
class Schedule:
    """``η_t = expr`` with ``params`` (``((symbol, value), ...)``, display order)
    and ``where``: helper definitions ``((symbol, expr), ...)`` used by ``expr``
    (each may use the ones before it), printed on their own lines."""

    name: str
    expr: sp.Expr
    params: tuple
    doc: str = ""
    where: tuple = ()
    unit: str = "epoch"
    _fn: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.unit not in UNITS:
            raise UsageError(f"a schedule steps per {' or per '.join(UNITS)}, not {self.unit!r}")
        syms = [s for s, _ in self.params]
        object.__setattr__(self, "_fn", sp.lambdify([t, *syms], self.full(), "math"))

    def full(self) -> sp.Expr:
        """``expr`` with the ``where`` definitions substituted."""
        out = self.expr
        for sym, e in reversed(self.where):
            out = out.xreplace({sym: e})
        return out

    @property
    def values(self) -> dict:
        return {s.name: v for s, v in self.params}

    def lr_at(self, step) -> float:
        """The learning rate after ``step`` scheduler steps (``step >= 0``)."""
        return float(self._fn(int(step), *(v for _, v in self.params)))

    __call__ = lr_at

    def apply(self, optimizer, step) -> float:
        """Set ``optimizer``'s learning rate to ``lr_at(step)``; return it."""
        optimizer.hyper["lr"] = lr = self.lr_at(step)
        return lr

    def with_unit(self, unit: str) -> "Schedule":
        """This schedule stepped per ``unit`` (``"epoch"`` or ``"batch"``): ``t`` counts those."""
        return self if unit == self.unit else replace(self, unit=unit)

    def __repr__(self) -> str:
        args = ", ".join(f"{s.name}={v!r}" for s, v in self.params)
        per = "" if self.unit == "epoch" else f"; per {self.unit}"  # epoch: as checkpoints recorded it
        return f"Schedule({self.name}: {args}{per})"

    def _repr_latex_(self) -> str:
        from ..printing.notebook import display_latex
        from .derivation import schedule_latex  # derivation imports this module
        return display_latex(schedule_latex(self))


#: how parameters print: name -> (text, LaTeX)
DISPLAY = {
    "lr": ("η₀", r"\eta_{0}"), "gamma": ("γ", r"\gamma"), "step_size": ("s", "s"), "k": ("k", "k"),
    "start_factor": ("fₛ", "f_{s}"), "end_factor": ("fₑ", "f_{e}"), "total_iters": ("T", "T"),
    "T_max": ("Tₘₐₓ", r"T_{\max}"), "eta_min": ("ηₘᵢₙ", r"\eta_{\min}"), "T_0": ("T₀", "T_{0}"),
    "T_mult": ("Tₘᵤₗₜ", r"T_{\mathrm{mult}}"), "base_lr": ("η₀", r"\eta_{0}"), "max_lr": ("ηₘₐₓ", r"\eta_{\max}"),
    "step_size_up": ("s↑", r"s_{\uparrow}"), "step_size_down": ("s↓", r"s_{\downarrow}"),
    "t": ("t", "t"), "x": ("xₜ", "x_{t}"), "r": ("r", "r"), "n": ("nₜ", "n_{t}"),
    "T_cur": ("T_cur", r"T_{\mathrm{cur}}"), "T_i": ("Tᵢ", "T_{i}"),
}
_SUB, _SUP = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"), str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def display_name(name: str) -> tuple:
    """``(text, LaTeX)`` of a schedule symbol: ``m_2`` -> m₂, ``gamma_2`` (renamed in a sequence) -> γ⁽²⁾."""
    if name in DISPLAY:
        return DISPLAY[name]
    head, _, k = name.rpartition("_")
    if head in ("m", "M") and k.isdigit():
        return head + k.translate(_SUB), f"{head}_{{{k}}}"
    if head in DISPLAY and k.isdigit():
        text, tex = DISPLAY[head]
        return f"{text}⁽{k.translate(_SUP)}⁾", f"{tex}^{{({k})}}"
    return name, name


def _sym(name, **kw):
    return sp.Symbol(name, positive=True, **kw)


def _cosine(lo, hi, x, period):
    return lo + (hi - lo) * (1 + sp.cos(sp.pi * x / period)) / 2


# --------------------------------------------------------------- factories
def constant(lr: float) -> Schedule:
    return Schedule("constant", eta0, ((eta0, lr),), "constant learning rate")


def step_lr(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """StepLR: multiply by γ every ``step_size`` steps."""
    s, gam = _sym("step_size", integer=True), _sym("gamma")
    return Schedule("step", eta0 * gam ** sp.floor(t / s), ((eta0, lr), (s, step_size), (gam, gamma)),
                    "StepLR: decay by gamma every step_size steps")


def multistep_lr(lr: float, milestones, gamma: float = 0.1) -> Schedule:
    """MultiStepLR: multiply by γ at each milestone."""
    gam = _sym("gamma")
    ms = [_sym(f"m_{i + 1}", integer=True) for i in range(len(milestones))]
    count = sp.Add(*[sp.Piecewise((1, t >= mi), (0, True)) for mi in ms])
    return Schedule("multistep", eta0 * gam ** count,
                    ((eta0, lr), *zip(ms, (int(m) for m in milestones)), (gam, gamma)),
                    "MultiStepLR: decay by gamma at each milestone m_i")


def exponential_lr(lr: float, gamma: float) -> Schedule:
    gam = _sym("gamma")
    return Schedule("exponential", eta0 * gam ** t, ((eta0, lr), (gam, gamma)), "ExponentialLR")


def time_based(lr: float, k: float) -> Schedule:
    """Time-based decay η₀/(1 + k t)."""
    kk = sp.Symbol("k", nonnegative=True)
    return Schedule("time", eta0 / (1 + kk * t), ((eta0, lr), (kk, k)), "time-based decay")


def linear_lr(lr: float, start_factor: float = 1 / 3, end_factor: float = 1.0, total_iters: int = 5) -> Schedule:
    """LinearLR: the factor goes linearly from start to end over ``total_iters`` steps (warm-up)."""
    a, b, n = _sym("start_factor"), _sym("end_factor"), _sym("total_iters", integer=True)
    expr = eta0 * (a + (b - a) * sp.Min(t, n) / n)
    return Schedule("linear", expr, ((eta0, lr), (a, start_factor), (b, end_factor), (n, total_iters)),
                    "LinearLR: linear warm-up of the factor")


def cosine_lr(lr: float, T_max: float, eta_min: float = 0.0) -> Schedule:
    """CosineAnnealingLR, closed form η_min + (η₀ − η_min)(1 + cos(π t/T_max))/2."""
    T, lo = _sym("T_max"), sp.Symbol("eta_min", nonnegative=True)
    return Schedule("cosine", _cosine(lo, eta0, t, T), ((eta0, lr), (T, T_max), (lo, eta_min)),
                    "CosineAnnealingLR (closed form)")


def cosine_restarts(lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0) -> Schedule:
    """CosineAnnealingWarmRestarts (SGDR): cycles of length T_0, T_0 T_mult, ..."""
    T0, Tm = _sym("T_0", integer=True), _sym("T_mult", integer=True)
    lo = sp.Symbol("eta_min", nonnegative=True)
    t_cur, t_i, n = sp.Symbol("T_cur", nonnegative=True), sp.Symbol("T_i", positive=True), sp.Symbol("n")
    if int(T_mult) == 1:
        where = ((t_cur, sp.Mod(t, T0)), (t_i, T0))
    else:
        where = ((n, RestartIndex(t, T0, Tm)), (t_cur, t - T0 * (Tm ** n - 1) / (Tm - 1)), (t_i, T0 * Tm ** n))
    return Schedule("cosine_restarts", _cosine(lo, eta0, t_cur, t_i),
                    ((eta0, lr), (T0, T_0), (Tm, T_mult), (lo, eta_min)),
                    "CosineAnnealingWarmRestarts (SGDR)", where)


def cyclic_lr(base_lr: float, max_lr: float, step_size_up: int = 2000, step_size_down=None,
              mode: str = "triangular", gamma: float = 1.0) -> Schedule:
    """CyclicLR (Smith 2017) as torch's: modes triangular, triangular2, exp_range."""
    if mode not in ("triangular", "triangular2", "exp_range"):
        raise UsageError(f"cyclic: mode must be triangular, triangular2 or exp_range, got {mode!r}")
    lo, hi = _sym("base_lr"), _sym("max_lr")
    up, down = _sym("step_size_up", integer=True), _sym("step_size_down", integer=True)
    size = up + down
    cycle = sp.floor(t / size)  # torch: floor(1 + t/size), the same cycle counted from 1
    x, r = sp.Symbol("x"), sp.Symbol("r", positive=True)
    scale = sp.Piecewise((x / r, x <= r), ((1 - x) / (1 - r), True))
    params = [(lo, base_lr), (hi, max_lr), (up, step_size_up),
              (down, step_size_up if step_size_down is None else step_size_down)]
    if mode == "triangular2":
        amp = sp.Integer(2) ** -cycle
    elif mode == "exp_range":
        gam = _sym("gamma")
        amp = gam ** t
        params.append((gam, gamma))
    else:
        amp = sp.S.One
    return Schedule(f"cyclic_{mode}", lo + (hi - lo) * scale * amp, tuple(params), f"CyclicLR ({mode})",
                    ((x, t / size - cycle), (r, up / size)))


def sequential(schedules, milestones) -> Schedule:
    """SequentialLR: ``schedules[i]`` runs from ``milestones[i-1]``, its own ``t``
    restarted at 0.  Parameters shared by name must agree (else the later is renamed)."""
    milestones = [int(m) for m in milestones]
    if len(milestones) != len(schedules) - 1 or any(b <= a for a, b in zip(milestones, milestones[1:])) \
            or (milestones and milestones[0] < 1):
        raise UsageError("sequence: need one increasing milestone (>= 1) between consecutive schedules")
    ms = [sp.Symbol(f"M_{i + 1}", integer=True, positive=True) for i in range(len(milestones))]
    params, seen, parts = [], {}, []
    for k, sc in enumerate(schedules):
        ren = {}
        for sym, val in sc.params:
            if sym.name in seen and seen[sym.name][1] != val:
                new = sp.Symbol(f"{sym.name}_{k + 1}", **sym.assumptions0)
                ren[sym] = new
                params.append((new, val))
            elif sym.name not in seen:
                seen[sym.name] = (sym, val)
                params.append((sym, val))
        part = sc.full().xreplace(ren)
        parts.append(part.xreplace({t: t - ms[k - 1]}) if k else part)
    pieces = [(e, t < m) for e, m in zip(parts, ms)] + [(parts[-1], True)]
    return Schedule("sequence", sp.Piecewise(*pieces), tuple(params) + tuple(zip(ms, milestones)),
                    "SequentialLR: " + ", then ".join(sc.name for sc in schedules))


def warmup_cosine(lr: float, warmup: int, T_max: float, start_factor: float = 0.01,
                  eta_min: float = 0.0) -> Schedule:
    """Linear warm-up for ``warmup`` steps, then cosine annealing over ``T_max`` steps."""
    return sequential([linear_lr(lr, start_factor, 1.0, warmup), cosine_lr(lr, T_max, eta_min)], [warmup])


# ------------------------------------------------------------------ specs
def _num(kind, lo=None, lo_open=False, hi=None, hi_open=False):
    def conv(name, text):
        try:
            val = int(text) if kind is int else float(text)
        except ValueError:
            raise UsageError(f"{name} must be {'an integer' if kind is int else 'a number'}, "
                             f"got {text!r}") from None
        if not math.isfinite(val) or (lo is not None and (val < lo or (lo_open and val == lo))) or \
                (hi is not None and (val > hi or (hi_open and val == hi))):
            bounds = [f"{'>' if lo_open else '>='} {lo:g}" if lo is not None else "",
                      f"{'<' if hi_open else '<='} {hi:g}" if hi is not None else ""]
            raise UsageError(f"{name} must be {' and '.join(filter(None, bounds))}, got {text}")
        return val
    return conv


def _ints(name, text):
    items = [s for s in text.replace(";", "/").split("/") if s]
    vals = [_num(int, 0)(name, s) for s in items]
    if not vals or any(b <= a for a, b in zip(vals, vals[1:])):
        raise UsageError(f"{name} must be increasing integers separated by '/', got {text!r}")
    return vals


def _mode(name, text):
    return text


_POS, _POSI, _NONNEG = _num(float, 0, True), _num(int, 1), _num(float, 0)
#: name: (factory, {parameter: converter}, required parameters)
SCHEDULES = {
    "constant": (constant, {}, ()),
    "step": (step_lr, {"step_size": _POSI, "gamma": _POS}, ("step_size",)),
    "multistep": (multistep_lr, {"milestones": _ints, "gamma": _POS}, ("milestones",)),
    "exponential": (exponential_lr, {"gamma": _POS}, ("gamma",)),
    "time": (time_based, {"k": _NONNEG}, ("k",)),
    "linear": (linear_lr, {"start_factor": _num(float, 0, True, 1), "end_factor": _num(float, 0, False, 1),
                           "total_iters": _POSI}, ()),
    "cosine": (cosine_lr, {"T_max": _POS, "eta_min": _NONNEG}, ("T_max",)),
    "cosine_restarts": (cosine_restarts, {"T_0": _POSI, "T_mult": _POSI, "eta_min": _NONNEG}, ("T_0",)),
    "cyclic": (cyclic_lr, {"base_lr": _POS, "max_lr": _POS, "step_size_up": _POSI, "step_size_down": _POSI,
                           "mode": _mode, "gamma": _POS}, ("max_lr",)),
    "warmup_cosine": (warmup_cosine, {"warmup": _POSI, "T_max": _POS, "start_factor": _num(float, 0, True, 1),
                                      "eta_min": _NONNEG}, ("warmup", "T_max")),
}


def _part(text: str, lr: float):
    head, _, body = text.partition(":")
    name, at, start = head.strip().partition("@")
    name = name.strip().lower()
    if name not in SCHEDULES:
        raise UsageError(f"unknown schedule {name!r} (choose from: {', '.join(SCHEDULES)})")
    factory, convs, required = SCHEDULES[name]
    kw = {}
    for item in filter(None, (s.strip() for s in body.split(","))):
        key, eq, val = (s.strip() for s in item.partition("="))
        if not eq or not key or not val:
            raise UsageError(f"schedule {name}: expected key=value, got {item!r}")
        if key not in convs:
            raise UsageError(f"schedule {name} has no parameter {key!r} "
                             f"(it takes: {', '.join(convs) or 'nothing'})")
        if key in kw:
            raise UsageError(f"schedule {name}: {key} given twice")
        kw[key] = convs[key](f"schedule {name}: {key}", val)
    missing = [k for k in required if k not in kw]
    if missing:
        raise UsageError(f"schedule {name} needs {missing[0]}=... (e.g. {name}:{missing[0]}=10)")
    if name == "cyclic":
        kw.setdefault("base_lr", lr)
        sched = factory(**kw)
    else:
        sched = factory(lr, **kw)
    return sched, (_num(int, 1)(f"schedule {name}: start @", start) if at else None)


def make_schedule(spec: str, lr: float, unit: str = "epoch") -> Schedule:
    """A schedule from ``"NAME[:k=v,...]"``, or a sequence ``"A:...+B@m:..."`` (see module doc),
    stepped per ``unit`` (``"epoch"`` or ``"batch"``)."""
    if unit not in UNITS:
        raise UsageError(f"a schedule steps per {' or per '.join(UNITS)}, not {unit!r}")
    return _make_schedule(spec, lr).with_unit(unit)


def _make_schedule(spec: str, lr: float) -> Schedule:
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError("empty schedule spec (e.g. cosine:T_max=50)")
    parts = [_part(p, lr) for p in re.split(r"\+(?=\s*[A-Za-z_])", spec)]
    if parts[0][1] is not None:
        raise UsageError(f"the first schedule in {spec!r} starts at 0: drop its @{parts[0][1]}")
    if len(parts) == 1:
        return parts[0][0]
    if any(start is None for _, start in parts[1:]):
        raise UsageError(f"each later schedule in {spec!r} needs its start step, as in cosine@5:T_max=95")
    return sequential([s for s, _ in parts], [start for _, start in parts[1:]])
