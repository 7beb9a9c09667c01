"""Optimizers declared once: an update rule becomes the class, its signature, defaults and checks.

``declare_optimizer("adam", adam_rule, switches=("amsgrad",), class_name="Adam")`` is the whole
of an optimizer.  From the rule (or the rule builder, called with one boolean per *switch*) come:

- the defaults, read from the rules' ``hyper`` dicts (written nowhere else);
- the constructor's signature in torch's order and names (``betas=(β₁, β₂)`` for ``beta1``
  and ``beta2``, see :data:`PAIRS`), shown by ``help()`` and ``inspect.signature``;
- the range checks, by hyperparameter name (:data:`RANGES`, as torch.optim checks them);
- the variants for the ``kernels/`` listing (every combination of the switches);
- the registration in :data:`OPTIMIZERS`, which the CLI, ``symdl derive --optimizer``, the
  ``kernels/`` listing and the gallery read.

A switch is either a flag argument (``amsgrad=False``) or a hyperparameter whose nonzero value
selects another form of the rule (SGD's and RMSprop's ``momentum``: no momentum buffer at 0).
"""
from __future__ import annotations

import inspect
import itertools
import math
import numbers
import sys
from dataclasses import dataclass
from typing import Callable

from ..errors import UsageError
from .base import Optimizer
from .rules import UpdateRule

__all__ = ["OPTIMIZERS", "PAIRS", "RANGES", "OptimizerDecl", "declare_optimizer"]

#: ``name -> class`` in declaration order, filled by :func:`declare_optimizer`.
OPTIMIZERS: dict = {}

#: Allowed ranges, as torch.optim checks them: ``name: (low, high, high inclusive)``.
RANGES = {
    "lr": (0.0, math.inf, False), "eps": (0.0, math.inf, False), "weight_decay": (0.0, math.inf, False),
    "beta1": (0.0, 1.0, False), "beta2": (0.0, 1.0, False), "alpha": (0.0, math.inf, False),
    "rho": (0.0, 1.0, True), "momentum": (0.0, math.inf, False), "lr_decay": (0.0, math.inf, False),
    "initial_accumulator_value": (0.0, math.inf, False), "momentum_decay": (0.0, math.inf, False),
}

#: Hyperparameters torch takes as one tuple argument: ``argument: (first, second)``.
PAIRS = {"betas": ("beta1", "beta2")}


