"""Printing graph derivations (chain rule per parameter) and worked backprop.

Formats: ``text`` (Unicode), ``latex`` (``align*``), ``markdown`` and
``json``.  Node ids are printed as the symbols a course uses (``0.W`` → W₁,
``2.xWt`` → h₁W₂ᵀ; :class:`symdl.printing.names.NodeNames`), every expression
goes through symdl's text and LaTeX printers, and every line carries its shape.
Deterministic for equal input.
"""
from __future__ import annotations

import json

import numpy as np

from ..ops import OPS
from .latex import latex, latex_text
from .names import NodeNames
from .text import text

__all__ = ["NodeNames", "derivation_names", "graph_names", "factor_text", "factor_latex",
           "derivation_text", "derivation_latex", "derivation_markdown", "derivation_json",
           "backprop_text", "backprop_json", "backprop_latex"]

_HOW_TEXT = {"max": "maxⱼ ", "sum": "Σⱼ ", "dot": "Σⱼ tⱼ·"}
_HOW_LATEX = {"max": r"\max_{j} ", "sum": r"\sum_{j} ", "dot": r"\sum_{j} t_{j} "}


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _shape_latex(shape) -> str:
    return r" \times ".join(str(d) for d in shape) if shape else r"\text{scalar}"


def _axes(operand: str) -> str:
    """``"(0, 2, 3)"`` → ``"0, 2, 3"`` (axes as words, not a tuple)."""
    return operand.strip("()").rstrip(",").replace(",)", ")")


def derivation_names(gd, extra=()) -> NodeNames:
    """Names for every node of ``gd``'s chains; products named by their factors."""
    ids, args = set(extra), {}
    for chains in gd.chains.values():
        for ch in chains:
            ids.update(ch.path)
            for f in ch.factors:
                ids.update((f.node, f.arg))
                if f.kind == "left":
                    args[f.node] = (f.operand, f.arg)
                elif f.kind == "right":
                    args[f.node] = (f.arg, f.operand)
    return NodeNames(ids, args)


def graph_names(g) -> NodeNames:
    """Names for every node of graph ``g``: layers numbered over the whole model, so
    ``explain --param 2.W`` still calls it W₂."""
    order = g.order()
    return NodeNames(order, {n: tuple(g.args(n)) for n in order if len(g.args(n)) == 2})


def _names_of(f, names):
    """The names given, or names from this factor alone (pass :func:`graph_names` or
    :func:`derivation_names` for layer numbers that agree across factors)."""
    if names is not None:
        return names
    pair = {"left": (f.operand, f.arg), "right": (f.arg, f.operand)}.get(f.kind)
    return NodeNames([f.node, f.arg], {f.node: pair} if pair else None)


def _stats(f, tex: bool) -> str:
    op = OPS.get(f.op)
    stats = getattr(op, "stats", ()) + getattr(op, "vjp_stats", ())
    how = _HOW_LATEX if tex else _HOW_TEXT
    show = latex if tex else text
    return "; ".join(f"{show(s)} = {how[k]}{show(e)}" for s, k, e in stats)


def factor_text(f, names: NodeNames | None = None) -> str:
    """The local factor ``∂node/∂arg`` in words and symbols (Unicode)."""
    names = _names_of(f, names)
    if f.kind == "elementwise":
        body = text(f.expr, symbol_names=names.symbols(f.expr))
        if getattr(f.expr, "is_Add", False):
            body = f"({body})"
        out = "1 (passes the gradient through)" if f.expr == 1 else f"⊙ {body}"
        return out + (f", summed over the broadcast axes {_axes(f.operand)}" if f.operand else "")
    if f.kind == "right":
        return f"· {names.transposed_text(f.operand)}  (right-multiply the upstream gradient)"
    if f.kind == "left":
        return f"{names.transposed_text(f.operand)} ·  (left-multiply the upstream gradient)"
    if f.kind == "transpose":
        return "(·)ᵀ  (transpose)"
    if f.kind == "linear":
        return f"{f.operand}  (transpose of {f.op})"
    if f.kind in ("rowloss", "rowop"):
        where = _stats(f, False)
        where = f", where {where}" if where else ""
        if f.kind == "rowloss":
            target = names.text(f.operand.split(",")[0]) if f.operand else "the target"
            return (f"per row, ∂ℓ/∂zⱼ = {text(f.expr)}{where}  (t = one-hot of {target}; "
                    "SymPy-checked claim)")
        return f"per row, ∂L/∂zⱼ = {text(f.expr)}{where}  (g = upstream; SymPy-checked claim)"
    axes = "all axes" if f.operand == "None" else f"axes {_axes(f.operand)}"
    return f"{f.op} over {axes}: {f.note or 'its transpose'}"


