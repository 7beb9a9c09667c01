"""The small LeNet-style convolutional network that ``symdl train --model cnn`` trains."""
from __future__ import annotations

import math

from ..errors import UsageError
from .conv import AvgPool2d, Conv2d, Flatten, LPPool2d, MaxPool2d, Residual
from .layers import Activation, Dense, Sequential
from .module import Module
from .norm import BatchNorm2d, InstanceNorm2d, LayerNorm

__all__ = ["POOLS", "NORMS", "Unflatten", "cnn"]

POOLS = ("max", "avg", "l2")
NORMS = ("none", "batch", "layer", "instance")


class Unflatten(Module):
    """(N, ∏shape) -> (N, *shape): flat image rows seen as (channels, height, width)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(int(d) for d in shape)

    def build(self, g, x, prefix=""):
        s = g.shape(x)
        if len(s) != 2 or s[1] != math.prod(self.shape):
            raise UsageError(f"{prefix}Unflatten{self.shape} needs (N, {math.prod(self.shape)}), "
                             f"{x} has shape {tuple(s)}")
        return g.add("reshape", x, shape=(s[0], *self.shape), name=f"{prefix}image")

    def __repr__(self):
        return f"Unflatten({self.shape})"


def _norm(kind, c, hw, dtype):
    if kind == "batch":
        return [BatchNorm2d(c, dtype=dtype)]
    if kind == "layer":
        return [LayerNorm((c, *hw), dtype=dtype)]
    if kind == "instance":
        return [InstanceNorm2d(c, affine=True, dtype=dtype)]
    return []


def cnn(image, n_out: int, channels=(16, 32), kernel: int = 3, pool: str = "max",
        norm: str = "none", residual: bool = False, activation: str = "relu", rng=None,
        dtype: str = "float32") -> Sequential:
    """Per entry of ``channels``: conv k×k ('same' padding) → [norm] → activation
    (→ a residual block conv → [norm] → activation, added to its input) → 2×2
    pooling while the maps are at least 2×2; then flatten → dense ``n_out``.

    ``image`` is ``(C, H, W)``, or the number of features of square
    single-channel images given as flat rows (64: 8×8 digits, 784: MNIST).
    """
    if isinstance(image, int):
        side = math.isqrt(image)
        if side * side != image:
            raise UsageError(f"--model cnn needs square images: {image} features are not "
                             "side × side pixels")
        image = (1, side, side)
    if pool not in POOLS:
        raise UsageError(f"unknown pooling {pool!r} (choose from: {', '.join(POOLS)})")
    if norm not in NORMS:
        raise UsageError(f"unknown normalization {norm!r} (choose from: {', '.join(NORMS)})")
    if not channels or any(int(c) < 1 for c in channels):
        raise UsageError(f"--channels must be positive integers, got {channels}")
    if int(kernel) < 1 or int(kernel) % 2 == 0:
        raise UsageError(f"--kernel must be an odd positive integer ('same' padding), got {kernel}")
    c, h, w = image
    layers = [Unflatten(image)]
    for width in channels:
        width = int(width)
        layers += [Conv2d(c, width, kernel, padding=kernel // 2, rng=rng, dtype=dtype),
                   *_norm(norm, width, (h, w), dtype), Activation(activation)]
        if residual:
            block = Sequential(Conv2d(width, width, kernel, padding=kernel // 2, rng=rng,
                                      dtype=dtype), *_norm(norm, width, (h, w), dtype),
                               Activation(activation))
            layers.append(Residual(block))
        if h >= 2 and w >= 2:
            layers.append({"max": MaxPool2d, "avg": AvgPool2d}[pool](2) if pool != "l2"
                          else LPPool2d(2, 2))
            h, w = h // 2, w // 2
        c = width
    layers += [Flatten(), Dense(c * h * w, n_out, rng, "xavier_uniform", dtype=dtype)]
    return Sequential(*layers)
