"""Row ops, declared once: ops over the last axis defined by named row statistics.

A row op acts on each row ``z`` (the last axis; leading axes are rows) of a
tensor, with optional operands of its own: a target distribution ``t``
(class indices, or dense and optionally smoothed ``t_j = (1-ε)[j = y] + ε/C``),
a mask ``k`` (entries with ``k_j <= 0`` are left out).  It is declared as

* ``stats``: named statistics in order, each a reduction over the row of an
  element expression that may use earlier ones: ``"max"``, ``"sum"``, or
  ``"dot"`` (``Σ_j t_j e_j``: the true-class entry when ``t`` is one-hot, a
  gather there, so an infinite logit elsewhere does not give 0·inf);
* ``out``: the output, per row (a loss, shape ``(...,)``) or per element
  (softmax, layer normalization: the shape of ``z``);
* ``vjp`` (with ``vjp_stats``, backward statistics that may read the upstream
  gradient ``g_j``): the stated vector-Jacobian product per element;
* ``plain``: the textbook definition on an explicit row of symbols.

:mod:`symdl.ops.claims` instantiates ``stats``, ``out`` and ``vjp`` on
explicit rows and checks them against ``plain`` and its ``sympy.diff``.  The
VJP is itself a row op (``<name>.grad0``), so one generator
(:mod:`symdl.codegen.rowops`) renders the whole family.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from ..errors import UsageError
from .registry import OPS, G, OpBase, real, register

__all__ = ["RowOp", "RowLossOp", "RowVJPOp", "RowGradOp", "OPERAND_SYMBOLS", "C", "ZY",
           "z_j", "t_j", "k_j", "g_j", "u_j"]

z_j, t_j, k_j, g_j, u_j = real("z_j t_j k_j g_j u_j")
#: the row length, as a statistic's element expression sees it
C = sp.Symbol("C", positive=True)
#: ``Σ_j t_j z_j``: the true-class logit for one-hot targets
ZY = sp.Symbol("z_y", real=True)
#: the per-element symbol of each operand kind (``upstream_row`` is per row)
OPERAND_SYMBOLS = {"target": t_j, "mask": k_j, "upstream": g_j, "upstream_row": G, "upstream2": u_j}
_KINDS = ("max", "sum", "dot")


@dataclass(eq=False, repr=False)
class RowOp(OpBase):
    """An op over the last axis of ``z``: statistics, an output and its VJP.

    Parameters
    ----------
    name : registry name.
    stats : ``((symbol, "max"|"sum"|"dot", element expr), ...)``, reduced in order.
    out : the output in ``z_j``, the operands' symbols, the statistics and params.
    vjp : the stated ``Σ_k g_k ∂out_k/∂z_j`` (``g·∂out/∂z_j`` for a per-row output,
        with ``g`` the row's upstream gradient).
    plain : ``plain(z, *operands)``: the definition on explicit rows (a list of
        per-element outputs, or one per-row expression).
    output : ``"element"`` or ``"row"``.
    operands : kinds of the arguments after ``z``: ``"target"``, ``"mask"``
        (and, for derived VJPs, ``"upstream"`` or ``"upstream_row"``).
    vjp_stats : backward statistics, reduced after ``stats``, that the VJP uses.
    params : ``{symbol: default}``.
    vjp2, vjp2_stats : optionally, the VJP of the VJP with respect to ``z``
        (upstream ``u_j``; checked like ``vjp``), for second order.
    smoothing : targets are smoothed by the parameter ``epsilon``.
    onehot_only : the declaration holds for one-hot targets only (tests, claims).
    """

    name: str
    stats: tuple
    out: sp.Expr
    vjp: sp.Expr
    plain: object
    output: str = "element"
    operands: tuple = ()
    vjp_stats: tuple = ()
    vjp2: sp.Expr | None = None
    vjp2_stats: tuple = ()
    params: dict = field(default_factory=dict)
    smoothing: bool = False
    onehot_only: bool = False
    latex: str | None = None
    doc: str = ""
    kind: str = "rowop"
    derived_from: tuple | None = None

    def __post_init__(self):
        self.arity = 1 + len(self.operands)
        for _, how, _ in (*self.stats, *self.vjp_stats, *self.vjp2_stats):
            if how not in _KINDS:
                raise ValueError(f"{self.name}: statistic kind {how!r} is not one of {_KINDS}")

    @property
    def loss(self) -> sp.Expr:
        """The per-row output (the loss of a row loss)."""
        return self.out

    @property
    def grad(self) -> sp.Expr:
        """``∂out/∂z_j`` of a per-row op; the VJP (in ``g_j``) of a per-element one."""
        return self.vjp / G if self.output == "row" else self.vjp

    def infer(self, shapes, params, names) -> tuple:
        """The output shape, checking each operand's against ``z``'s."""
        self.param_values(params)
        z = tuple(shapes[0])
        if not z:
            raise UsageError(f"{self.name}: {names[0]} is a scalar; a row op needs an axis")
        for kind, s, nm in zip(self.operands, shapes[1:], names[1:]):
            ok = {"target": (z[:-1], z), "mask": (z,), "upstream": (z,), "upstream_row": (z[:-1],),
                  "upstream2": (z,)}
            if tuple(s) not in ok[kind]:
                want = " or ".join(str(w) for w in ok[kind])
                what = {"target": "labels or targets"}.get(kind, kind)
                raise UsageError(f"{self.name}: {names[0]} {z} needs {what} {nm} of shape {want}, "
                                 f"got {tuple(s)}")
        return z[:-1] if self.output == "row" else z

    def grad_op(self, i: int = 0) -> "RowVJPOp":
        """The VJP with respect to ``z`` (operands have no gradient)."""
        if i != 0:
            raise UsageError(f"{self.name}: argument {i} ({self.operands[i - 1]}) has no gradient")
        name = f"{self.name}.grad0"
        if name not in OPS:
            OPS[name] = RowVJPOp.of(self)
        return OPS[name]


class RowLossOp(RowOp):
    """A row op with targets and one value per row: a loss over logits."""

    def __init__(self, **kw):
        kw.setdefault("output", "row")
        kw.setdefault("operands", ("target",))
        kw.setdefault("kind", "rowloss")
        super().__init__(**kw)


class RowVJPOp(RowOp):
    """``<op>.grad0``: the VJP of a row op, itself a row op over ``(z, operands…, g)``."""

    @classmethod
    def of(cls, base: RowOp) -> "RowVJPOp":
        up = "upstream_row" if base.output == "row" else "upstream"
        if isinstance(base, RowVJPOp):
            up = "upstream2"
        op = cls(name=f"{base.name}.grad0", stats=base.stats + base.vjp_stats, out=base.vjp,
                 vjp=base.vjp2 if base.vjp2 is not None else sp.S.Zero, vjp_stats=base.vjp2_stats,
                 plain=None, output="element", operands=base.operands + (up,),
                 params=base.params, smoothing=base.smoothing, onehot_only=base.onehot_only,
                 doc=f"vector-Jacobian product of {base.name}", kind="rowgrad",
                 derived_from=(base.name, 0))
        op.base = base
        return op

    def grad_op(self, i: int = 0):
        if isinstance(self.base, RowVJPOp) or self.base.vjp2 is None:
            raise UsageError(f"{self.name}: no second derivative is declared for the row op "
                             f"{self.base.name}")
        if i != 0:
            raise UsageError(f"{self.name}: argument {i} ({self.operands[i - 1]}) has no gradient")
        name = f"{self.name}.grad0"
        if name not in OPS:
            OPS[name] = RowVJPOp.of(self)
        return OPS[name]


#: the name other modules import
RowGradOp = RowVJPOp


# ------------------------------------------------------------- declarations
m, s, eps, margin = real("m s epsilon margin")
cnt, hsum, gs, gy, uy = real("c h g_s g_y u_y")
mu, var, gm, gx = real("mu var g_m g_x")
eps_ln = sp.Symbol("eps", positive=True)
_E = sp.exp(z_j - m)


def _softmax(z):
    tot = sum(sp.exp(zk) for zk in z)
    return [sp.exp(zi) / tot for zi in z]


register(RowOp(
    name="softmax",
    stats=((m, "max", z_j), (s, "sum", _E)),
    out=_E / s,
    vjp_stats=((gy, "sum", g_j * _E / s),),
    vjp=_E / s * (g_j - gy),
    plain=_softmax,
    latex=r"\operatorname{softmax}",
    doc="softmax over the last axis, exp(z_j − max z) / Σ_k exp(z_k − max z)",
))
register(RowOp(
    name="log_softmax",
    stats=((m, "max", z_j), (s, "sum", _E)),
    out=z_j - m - sp.log(s),
    vjp_stats=((gs, "sum", g_j),),
    vjp=g_j - _E / s * gs,
    plain=lambda z: [sp.log(p) for p in _softmax(z)],
    latex=r"\log\operatorname{softmax}",
    doc="log-softmax over the last axis, z_j − max z − log Σ_k exp(z_k − max z)",
))
_KEEP = k_j > 0
register(RowOp(
    name="masked_softmax",
    operands=("mask",),
    # a masked entry is left out of every statistic; a fully masked row gives zeros
    stats=((m, "max", sp.Piecewise((z_j, _KEEP), (-sp.oo, True))),
           (s, "sum", sp.Piecewise((_E, _KEEP), (0, True)))),
    out=sp.Piecewise((_E / s, _KEEP), (0, True)),
    vjp_stats=((gy, "sum", sp.Piecewise((g_j * _E / s, _KEEP), (0, True))),),
    vjp=sp.Piecewise((_E / s * (g_j - gy), _KEEP), (0, True)),
    plain=lambda z, k: [sp.exp(zi) / sum(sp.exp(zk) for zk, kk in zip(z, k) if kk > 0)
                        if ki > 0 else sp.S.Zero for zi, ki in zip(z, k)],
    latex=r"\operatorname{softmax}_{\text{mask}}",
    doc="softmax over the entries whose mask is positive; masked entries (and fully "
        "masked rows) give 0",
))
register(RowOp(
    name="layer_norm",
    stats=((mu, "sum", z_j / C), (var, "sum", (z_j - mu) ** 2 / C)),
    out=(z_j - mu) / sp.sqrt(var + eps_ln),
    vjp_stats=((gm, "sum", g_j / C), (gx, "sum", g_j * (z_j - mu) / sp.sqrt(var + eps_ln) / C)),
    vjp=(g_j - gm - (z_j - mu) / sp.sqrt(var + eps_ln) * gx) / sp.sqrt(var + eps_ln),
    plain=lambda z: [(zi - sum(z) / len(z)) / sp.sqrt(
        sum((zk - sum(z) / len(z)) ** 2 for zk in z) / len(z) + eps_ln) for zi in z],
    params={eps_ln: 1e-5},
    latex=r"\operatorname{LN}",
    doc="layer normalization over the last axis, (z − μ)/√(σ² + eps), biased variance",
))
register(RowLossOp(
    name="softmax_cross_entropy",
    stats=((m, "max", z_j), (s, "sum", _E), (ZY, "dot", z_j)),
    out=m + sp.log(s) - ZY,
    vjp=G * (_E / s - t_j),
    # second order: g times softmax's VJP, with upstream u
    vjp2_stats=((uy, "sum", u_j * _E / s),),
    vjp2=G * _E / s * (u_j - uy),
    plain=lambda z, t: -sum(ti * sp.log(sp.exp(zi) / sum(sp.exp(zk) for zk in z))
                            for zi, ti in zip(z, t)),
    params={eps: 0.0},
    smoothing=True,
    latex=r"\operatorname{CE}",
    doc="cross-entropy of softmax(z) against t (label smoothing ε)",
))
register(RowLossOp(
    name="nll",
    stats=((ZY, "dot", z_j),),
    out=-ZY,
    vjp=-G * t_j,
    vjp2=sp.S.Zero,  # the gradient does not depend on z
    plain=lambda z, t: -sum(ti * zi for zi, ti in zip(z, t)),
    latex=r"\operatorname{NLL}",
    doc="negative log-likelihood of log-probabilities z",
))
# the hinge is "if v > 0: add v", as PyTorch's multi_margin_loss (NaN terms are skipped)
_ACTIVE = sp.Piecewise((1, z_j - ZY + margin > 0), (0, True))
register(RowLossOp(
    name="multi_hinge",
    stats=((ZY, "dot", z_j),
           (hsum, "sum", (1 - t_j) * sp.Piecewise((z_j - ZY + margin, z_j - ZY + margin > 0),
                                                  (0, True))),
           (cnt, "sum", (1 - t_j) * _ACTIVE)),
    out=hsum,
    vjp=G * ((1 - t_j) * _ACTIVE - t_j * cnt),
    plain=lambda z, t: sum((1 - ti) * sp.Max(0, zi - sum(tk * zk for zk, tk in zip(z, t)) + margin)
                           for zi, ti in zip(z, t)),
    params={margin: 1.0},
    onehot_only=True,
    latex=r"\operatorname{SVM}",
    doc="multiclass hinge Σ_{j≠y} max(0, z_j − z_y + margin); with a dense target t it is "
        "Σ_j (1 − t_j) max(0, z_j − Σ_k t_k z_k + margin), the same for one-hot t",
))
