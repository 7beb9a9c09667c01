"""Optimizers: update rules declared in SymPy, run as fused in-place kernels."""
from .base import Optimizer
from .declare import OPTIMIZERS, declare_optimizer
from .rules import SGD_RULE, UpdateRule
from .sgd import SGD  # noqa: I001 (declared first: OPTIMIZERS lists SGD first)
from .adaptive import Adadelta, Adagrad, Adam, Adamax, AdamW, NAdam, RMSprop

__all__ = ["Optimizer", "SGD", "UpdateRule", "SGD_RULE", "OPTIMIZERS", "declare_optimizer"]
__all__ += ["Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam"]
