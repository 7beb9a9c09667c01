"""Kernel source text for the row-op family: one generator for every :class:`RowOp`.

A row kernel takes ``a_z`` viewed as ``(rows, C)`` and the op's operands
(targets as class indices ``(rows,)`` or dense ``(rows, C)``, a mask, an
upstream gradient per element or per row), reduces the declared statistics
over each row in order and writes the output (per row or per element).  The
VJP of a row op is a row op too, so the same function renders it; given the
forward op as ``value``, it renders the pair (forward value and VJP from one
pass over the statistics), and in a serial pair the batch total of a per-row
value and the VJP's sum over rows (the last bias gradient) on the way.

Two flavours: ``"numba"`` (loops, rows in ``prange`` when ``parallel``) and
``"numpy"`` (whole-array reference code under ``np.errstate(all="ignore")``:
exp(-1000) underflows to 0 silently, as in the loops and in PyTorch).
"""
from __future__ import annotations

import sympy as sp

from ..ops.registry import G
from ..ops.rowops import C, RowOp, g_j, k_j, t_j, u_j, z_j
from .printers import ArrayPrinter, ScalarPrinter
from .render import decorator

__all__ = ["row_kernel", "row_signature", "gathers_one", "uses"]

_ARG = {"target": "a_t", "mask": "a_k", "upstream": "a_g", "upstream_row": "a_g",
        "upstream2": "a_u"}


class _RowScalar(ScalarPrinter):
    def _print_NegativeInfinity(self, e):
        return f"np.{self.dtype}(-np.inf)"

    def _print_Infinity(self, e):
        return f"np.{self.dtype}(np.inf)"


class _RowArray(ArrayPrinter):
    _print_NegativeInfinity = _RowScalar._print_NegativeInfinity
    _print_Infinity = _RowScalar._print_Infinity


def row_signature(op: RowOp, value: RowOp | None = None, total=None, colsum=None) -> list:
    """Argument names of the kernel, in order (parameters last)."""
    args = ["a_z"] + [_ARG[k] for k in op.operands] + ["a_val"] * (value is not None) + ["a_out"]
    args += ["a_total"] * bool(total) + ["a_colsum"] * bool(colsum)
    return args + [p.name for p in op.params]


def gathers_one(op: RowOp, how: str, labels: str) -> bool:
    """A ``dot`` statistic over targets given as indices reads one entry where
    the targets are one-hot (unsmoothed): ``0·inf`` elsewhere must not count."""
    return how == "dot" and labels == "index" and "target" in op.operands


def row_kernel(name: str, op: RowOp, dtype: str, labels: str = "index", flavor: str = "numba",
               parallel: bool = True, comment=(), value: RowOp | None = None,
               total: str | None = None, colsum: str | None = None) -> list:
    """Source lines of ``name(<row_signature>)`` computing ``op`` on each row.

    ``labels`` (``"index"`` or ``"dense"``) is the layout of a target operand.
    With ``value`` (the op whose VJP ``op`` is) the kernel also writes
    ``value``'s output into ``a_val``.  In a serial numba kernel ``total``
    (``"sum"``/``"mean"``) adds ``a_total`` (0-d) for the batch total of a
    per-row ``value``, and ``colsum`` adds ``a_colsum`` (C,) for ``op``'s
    output summed (or averaged) over rows, in the order of a row-by-row
    reduction.
    """
    if (total or colsum) and (parallel or flavor != "numba"):
        raise ValueError("batch totals and column sums are serial numba loop features")
    if total and (value is None or value.output != "row"):
        raise ValueError("a batch total needs a per-row value")
    outs = ([(value, "a_val")] if value is not None else []) + [(op, "a_out")]
    head = [f"# {c}" for c in comment]
    sig = ", ".join(row_signature(op, value, total, colsum))
    if flavor == "numba":
        body = _numba(op, dtype, labels, parallel, outs, total, colsum)
        return head + [decorator(parallel, reduces=True), f"def {name}({sig}):"] + body + [""]
    return head + [f"def {name}({sig}):"] + _numpy(op, dtype, labels, outs) + [""]


