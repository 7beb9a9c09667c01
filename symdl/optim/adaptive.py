"""Adaptive optimizers, as ``torch.optim`` (same names, defaults and results).

Each class picks its rule from :mod:`symdl.optim.rules_adaptive` (variants
such as ``amsgrad`` or ``centered`` choose the rule, the rest feed it) and
runs it through :class:`~symdl.optim.base.Optimizer`: one fused in-place
kernel per step, host scalars (bias corrections) computed once per step.
``optimizer.derivation()`` prints the rule being run.
"""
from __future__ import annotations

import dataclasses
import math
import numbers

import sympy as sp

from ..errors import UsageError
from .base import Optimizer
from .rules_adaptive import MuProduct, adadelta_rule, adagrad_rule, adam_rule, adamax_rule, nadam_rule, rmsprop_rule

#: Allowed ranges, as torch.optim checks them: ``name: (low, high, high inclusive)``.
_RANGES = {
    "lr": (0.0, math.inf, False), "eps": (0.0, math.inf, False), "weight_decay": (0.0, math.inf, False),
    "beta1": (0.0, 1.0, False), "beta2": (0.0, 1.0, False), "alpha": (0.0, math.inf, False),
    "rho": (0.0, 1.0, True), "momentum": (0.0, math.inf, False), "lr_decay": (0.0, math.inf, False),
    "initial_accumulator_value": (0.0, math.inf, False), "momentum_decay": (0.0, math.inf, False),
}


def _betas(betas, kw: dict) -> dict:
    """``betas=(β₁, β₂)`` (or ``beta1=``/``beta2=``, as in ``optimizer.hyper``)."""
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise UsageError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
    return {"beta1": kw.pop("beta1", b1), "beta2": kw.pop("beta2", b2)}


class _Adaptive(Optimizer):
    """Shared part: range checks, numeric state initialisation, derivation."""

    flags: tuple = ()

    def __init__(self, params, **hyper):
        for name, value in hyper.items():
            if name in self.flags:
                if not isinstance(value, (bool, int)):
                    raise UsageError(f"{type(self).__name__}: {name} must be True or False, got {value!r}")
            elif name in _RANGES:
                _check_range(type(self).__name__, name, value)
        super().__init__(params, **hyper)

    def make_rule(self, **hyper):
        rule = self.build_rule(**{k: bool(hyper.get(k, False)) for k in self.flags})
        if not rule.init:
            return rule
        values = {s: float(hyper.get(s.name, d)) for s, d in rule.hyper.items()}
        init = {st: float(sp.sympify(e).xreplace(values)) for st, e in rule.init.items()}
        return dataclasses.replace(rule, init=init)

    def build_rule(self, **flags):
        raise NotImplementedError

    def extra_hyper(self) -> tuple:
        return self.flags


def _check_range(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(f"{owner}: {name} must be a number, got {value!r}")
    lo, hi, closed = _RANGES[name]
    if not (lo <= value < hi or (closed and value == hi)):
        bound = f"[{lo:g}, {hi:g}{']' if closed else ')'}" if hi != math.inf else f">= {lo:g}"
        raise UsageError(f"{owner}: invalid {name} {value!r} (must be {bound})")


class Adagrad(_Adaptive):
    """Adagrad(params, lr=0.01, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10)."""

    def __init__(self, params, lr=0.01, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, **unknown):
        super().__init__(params, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps, **unknown)

    def build_rule(self):
        return adagrad_rule()

    @classmethod
    def variants(cls):
        return [("adagrad", adagrad_rule())]


class RMSprop(_Adaptive):
    """RMSprop(params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False)."""

    flags = ("centered",)

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, **unknown):
        self._momentum = momentum
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered, **unknown)

    def build_rule(self, centered=False):
        return rmsprop_rule(centered, self._momentum > 0)

    def extra_hyper(self):
        return ("centered", "momentum")

    @classmethod
    def variants(cls):
        return [(f"rmsprop{'_centered' * c}{'_momentum' * mo}", rmsprop_rule(c, mo))
                for c in (False, True) for mo in (False, True)]


class Adadelta(_Adaptive):
    """Adadelta(params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0)."""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, **unknown):
        super().__init__(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, **unknown)

    def build_rule(self):
        return adadelta_rule()

    @classmethod
    def variants(cls):
        return [("adadelta", adadelta_rule())]


class Adam(_Adaptive):
    """Adam(params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)."""

    flags = ("amsgrad",)
    decoupled = False

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, **unknown):
        super().__init__(params, lr=lr, **_betas(betas, unknown), eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, **unknown)

    def build_rule(self, amsgrad=False):
        return adam_rule(amsgrad, self.decoupled)

    @classmethod
    def variants(cls):
        name = "adamw" if cls.decoupled else "adam"
        return [(name, adam_rule(False, cls.decoupled)), (f"{name}_amsgrad", adam_rule(True, cls.decoupled))]


class AdamW(Adam):
    """AdamW(params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False)."""

    decoupled = True

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 amsgrad=False, **unknown):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, **unknown)


class Adamax(_Adaptive):
    """Adamax(params, lr=0.002, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)."""

    def __init__(self, params, lr=0.002, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **unknown):
        super().__init__(params, lr=lr, **_betas(betas, unknown), eps=eps, weight_decay=weight_decay,
                         **unknown)

    def build_rule(self):
        return adamax_rule()

    @classmethod
    def variants(cls):
        return [("adamax", adamax_rule())]


class RunningProduct:
    """NAdam's ``∏_{i=1}^{t} μ_i``, kept as a running value (as torch keeps
    ``mu_product``).  It depends on ``t`` only, so it is not checkpointed:
    asked for an earlier or a distant step it is recomputed from ``i = 1``
    in the same order, giving the same bits."""

    def __init__(self):
        self.t, self.value, self.key = 0, 1.0, None

    def __call__(self, t, beta1, momentum_decay):
        t, key = int(t), (float(beta1), float(momentum_decay))
        if key != self.key or t < self.t:
            self.t, self.value, self.key = 0, 1.0, key
        while self.t < t:
            self.t += 1
            self.value *= key[0] * (1.0 - 0.5 * 0.96 ** (self.t * key[1]))
        return self.value


class NAdam(_Adaptive):
    """NAdam(params, lr=0.002, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=0.004,
    decoupled_weight_decay=False)."""

    flags = ("decoupled_weight_decay",)

    def __init__(self, params, lr=0.002, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 momentum_decay=0.004, decoupled_weight_decay=False, **unknown):
        self.mu_product = RunningProduct()
        super().__init__(params, lr=lr, **_betas(betas, unknown), eps=eps, weight_decay=weight_decay,
                         momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                         **unknown)

    def build_rule(self, decoupled_weight_decay=False):
        # lambdify calls ``_imp_`` of the product's class: bind it to this optimizer's running value
        product = type("MuProduct", (MuProduct,), {"_imp_": staticmethod(self.mu_product)})
        return nadam_rule(decoupled_weight_decay, product=product)

    @classmethod
    def variants(cls):
        return [("nadam", nadam_rule()), ("nadam_decoupled", nadam_rule(True))]
