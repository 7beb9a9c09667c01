"""Regularizers the trainer applies around a step, and early stopping.

Penalties (L1, L2) are graph nodes (see :func:`symdl.train.graphs.build_training_graph`),
so their gradients come from reverse mode like any other.  Here: dropout
masks (inverted: kept units scaled by 1/(1 − p), all ones in evaluation),
Gaussian input noise, gradient clipping by norm and by value, and early
stopping with the best weights restored.  All randomness comes from one
seeded generator whose state goes into checkpoints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError


def dropout_masks(graph) -> dict:
    """``{input node: p}`` for the dropout masks a graph takes."""
    return {n: graph.node(n)["params"]["dropout"] for n in graph.inputs()
            if "dropout" in graph.node(n)["params"]}


def fill_masks(prog, masks: dict, rng, train: bool) -> None:
    """Fill each dropout mask input of ``prog``: all ones in evaluation."""
    for n, p in masks.items():
        buf = prog.inputs[n]
        if not train:
            buf.fill(1)
            continue
        prog.backend.dropout_mask(buf, p, rng)


def add_input_noise(prog, sigma: float, rng) -> None:
    x = prog.inputs["x"]
    x += (sigma * rng.standard_normal(x.shape)).astype(x.dtype)


def clip(grad: np.ndarray, gsq: float, norm: float | None, value: float | None) -> None:
    """Clip the flat gradient in place: by global norm, then by value."""
    if norm:
        total = math.sqrt(gsq)
        if total > norm:
            grad *= grad.dtype.type(norm / total)
    if value:
        np.clip(grad, -value, value, out=grad)


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without a validation-loss improvement
    larger than ``min_delta``; the best weights are restored at the end."""

    patience: int
    min_delta: float = 0.0
    best: float = math.inf
    best_epoch: int = 0
    bad: int = 0
    weights: list = field(default_factory=list)

    def __post_init__(self):
        if self.patience < 1:
            raise UsageError(f"early stopping patience must be at least 1, got {self.patience}")

    def update(self, val_loss, epoch: int, params) -> bool:
        """Record an epoch; True when training should stop."""
        if val_loss is None:
            raise UsageError("early stopping needs a validation set (--val-fraction > 0)")
        if val_loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad = val_loss, epoch, 0
            self.weights = [p.data.copy() for p in params]
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore(self, params) -> None:
        for p, w in zip(params, self.weights):
            p.data[...] = w
