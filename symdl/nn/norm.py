"""Normalization for feature maps: BatchNorm1d/2d, InstanceNorm2d, LayerNorm over several axes.

Each is a graph of existing ops, so its gradient is derived by reverse mode:
batch normalization from ``mean``, ``sub``, ``square``, ``sqrt`` and
``div`` over the statistics axes (N and the spatial axes); instance and
layer normalization reshape the normalized axes into one and use the
``layer_norm`` row op (one kernel each way).  Parameter names and
initialization follow PyTorch (``weight`` ones, ``bias`` zeros).

A batch-norm graph serves training and evaluation alike: its statistics are
``a·batch + (1 − a)·running``, with ``a`` a scalar input (1 in training, 0
in evaluation: both terms are then exact) and the running statistics
inputs.  :func:`set_batchnorm_mode` fills them in a compiled program;
:func:`update_running_stats` applies PyTorch's momentum update (unbiased
running variance) after a training step.
"""
from __future__ import annotations

from math import prod

import numpy as np

from ..errors import UsageError
from .layers import LayerNorm as _LastAxisLayerNorm
from .module import Module
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "InstanceNorm2d", "LayerNorm", "batchnorm_layers",
           "set_batchnorm_mode", "update_running_stats"]


def _check(who, num_features, eps, momentum=0.1):
    if not isinstance(num_features, (int, np.integer)) or num_features < 1:
        raise UsageError(f"{who} num_features must be a positive integer, got {num_features!r}")
    if not eps > 0:
        raise UsageError(f"{who} eps must be positive, got {eps}")
    if momentum is None or not 0 <= momentum <= 1:
        raise UsageError(f"{who} momentum must be in [0, 1] (a cumulative average is not "
                         f"supported), got {momentum!r}")


def _affine(module, g, y, prefix, col):
    """``y ⊙ weight + bias`` with both reshaped to ``col`` (a per-channel column)."""
    w = g.param(f"{prefix}weight", module.weight.shape, str(module.weight.dtype))
    b = g.param(f"{prefix}bias", module.bias.shape, str(module.bias.dtype))
    if col != module.weight.shape:
        w = g.add("reshape", w, shape=col, name=f"{prefix}wcol")
        b = g.add("reshape", b, shape=col, name=f"{prefix}bcol")
    return g.add("add", g.add("mul", y, w, name=f"{prefix}scaled"), b, name=f"{prefix}affine")


# ------------------------------------------------------------------ batch norm
class _BatchNorm(Module):
    ranks: tuple = ()
    buffers = ("running_mean", "running_var")  # kept by a saved model

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, dtype: str = "float32"):
        super().__init__()
        _check(type(self).__name__, num_features, eps, momentum)
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.affine = bool(affine)
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.bias = Parameter(np.zeros(num_features, dtype))
        self.running_mean = np.zeros(num_features, dtype)
        self.running_var = np.ones(num_features, dtype)
        self.nodes: dict = {}

    def build(self, g, x, prefix=""):
        shape = g.shape(x)
        if len(shape) not in self.ranks or shape[1] != self.num_features:
            raise UsageError(f"{prefix}{type(self).__name__}({self.num_features}) expects "
                             f"{' or '.join(f'{r}-D' for r in self.ranks)} input with "
                             f"{self.num_features} channels on axis 1, {x} has shape "
                             f"{tuple(shape)}")
        dtype = g.node(x)["dtype"]
        axes = (0, *range(2, len(shape)))
        col = (self.num_features,) + (1,) * (len(shape) - 2)
        p = prefix
        bm = g.add("mean", x, axes=axes, keepdims=True, name=f"{p}batch_mean")
        sq = g.add("square", g.add("sub", x, bm, name=f"{p}centered"), name=f"{p}sq")
        bv = g.add("mean", sq, axes=axes, keepdims=True, name=f"{p}batch_var")
        a = g.input(f"{p}train", (), dtype)
        rm, rv = (g.input(f"{p}running_{s}", col, dtype) for s in ("mean", "var"))
        for n, what in ((a, "train"), (rm, "running_mean"), (rv, "running_var")):
            g.node(n)["params"]["batchnorm"] = what
        one = g.add("fill", value=1.0, shape=(), dtype=dtype, name=f"{p}one")
        ia = g.add("sub", one, a, name=f"{p}eval")

        def blend(batch, running, name):
            return g.add("add", g.add("mul", a, batch), g.add("mul", ia, running),
                         name=f"{p}{name}")

        mean, var = blend(bm, rm, "mean"), blend(bv, rv, "var")
        eps = g.add("fill", value=self.eps, shape=(), dtype=dtype, name=f"{p}eps")
        std = g.add("sqrt", g.add("add", var, eps, name=f"{p}var_eps"), name=f"{p}std")
        y = g.add("div", g.add("sub", x, mean, name=f"{p}xc"), std, name=f"{p}xhat")
        self.nodes = {"x": x, "mean": bm, "var": bv, "train": a, "running_mean": rm,
                      "running_var": rv, "axes": axes}
        return _affine(self, g, y, p, col) if self.affine else y

    def __repr__(self):
        settings = (("eps", self.eps, 1e-5), ("momentum", self.momentum, 0.1),
                    ("affine", self.affine, True))
        extras = "".join(f", {k}={v!r}" for k, v, d in settings if v != d)
        return f"{type(self).__name__}({self.num_features}{extras})"


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) over N (and L), as ``torch.nn.BatchNorm1d``."""

    ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) over (N, H, W), as ``torch.nn.BatchNorm2d``."""

    ranks = (4,)