def _casts(op: RowOp, dtype: str) -> list:
    return [f"    {p.name} = np.{dtype}({p.name})" for p in op.params]


def uses(exprs, sym) -> bool:
    """Whether any of ``exprs`` reads ``sym`` (a kernel loads only what it reads)."""
    return any(sym in sp.sympify(e).free_symbols for e in exprs)


# ------------------------------------------------------------------ numba
def _loads(op: RowOp, exprs, dtype: str, labels: str, pad: str, at: str = "j") -> list:
    """Per-element symbols the expressions read, at column ``at`` of row ``i``."""
    c = f"np.{dtype}"
    lines = [f"{pad}{z_j.name} = a_z[i, {at}]"] * uses(exprs, z_j)
    if "target" in op.operands and uses(exprs, t_j):
        base = f"a_t[i, {at}]"
        if labels == "index":
            base = f"({c}(1.0) if {at} == a_t[i] else {c}(0.0))"
        if op.smoothing:
            base = f"({c}(1.0) - epsilon) * {base} + epsilon / {c}(nc)"
        lines.append(f"{pad}{t_j.name} = {base}")
    lines += [f"{pad}{k_j.name} = a_k[i, {at}]"] * ("mask" in op.operands and uses(exprs, k_j))
    lines += [f"{pad}{g_j.name} = a_g[i, {at}]"] * ("upstream" in op.operands and uses(exprs, g_j))
    lines += [f"{pad}{u_j.name} = a_u[i, {at}]"] * ("upstream2" in op.operands
                                                    and uses(exprs, u_j))
    return lines


#: an element term kept from its statistic's pass for the later passes
W_J = sp.Symbol("w_j", real=True)


def _kept_term(op, labels, outs):
    """``(stat index, term, buffer)``: the first summed per-element term with a
    function call that a later pass reads again (softmax's ``exp(z_j − m)``), kept in the last
    per-element output's buffer, which its own pass then overwrites: one
    exp per element instead of one per pass.  None where nothing repeats."""
    buf = [arg for o, arg in outs if o.output != "row"]
    if not buf:
        return None
    for k, (_, how, elem) in enumerate(op.stats):
        if how != "sum" or gathers_one(op, how, labels) or not sp.sympify(elem).atoms(
                sp.Function):  # only a term with a function call (exp, log) is worth a store
            continue
        later = [e for _, _, e in op.stats[k + 1:]] + [o.out for o, _ in outs]
        gathered = [e for _, h, e in op.stats[k + 1:] if gathers_one(op, h, labels)]
        if any(sp.sympify(e).has(elem) for e in later) and not any(
                sp.sympify(e).has(elem) for e in gathered):
            return k, elem, buf[-1]
    return None


