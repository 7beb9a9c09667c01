"""Adaptive optimizers' update rules, declared once as SymPy equations.

Each rule follows ``torch.optim`` step for step (same state, same ε
placement, same bias corrections), so the same declaration prints the
textbook equations (:mod:`symdl.optim.derivation`) and becomes the fused
kernel (:func:`symdl.optim.base.update_kernel_source`).

Per-step scalars that depend only on the step count ``t`` and the
hyperparameters (bias corrections ``1 − β^t``, Adagrad's decayed rate,
NAdam's momentum schedule μ_t and its running product) are host scalars:
computed once per step, outside the array loop.

Subnormals: a state that decays geometrically (``m ← β m`` with zero
gradients) falls below the smallest normal float after a few hundred steps
and, since ``0.9 · 2⁻¹⁴⁹`` rounds back to ``2⁻¹⁴⁹``, stays subnormal for
ever; every later step then pays for subnormal arithmetic (microcode
assists).  Each decaying state's new value is therefore wrapped in
:class:`flush`, which the printers of :mod:`symdl.codegen.printers` emit as
``x if |x| >= tiny(dtype) else 0`` inside the fused kernel (the derivation
printers drop it).  Chosen over FTZ/DAZ flags, which numba does not set and
which would change every other kernel in the process.  With
``flush_state=False`` a rule is declared without it; ``benchmarks/optim_cpu.py``
measures both: on the 2-core AMD EPYC machines the flush costs nothing on
normal data (10M float32: same time within noise), and after 2,000
zero-gradient steps the flushed kernel runs at its starting speed (last/first
0.93-1.02) where the unflushed one slows by 1.2-1.4x (torch fused: 1.9x);
the penalty is larger on CPUs that trap subnormals in microcode.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..ops.registry import real
from .rules import UpdateRule, g, p

T = sp.Symbol("t", integer=True, positive=True)

# hyperparameters (named as torch.optim's; the tuple ``betas`` is beta1, beta2)
lr, eps, wd = real("lr eps weight_decay")
beta1, beta2, alpha, rho, mu = real("beta1 beta2 alpha rho momentum")
lr_decay, s_init, psi = real("lr_decay initial_accumulator_value momentum_decay")
# state
m, v, vmax, u, s, gbar, b = real("m v vmax u s gbar b")
# intermediates (substituted away in the kernel, shown in the derivation)
gw, mhat, vhat, vtilde, delta = real("g_w mhat vhat vtilde delta")
# per-step host scalars
c1, c2, clr, mu_t, mu_next, mu_prod = real("c1 c2 clr mu_t mu_next mu_prod")


class flush(sp.Function):
    """Flush to zero: ``x`` if ``|x| >= `` the dtype's smallest normal, else 0.

    A code-generation marker only: kernels print it as a conditional on the
    dtype's ``finfo.tiny`` (typed constant); derivations print ``x``."""

    nargs = 1
    is_real = True

    @classmethod
    def eval(cls, x):
        # a literal zero only: ``x.is_zero`` asks SymPy's assumptions, 0.1 s at import
        if x == 0:
            return sp.S.Zero
        return None

    def _symdl_scalar(self, printer):
        x = self.args[0]
        tiny = sp.Float(float(np.finfo(printer.dtype).tiny))
        return printer._print(sp.Piecewise((x, sp.Abs(x) >= tiny), (0, True)))


def unflushed(expr):
    """``expr`` without :class:`flush` markers (what the derivation prints)."""
    return expr.replace(lambda e: isinstance(e, flush), lambda e: e.args[0])


class MuProduct(sp.Function):
    """NAdam's running product ``∏_{i=1}^{t} μ_i`` (a host scalar).

    Printed as the product; evaluated by the optimizer, which keeps the
    running value (``_imp_`` of a per-optimizer subclass, used by lambdify)."""

    nargs = 3  # (t, beta1, momentum_decay)

    def _latex(self, printer, exp=None):
        out = r"\prod_{i=1}^{t} \mu_{i}"
        return out if exp is None else rf"\left({out}\right)^{{{exp}}}"

    def _sympystr(self, printer):
        return "∏ᵢ₌₁ᵗ μᵢ"