def batchnorm_layers(model) -> list:
    """The batch-norm modules of ``model`` (itself included), in registration order."""
    out = [model] if isinstance(model, _BatchNorm) else []
    for m in model._modules.values():
        out += batchnorm_layers(m)
    return out


def set_batchnorm_mode(program, model, train: bool) -> None:
    """Fill a compiled program's batch-norm inputs: the mode scalar (1 in
    training, 0 in evaluation) and the running statistics of ``model``."""
    for bn in batchnorm_layers(model):
        nodes = bn.nodes
        if not nodes or nodes["train"] not in program.inputs:
            continue
        program.inputs[nodes["train"]][...] = 1.0 if train else 0.0
        for key in ("running_mean", "running_var"):  # host statistics, copied to the device
            dst = program.inputs[nodes[key]]
            dst[...] = program.backend.asarray(getattr(bn, key).reshape(dst.shape), dst.dtype)


def update_running_stats(model, program) -> None:
    """After a training step of ``program``: ``running ← (1 − m)·running + m·batch``
    per batch-norm layer, with the unbiased batch variance (× n/(n − 1)), as PyTorch."""
    for bn in batchnorm_layers(model):
        nodes = bn.nodes
        if not nodes or nodes["mean"] not in program.graph:
            continue
        n = prod(program.shapes[nodes["x"]][a] for a in nodes["axes"])
        if n < 2:
            raise UsageError(f"batch norm needs more than one value per channel in training, "
                             f"got {n}")
        m = bn.momentum
        host = program.backend.to_host  # device statistics (CuPy) are copied explicitly
        mean = host(program.value(nodes["mean"])).reshape(-1)
        var = host(program.value(nodes["var"])).reshape(-1) * (n / (n - 1))
        bn.running_mean[...] = (1 - m) * bn.running_mean + m * mean
        bn.running_var[...] = (1 - m) * bn.running_var + m * var


# ---------------------------------------------------------- instance, layer norm
class InstanceNorm2d(Module):
    """Normalization of each (sample, channel) map over (H, W), as
    ``torch.nn.InstanceNorm2d`` (no running statistics); one row-op kernel each way."""

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = False,
                 dtype: str = "float32"):
        super().__init__()
        _check("InstanceNorm2d", num_features, eps)
        self.num_features, self.eps, self.affine = int(num_features), float(eps), bool(affine)
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.bias = Parameter(np.zeros(num_features, dtype))

    def build(self, g, x, prefix=""):
        shape = g.shape(x)
        if len(shape) != 4 or shape[1] != self.num_features:
            raise UsageError(f"{prefix}InstanceNorm2d({self.num_features}) expects (N, "
                             f"{self.num_features}, H, W), {x} has shape {tuple(shape)}")
        n, c, h, w = shape
        flat = g.add("reshape", x, shape=(n, c, h * w), name=f"{prefix}maps")
        y = g.add("layer_norm", flat, eps=self.eps, name=f"{prefix}norm")
        y = g.add("reshape", y, shape=tuple(shape), name=f"{prefix}inorm")
        return _affine(self, g, y, prefix, (c, 1, 1)) if self.affine else y

    def __repr__(self):
        return f"InstanceNorm2d({self.num_features}, eps={self.eps:g}, affine={self.affine})"


class LayerNorm(_LastAxisLayerNorm):
    """Layer normalization over the trailing ``normalized_shape`` axes (one or
    more: (C, H, W) for feature maps), as ``torch.nn.LayerNorm``; the axes are
    merged into one and normalized by the ``layer_norm`` row op."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 dtype: str = "float32"):
        shape = normalized_shape
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if not shape or any(not isinstance(d, int) or d < 1 for d in shape):
            raise UsageError(f"LayerNorm normalized_shape must be positive ints, got "
                             f"{normalized_shape!r}")
        super().__init__(prod(shape), eps, elementwise_affine, dtype)
        self.normalized_shape = shape
        if self.elementwise_affine:
            self.weight = Parameter(np.ones(shape, dtype))
            self.bias = Parameter(np.zeros(shape, dtype))

    def build(self, g, x, prefix=""):
        if len(self.normalized_shape) == 1:
            return super().build(g, x, prefix)
        shape, k = tuple(g.shape(x)), len(self.normalized_shape)
        if shape[-k:] != self.normalized_shape or len(shape) == k:
            want = ", ".join(map(str, self.normalized_shape))
            raise UsageError(f"{prefix}LayerNorm expects (..., {want}), {x} has shape {shape}")
        flat = g.add("reshape", x, shape=(*shape[:-k], prod(self.normalized_shape)),
                     name=f"{prefix}rows")
        y = g.add("layer_norm", flat, eps=self.eps, name=f"{prefix}norm")
        y = g.add("reshape", y, shape=shape, name=f"{prefix}lnorm")
        return _affine(self, g, y, prefix, self.normalized_shape) if self.elementwise_affine else y
