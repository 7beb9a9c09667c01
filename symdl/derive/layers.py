"""Layer derivations: each layer's vector-Jacobian product in matrix notation.

SymPy's ``MatrixSymbol`` derivatives print unreadably, so the notation here
(∂L/∂W = δᵀX, ⊙, diag) is symdl's own, and every rule is *verified* on an
explicit small instance: matrices of SymPy symbols, a scalar loss
``L = Σ δ ∘ output`` (or the loss itself), ``sympy.diff`` per entry,
compared exactly with the stated rule.  ``verified`` is part of the data.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from ..display import Displayable
from ..errors import UsageError
from ..ops import OPS, ElementwiseOp, Y
from ..ops.claims import check_equal
from ..ops.elementwise import SIGMOID_STABLE
from .rules import show

__all__ = ["LAYERS", "LOSSES", "LayerDerivation", "Rule", "layer_derivation"]


@dataclass(frozen=True)
class Rule:
    """``lhs = rhs`` with its shape, in text and LaTeX."""

    lhs: str
    rhs: str
    shape: str
    lhs_latex: str
    rhs_latex: str
    form: str = ""   # "index" or "matrix" where a layer states both


@dataclass(frozen=True, repr=False)  # repr, Jupyter: symdl.printing.notebook
class LayerDerivation(Displayable):
    """A layer's forward map, its gradient rules, named steps and the check."""

    name: str
    forward: str
    forward_latex: str
    rules: tuple
    steps: tuple
    verified: bool
    method: str


def _mat(name, r, c):
    return sp.Matrix(r, c, lambda i, j: sp.Symbol(f"{name}{i}{j}", real=True))


def _same(a: sp.Matrix, b: sp.Matrix) -> bool:
    return a.shape == b.shape and all(check_equal(x, y).ok for x, y in zip(a, b))


def _grad(L, M: sp.Matrix) -> sp.Matrix:
    return M.applyfunc(lambda e: sp.diff(L, e))


def dense() -> LayerDerivation:
    X, W, d = _mat("x", 2, 3), _mat("w", 2, 3), _mat("d", 2, 2)
    b = sp.Matrix(1, 2, lambda i, j: sp.Symbol(f"b{j}", real=True))
    Z = X * W.T + sp.ones(2, 1) * b
    L = sum(d.multiply_elementwise(Z))
    ok = (_same(_grad(L, W), d.T * X) and _same(_grad(L, X), d * W)
          and _same(_grad(L, b), sp.ones(1, 2) * d))
    rules = (
        Rule("∂L/∂W", "δᵀ X", "out×in", r"\frac{\partial L}{\partial W}", r"\delta^{\top} X \in \mathbb{R}^{\mathrm{out}\times \mathrm{in}}"),
        Rule("∂L/∂X", "δ W", "N×in", r"\frac{\partial L}{\partial X}", r"\delta W \in \mathbb{R}^{N\times \mathrm{in}}"),
        Rule("∂L/∂b", "Σ_n δ_n", "out", r"\frac{\partial L}{\partial b}", r"\sum_n \delta_n \in \mathbb{R}^{\mathrm{out}}"),
    )
    steps = (("definition", "δ = ∂L/∂Z, Z = X Wᵀ + 1 bᵀ (N×out)"),)
    return LayerDerivation("dense", "Z = X Wᵀ + b", r"Z = X W^{\top} + \mathbf{1} b^{\top}", rules,
                           steps, ok, "explicit 2×3 instance, sympy.diff per entry")


