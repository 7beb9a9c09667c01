"""Activations and elementwise maths, each declared once as SymPy.

Kinks follow PyTorch: relu'(0) = 0, leaky_relu'(0) = α, abs'(0) = 0.  Kinked
ops are declared with ``Piecewise`` (whose derivative keeps the convention),
never with ``Max`` (whose derivative is ``Heaviside(0) = 1/2``).  NaN and
±inf give what PyTorch gives: the kink's condition is on the ``x <= 0`` side,
so ``relu(nan)`` is NaN (not 0) and ``relu'(nan)`` is 1, as torch's.
"""
from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import log1p

from .registry import Y, activation, elementwise, real

x, a, b = real("x a b")
alpha = sp.Symbol("alpha", real=True)

#: σ(x) without overflow for either sign: e^{min(x,0)} / (1 + e^{-|x|}).
SIGMOID_STABLE = sp.exp(sp.Min(x, 0)) / (1 + sp.exp(-sp.Abs(x)))
#: log(1 + e^x) without overflow: max(x, 0) + log1p(e^{-|x|}).
SOFTPLUS_STABLE = sp.Max(x, 0) + log1p(sp.exp(-sp.Abs(x)))

# ---------------------------------------------------------------- activations
activation("identity", x, x, grad_forms={0: sp.Integer(1)}, doc="linear activation")
activation("step", x, sp.Piecewise((1, x > 0), (0, True)), smooth=False,
           doc="Heaviside step (perceptron output); its derivative is 0 almost everywhere",
           latex=r"\mathbf{1}")
activation("sigmoid", x, 1 / (1 + sp.exp(-x)), stable=SIGMOID_STABLE,
           grad_forms={0: Y * (1 - Y)}, latex=r"\sigma")
activation("tanh", x, sp.tanh(x), grad_forms={0: 1 - Y**2})
activation("relu", x, sp.Piecewise((0, x <= 0), (x, True)), smooth=False,
           grad_forms={0: sp.Piecewise((0, Y <= 0), (1, True))}, latex=r"\operatorname{ReLU}")
activation("leaky_relu", x, sp.Piecewise((x, x > 0), (alpha * x, True)),
           params={alpha: 0.01}, smooth=False, latex=r"\operatorname{LeakyReLU}")
activation("elu", x, sp.Piecewise((alpha * (sp.exp(x) - 1), x <= 0), (x, True)),
           params={alpha: 1.0}, smooth=False, latex=r"\operatorname{ELU}")
activation("softplus", x, sp.log(1 + sp.exp(x)), stable=SOFTPLUS_STABLE,
           grad_forms={0: SIGMOID_STABLE}, latex=r"\operatorname{softplus}")
activation("gelu", x, x / 2 * (1 + sp.erf(x / sp.sqrt(2))), latex=r"\operatorname{GELU}")
activation("gelu_tanh", x,
           x / 2 * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (x + sp.Rational(44715, 1000000) * x**3))),
           latex=r"\operatorname{GELU}_{\tanh}", doc="tanh approximation of GELU")
# SELU (Klambauer et al. 2017): the fixed point of mean 0, variance 1; the constants to 40
# digits, checked in tests against their closed forms in erfc (SELU_CLOSED_FORMS)
SELU_ALPHA = sp.Float("1.673263242354377284817042991671652038461", 40)
SELU_LAMBDA = sp.Float("1.050700987355480493419334985294606351959", 40)
_c = sp.erfc(1 / sp.sqrt(2))
#: (α, λ) in closed form (the paper's eq. 14), for the tests and the gallery
SELU_CLOSED_FORMS = (
    -sp.sqrt(2 / sp.pi) / (_c * sp.exp(sp.Rational(1, 2)) - 1),
    (1 - _c * sp.sqrt(sp.E)) * sp.sqrt(2 * sp.pi) / sp.sqrt(
        2 * sp.erfc(sp.sqrt(2)) * sp.E**2 + sp.pi * _c**2 * sp.E
        - 2 * (2 + sp.pi) * _c * sp.sqrt(sp.E) + sp.pi + 2))
activation("selu", x,
           SELU_LAMBDA * sp.Piecewise((SELU_ALPHA * (sp.exp(x) - 1), x <= 0), (x, True)),
           smooth=False,  # no output form: y + λα cancels to 2e-16 where PyTorch gives 0
           latex=r"\operatorname{SELU}", doc="scaled ELU, self-normalizing (λ, α to 40 digits)")
#: the sigmoid approximation of GELU (Hendrycks & Gimpel 2016): x σ(1.702 x)
GELU_SIGMOID_SCALE = sp.Rational(851, 500)
activation("gelu_sigmoid", x, x / (1 + sp.exp(-GELU_SIGMOID_SCALE * x)),
           stable=x * SIGMOID_STABLE.xreplace({x: GELU_SIGMOID_SCALE * x}),
           latex=r"\operatorname{GELU}_{\sigma}", doc="x·σ(1.702x), sigmoid approximation of GELU")
activation("silu", x, x / (1 + sp.exp(-x)), stable=x * SIGMOID_STABLE,
           latex=r"\operatorname{SiLU}", doc="x·σ(x), also called swish")
activation("softsign", x, x / (1 + sp.Abs(x)), latex=r"\operatorname{softsign}")
activation("log_sigmoid", x, -sp.log(1 + sp.exp(-x)),
           stable=sp.Min(x, 0) - log1p(sp.exp(-sp.Abs(x))),
           grad_forms={0: 1 - SIGMOID_STABLE}, latex=r"\log\sigma")

# ---------------------------------------------------------------- maths
elementwise("add", (a, b), a + b)
elementwise("sub", (a, b), a - b)
elementwise("mul", (a, b), a * b)
elementwise("div", (a, b), a / b, domain=("real", "nonzero"))
elementwise("neg", x, -x)
elementwise("exp", x, sp.exp(x), grad_forms={0: Y})
elementwise("log", x, sp.log(x), domain=("positive",))
# The derivatives as PyTorch computes them: b a^(b-1) (not diff's a^b b / a, NaN at a = 0),
# 0 where b = 0, and ∂/∂b = 0 at a = 0, b >= 0 (the limit; log 0 is -inf)
elementwise("pow", (a, b), a**b, domain=("positive", "real"),
            grad_forms={0: sp.Piecewise((0, sp.Eq(b, 0)), (b * a**(b - 1), True)),
                        1: sp.Piecewise((0, sp.Eq(a, 0) & (b >= 0)), (a**b * sp.log(a), True))})
elementwise("sqrt", x, sp.sqrt(x), grad_forms={0: 1 / (2 * Y)}, domain=("positive",))
elementwise("square", x, x**2)
elementwise("abs", x, sp.Abs(x), smooth=False)
