"""Optimizer update rules declared as SymPy equations.

A rule is an ordered list of assignments ``target := expr`` over the
parameter ``p``, its gradient ``g``, per-parameter state (``b``, ``m``,
``v``, …), hyperparameters and per-step scalars.  Later equations see the
new values of earlier targets, as in the textbook.  The fused kernel
evaluates :meth:`UpdateRule.final` (each target in terms of the *old*
values only), so it reads parameter, gradient and state once and writes
them once, in place.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from ..ops.registry import real

p, g = real("p g")


@dataclass(frozen=True)
class UpdateRule:
    """One optimizer's update.

    Parameters
    ----------
    name : the optimizer's name (``"sgd"``).
    equations : ``((target, expr), ...)`` in order; targets are ``p`` or state.
    state : state symbols, each initialised to 0 (or ``init``).
    hyper : ``{symbol: default}`` hyperparameters (kernel scalar arguments).
    scalars : ``{symbol: expr}`` per-step scalars computed on the host from the
        step count ``t`` and the hyperparameters (bias corrections).
    """

    name: str
    equations: tuple
    state: tuple = ()
    hyper: dict = field(default_factory=dict)
    scalars: dict = field(default_factory=dict)
    init: dict = field(default_factory=dict)
    doc: str = ""

    def final(self) -> dict:
        """``{target: expr in old values}``: the equations substituted forward."""
        new: dict = {}
        for target, expr in self.equations:
            new[target] = expr.xreplace(new)
        return new

    @property
    def targets(self) -> tuple:
        """Written arrays: ``p`` then the state, in declaration order."""
        return (p,) + tuple(s for s in self.state)

    @property
    def kernel_scalars(self) -> tuple:
        """Scalar kernel arguments, sorted by name (deterministic)."""
        syms = set(self.hyper) | set(self.scalars)
        used = set().union(*(e.free_symbols for e in self.final().values()))
        return tuple(sorted(syms & used, key=lambda s: s.name))


# ------------------------------------------------------------------- SGD
lr, mu, damp, wd, first = real("lr momentum dampening weight_decay first")
b = sp.Symbol("b", real=True)
_gw = sp.Symbol("g_w", real=True)  # the gradient with weight decay

SGD_RULE = UpdateRule(
    name="sgd",
    equations=(
        (_gw, g + wd * p),
        (b, first * _gw + (1 - first) * (mu * b + (1 - damp) * _gw)),
        (p, p - lr * b),
    ),
    state=(b,),
    hyper={lr: 0.01, mu: 0.0, damp: 0.0, wd: 0.0},
    scalars={first: sp.Piecewise((1, sp.Eq(sp.Symbol("t", integer=True, positive=True), 1)),
                                 (0, True))},
    doc="SGD with momentum buffer b (b = g on the first step, as torch.optim.SGD)",
)


def sgd_rule(momentum: bool = False, nesterov: bool = False) -> UpdateRule:
    """SGD (as ``torch.optim.SGD``): without ``momentum`` no state; with it the momentum
    buffer of :data:`SGD_RULE`; ``nesterov`` steps along ``g + μ b`` (Nesterov's look-ahead)."""
    if not momentum:
        return UpdateRule("sgd", ((_gw, g + wd * p), (p, p - lr * _gw)), (),
                          {lr: 0.01, wd: 0.0}, {}, doc="plain SGD (with weight decay)")
    if not nesterov:
        return SGD_RULE
    return UpdateRule(SGD_RULE.name, SGD_RULE.equations[:2] + ((p, p - lr * (_gw + mu * b)),),
                      SGD_RULE.state, SGD_RULE.hyper, SGD_RULE.scalars, doc="SGD with Nesterov momentum")
