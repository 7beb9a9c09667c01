"""Adaptive optimizers, as ``torch.optim`` (same names, defaults and results): one declaration each.

Each rule lives in :mod:`symdl.optim.rules_adaptive`; its switches (``amsgrad``, ``centered``,
RMSprop's nonzero ``momentum``) choose the rule's form, the other arguments feed it.  The class,
signature, defaults, range checks and ``kernels/`` variants come from the declaration
(:func:`~symdl.optim.declare.declare_optimizer`); each step runs one fused in-place kernel with
host scalars (bias corrections) computed once.  ``optimizer.derivation()`` prints the rule run.
"""
from __future__ import annotations

from .declare import declare_optimizer
from .rules_adaptive import (adadelta_rule, adagrad_rule, adam_rule, adamax_rule, adamw_rule, nadam_rule,
                             rmsprop_rule)

__all__ = ["Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam"]

# registration order is the order of OPTIMIZERS (after SGD): the CLI, gallery and kernels/ read it
Adagrad = declare_optimizer("adagrad", adagrad_rule)
RMSprop = declare_optimizer("rmsprop", rmsprop_rule, class_name="RMSprop", switches=("centered", "momentum"))
Adadelta = declare_optimizer("adadelta", adadelta_rule)
Adam = declare_optimizer("adam", adam_rule, switches=("amsgrad",))
AdamW = declare_optimizer("adamw", adamw_rule, class_name="AdamW", switches=("amsgrad",), base=Adam)
Adamax = declare_optimizer("adamax", adamax_rule)
NAdam = declare_optimizer("nadam", nadam_rule, class_name="NAdam", switches=("decoupled_weight_decay",),
                          variants={"nadam": {}, "nadam_decoupled": {"decoupled_weight_decay": True}})
