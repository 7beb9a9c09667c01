"""Differentiation: reverse mode over graphs (and step-by-step derivations)."""
import sys as _sys
import types as _types

from .higher import HVPGraph, hvp_graph
from .reverse import GradGraph, grad
from .steps import Derivation, derive

__all__ = ["derive", "Derivation", "grad", "GradGraph", "hvp_graph", "HVPGraph"]


class _Derive(_types.ModuleType):
    """This package, callable: ``symdl.derive(expr, wrt)`` is :func:`derive`."""

    def __call__(self, *args, **kwargs) -> Derivation:
        return derive(*args, **kwargs)


_sys.modules[__name__].__class__ = _Derive
