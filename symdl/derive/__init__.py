"""Differentiation: reverse mode over graphs (and step-by-step derivations)."""
from .reverse import GradGraph, grad

__all__ = ["grad", "GradGraph"]
