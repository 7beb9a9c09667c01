"""Layers: Dense, activations, LayerNorm, Dropout, Sequential."""
from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..ops import OPS
from ..printing.notebook import module_repr
from .init import initializer
from .module import Module
from .parameter import Parameter


def ACTIVATIONS() -> list:
    """Names of the registry's activations (one-input ops declared ``activation=True``), sorted."""
    return OPS.activations()


class Dense(Module):
    """``y = x Wᵀ + b`` with ``W`` of shape (out, in), as ``torch.nn.Linear``."""

    def __init__(self, n_in: int, n_out: int, rng=None, init: str = "xavier_uniform",
                 bias: bool = True, dtype: str = "float32"):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.W = Parameter(initializer(init)((self.n_out, self.n_in), rng, dtype))
        if bias:
            self.b = Parameter(np.zeros(self.n_out, dtype))
        self.has_bias = bias

    def build(self, g, x, prefix=""):
        if g.shape(x)[-1] != self.n_in:
            raise UsageError(f"{prefix}W expects {self.n_in} input features, {x} has shape {g.shape(x)}")
        W = g.param(f"{prefix}W", self.W.shape, str(self.W.dtype))
        z = g.add("matmul", x, g.add("transpose", W, name=f"{prefix}Wt"), name=f"{prefix}xWt")
        if self.has_bias:
            b = g.param(f"{prefix}b", self.b.shape, str(self.b.dtype))
            z = g.add("add", z, b, name=f"{prefix}z")
        return z

    def __repr__(self):
        return f"Dense({self.n_in}, {self.n_out})"


class Activation(Module):
    """An elementwise activation from the op registry (``"relu"``, ``"elu"``…)."""

    def __init__(self, name: str, **params):
        super().__init__()
        if name not in ACTIVATIONS():
            known = ", ".join(ACTIVATIONS())
            raise UsageError(f"unknown activation {name!r} (choose from: {known}; declare your "
                             "own with symdl.ops.activation, on the command line in a file "
                             "given to --ops)")
        OPS[name].param_values(params)
        self.name, self.params = name, params

    def build(self, g, x, prefix=""):
        return g.add(self.name, x, name=f"{prefix}{self.name}", **self.params)

    def __repr__(self):
        return f"Activation({self.name!r})"


class LayerNorm(Module):
    """Layer normalization over the last axis, as ``torch.nn.LayerNorm``:
    ``(x − μ)/√(σ² + eps)`` (biased variance; one row-op kernel each way),
    then ``⊙ weight + bias`` when ``elementwise_affine``."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 dtype: str = "float32"):
        super().__init__()
        shape = normalized_shape
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if len(shape) != 1 or not isinstance(shape[0], int) or shape[0] < 1:
            raise UsageError(f"LayerNorm normalizes the last axis: normalized_shape must be one "
                             f"positive int, got {normalized_shape!r}")
        if not eps > 0:
            raise UsageError(f"LayerNorm eps must be positive, got {eps}")
        self.normalized_shape, self.eps = shape, float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            self.weight = Parameter(np.ones(shape, dtype))
            self.bias = Parameter(np.zeros(shape, dtype))

    def build(self, g, x, prefix=""):
        if g.shape(x)[-1:] != self.normalized_shape:
            raise UsageError(f"{prefix}LayerNorm expects a last axis of "
                             f"{self.normalized_shape[0]}, {x} has shape {g.shape(x)}")
        y = g.add("layer_norm", x, name=f"{prefix}norm", eps=self.eps)
        if self.elementwise_affine:
            w = g.param(f"{prefix}weight", self.weight.shape, str(self.weight.dtype))
            b = g.param(f"{prefix}bias", self.bias.shape, str(self.bias.dtype))
            y = g.add("add", g.add("mul", y, w, name=f"{prefix}scaled"), b, name=f"{prefix}ln")
        return y

    def __repr__(self):
        return (f"LayerNorm({self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine})")


class Sequential(Module):
    """Layers applied in order; parameters are named ``<index>.<name>``."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = list(layers)
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)

    def build(self, g, x, prefix=""):
        for i, layer in enumerate(self.layers):
            x = layer.build(g, x, prefix=f"{prefix}{i}.")
        return x

    def __repr__(self):  # one line when short, else one layer a line
        return module_repr("Sequential", map(repr, self.layers))


class Dropout(Module):
    """Inverted dropout: units kept with probability 1 − p and scaled by
    1/(1 − p) in training; the identity in evaluation.  The mask is a graph
    input the trainer fills from its seeded generator each step."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise UsageError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)

    def build(self, g, x, prefix=""):
        if self.p == 0:
            return x
        mask = g.input(f"{prefix}mask", g.shape(x), g.node(x)["dtype"])
        g.node(mask)["params"]["dropout"] = self.p
        return g.add("mul", x, mask, name=f"{prefix}dropout")

    def __repr__(self):
        return f"Dropout({self.p})"
