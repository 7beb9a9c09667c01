"""Differentiation: reverse mode over graphs (and step-by-step derivations)."""
from .higher import HVPGraph, hvp_graph
from .reverse import GradGraph, grad

__all__ = ["grad", "GradGraph", "hvp_graph", "HVPGraph"]
