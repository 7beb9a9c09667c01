"""Stochastic gradient descent, as ``torch.optim.SGD``: one declaration."""
from __future__ import annotations

from .declare import declare_optimizer
from .rules import sgd_rule

__all__ = ["SGD"]

#: ``SGD(params, lr=0.01, momentum=0, dampening=0, weight_decay=0, nesterov=False)``: the rule
#: :data:`symdl.optim.rules.SGD_RULE` (printed by ``symdl derive --optimizer sgd``), without its
#: momentum buffer when ``momentum`` is 0.
SGD = declare_optimizer(
    "sgd", sgd_rule, class_name="SGD", switches=("momentum", "nesterov"),
    variants={"sgd": {}, "sgd_momentum": {"momentum": True},
              "sgd_nesterov": {"momentum": True, "nesterov": True}},
    display={"momentum": True},
    constraints=((lambda h: not h["nesterov"] or (h["momentum"] > 0 and h["dampening"] == 0),
                  "Nesterov momentum requires a momentum and zero dampening"),))
