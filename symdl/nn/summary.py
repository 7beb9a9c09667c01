"""Convolution arithmetic from the layers: per-layer output shape, parameters, receptive field.

:func:`summary` builds a model's graph on a given input shape (so every shape
is the one training would use) and walks its top-level layers, tracking the
receptive field along each spatial axis with the general recurrence
``r ← r + D(K − 1)·j``, ``j ← j·S`` (``j`` the jump: input pixels between
adjacent outputs).  A global reduction or a dense layer sees the whole input.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from ..errors import UsageError
from ..graph import Graph
from ..ops.conv import conv_output_size, receptive_field
from .conv import AdaptiveAvgPool2d, Flatten, GlobalAvgPool2d, Upsample, window_of
from .layers import Dense, Sequential

__all__ = ["LayerRow", "Summary", "summary", "conv_output_size", "receptive_field"]


@dataclass(frozen=True)
class LayerRow:
    """One layer: its name, description, output shape, parameter count and
    receptive field per spatial axis (``None``: the whole input)."""

    name: str
    layer: str
    shape: tuple
    params: int
    field: tuple | None


@dataclass(frozen=True)
class Summary:
    """The rows of :func:`summary` and the totals."""

    input_shape: tuple
    rows: tuple
    total_params: int

    def as_dict(self) -> dict:
        """JSON-ready rows and totals."""
        return {"input_shape": list(self.input_shape), "total_params": self.total_params,
                "receptive_field": None if self.receptive_field is None
                else list(self.receptive_field),
                "layers": [{"name": r.name, "layer": r.layer, "shape": list(r.shape),
                            "params": r.params,
                            "receptive_field": None if r.field is None else list(r.field)}
                           for r in self.rows]}

    @property
    def receptive_field(self) -> tuple | None:
        """The receptive field of the last layer's outputs."""
        return self.rows[-1].field if self.rows else (1,) * max(len(self.input_shape) - 2, 0)

    def __str__(self) -> str:
        head = ("layer", "output shape", "params", "receptive field")
        body = [(f"{r.name} {r.layer}", _shape(r.shape), f"{r.params:,}", _field(r.field))
                for r in self.rows]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(4)]
        line = lambda cells: "  ".join(c.ljust(w) if i in (0, 1, 3) else c.rjust(w)  # noqa: E731
                                       for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        rule = "-" * len(line(head))
        return "\n".join([f"input {_shape(self.input_shape)}", line(head), rule,
                          *map(line, body), rule,
                          f"total parameters: {self.total_params:,}",
                          f"receptive field of the output: {_field(self.receptive_field)}"])


def _shape(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _field(field) -> str:
    return "whole input" if field is None else "×".join(str(v) for v in field)


def _describe(layer) -> str:
    """The layer's repr, or for a long composite its kind and its parts' kinds."""
    text = repr(layer)
    if len(text) <= 60:
        return text
    inner = getattr(layer, "block", None)
    parts = [type(m).__name__ for _, m in _layers(inner)] if inner is not None else []
    return f"{type(layer).__name__}({' → '.join(parts)})" if parts else text[:57] + "..."


def _layers(model) -> list:
    if isinstance(model, Sequential):
        return [(str(i), m) for i, m in enumerate(model.layers)]
    return [("", model)]


def _advance(layer, rf, jump, shape):
    """Receptive field and jump after ``layer`` (``rf`` None: already global)."""
    win = window_of(layer)
    if win is not None:
        if rf is None:
            return None, jump
        rf = tuple(r + d * (k - 1) * j for r, j, (k, s, d) in zip(rf, jump, win))
        return rf, tuple(j * s for j, (k, s, d) in zip(jump, win))
    if isinstance(layer, Upsample):
        return rf, tuple(j / s for j, s in zip(jump, layer.scale))
    if isinstance(layer, (GlobalAvgPool2d, Dense)) or (
            isinstance(layer, AdaptiveAvgPool2d) and layer.output_size == (1, 1)):
        return None, jump
    if isinstance(layer, Flatten) or not hasattr(layer, "_modules") or not layer._modules:
        return rf, jump
    for _, sub in _layers(getattr(layer, "block", layer)):   # Residual, nested Sequential
        if sub is layer:
            break
        rf, jump = _advance(sub, rf, jump, shape)
    return rf, jump


def summary(model, input_shape) -> Summary:
    """Per-layer output shape, parameter count and receptive field of ``model``
    on inputs of ``input_shape`` (the batch axis may be a name such as ``"N"``).

    >>> from symdl.nn import Conv2d, Sequential
    >>> three = Sequential(*[Conv2d(8, 8, 3, padding=1, bias=False) for _ in range(3)])
    >>> s = summary(three, ("N", 8, 32, 32))
    >>> s.total_params == 27 * 8 ** 2, s.receptive_field
    (True, (7, 7))
    >>> summary(Conv2d(8, 8, 7, padding=3, bias=False), ("N", 8, 32, 32)).total_params == 49 * 64
    True
    """
    input_shape = tuple(input_shape)
    if len(input_shape) < 2:
        raise UsageError(f"summary needs an input shape (N, ...), got {input_shape}")
    g = Graph()
    params = next((p for _, p in model.named_parameters()), None)
    x = g.input("x", input_shape, str(params.dtype) if params is not None else "float32")
    spatial = len(input_shape) - 2
    rf, jump = (1,) * spatial, (Fraction(1),) * spatial
    rows = []
    for name, layer in _layers(model):
        x = layer.build(g, x, prefix=f"{name}." if name else "")
        rf, jump = _advance(layer, rf, jump, g.shape(x))
        if rf is not None and len(rf) < len(g.shape(x)) - 2:   # flat rows seen as images
            rf, jump = (1,) * (len(g.shape(x)) - 2), (Fraction(1),) * (len(g.shape(x)) - 2)
        shown = None if rf is None else tuple(math.ceil(r) for r in rf)
        count = sum(p.data.size for _, p in layer.named_parameters())
        rows.append(LayerRow(name or type(layer).__name__, _describe(layer), tuple(g.shape(x)),
                             count, shown))
    return Summary(input_shape, tuple(rows), sum(r.params for r in rows))
