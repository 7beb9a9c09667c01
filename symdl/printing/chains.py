"""Printing graph derivations (chain rule per parameter) and worked backprop.

Formats: ``text`` (Unicode), ``latex`` (``align*``), ``markdown`` and
``json``.  Deterministic for equal input.
"""
from __future__ import annotations

import json

import numpy as np
import sympy as sp


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _tex_name(n: str) -> str:
    return r"\mathtt{" + n.replace("_", r"\_") + "}"


def _names(expr) -> dict:
    return {s: _tex_name(s.name) for s in expr.free_symbols} if isinstance(expr, sp.Basic) else {}


def factor_text(f) -> str:
    if f.kind == "elementwise":
        text = "1 (passes the gradient through)" if f.expr == 1 else f"⊙ {sp.sstr(f.expr)}"
        return text + (f", summed over the broadcast axes {f.operand}" if f.operand else "")
    if f.kind == "right":
        return f"· {f.operand}ᵀ  (right-multiply the upstream gradient)"
    if f.kind == "left":
        return f"{f.operand}ᵀ ·  (left-multiply the upstream gradient)"
    if f.kind == "transpose":
        return "(·)ᵀ  (transpose)"
    if f.kind == "linear":
        return f"{f.operand}  (transpose of {f.op})"
    if f.kind == "rowloss":
        where = f", where {f.note}" if f.note else ""
        return f"per row j: {sp.sstr(f.expr)}{where}  (t = target from {f.operand}; SymPy-checked claim)"
    if f.kind == "rowop":
        where = f", where {f.note}" if f.note else ""
        return f"per row, ∂L/∂z_j = {sp.sstr(f.expr)}{where}  (g = upstream; SymPy-checked claim)"
    axes = "all axes" if f.operand == "None" else f"axes {f.operand}"
    return f"{f.op} over {axes}: {f.note or 'its transpose'}"


def factor_latex(f) -> str:
    if f.kind == "elementwise":
        tex = sp.latex(f.expr, symbol_names=_names(f.expr))
        if isinstance(f.expr, sp.Add):
            tex = r"\left(" + tex + r"\right)"
        body = "1" if f.expr == 1 else r"\odot\, " + tex
        return body + (r" \text{, summed over the broadcast axes}" if f.operand else "")
    if f.kind == "right":
        return r"\cdot\, " + _tex_name(f.operand) + r"^{\top}"
    if f.kind == "left":
        return _tex_name(f.operand) + r"^{\top} \cdot"
    if f.kind == "transpose":
        return r"(\cdot)^{\top}"
    if f.kind == "linear":
        return r"\text{" + f.operand + r" (transpose of " + f.op.replace("_", r"\_") + ")}"
    if f.kind in ("rowloss", "rowop"):
        return sp.latex(f.expr)
    return r"\text{" + f.op + r" (broadcast back)}"


def _d(a: str, b: str) -> str:
    return f"∂{a}/∂{b}"


def derivation_text(gd) -> str:
    out = []
    for p, chains in gd.chains.items():
        out.append(f"∂{gd.loss}/∂{p}  shape {_shape(gd.shapes[p])}")
        for k, ch in enumerate(chains):
            head = "  path" if len(chains) == 1 else f"  path {k + 1} of {len(chains)} (summed)"
            out.append(f"{head}: {' → '.join(ch.path)}")
            out.append("  " + _d(gd.loss, p) + " = " + " · ".join(
                _d(f.node, f.arg) for f in ch.factors))
            width = max(len(_d(f.node, f.arg)) for f in ch.factors)
            for f in ch.factors:
                out.append(f"    {_d(f.node, f.arg):<{width}} = {factor_text(f)}   {_shape(f.shape)}")
        out.append("")
    return "\n".join(out)


def derivation_latex(gd) -> str:
    lines = [r"\begin{align*}"]
    for p, chains in gd.chains.items():
        for ch in chains:
            fracs = [r"\frac{\partial " + _tex_name(f.node) + r"}{\partial " + _tex_name(f.arg) + "}"
                     for f in ch.factors]
            # three factors a line, so long chains stay on the page
            prod = r" \\ &\qquad \cdot ".join(r" \cdot ".join(fracs[k:k + 3])
                                                for k in range(0, len(fracs), 3))
            lines.append(r"\frac{\partial " + _tex_name(gd.loss) + r"}{\partial " + _tex_name(p)
                         + r"} &= " + prod + r" \\")
            for f in ch.factors:
                lines.append(r"\frac{\partial " + _tex_name(f.node) + r"}{\partial " + _tex_name(f.arg)
                             + r"} &= " + factor_latex(f) + r" \\")
    lines[-1] = lines[-1].removesuffix(r" \\")
    return "\n".join(lines + [r"\end{align*}"]) + "\n"


def derivation_markdown(gd) -> str:
    out = []
    for p, chains in gd.chains.items():
        out.append(f"### ∂{gd.loss}/∂{p} {_shape(gd.shapes[p])}\n")
        for ch in chains:
            out.append("`" + " → ".join(ch.path) + "`\n")
            out.append("| factor | local gradient | shape |\n|---|---|---|")
            out += [f"| {_d(f.node, f.arg)} | {factor_text(f)} | {_shape(f.shape)} |" for f in ch.factors]
            out.append("")
    return "\n".join(out)


def derivation_json(gd) -> str:
    data = {"loss": gd.loss, "parameters": {
        p: {"shape": list(gd.shapes[p]), "paths": [
            {"path": list(ch.path), "factors": [
                {"node": f.node, "arg": f.arg, "op": f.op, "kind": f.kind, "text": factor_text(f),
                 "latex": factor_latex(f), "shape": [str(d) for d in f.shape]} for f in ch.factors]}
            for ch in chains]} for p, chains in gd.chains.items()}}
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def _arr(v) -> str:
    if v is None:
        return "—"
    a = np.asarray(v)
    if a.ndim == 0:
        return f"{float(a):.6g}"
    return np.array2string(a, separator=", ", max_line_width=10**6,
                           formatter={"float_kind": lambda v: f"{v:.4g}"}).replace("\n", "")


def backprop_text(rows) -> str:
    width = max(len(r.node) for r in rows)
    opw = max(len(r.op) for r in rows)
    out = [f"{'node':<{width}}  {'op':<{opw}}  value  |  upstream gradient ∂L/∂node"]
    out += [f"{r.node:<{width}}  {r.op:<{opw}}  {_arr(r.value)}  |  {_arr(r.upstream)}" for r in rows]
    return "\n".join(out) + "\n"


def backprop_json(rows) -> str:
    def plain(v):
        return None if v is None else np.asarray(v).tolist()
    return json.dumps([{"node": r.node, "op": r.op, "value": plain(r.value),
                        "upstream": plain(r.upstream)} for r in rows], indent=1) + "\n"


def backprop_latex(rows) -> str:
    lines = [r"\begin{tabular}{lll}", r"node & value & $\partial L/\partial\,$node \\ \hline"]
    def cell(v):
        return "--" if v is None else f"${_arr(v)}$"
    for r in rows:
        lines.append(f"${_tex_name(r.node)}$ & {cell(r.value)} & {cell(r.upstream)} \\\\")
    return "\n".join(lines + [r"\end{tabular}"]) + "\n"
