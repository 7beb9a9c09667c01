"""Losses, declared once: elementwise losses and row-wise losses over logits.

Elementwise losses (MSE, MAE, BCE with logits, hinge) are elementwise ops of
``(x, t)`` followed by a mean.  Row-wise losses (softmax cross-entropy, NLL,
multiclass hinge) act on one row of logits ``z`` with a target distribution
``t`` (one-hot, or smoothed: ``t_j = (1-ε)[j = y] + ε/C``).  A row loss is
declared as a sequence of row statistics (each a ``max`` or ``sum`` over the
row of an element expression), a loss expression in those statistics, and a
stated per-element gradient.  :mod:`symdl.ops.claims` instantiates all three
on explicit rows of symbols and checks them against the plain definition and
its ``sympy.diff``; kernels evaluate the stated forms.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy.codegen.cfunctions import log1p

from .elementwise import SIGMOID_STABLE
from .registry import OpBase, elementwise, real, register

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
j = sp.Symbol("j", integer=True)
z_j, t_j = real("z_j t_j")


@dataclass(eq=False, repr=False)
class RowLossOp(OpBase):
    """A loss on rows of logits ``z`` (N, C) against targets, giving (N,).

    ``stats`` is a tuple of ``(symbol, "max"|"sum", element_expr)``, each
    reduced over the row in order (later ones may use earlier ones).
    ``loss`` is the per-row loss in the statistics; ``grad`` the stated
    ``∂loss/∂z_j``; ``plain(z, t)`` the textbook definition on explicit rows.
    ``zy`` is ``Σ_j t_j z_j`` (the true-class logit when ``t`` is one-hot) and
    is always available as a statistic.
    """

    name: str
    stats: tuple
    loss: sp.Expr
    grad: sp.Expr
    plain: object
    params: dict = field(default_factory=dict)
    onehot_only: bool = False
    latex: str | None = None
    doc: str = ""
    kind: str = "rowloss"
    arity: int = 2
    derived_from: tuple | None = None


ZY = sp.Symbol("z_y", real=True)
m, s, eps, margin = real("m s epsilon margin")
cnt, hsum = real("c h")

register(RowLossOp(
    name="softmax_cross_entropy",
    stats=((m, "max", z_j), (s, "sum", sp.exp(z_j - m))),
    loss=m + sp.log(s) - ZY,
    grad=sp.exp(z_j - m) / s - t_j,
    plain=lambda z, t: -sum(ti * sp.log(sp.exp(zi) / sum(sp.exp(zk) for zk in z))
                            for zi, ti in zip(z, t)),
    params={eps: 0.0},
    latex=r"\operatorname{CE}",
    doc="cross-entropy of softmax(z) against t (label smoothing ε)",
))
register(RowLossOp(
    name="nll",
    stats=(),
    loss=-ZY,
    grad=-t_j,
    plain=lambda z, t: -sum(ti * zi for zi, ti in zip(z, t)),
    latex=r"\operatorname{NLL}",
    doc="negative log-likelihood of log-probabilities z",
))
register(RowLossOp(
    name="multi_hinge",
    stats=((hsum, "sum", (1 - t_j) * sp.Piecewise((z_j - ZY + margin, z_j - ZY + margin > 0),
                                                  (0, True))),
           (cnt, "sum", (1 - t_j) * sp.Piecewise((1, z_j - ZY + margin > 0), (0, True)))),
    loss=hsum,
    grad=(1 - t_j) * sp.Piecewise((1, z_j - ZY + margin > 0), (0, True)) - t_j * cnt,
    plain=lambda z, t: sum((1 - ti) * sp.Max(0, zi - sum(tk * zk for zk, tk in zip(z, t)) + margin)
                           for zi, ti in zip(z, t)),
    params={margin: 1.0},
    onehot_only=True,
    latex=r"\operatorname{SVM}",
    doc="multiclass hinge Σ_{j≠y} max(0, z_j − z_y + margin); with a dense target t it is "
        "Σ_j (1 − t_j) max(0, z_j − Σ_k t_k z_k + margin), the same for one-hot t",
))


@dataclass(eq=False, repr=False)
class RowGradOp(OpBase):
    """``g_n * ∂loss_n/∂z``: the backward of a row loss, from its stated gradient."""

    name: str
    loss: RowLossOp
    arity: int = 3
    kind: str = "rowgrad"

    @property
    def params(self):
        return self.loss.params

    @property
    def derived_from(self):
        return (self.loss.name, 0)


def _row_grad_op(self: RowLossOp, i: int = 0) -> RowGradOp:
    from .registry import OPS
    if i != 0:
        raise ValueError(f"{self.name}: the targets (argument {i}) have no gradient")
    name = f"{self.name}.grad0"
    if name not in OPS:
        OPS[name] = RowGradOp(name, self)
    return OPS[name]


RowLossOp.grad_op = _row_grad_op
