"""Losses, declared once: elementwise losses here, row-wise losses over logits as row ops.

Elementwise losses (MSE, MAE, BCE with logits, hinge) are elementwise ops of
``(x, t)`` followed by a mean.  Row-wise losses (softmax cross-entropy, NLL,
multiclass hinge) act on one row of logits ``z`` with a target distribution
``t`` (one-hot, or smoothed: ``t_j = (1-ε)[j = y] + ε/C``); they are declared
in :mod:`symdl.ops.rowops` (row statistics, a loss, a stated VJP checked by
:mod:`symdl.ops.claims`) and re-exported here.
"""
from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import log1p

from .elementwise import SIGMOID_STABLE
from .registry import elementwise, real

x, t = real("x t")

# --------------------------------------------------------- elementwise losses
elementwise("mse", (x, t), (x - t) ** 2, latex=r"(\hat y - y)^2", doc="squared error")
elementwise("mae", (x, t), sp.Abs(x - t), smooth=False, latex=r"|\hat y - y|",
            doc="absolute error")
elementwise("bce_logits", (x, t),
            -t * sp.log(1 / (1 + sp.exp(-x))) - (1 - t) * sp.log(1 - 1 / (1 + sp.exp(-x))),
            # PyTorch's form (1 - t) x - log σ(x): also right at x = ±inf (inf, not inf - inf)
            stable=(1 - t) * x - sp.Min(x, 0) + log1p(sp.exp(-sp.Abs(x))),
            grad_forms={0: SIGMOID_STABLE - t},
            domain=("real", "unit"),
            doc="binary cross-entropy on a logit x with target t in [0, 1]")
#: hinge's active set; its gradients are stated as PyTorch computes them (-t·mask), so an
#: infinite input gives NaN (0·inf) there as in torch, not a silent 0
_HINGE_ON = sp.Piecewise((0, t * x >= 1), (1, True))
elementwise("hinge", (x, t), sp.Piecewise((0, t * x >= 1), (1 - t * x, True)), smooth=False,
            grad_forms={0: -t * _HINGE_ON, 1: -x * _HINGE_ON},
            domain=("real", "sign"), doc="hinge loss max(0, 1 - t x), labels t = ±1")


# ------------------------------------------------------------ row-wise losses
# softmax cross-entropy, NLL and multiclass hinge are row ops: symdl.ops.rowops
from .rowops import ZY, RowGradOp, RowLossOp, RowOp, RowVJPOp, t_j, z_j  # noqa: E402,F401
