"""Optimizers: update rules declared in SymPy, run as fused in-place kernels."""
from .adaptive import Adadelta, Adagrad, Adam, Adamax, AdamW, NAdam, RMSprop
from .base import Optimizer
from .rules import SGD_RULE, UpdateRule
from .sgd import SGD

OPTIMIZERS = {"sgd": SGD}
OPTIMIZERS.update({"adagrad": Adagrad, "rmsprop": RMSprop, "adadelta": Adadelta, "adam": Adam,
                   "adamw": AdamW, "adamax": Adamax, "nadam": NAdam})

__all__ = ["Optimizer", "SGD", "UpdateRule", "SGD_RULE", "OPTIMIZERS"]
__all__ += ["Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam"]
