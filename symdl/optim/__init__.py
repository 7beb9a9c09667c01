"""Optimizers: update rules declared in SymPy, run as fused in-place kernels."""
from .base import Optimizer
from .rules import SGD_RULE, UpdateRule
from .sgd import SGD

OPTIMIZERS = {"sgd": SGD}

__all__ = ["Optimizer", "SGD", "UpdateRule", "SGD_RULE", "OPTIMIZERS"]