@dataclass(frozen=True)
class OptimizerDecl:
    """One optimizer, as :func:`declare_optimizer` read it (see there for the fields)."""

    name: str
    class_name: str
    build: Callable
    switches: tuple
    flags: tuple
    variants: tuple  # ((label, rule), ...)
    defaults: dict  # {hyper name: default}, from the rules' hyper dicts
    arguments: tuple  # constructor arguments after ``params``, in order
    pairs: dict
    display: dict
    constraints: tuple

    def bind(self, owner: str, args: tuple, kwargs: dict) -> tuple:
        """Checked ``(values, switches)`` for a constructor call (positional ``args`` after params)."""
        if len(args) > len(self.arguments):
            raise UsageError(f"{owner} takes at most {len(self.arguments)} arguments after params, "
                             f"got {len(args)}")
        given = dict(zip(self.arguments, args))
        for k, v in kwargs.items():
            if k in given:
                raise UsageError(f"{owner} got {k} twice")
            given[k] = v
        for pair, (a, b) in self.pairs.items():
            if pair in given:
                value = given.pop(pair)
                try:
                    first, second = value
                except (TypeError, ValueError):
                    raise UsageError(f"{pair} must be a pair ({a}, {b}), got {value!r}") from None
                given.setdefault(a, first)  # beta1= (as in optimizer.hyper) wins over betas=
                given.setdefault(b, second)
        unknown = sorted(set(given) - set(self.defaults) - set(self.flags))
        if unknown:
            raise UsageError(f"{owner} has no hyperparameter {unknown[0]!r}")
        for name, value in given.items():
            if name in self.flags:
                if not isinstance(value, (bool, int)):
                    raise UsageError(f"{owner}: {name} must be True or False, got {value!r}")
            else:
                check_value(owner, name, value)
        values = {**self.defaults, **dict.fromkeys(self.flags, False), **given}
        for ok, message in self.constraints:
            if not ok(values):
                raise UsageError(f"{owner}: {message}")
        return values, {s: bool(values[s]) for s in self.switches}

    def rule_for(self, options: dict) -> UpdateRule:
        """The form printed for ``options`` (``{"amsgrad": True}``; others only fill the legend)."""
        unknown = sorted(set(options) - set(self.defaults) - set(self.flags) - set(self.pairs))
        if unknown:
            raise UsageError(f"optimizer {self.name!r} has no option {unknown[0]!r}")
        return self.build(**{s: bool(options.get(s, self.display.get(s, False))) for s in self.switches})

    def signature(self) -> inspect.Signature:
        """``(params, lr=..., betas=(..., ...), ..., flag=False)``, torch's names and order."""
        params = [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        for arg in self.arguments:
            if arg in self.pairs:
                default = tuple(self.defaults[x] for x in self.pairs[arg])
            else:
                default = False if arg in self.flags else self.defaults[arg]
            params.append(inspect.Parameter(arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default))
        return inspect.Signature(params)


def check_value(owner: str, name: str, value) -> None:
    """A hyperparameter value: a real number, inside :data:`RANGES` when its name is there."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(f"{owner}: {name} must be a number, got {value!r}")
    if name not in RANGES:
        return
    lo, hi, closed = RANGES[name]
    if not (lo <= value < hi or (closed and value == hi)):
        bound = f"[{lo:g}, {hi:g}{']' if closed else ')'}" if hi != math.inf else f">= {lo:g}"
        raise UsageError(f"{owner}: invalid {name} {value!r} (must be {bound})")


# ------------------------------------------------------------- declaring
def _defaults(rules, where: str) -> dict:
    """``{name: default}`` over every form's hyper dict, largest form first (its order is torch's)."""
    out: dict = {}
    for rule in sorted(rules, key=lambda r: -len(r.hyper)):
        for s, d in rule.hyper.items():
            if out.setdefault(s.name, d) != d:
                raise UsageError(f"{where}: {s.name} defaults to {out[s.name]} in one form, {d} in another")
    return out


def _arguments(defaults: dict, flags: tuple, pairs: dict) -> tuple:
    """Hyperparameters in order, each pair folded into one argument at its first member, then flags."""
    out = []
    for name in defaults:
        pair = next((k for k, members in pairs.items() if name in members), None)
        if pair is None:
            out.append(name)
        elif pair not in out:
            out.append(pair)
    return tuple(out) + flags


def declare_optimizer(name: str, rule, *, switches: tuple = (), class_name: str | None = None,
                      variants: dict | None = None, display: dict | None = None,
                      constraints: tuple = (), base: type = Optimizer, register: bool = True) -> type:
    """Declare an optimizer from its update rule; return (and register) its class.

    Parameters
    ----------
    name : the registry name (``"adam"``), also the ``kernels/`` file ``optim_<name>.py``.
    rule : an :class:`~symdl.optim.rules.UpdateRule`, or a builder called with one boolean
        keyword per switch (``adam_rule(amsgrad=...)``) that returns one.
    switches : constructor arguments choosing the rule's form: a flag (``"amsgrad"``, default
        False) or a hyperparameter of some form whose nonzero value selects it (``"momentum"``).
    class_name : the class's name (default ``name.capitalize()``).
    variants : ``{label: {switch: bool}}`` for the ``kernels/`` listing (default: every
        combination of the switches, labelled ``name_<switch>...``).
    display : switches of the form printed by name (``symdl derive --optimizer sgd``).
    constraints : ``((predicate(values) -> bool, message), ...)`` across arguments.
    base : the base class (an optimizer class whose instances these should also be).
    register : add the class to :data:`OPTIMIZERS`.

    Examples
    --------
    >>> import sympy as sp
    >>> from symdl.ops.registry import real
    >>> from symdl.optim.rules import UpdateRule, p, g
    >>> lr = real("lr")
    >>> Plain = declare_optimizer("plain", UpdateRule("plain", ((p, p - lr * g),), hyper={lr: 0.1}),
    ...                           register=False)
    >>> import inspect; str(inspect.signature(Plain))
    '(params, lr=0.1)'
    """
    build = rule if callable(rule) else (lambda: rule)
    where = f"optimizer {name!r}"
    if register and name in OPTIMIZERS:
        raise UsageError(f"{where} is declared twice")
    if variants is None:
        variants = {name + "".join(f"_{s}" for s, on in zip(switches, combo) if on): dict(zip(switches, combo))
                    for combo in itertools.product((False, True), repeat=len(switches))}
    forms = tuple((label, build(**{s: bool(chosen.get(s, False)) for s in switches}))
                  for label, chosen in variants.items())
    defaults = _defaults([r for _, r in forms], where)
    flags = tuple(s for s in switches if s not in defaults)
    pairs = {k: v for k, v in PAIRS.items() if set(v) <= set(defaults)}
    decl = OptimizerDecl(name, class_name or name.capitalize(), build, tuple(switches), flags, forms,
                         defaults, _arguments(defaults, flags, pairs), pairs, dict(display or {}),
                         tuple(constraints))
    cls = _make_class(decl, base, sys._getframe(1).f_globals.get("__name__", __name__))
    if register:
        OPTIMIZERS[name] = cls
    return cls


def _make_class(decl: OptimizerDecl, base: type, module: str) -> type:
    sig = decl.signature()

    def __init__(self, params, *args, **kwargs):
        Optimizer.__init__(self, params, *args, **kwargs)

    __init__.__signature__ = sig.replace(parameters=[
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *sig.parameters.values()])
    __init__.__qualname__ = f"{decl.class_name}.__init__"
    __init__.__module__ = module
    doc = inspect.cleandoc(getattr(decl.build, "__doc__", None) or "").split("\n\n")[0]
    rule_docs = "; ".join(f"``{label}``: {r.doc}" for label, r in decl.variants)
    __init__.__doc__ = (f"{decl.class_name}{sig}.\n\n{doc or decl.variants[0][1].doc}\n\n"
                        f"Forms of the rule: {rule_docs}.  Printed by "
                        f"``symdl derive --optimizer {decl.name}``; declared with "
                        f":func:`symdl.optim.declare.declare_optimizer`.")
    return type(decl.class_name, (base,), {
        "__init__": __init__, "__doc__": __init__.__doc__, "__module__": module,
        "__qualname__": decl.class_name, "declaration": decl})
