"""PyTorch-like modules that build graph nodes.

A :class:`Module` owns :class:`~symdl.nn.parameter.Parameter` objects and
sub-modules (attribute order is registration order, so names and listings
are deterministic) and implements ``build(graph, x) -> node``: it adds its
nodes to a :class:`~symdl.graph.Graph` and returns its output node.
"""
from __future__ import annotations

import functools

import numpy as np

from ..errors import CheckpointError, UsageError
from ..printing.notebook import module_repr
from .parameter import Parameter

__all__ = ["LAYER_CLASSES", "Module"]

#: every Module subclass defined so far, by :func:`symdl.nn.config.class_key`
#: (``layers.Dense``, ``__main__.MyNet``): what a saved model's description may name
LAYER_CLASSES: dict = {}


class Module:
    """Base class of layers and models.

    A module remembers the arguments it was constructed with, so it can describe
    itself as JSON data (:meth:`config`) and be rebuilt from that description
    (:meth:`from_config`); ``buffers`` names the arrays besides parameters that a
    saved model keeps (batch norm's running statistics).  Calling a module runs
    it: ``model(X)`` on an array computes its output in evaluation mode,
    ``model(g, node)`` adds its nodes to the graph ``g`` (:meth:`build`).
    """

    #: names of array attributes that are state but not parameters
    buffers: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        from .config import class_key  # config imports this module
        LAYER_CLASSES[class_key(cls)] = cls
        if "__init__" in vars(cls):
            cls.__init__ = _recording(cls.__init__)

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

    def named_buffers(self, prefix: str = ""):
        """``(dotted name, array)`` for each entry of ``buffers``, sub-modules included."""
        for name in self.buffers:
            yield prefix + name, getattr(self, name)
        for name, m in self._modules.items():
            yield from m.named_buffers(f"{prefix}{name}.")

    # ------------------------------------------------------------ description
    def config(self) -> dict:
        """The JSON description that rebuilds this module: ``{"class": ..., "args": {...}}``
        (:func:`symdl.nn.config.describe`)."""
        from .config import describe
        return describe(self)

    @classmethod
    def from_config(cls, config: dict) -> "Module":
        """A fresh module (new parameters) from :meth:`config`'s description of this class
        (``Module.from_config`` rebuilds any class: :func:`symdl.nn.config.rebuild`)."""
        from .config import LAYER_CLASSES, construct, rebuild
        if cls is Module:
            return rebuild(config)
        named = LAYER_CLASSES.get(config.get("class")) if isinstance(config, dict) else None
        if named is None or not issubclass(named, cls):
            raise CheckpointError(f"{cls.__name__}.from_config got a description of "
                                  f"{config.get('class') if isinstance(config, dict) else config!r}")
        return construct(named, config)

    # ------------------------------------------------------------ graph
    def build(self, g, x: str, prefix: str = "") -> str:
        """Add this module's nodes to graph ``g`` after node ``x``; return the output node."""
        raise NotImplementedError(type(self).__name__)

    def __call__(self, *args, prefix: str = ""):
        """``model(X)``: the output for an array ``X`` (rows of examples), in evaluation
        mode (no dropout; batch norm's running statistics) through the NumPy backend.
        ``model(g, node)``: the output node after adding this module to graph ``g``."""
        from ..graph import Graph
        if len(args) == 2 and isinstance(args[0], Graph) and isinstance(args[1], str):
            return self.build(args[0], args[1], prefix=prefix)
        if len(args) == 1 and isinstance(args[0], str):
            raise UsageError(f"{type(self).__name__}({args[0]!r}): a graph node needs its graph: "
                             f"call model(g, {args[0]!r})")
        if len(args) != 1:
            raise UsageError(f"{type(self).__name__} takes one array, or a graph and a node")
        from .forward import forward
        return forward(self, args[0])

    def summary(self, input_shape):
        """Per-layer output shape, parameters, receptive field (:func:`.summary.summary`)."""
        from .summary import summary  # a sibling module that itself imports this one
        return summary(self, input_shape)

    def __repr__(self) -> str:
        return module_repr(type(self).__name__, [(n, repr(m)) for n, m in self._modules.items()])


def _recording(init):
    """``__init__`` that first records its arguments (the outermost call only: a
    subclass's, not those it passes to ``super().__init__``)."""
    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if "_init_args" not in self.__dict__:
            object.__setattr__(self, "_init_args", (args, dict(kwargs)))
        init(self, *args, **kwargs)
    return __init__