def factor_latex(f, names: NodeNames | None = None) -> str:
    """The local factor ``∂node/∂arg`` in LaTeX (no shape; the derivation adds it)."""
    names = _names_of(f, names)
    if f.kind == "elementwise":
        tex = latex(f.expr, symbol_names=names.symbols(f.expr, latex=True))
        if getattr(f.expr, "is_Add", False):
            tex = r"\left(" + tex + r"\right)"
        body = "1" if f.expr == 1 else r"\odot\, " + tex
        return body + (r" \text{, summed over the broadcast axes}" if f.operand else "")
    if f.kind == "right":
        return r"\cdot\, " + names.transposed_latex(f.operand)
    if f.kind == "left":
        return names.transposed_latex(f.operand) + r" \cdot"
    if f.kind == "transpose":
        return r"(\cdot)^{\top}"
    if f.kind == "linear":
        return r"\text{" + latex_text(f"{f.operand} (transpose of {f.op})") + "}"
    if f.kind in ("rowloss", "rowop"):
        where = _stats(f, True)
        return latex(f.expr) + (r",\quad " + where.replace("; ", r",\ ") if where else "")
    return r"\text{" + latex_text(f"{f.op} (broadcast back)") + "}"


def _d(names: NodeNames, a: str, b: str) -> str:
    def t(n):
        return f"({names.text(n)})" if names.is_product(n) else names.text(n)
    return f"∂{t(a)}/∂{t(b)}"


def _frac(names: NodeNames, a: str, b: str) -> str:
    def t(n):
        return r"\left(%s\right)" % names.latex(n) if names.is_product(n) else names.latex(n)
    return r"\frac{\partial " + t(a) + r"}{\partial " + t(b) + "}"


def derivation_text(gd, names: NodeNames | None = None) -> str:
    names = names or derivation_names(gd)
    out = []
    for p, chains in gd.chains.items():
        out.append(f"∂{names.text(gd.loss)}/∂{names.text(p)}  shape {_shape(gd.shapes[p])}")
        for k, ch in enumerate(chains):
            head = "  path" if len(chains) == 1 else f"  path {k + 1} of {len(chains)} (summed)"
            out.append(f"{head}: {' → '.join(names.text(n) for n in ch.path)}")
            out.append("  " + _d(names, gd.loss, p) + " = " + " · ".join(
                _d(names, f.node, f.arg) for f in ch.factors))
            width = max(len(_d(names, f.node, f.arg)) for f in ch.factors)
            for f in ch.factors:
                out.append(f"    {_d(names, f.node, f.arg):<{width}} = "
                           f"{factor_text(f, names)}   {_shape(f.shape)}")
        out.append("")
    return "\n".join(out)


def derivation_latex(gd, names: NodeNames | None = None) -> str:
    """``align*``: per parameter the chain (three factors a line) and each factor with
    its shape, ``\\in \\mathbb{R}^{N \\times 2}``."""
    names = names or derivation_names(gd)
    lines = [r"\begin{align*}"]
    for p, chains in gd.chains.items():
        for ch in chains:
            fracs = [_frac(names, f.node, f.arg) for f in ch.factors]
            prod = r" \\ &\qquad \cdot ".join(r" \cdot ".join(fracs[k:k + 3])
                                                for k in range(0, len(fracs), 3))
            lines.append(_frac(names, gd.loss, p) + r" &= " + prod + r" &&\in \mathbb{R}^{"
                         + _shape_latex(gd.shapes[p]) + r"} \\")
            for f in ch.factors:
                lines.append(_frac(names, f.node, f.arg) + r" &= " + factor_latex(f, names)
                             + r" &&\in \mathbb{R}^{" + _shape_latex(f.shape) + r"} \\")
    lines[-1] = lines[-1].removesuffix(r" \\")
    return "\n".join(lines + [r"\end{align*}"]) + "\n"