def _f(x, on: bool):
    return flush(x) if on else x


def _decay(grad, decoupled: bool):
    """The weight-decay equation (L2 in the gradient), unless decoupled."""
    return () if decoupled else ((gw, grad + wd * p),)


# ------------------------------------------------------------------ rules
def adagrad_rule(flush_state: bool = True) -> UpdateRule:
    """Adagrad (Duchi et al. 2011) as ``torch.optim.Adagrad``."""
    del flush_state  # the accumulated sum only grows: nothing to flush
    return UpdateRule(
        "adagrad",
        (*_decay(g, False),
         (s, s + gw ** 2),
         (p, p - clr * gw / (sp.sqrt(s) + eps))),
        state=(s,),
        hyper={lr: 0.01, lr_decay: 0.0, wd: 0.0, s_init: 0.0, eps: 1e-10},
        scalars={clr: lr / (1 + (T - 1) * lr_decay)},
        init={s: s_init},
        doc="Adagrad: accumulated squared gradients s, decayed rate lr/(1 + (t-1) lr_decay)")


def rmsprop_rule(centered: bool = False, momentum: bool = False, flush_state: bool = True) -> UpdateRule:
    """RMSprop (Hinton 2012) as ``torch.optim.RMSprop``; centered and momentum variants."""
    eqs = [*_decay(g, False), (v, _f(alpha * v + (1 - alpha) * gw ** 2, flush_state))]
    state = [v]
    denom = v
    if centered:
        eqs += [(gbar, _f(alpha * gbar + (1 - alpha) * gw, flush_state)), (vtilde, v - gbar ** 2)]
        state.append(gbar)
        denom = vtilde
    step = gw / (sp.sqrt(denom) + eps)
    if momentum:
        eqs.append((b, _f(mu * b + step, flush_state)))
        state.append(b)
        step = b
    eqs.append((p, p - lr * step))
    hyper = {lr: 0.01, alpha: 0.99, eps: 1e-8, wd: 0.0}
    if momentum:
        hyper[mu] = 0.0
    kind = ["centered" if centered else "", "with momentum" if momentum else ""]
    return UpdateRule("rmsprop", tuple(eqs), tuple(state), hyper, {},
                      doc=" ".join(["RMSprop", *filter(None, kind)]))


def adadelta_rule(flush_state: bool = True) -> UpdateRule:
    """Adadelta (Zeiler 2012) as ``torch.optim.Adadelta``."""
    return UpdateRule(
        "adadelta",
        (*_decay(g, False),
         (v, _f(rho * v + (1 - rho) * gw ** 2, flush_state)),
         (delta, sp.sqrt(u + eps) / sp.sqrt(v + eps) * gw),
         (u, _f(rho * u + (1 - rho) * delta ** 2, flush_state)),
         (p, p - lr * delta)),
        state=(v, u),
        hyper={lr: 1.0, rho: 0.9, eps: 1e-6, wd: 0.0},
        doc="Adadelta: running averages of squared gradients v and squared updates u")


def adam_rule(amsgrad: bool = False, decoupled: bool = False, flush_state: bool = True) -> UpdateRule:
    """Adam (Kingma & Ba 2015) as ``torch.optim.Adam``; AdamW (Loshchilov & Hutter
    2019) with ``decoupled``; AMSGrad (Reddi et al. 2018) with ``amsgrad``."""
    grad = g if decoupled else gw
    eqs = [*_decay(g, decoupled),
           (m, _f(beta1 * m + (1 - beta1) * grad, flush_state)),
           (v, _f(beta2 * v + (1 - beta2) * grad ** 2, flush_state))]
    state = [m, v]
    second = v
    if amsgrad:
        eqs.append((vmax, sp.Max(vmax, v)))
        state.append(vmax)
        second = vmax
    eqs += [(mhat, m / c1), (vhat, second / c2)]
    update = mhat / (sp.sqrt(vhat) + eps)
    eqs.append((p, p - lr * (update + wd * p) if decoupled else p - lr * update))
    name = "adamw" if decoupled else "adam"
    doc = ("AdamW: Adam with decoupled weight decay" if decoupled else "Adam") + (
        ", AMSGrad (running maximum of v)" if amsgrad else "")
    return UpdateRule(name, tuple(eqs), tuple(state),
                      {lr: 0.001, beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.01 if decoupled else 0.0},
                      {c1: 1 - beta1 ** T, c2: 1 - beta2 ** T}, doc=doc)


