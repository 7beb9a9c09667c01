"""PyTorch-like modules that build graph nodes.

A :class:`Module` owns :class:`~symdl.nn.parameter.Parameter` objects and
sub-modules (attribute order is registration order, so names and listings
are deterministic) and implements ``build(graph, x) -> node``: it adds its
nodes to a :class:`~symdl.graph.Graph` and returns its output node.
"""
from __future__ import annotations

import numpy as np

from ..errors import CheckpointError
from .parameter import Parameter


class Module:
    """Base class of layers and models."""

    def __init__(self):
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_modules", {})
        self.training = True

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------ params
    def named_parameters(self, prefix: str = ""):
        """``(dotted name, Parameter)`` pairs in registration order."""
        for name, p in self._params.items():
            yield prefix + name, p
        for name, m in self._modules.items():
            yield from m.named_parameters(f"{prefix}{name}.")

    def parameters(self) -> list:
        return [p for _, p in self.named_parameters()]

    def name_parameters(self) -> None:
        """Set each parameter's ``name`` to its dotted path."""
        for name, p in self.named_parameters():
            p.name = name

    def num_parameters(self) -> int:
        return sum(p.data.size for p in self.parameters())

    def state_dict(self) -> dict:
        """``{name: array copy}``."""
        return {n: p.data.copy() for n, p in self.named_parameters()}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays in; with ``strict`` the names and shapes must match exactly."""
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        reshaped = sorted(n for n in set(own) & set(state) if np.shape(state[n]) != own[n].shape)
        if strict and (missing or unexpected or reshaped):
            parts = []
            if missing:
                parts.append("missing " + ", ".join(missing))
            if unexpected:
                parts.append("unexpected " + ", ".join(unexpected))
            if reshaped:
                parts.append("reshaped " + ", ".join(
                    f"{n} {np.shape(state[n])} vs {own[n].shape}" for n in reshaped))
            raise CheckpointError("state does not fit the model: " + "; ".join(parts))
        for n, p in own.items():
            if n in state and n not in reshaped:
                p.data[...] = state[n]

    def train(self, mode: bool = True) -> "Module":
        self.training = mode
        for m in self._modules.values():
            m.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    # ------------------------------------------------------------ graph
    def build(self, g, x: str, prefix: str = "") -> str:
        raise NotImplementedError(type(self).__name__)

    def summary(self, input_shape):
        """Per-layer output shape, parameters, receptive field (:func:`.summary.summary`)."""
        from .summary import summary  # a sibling module that itself imports this one
        return summary(self, input_shape)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={m!r}" for n, m in self._modules.items())
        return f"{type(self).__name__}({inner})"
