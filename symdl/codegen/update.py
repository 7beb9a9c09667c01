"""Source of an optimizer's fused in-place update kernel, from its rule.

The rule (:class:`symdl.optim.rules.UpdateRule`, read here through its
attributes only) gives each written array (the parameter ``p``, then the
state) as an expression of the old values; the kernel reads the parameter,
its gradient and the state once and writes them back once, in place, over
a flat loop.  Subexpressions of the per-step scalars are hoisted.
"""
from __future__ import annotations

import sympy as sp

from .render import module_header, render
from .spec import KernelSpec, Operand

__all__ = ["update_kernel_source", "update_spec"]

P, G = sp.Symbol("p", real=True), sp.Symbol("g", real=True)


def update_spec(rule, dtype: str, parallel: bool = True, name: str = "kernel") -> KernelSpec:
    """The in-place flat :class:`KernelSpec` of ``rule`` (every target written back)."""
    final = rule.final()
    inputs = tuple(Operand(s, (True,)) for s in (P, G, *rule.state))
    outputs = tuple(final[t] for t in rule.targets)
    comment = (f"{rule.name}: {rule.doc}",) + tuple(f"{t} <- {e}" for t, e in rule.equations)
    return KernelSpec(name, inputs, tuple(rule.kernel_scalars), outputs, dtype, 1, parallel,
                      inplace=tuple(rule.targets), comment=comment)


def update_kernel_source(rule, dtype: str, flavor: str, parallel: bool = True) -> str:
    """Source of ``kernel(p, g, *state, *scalars)`` (``p`` and the state are
    written back into their own arrays)."""
    return "\n".join(module_header(flavor) + render(update_spec(rule, dtype, parallel), flavor))
