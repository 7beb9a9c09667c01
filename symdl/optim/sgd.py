"""Stochastic gradient descent, as ``torch.optim.SGD``."""
from __future__ import annotations

from ..errors import UsageError
from .base import Optimizer
from .rules import sgd_rule


class SGD(Optimizer):
    """SGD(params, lr, momentum=0, dampening=0, nesterov=False, weight_decay=0).

    The update rule is :data:`symdl.optim.rules.SGD_RULE` (printed by
    ``symdl derive --optimizer sgd``), specialised to the options chosen.
    """

    def __init__(self, params, lr=0.01, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        if lr <= 0:
            raise UsageError(f"learning rate must be positive, got {lr}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise UsageError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)

    def make_rule(self, momentum=0.0, nesterov=False, **_):
        return sgd_rule(float(momentum), bool(nesterov))

    @classmethod
    def variants(cls):
        return [("sgd", sgd_rule(0.0, False)), ("sgd_momentum", sgd_rule(0.9, False)),
                ("sgd_nesterov", sgd_rule(0.9, True))]

    def extra_hyper(self):
        return ("nesterov", "momentum", "dampening")
