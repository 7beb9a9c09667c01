"""Activations that are not elementwise: maxout (a layer with weights) and softmax."""
from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..ops.shape_ops import reduce_max
from .init import initializer
from .module import Module
from .parameter import Parameter

__all__ = ["Maxout", "Softmax"]


class Maxout(Module):
    """``y_j = max_i (x W_{j,i}ᵀ + b_{j,i})`` over ``pieces`` affine maps per output unit.

    ``W`` has shape ``(n_out·pieces, n_in)``: rows ``j·pieces … j·pieces + pieces − 1``
    are unit ``j``'s pieces (``x @ W.T + b`` viewed as ``(N, n_out, pieces)``, maximum over
    the last axis).  The gradient goes to the first maximal piece, as ``torch.max(·, dim)``.
    ReLU is maxout with two pieces, one fixed at zero; leaky ReLU and |x| are others.

    >>> m = Maxout(3, 2, pieces=4)
    >>> m.W.shape, m.b.shape
    ((8, 3), (8,))
    """

    def __init__(self, n_in: int, n_out: int, pieces: int = 2, rng=None,
                 init: str = "xavier_uniform", dtype: str = "float32"):
        super().__init__()
        if int(pieces) < 1 or int(n_in) < 1 or int(n_out) < 1:
            raise UsageError(f"Maxout({n_in}, {n_out}, pieces={pieces}): sizes must be at least 1")
        rng = rng if rng is not None else np.random.default_rng(0)
        self.n_in, self.n_out, self.pieces = int(n_in), int(n_out), int(pieces)
        rows = self.n_out * self.pieces
        # each piece is initialised as a Dense layer of n_out units would be
        self.W = Parameter(initializer(init)((rows, self.n_in), rng, dtype))
        self.b = Parameter(np.zeros(rows, dtype))

    def build(self, g, x, prefix=""):
        shape = g.shape(x)
        if len(shape) != 2 or shape[-1] != self.n_in:
            raise UsageError(f"{prefix}Maxout expects (N, {self.n_in}) input, {x} has shape "
                             f"{tuple(shape)}")
        W = g.param(f"{prefix}W", self.W.shape, str(self.W.dtype))
        b = g.param(f"{prefix}b", self.b.shape, str(self.b.dtype))
        z = g.add("add", g.add("matmul", x, g.add("transpose", W, name=f"{prefix}Wt"),
                               name=f"{prefix}xWt"), b, name=f"{prefix}z")
        pieces = g.add("reshape", z, shape=(shape[0], self.n_out, self.pieces),
                       name=f"{prefix}pieces")
        return reduce_max(g, pieces, axes=2, name=f"{prefix}maxout")

    def __repr__(self):
        return f"Maxout({self.n_in}, {self.n_out}, pieces={self.pieces})"


class Softmax(Module):
    """Softmax over the last axis as an activation (``torch.nn.Softmax(dim=-1)``); its
    Jacobian is ``diag(s) − s sᵀ`` (:func:`symdl.derive.jacobian.softmax_jacobian`
    derives it)."""

    def build(self, g, x, prefix=""):
        return g.add("softmax", x, name=f"{prefix}softmax")

    def __repr__(self):
        return "Softmax()"