def adamw_rule(amsgrad: bool = False, flush_state: bool = True) -> UpdateRule:
    """AdamW (Loshchilov & Hutter 2019) as ``torch.optim.AdamW``: Adam with decoupled weight decay."""
    return adam_rule(amsgrad, True, flush_state)


def adamax_rule(flush_state: bool = True) -> UpdateRule:
    """Adamax (Kingma & Ba 2015, §7.1) as ``torch.optim.Adamax``."""
    return UpdateRule(
        "adamax",
        (*_decay(g, False),
         (m, _f(beta1 * m + (1 - beta1) * gw, flush_state)),
         (u, sp.Max(beta2 * u, sp.Abs(gw) + eps)),
         (p, p - lr * m / (c1 * u))),
        state=(m, u),
        hyper={lr: 0.002, beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.0},
        scalars={c1: 1 - beta1 ** T},
        doc="Adamax: Adam with the infinity norm u (u >= eps, never subnormal)")


def mu_schedule(t):
    """NAdam's momentum schedule μ_t = β₁ (1 − ½ · 0.96^(t ψ))."""
    return beta1 * (1 - sp.Rational(1, 2) * sp.Float(0.96) ** (t * psi))


class RunningProduct:
    """NAdam's ``∏_{i=1}^{t} μ_i``, kept as a running value (as torch keeps
    ``mu_product``).  It depends on ``t`` only, so it is not checkpointed:
    asked for an earlier or a distant step it is recomputed from ``i = 1``
    in the same order, giving the same bits."""

    def __init__(self):
        self.t, self.value, self.key = 0, 1.0, None

    def __call__(self, t, beta1, momentum_decay):
        t, key = int(t), (float(beta1), float(momentum_decay))
        if key != self.key or t < self.t:
            self.t, self.value, self.key = 0, 1.0, key
        while self.t < t:
            self.t += 1
            self.value *= key[0] * (1.0 - 0.5 * 0.96 ** (self.t * key[1]))
        return self.value


def running_mu_product() -> type:
    """A :class:`MuProduct` evaluated by its own :class:`RunningProduct` (lambdify calls
    ``_imp_``): each rule built with it, hence each optimizer, keeps its own running value."""
    return type("MuProduct", (MuProduct,), {"_imp_": staticmethod(RunningProduct())})


def nadam_rule(decoupled_weight_decay: bool = False, flush_state: bool = True, product=None) -> UpdateRule:
    """NAdam (Dozat 2016) as ``torch.optim.NAdam``: Nesterov momentum with the
    momentum schedule μ_t; ``product`` evaluates ∏ μ_i (default: a new
    :func:`running_mu_product`)."""
    decoupled = decoupled_weight_decay
    product = product or running_mu_product()
    grad = g if decoupled else gw
    denom = sp.sqrt(vhat) + eps
    update = lr * (1 - mu_t) / (1 - mu_prod) * grad / denom \
        + lr * mu_next / (1 - mu_prod * mu_next) * m / denom
    eqs = (*_decay(g, decoupled),
           (m, _f(beta1 * m + (1 - beta1) * grad, flush_state)),
           (v, _f(beta2 * v + (1 - beta2) * grad ** 2, flush_state)),
           (vhat, v / c2),
           (p, p - update - lr * wd * p if decoupled else p - update))
    return UpdateRule(
        "nadam", eqs, (m, v),
        {lr: 0.002, beta1: 0.9, beta2: 0.999, eps: 1e-8, wd: 0.0, psi: 0.004},
        {c2: 1 - beta2 ** T, mu_t: mu_schedule(T), mu_next: mu_schedule(T + 1),
         mu_prod: product(T, beta1, psi)},
        doc="NAdam: Adam with Nesterov momentum and the momentum schedule mu_t"
            + (", decoupled weight decay" if decoupled else ""))