def activation(name: str) -> LayerDerivation:
    op = OPS[name]
    if not isinstance(op, ElementwiseOp) or op.arity != 1:
        raise UsageError(f"{name} is not an activation")
    (x,) = op.inputs
    Z, d = _mat("z", 2, 2), _mat("d", 2, 2)
    params = {s: v for s, v in op.params.items()}
    f = op.expr.subs(params)
    A = Z.applyfunc(lambda z: f.subs(x, z))
    L = sum(d.multiply_elementwise(A))
    local = op.derivative(0).subs(params)
    stated = Z.applyfunc(lambda z: local.subs(Y, f).subs(x, z))
    ok = _same(_grad(L, Z), d.multiply_elementwise(stated))
    shown = local if Y in local.free_symbols else op.diff(0).subs(params)  # plain form reads best
    form = show(shown.subs({Y: sp.Symbol(f"{name}(Z)"), x: sp.Symbol("Z")}))
    rules = (Rule("∂L/∂Z", f"δ ⊙ {name}'(Z)", "N×d", r"\frac{\partial L}{\partial Z}",
                  r"\delta \odot " + (op.latex or name) + r"'(Z)"),)
    steps = (("local derivative", f"{name}'(x) = {show(shown)}"
              + (f" with y = {name}(x)" if Y in local.free_symbols else "")),
             ("elementwise", "the Jacobian is diagonal, so the product is "
              + (f"({form})" if " + " in form or " − " in form else form) + " ⊙ δ"))
    return LayerDerivation(name, f"A = {name}(Z)", r"A = " + (op.latex or name) + "(Z)", rules,
                           steps, ok, "explicit 2×2 instance, sympy.diff per entry")


def softmax() -> LayerDerivation:
    z = sp.symbols("z0:3", real=True)
    den = sum(sp.exp(v) for v in z)
    s = sp.Matrix([sp.exp(v) / den for v in z])
    J = sp.Matrix(3, 3, lambda i, j: sp.diff(s[i], z[j]))
    d = sp.Matrix(sp.symbols("d0:3", real=True))
    L = sum(di * si for di, si in zip(d, s))
    ok = _same(J, sp.diag(*s) - s * s.T) and _same(
        _grad(L, sp.Matrix(z)), s.multiply_elementwise(d - sp.ones(3, 1) * (d.T * s)[0]))
    rules = (Rule("∂s/∂z", "diag(s) − s sᵀ", "C×C", r"\frac{\partial s}{\partial z}",
                  r"\operatorname{diag}(s) - s s^{\top}"),
             Rule("∂L/∂z", "s ⊙ (δ − ⟨δ, s⟩)", "C", r"\frac{\partial L}{\partial z}",
                  r"s \odot (\delta - \langle \delta, s\rangle)"))
    steps = (("quotient rule", "∂s_i/∂z_j = s_i [i = j] − s_i s_j"),
             ("matrix form", "J = diag(s) − s sᵀ (symmetric)"))
    return LayerDerivation("softmax", "s_i = e^{z_i} / Σ_k e^{z_k}",
                           r"s_i = \frac{e^{z_i}}{\sum_k e^{z_k}}", rules, steps, ok,
                           "explicit 3-class instance, sympy.diff per entry")


def softmax_cross_entropy() -> LayerDerivation:
    z = sp.symbols("z0:3", real=True)
    den = sum(sp.exp(v) for v in z)
    s = [sp.exp(v) / den for v in z]
    ok = True
    for label in range(3):
        y = [int(i == label) for i in range(3)]
        L = -sum(yi * sp.log(si) for yi, si in zip(y, s))
        ok &= check_equal(L, -sp.log(s[label])).ok
        ok &= all(check_equal(sp.diff(L, z[j]), s[j] - y[j]).ok for j in range(3))
    rules = (Rule("∂L/∂z", "ŷ − y", "C", r"\frac{\partial L}{\partial z}", r"\hat y - y"),)
    steps = (("one-hot target", "L = −Σ_i y_i log ŷ_i reduces to −log ŷ_l for the true class l"),
             ("log-softmax", "−log ŷ_l = −z_l + log Σ_k e^{z_k}"),
             ("differentiate", "∂L/∂z_j = −[j = l] + e^{z_j}/Σ_k e^{z_k} = ŷ_j − y_j"))
    return LayerDerivation("softmax_cross_entropy", "L = −Σ_i y_i log softmax(z)_i",
                           r"L = -\sum_i y_i \log \operatorname{softmax}(z)_i", rules, steps, ok,
                           "explicit 3-class instance, every one-hot label")


