"""Kernel source text from SymPy declarations: elementwise and row-loss kernels.

Two flavours from the same expressions: ``"numba"`` (loops, compiled by
numba, parallel over rows) and ``"numpy"`` (whole-array reference code).
Each function returns source lines only; nothing here compiles or runs.

Input layouts of a numba elementwise kernel, given an output viewed as
``(R, C)``: ``full`` ``a[i, j]``, ``row`` ``a[j]`` (a bias), ``col`` ``a[i]``,
``scalar`` ``a[0]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..ops.losses import ZY, RowLossOp, z_j
from .printers import ScalarPrinter
from .render import HEADER, decorator as _decorator, module_header, render
from .spec import KernelSpec, Operand, hoist

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


def _param_casts(params, dtype, indent) -> list:
    return [f"{indent}{p.name} = np.{dtype}({p.name})" for p in params]


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


# ------------------------------------------------------------- row losses
def _target_lines(op: RowLossOp, labels: str, dtype: str, indent: str) -> list:
    """Assign ``t_j`` for row i, column j: one-hot of an index, or dense."""
    c = f"np.{dtype}"
    base = f"({c}(1.0) if j == lab[i] else {c}(0.0))" if labels == "index" else "lab[i, j]"
    if any(p.name == "epsilon" for p in op.params):
        return [f"{indent}t_j = ({c}(1.0) - epsilon) * {base} + epsilon / {c}(C)"]
    return [f"{indent}t_j = {base}"]


def reduction_kernel(name: str, how: str, dtype: str, mean: bool = False, comment=()) -> list:
    """Numba source of a sum (or mean) over the rows of ``x`` (N, C) into
    ``out`` (C,) (``how="rows"``), or over all of a 1-D ``x`` into a 0-d
    ``out`` (``how="all"``), accumulating in the array's dtype row by row
    like NumPy's own axis-0 reduction."""
    c = f"np.{dtype}"
    lines = [f"# {x}" for x in comment] + ['@njit(cache=True, error_model="numpy")', f"def {name}(x, out):"]
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
    return ['@njit(cache=True, error_model="numpy")', f"def {name}(z, lab):",
            "    N, C = z.shape", "    hits = 0", "    for i in range(N):", "        best = 0",
            "        top = z[i, 0]", "        for j in range(1, C):",
            "            if z[i, j] > top:", "                best = j", "                top = z[i, j]",
            "        if best == lab[i]:", "            hits += 1", "    return hits", ""]


def rowloss_kernel(name: str, op: RowLossOp, dtype: str, labels: str = "index",
                   grad: bool = False, flavor: str = "numba", comment=(), parallel: bool = True,
                   both: bool = False, loss_total: str | None = None, grad_colsum: str | None = None
                   ) -> list:
    """Source of a row-loss kernel: ``name(z, lab, out, <params>)`` writing the
    per-row losses, or with ``grad`` ``name(z, lab, g, out, <params>)`` writing
    ``g[i] * ∂loss_i/∂z[i, j]``, or with ``both`` ``name(z, lab, g, loss, out,
    <params>)`` writing both from one pass over the row statistics (the
    training step needs the loss and its gradient).  Rows run in parallel
    under numba; the NumPy flavour runs the same loops in plain Python
    (reference only).  In a serial ``both`` kernel, ``loss_total`` (``"sum"``
    or ``"mean"``) adds an argument ``total`` (0-d) for the batch loss, and
    ``grad_colsum`` one ``colsum`` (C,) for the gradient summed over rows
    (or averaged), accumulated in the order :func:`reduction_kernel` uses."""
    params = list(op.params)
    pr = ScalarPrinter(dtype)
    grad = grad or both
    if (loss_total or grad_colsum) and (parallel or not both):
        raise ValueError("batch totals need a serial kernel computing loss and gradient")
    sig = ("z, lab, g, loss, out" if both else "z, lab, g, out") if grad else "z, lab, out"
    sig += ", total" * bool(loss_total) + ", colsum" * bool(grad_colsum)
    lines = [f"# {c}" for c in comment]
    loop = "range"
    if flavor == "numba":
        lines.append(_decorator(parallel))
        loop = "prange" if parallel else "range"
    lines.append(f"def {name}({sig}{''.join(', ' + p.name for p in params)}):")
    lines += _param_casts(params, dtype, "    ")
    lines += ["    N, C = z.shape"] + [f"    acc = np.{dtype}(0.0)"] * bool(loss_total)
    lines += [f"    colsum[:] = np.{dtype}(0.0)"] * bool(grad_colsum)
    lines += [f"    for i in {loop}(N):", f"        {ZY.name} = np.{dtype}(0.0)",
              "        for j in range(C):"]
    lines += _target_lines(op, labels, dtype, "            ")
    lines += [f"            {ZY.name} += t_j * z[i, j]"]
    for sym, how, elem in op.stats:
        init = f"np.{dtype}(-np.inf)" if how == "max" else f"np.{dtype}(0.0)"
        lines += [f"        {sym.name} = {init}", "        for j in range(C):",
                  f"            {z_j.name} = z[i, j]"]
        lines += _target_lines(op, labels, dtype, "            ")
        value = pr.doprint(elem)
        if how == "max":
            lines.append(f"            {sym.name} = max({sym.name}, {value})")
        else:
            lines.append(f"            {sym.name} += {value}")
    if not grad or both:
        lines.append(f"        {'loss' if both else 'out'}[i] = {pr.doprint(op.loss)}")
        lines += ["        acc += loss[i]"] * bool(loss_total)
    if grad:
        lines += ["        for j in range(C):", f"            {z_j.name} = z[i, j]"]
        lines += _target_lines(op, labels, dtype, "            ")
        lines.append(f"            out[i, j] = g[i] * ({pr.doprint(op.grad)})")
        lines += ["            colsum[j] += out[i, j]"] * bool(grad_colsum)
    if loss_total:
        lines.append(f"    total[()] = acc / np.{dtype}(N)" if loss_total == "mean" else "    total[()] = acc")
    if grad_colsum == "mean":
        lines.append(f"    colsum /= np.{dtype}(N)")
    return lines + [""]