def _numba(op, dtype, labels, parallel, outs, total, colsum) -> list:
    pr = _RowScalar(dtype)
    c = f"np.{dtype}"
    kept = _kept_term(op, labels, outs)
    k_at, term, buf = kept if kept is not None else (len(op.stats), None, None)

    def later(e):  # an expression of a pass after the kept term's: read it back
        return sp.sympify(e).xreplace({term: W_J}) if term is not None else e

    def reload(exprs, pad):
        return [f"{pad}{W_J.name} = {buf}[i, j]"] * (term is not None and uses(exprs, W_J))

    lines = _casts(op, dtype) + ["    nr, nc = a_z.shape"]
    everything = [e for _, _, e in op.stats] + [o.out for o, _ in outs]
    lines += [f"    {C.name} = {c}(nc)"] * uses(everything, C)
    lines += [f"    acc = {c}(0.0)"] * bool(total) + [f"    a_colsum[:] = {c}(0.0)"] * bool(colsum)
    lines.append(f"    for i in {'prange' if parallel else 'range'}(nr):")
    if "upstream_row" in op.operands:
        lines.append(f"        {G.name} = a_g[i]")
    for at, (sym, how, elem) in enumerate(op.stats):
        elem = later(elem) if at > k_at else elem
        pad = "        "
        if gathers_one(op, how, labels):
            pad += "    " * op.smoothing
            lines += [f"        if epsilon == {c}(0.0):"] * op.smoothing
            lines += _loads(op, [elem], dtype, labels, pad, "a_t[i]")
            lines.append(f"{pad}{sym.name} = {pr.doprint(elem)}")
            if not op.smoothing:
                continue
            lines.append("        else:")
        lines.append(f"{pad}{sym.name} = {c}({'-np.inf' if how == 'max' else '0.0'})")
        e = t_j * elem if how == "dot" else elem
        lines += [f"{pad}for j in range(nc):"] + _loads(op, [e], dtype, labels, pad + "    ")
        lines += reload([e], pad + "    ")
        if at == k_at:
            lines += [f"{pad}    {W_J.name} = {pr.doprint(e)}", f"{pad}    {buf}[i, j] = {W_J.name}"]
            e = W_J
        v = pr.doprint(e)
        lines.append(f"{pad}    {sym.name} = max({sym.name}, {v})" if how == "max"
                     else f"{pad}    {sym.name} += {v}")
    elem_outs = []
    for o, arg in outs:
        if o.output == "row":
            lines.append(f"        {arg}[i] = {pr.doprint(o.out)}")
            lines += [f"        acc += {arg}[i]"] * bool(total)
        else:
            elem_outs.append((o, arg))
    if elem_outs:
        exprs = [later(o.out) for o, _ in elem_outs]
        lines += ["        for j in range(nc):"]
        lines += _loads(op, exprs, dtype, labels, " " * 12)
        lines += reload(exprs, " " * 12)
        lines += [f"            {arg}[i, j] = {pr.doprint(e)}" for e, (o, arg) in zip(exprs, elem_outs)]
        lines += ["            a_colsum[j] += a_out[i, j]"] * bool(colsum)
    if total:
        lines.append(f"    a_total[()] = acc{f' / {c}(nr)' * (total == 'mean')}")
    lines += [f"    a_colsum /= {c}(nr)"] * (colsum == "mean")
    return lines


# ------------------------------------------------------------------ numpy
def _numpy(op, dtype, labels, outs) -> list:
    pr = _RowArray(dtype)
    c = f"np.{dtype}"
    pad = "        "
    lines = _casts(op, dtype) + ["    with np.errstate(all='ignore'):", f"{pad}nr, nc = a_z.shape",
                                 f"{pad}{C.name} = {c}(nc)", f"{pad}{z_j.name} = a_z"]
    if "target" in op.operands:
        t = f"(np.arange(nc)[None, :] == a_t[:, None]).astype({c})" if labels == "index" else "a_t"
        lines.append(f"{pad}{t_j.name} = {t}")
        if op.smoothing:
            lines.append(f"{pad}{t_j.name} = ({c}(1.0) - epsilon) * {t_j.name} + epsilon / C")
    lines += [f"{pad}{k_j.name} = a_k"] * ("mask" in op.operands)
    lines += [f"{pad}{g_j.name} = a_g"] * ("upstream" in op.operands)
    lines += [f"{pad}{u_j.name} = a_u"] * ("upstream2" in op.operands)
    lines += [f"{pad}{G.name} = a_g[:, None]"] * ("upstream_row" in op.operands)
    for sym, how, elem in op.stats:
        full = f"np.broadcast_to({pr.doprint(elem)}, (nr, nc))"
        if how == "dot":
            v = f"np.sum({pr.doprint(t_j * elem)}, axis=1, keepdims=True)"
            pick = f"np.take_along_axis({full}, a_t[:, None], axis=1)"
            if gathers_one(op, how, labels):
                v = f"np.where(epsilon == {c}(0.0), {pick}, {v})" if op.smoothing else pick
        else:
            v = f"np.{'max' if how == 'max' else 'sum'}({full}, axis=1, keepdims=True)"
        lines.append(f"{pad}{sym.name} = {v}")
    for o, arg in outs:
        if o.output == "row":
            lines.append(f"{pad}{arg}[...] = np.broadcast_to({pr.doprint(o.out)}, (nr, 1))[:, 0]")
        else:
            lines.append(f"{pad}{arg}[...] = {pr.doprint(o.out)}")
    return lines