def penalty(kind: str) -> LayerDerivation:
    W = _mat("w", 2, 2)
    lam = sp.Symbol("lambda", positive=True)
    if kind == "l2":
        L = lam / 2 * sum(w**2 for w in W)
        want, text, tex = lam * W, "λ W", r"\lambda W"
        fwd, fwd_tex = "R = (λ/2) ‖W‖²", r"R = \tfrac{\lambda}{2} \lVert W \rVert_2^2"
    elif kind == "l1":
        L = lam * sum(sp.Abs(w) for w in W)
        want, text, tex = lam * W.applyfunc(sp.sign), "λ sign(W)", r"\lambda \operatorname{sign}(W)"
        fwd, fwd_tex = "R = λ ‖W‖₁", r"R = \lambda \lVert W \rVert_1"
    else:
        raise UsageError(f"unknown penalty {kind!r} (l1 or l2)")
    ok = _same(_grad(L, W), want)
    rules = (Rule("∂R/∂W", text, "like W", r"\frac{\partial R}{\partial W}", tex),)
    note = "sign(0) = 0: the subgradient PyTorch uses" if kind == "l1" else "weight decay: w ← w − ηλw"
    return LayerDerivation(kind, fwd, fwd_tex, rules, (("note", note),), ok,
                           "explicit 2×2 instance, sympy.diff per entry")


def elementwise_loss(name: str) -> LayerDerivation:
    """A mean elementwise loss ``L = (1/N) Σ_n f(ŷ_n, y_n)`` (mse, mae, bce_logits, hinge)."""
    op = OPS[name]
    yhat, y = op.inputs
    P, T = _mat("p", 2, 1), _mat("t", 2, 1)
    L = sum(op.expr.subs({yhat: p, y: t}) for p, t in zip(P, T)) / 2
    local = op.derivative(0)
    shown = local.subs(SIGMOID_STABLE.subs(sp.Symbol("x", real=True), yhat), sp.Function("sigmoid")(yhat))
    want = sp.Matrix([local.subs({yhat: p, y: t}) / 2 for p, t in zip(P, T)])
    ok = _same(_grad(L, P), want)
    rules = (Rule("∂L/∂ŷ", f"({show(shown)}) / N", "N", r"\frac{\partial L}{\partial \hat y}",
                  r"\frac{1}{N}\left(" + show(shown, "latex") + r"\right)"),)
    steps = (("mean", "each example contributes 1/N of its own derivative"),
             ("local derivative", f"∂f/∂{yhat} = {show(op.diff(0))}"))
    return LayerDerivation(name, f"L = (1/N) Σ_n {show(op.expr)}",
                           r"L = \frac{1}{N}\sum_n " + show(op.expr, "latex"), rules, steps, ok,
                           "explicit N = 2 instance, sympy.diff per entry")


LOSSES = ("mse", "mae", "bce_logits", "hinge")
LAYERS = ("dense", "softmax", "softmax_cross_entropy", "l1", "l2", *LOSSES)


@lru_cache(maxsize=None)
def layer_derivation(name: str) -> LayerDerivation:
    """``dense``, ``softmax``, ``softmax_cross_entropy``, ``l1``, ``l2``, a loss, a
    convolution, pooling or normalization layer, or any activation."""
    from .conv_layers import CONV_LAYERS, conv_layer_derivation   # it builds on Rule
    if name in CONV_LAYERS:
        return conv_layer_derivation(name)
    if name == "dense":
        return dense()
    if name == "softmax":
        return softmax()
    if name == "softmax_cross_entropy":
        return softmax_cross_entropy()
    if name in ("l1", "l2"):
        return penalty(name)
    if name in LOSSES:
        return elementwise_loss(name)
    op = OPS.get(name)
    if not isinstance(op, ElementwiseOp) or op.arity != 1 or op.derived_from:
        acts = [o.name for o in OPS.declared("elementwise") if o.arity == 1]
        raise UsageError(f"unknown layer {name!r} (choose from: "
                         f"{', '.join(LAYERS + CONV_LAYERS + tuple(acts))})")
    return activation(name)
