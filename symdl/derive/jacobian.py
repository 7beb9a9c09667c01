"""Softmax's Jacobian derived entry by entry with SymPy and brought to diag(s) − s sᵀ."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..errors import UsageError

__all__ = ["SoftmaxJacobian", "softmax_jacobian"]


@dataclass(frozen=True)
class SoftmaxJacobian:
    """The derived Jacobian of ``s = softmax(z)`` for ``k`` classes.

    ``derived`` holds ``sympy.diff(s_i, z_j)`` as SymPy gives it (in the exponentials),
    ``in_outputs`` the same entries rewritten in the outputs ``s_i``, ``stated`` the
    matrix ``diag(s) − s sᵀ``; ``verified`` is SymPy's verdict that the two agree
    entry by entry (and that the derived entries equal the rewritten ones)."""

    k: int
    z: tuple
    s: tuple
    derived: sp.Matrix
    in_outputs: sp.Matrix
    stated: sp.Matrix
    verified: bool


def softmax_jacobian(k: int = 3) -> SoftmaxJacobian:
    """Differentiate ``s_i = e^{z_i} / Σ_m e^{z_m}`` for ``k`` explicit classes.

    Each entry is ``sympy.diff``; then ``Σ e^{z_m}`` is named ``S`` and ``e^{z_i}``
    replaced by ``s_i S``, which cancels ``S`` and leaves the entry in the outputs.
    Both steps are checked by SymPy (the rewritten entry, with ``s_i`` put back as
    the softmax, equals the derived one).

    >>> j = softmax_jacobian(2)
    >>> j.in_outputs[0, 1], j.verified
    (-s_1*s_2, True)
    """
    if not 1 <= int(k) <= 8:
        raise UsageError(f"softmax_jacobian: k = {k} classes, choose 1 to 8")
    k = int(k)
    z = sp.symbols(f"z_1:{k + 1}", real=True)
    s = sp.symbols(f"s_1:{k + 1}", positive=True)
    S = sp.Symbol("S", positive=True)
    total = sum(sp.exp(zi) for zi in z)
    soft = [sp.exp(zi) / total for zi in z]
    derived = sp.Matrix(k, k, lambda i, j: sp.diff(soft[i], z[j]))
    named = {total: S}
    out_of = dict(zip(z, s))

    def back(arg):  # e^{c z_i} -> (s_i S)^c (the derivative squares an exponential)
        c = {zi: arg.coeff(zi) for zi in z if arg.has(zi)}
        if sp.expand(arg - sum(ci * zi for zi, ci in c.items())) != 0:
            return sp.exp(arg)
        return sp.Mul(*[(out_of[zi] * S) ** ci for zi, ci in c.items()])

    in_outputs = derived.applyfunc(
        lambda e: sp.expand(e.subs(named).replace(sp.exp, back)))
    stated = sp.diag(*s) - sp.Matrix(s) * sp.Matrix(s).T
    as_softmax = dict(zip(s, soft))
    verified = (in_outputs - stated).is_zero_matrix is True and all(
        sp.simplify(a.xreplace(as_softmax) - b) == 0 for a, b in zip(in_outputs, derived))
    return SoftmaxJacobian(k, z, s, derived, in_outputs, stated, bool(verified))