def _md(s: str) -> str:
    return s.replace("|", r"\|")


def derivation_markdown(gd, names: NodeNames | None = None) -> str:
    names = names or derivation_names(gd)
    out = []
    for p, chains in gd.chains.items():
        out.append(f"### ∂{names.text(gd.loss)}/∂{names.text(p)} {_shape(gd.shapes[p])}\n")
        for ch in chains:
            out.append(" → ".join(names.text(n) for n in ch.path) + "\n")
            out.append("| factor | local gradient | shape |\n|---|---|---|")
            out += [f"| {_d(names, f.node, f.arg)} | {_md(factor_text(f, names))} | "
                    f"{_shape(f.shape)} |" for f in ch.factors]
            out.append("")
    return "\n".join(out)


def derivation_json(gd, names: NodeNames | None = None) -> str:
    """Machine fields (node ids, op names) and human ones (``symbol``, ``text``, ``latex``)."""
    names = names or derivation_names(gd)
    data = {"loss": gd.loss, "parameters": {
        p: {"symbol": names.text(p), "symbol_latex": names.latex(p),
            "shape": list(gd.shapes[p]), "paths": [
                {"path": list(ch.path), "factors": [
                    {"node": f.node, "arg": f.arg, "op": f.op, "kind": f.kind,
                     "factor": _d(names, f.node, f.arg), "text": factor_text(f, names),
                     "latex": factor_latex(f, names), "shape": [str(d) for d in f.shape]}
                    for f in ch.factors]}
                for ch in chains]} for p, chains in gd.chains.items()}}
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


# ------------------------------------------------------------ worked backprop
def _arr(v) -> str:
    if v is None:
        return "—"
    a = np.asarray(v)
    if a.ndim == 0:
        return f"{float(a):.6g}".replace("-", "−")
    s = np.array2string(a, separator=", ", max_line_width=10**6,
                        formatter={"float_kind": lambda v: f"{v:.4g}"}).replace("\n", "")
    return s.replace("-", "−")


def _row_names(rows, names) -> NodeNames:
    return names if names is not None else NodeNames([r.node for r in rows])


def backprop_text(rows, names: NodeNames | None = None) -> str:
    """One line per node: its symbol, op, value and upstream gradient ∂L/∂node."""
    names = _row_names(rows, names)
    sym = [names.text(r.node) for r in rows]
    width = max(len(s) for s in sym)
    opw = max(len(r.op) for r in rows)
    out = [f"{'node':<{width}}  {'op':<{opw}}  value  |  upstream gradient ∂L/∂node"]
    out += [f"{s:<{width}}  {r.op:<{opw}}  {_arr(r.value)}  |  {_arr(r.upstream)}"
            for s, r in zip(sym, rows)]
    return "\n".join(out) + "\n"


def backprop_json(rows, names: NodeNames | None = None) -> str:
    names = _row_names(rows, names)

    def plain(v):
        return None if v is None else np.asarray(v).tolist()
    return json.dumps([{"node": r.node, "symbol": names.text(r.node), "op": r.op,
                        "value": plain(r.value), "upstream": plain(r.upstream)} for r in rows],
                      indent=1, ensure_ascii=False) + "\n"


def backprop_latex(rows, names: NodeNames | None = None) -> str:
    names = _row_names(rows, names)
    lines = [r"\begin{tabular}{lll}", r"node & value & $\partial L/\partial\,$node \\ \hline"]

    def cell(v):
        return "--" if v is None else f"${_arr(v).replace('−', '-')}$"
    for r in rows:
        lines.append(f"${names.latex(r.node)}$ & {cell(r.value)} & {cell(r.upstream)} \\\\")
    return "\n".join(lines + [r"\end{tabular}"]) + "\n"
