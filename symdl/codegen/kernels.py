"""Kernel source text from SymPy declarations: elementwise kernels, reductions.

Row ops (softmax, losses over logits, layer norm) are rendered by
:mod:`symdl.codegen.rowops`.  Two flavours from the same expressions:
``"numba"`` (loops, compiled by numba, parallel over rows) and ``"numpy"``
(whole-array reference code).
Each function returns source lines only; nothing here compiles or runs.

Input layouts of a numba elementwise kernel, given an output viewed as
``(R, C)``: ``full`` ``a[i, j]``, ``row`` ``a[j]`` (a bias), ``col`` ``a[i]``,
``scalar`` ``a[0]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .render import HEADER, decorator, module_header, render  # noqa: F401  (re-exported)
from .spec import KernelSpec, Operand, hoist  # noqa: F401  (hoist: re-exported)

__all__ = ["KernelInput", "elementwise_kernel", "reduction_kernel", "hits_kernel", "HEADER",
           "module_header", "hoist"]

_DIMS = {"full": (True, True), "row": (False, True), "col": (True, False), "scalar": (False, False)}


@dataclass(frozen=True)
class KernelInput:
    """An array argument: the symbol it binds and its layout in a 2-D loop
    (``full`` ``a[i, j]``, ``row`` ``a[j]``, ``col`` ``a[i]``, ``scalar`` ``a[0]``)."""

    symbol: sp.Symbol
    layout: str = "full"

    @property
    def arg(self) -> str:
        return f"a_{self.symbol.name}"


def elementwise_kernel(name: str, inputs: list, params: list, outputs: list, dtype: str,
                       flavor: str = "numba", parallel: bool = True, comment=(),
                       flat: bool = False, inplace: tuple = (), colsums: tuple = ()) -> list:
    """Source of ``def name(a_<in>..., out0..., <params>)`` computing each
    ``outputs[k] = expr`` elementwise: a :class:`~symdl.codegen.spec.KernelSpec`
    over a flat loop (``flat``) or a 2-D one with the inputs' layouts,
    rendered for ``flavor``.  ``inplace`` and ``colsums`` as in the spec."""
    ops = tuple(Operand(i.symbol, (True,) if flat else _DIMS[i.layout]) for i in inputs)
    spec = KernelSpec(name, ops, tuple(params), tuple(outputs), dtype, 1 if flat else 2,
                      parallel, tuple(inplace), tuple(colsums), tuple(comment))
    return render(spec, flavor)


# ------------------------------------------------------------- reductions
def reduction_kernel(name: str, how: str, dtype: str, mean: bool = False, comment=()) -> list:
    """Numba source of a sum (or mean) over the rows of ``x`` (N, C) into
    ``out`` (C,) (``how="rows"``), or over all of a 1-D ``x`` into a 0-d
    ``out`` (``how="all"``), accumulating in the array's dtype row by row
    like NumPy's own axis-0 reduction."""
    c = f"np.{dtype}"
    lines = [f"# {x}" for x in comment] + [decorator(False), f"def {name}(x, out):"]
    if how == "rows":
        lines += ["    N, C = x.shape", "    for j in range(C):", "        out[j] = x[0, j]",
                  "    for i in range(1, N):", "        for j in range(C):", "            out[j] += x[i, j]"]
        if mean:
            lines += ["    for j in range(C):", f"        out[j] /= {c}(N)"]
    else:
        lines += [f"    acc = {c}(0.0)", "    for i in range(x.shape[0]):", "        acc += x[i]"]
        lines += [f"    out[()] = acc / {c}(x.shape[0])" if mean else "    out[()] = acc"]
    return lines + [""]


def hits_kernel(name: str) -> list:
    """Numba source of ``name(z, lab)``: how many rows of ``z`` (N, C) have
    their largest entry (the first, on ties, as ``np.argmax``) at column
    ``lab[i]`` (the accuracy count of a classifier's logits)."""
    return [decorator(False), f"def {name}(z, lab):",
            "    N, C = z.shape", "    hits = 0", "    for i in range(N):", "        best = 0",
            "        top = z[i, 0]", "        for j in range(1, C):",
            "            if z[i, j] > top:", "                best = j", "                top = z[i, j]",
            "        if best == lab[i]:", "            hits += 1", "    return hits", ""]
