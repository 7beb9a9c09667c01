"""Notebook and REPL display of symdl's objects: one LaTeX style, short readable reprs.

Every derivation (scalar, layer, chain rule, optimizer rule, schedule) shows in Jupyter as one
``align*`` block (:func:`display_latex`): a bold title row when the printer names one, the
printer's equations, and its legend or verification note as text rows, so MathJax renders it
whole (no ``%`` comments, no prose outside maths, no ``\\intertext``).  The printers themselves
are called unchanged.  Graphs and gradient graphs show as pictures (:mod:`symdl.draw`).
Importing this module fills :mod:`symdl.display`'s table; :mod:`symdl.printing` imports it.
"""
from __future__ import annotations

import re

from .. import draw
from ..derive.chains import GraphDerivation
from ..derive.higher import HVPGraph
from ..derive.layers import LayerDerivation
from ..derive.reverse import GradGraph
from ..derive.steps import Derivation
from ..display import register
from ..errors import UsageError
from ..graph import Graph
from .chains import derivation_latex as chain_latex
from .layers import layer_latex
from .text import text

__all__ = ["display_latex", "prose_latex", "short", "derivation_repr", "layer_repr",
           "chain_repr", "graph_repr", "grad_graph_repr", "history_repr", "history_html",
           "rule_repr", "module_repr"]

_MACRO = re.compile(r"\\[A-Za-z]+(?:\{[^{}]*\})*|\\.")
_ENV = re.compile(r"\\(begin|end)\{(align\*?|aligned|equation\*?)\}")


def _text(s: str) -> str:
    s = s.replace("\\", "").replace("{", r"\{").replace("}", r"\}")
    return re.sub(r"([&%#])", r"\\\1", s)


def prose_latex(s: str) -> str:
    """A line of LaTeX prose as maths: ``$…$`` and macros stay, plain words go in ``\\text``.

    >>> prose_latex(r"where $\\alpha = 0.1$ (\\texttt{lr}).")
    '\\\\text{where }\\\\alpha = 0.1\\\\text{ (}\\\\texttt{lr}\\\\text{).}'
    """
    out = []
    for i, part in enumerate(s.split("$")):
        if i % 2:
            out.append(part)
            continue
        pos = 0
        for m in _MACRO.finditer(part):
            if m.start() > pos:
                out.append(r"\text{" + _text(part[pos:m.start()]) + "}")
            out.append(m.group(0) + ("\\ " if part[m.end():m.end() + 1] == " " else ""))
            pos = m.end() + (part[m.end():m.end() + 1] == " ")
        if pos < len(part):
            out.append(r"\text{" + _text(part[pos:]) + "}")
    return "".join(out)


def display_latex(fragment: str) -> str:
    """A printer's LaTeX (``%`` title or note lines, ``align*`` blocks, prose) as one ``align*``."""
    rows, inside = [], False
    for raw in fragment.strip().splitlines():
        line = raw.strip()
        if not line:
            continue
        env = _ENV.fullmatch(line)
        if env:
            inside = env.group(1) == "begin"
            continue
        if line.startswith("%"):  # a printer's title (first) or note line
            note = line.lstrip("% ").strip()
            title = not rows and "\\" not in note
            rows.append((r"\textbf{" + _text(note) + "}" if title else prose_latex(note), "note"))
            continue
        if inside:
            m = re.fullmatch(r"\\intertext\{(.*)\}", line)
            rows.append((prose_latex(m.group(1)), "note") if m else (line.removesuffix(r"\\")
                                                                      .rstrip(), "eq"))
        else:
            rows.append((prose_latex(line), "note"))
    body = " \\\\\n".join(r if kind == "eq" else "&" + r for r, kind in rows)
    return "\\begin{align*}\n" + body + "\n\\end{align*}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def short(s: str, width: int = 72) -> str:
    """``s`` on one line, cut to ``width`` characters with an ellipsis."""
    s = " ".join(s.split())
    return s if len(s) <= width else s[:width - 1] + "…"


# ------------------------------------------------------------------ reprs
def derivation_repr(dv) -> str:
    mark = "verified" if dv.all_verified else "not verified"
    return (f"<Derivation d/d{text(dv.wrt)} {short(text(dv.input), 40)} = "
            f"{short(text(dv.result), 60)}; {_plural(len(dv.steps), 'step')}, {mark}>")


def layer_repr(d) -> str:
    rules = "; ".join(f"{r.lhs} = {r.rhs}" for r in d.rules)
    return f"<LayerDerivation {d.name}: {short(d.forward, 50)}; {short(rules, 90)}>"


def chain_repr(gd) -> str:
    paths = sum(len(c) for c in gd.chains.values())
    params = ", ".join(gd.chains)
    first = next((p, c[0]) for p, c in gd.chains.items() if c) if paths else None
    chain = short(f"∂{gd.loss}/∂{first[0]} = " + " · ".join(
        f"∂{f.node}/∂{f.arg}" for f in first[1].factors), 70) + "; " if first else ""
    return (f"<GraphDerivation {chain}{len(gd.chains)} parameters "
            f"({short(params, 60)}), {paths} paths>")


def graph_repr(g) -> str:
    sinks = [n for n in g.order() if g.nx.out_degree(n) == 0]
    return (f"<Graph {len(g)} nodes; inputs {', '.join(g.inputs()) or '-'}; "
            f"{len(g.params())} params; outputs {short(', '.join(sinks), 60) or '-'}>")


def grad_graph_repr(gg) -> str:
    pairs = ", ".join(f"{w}→{d}" for w, d in gg.grads.items())
    return f"<GradGraph of {gg.loss}: {short(pairs, 80)}; {len(gg.graph)} nodes>"


def rule_repr(rd) -> str:
    update = [s for s in rd.text_lines if s.startswith("θ")] or [rd.doc]
    return (f"<RuleDerivation {rd.name} ({rd.doc}): {short(update[-1], 70)}; "
            f"{len(rd.text_lines)} lines>")


def _num(v) -> str:
    return "–" if v is None else f"{v:.4g}"


def history_repr(h) -> str:
    d = h.as_dict()
    parts = [f"{k} {_num(d[k][0])} → {_num(d[k][-1])}" for k in
             ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
             if d.get(k) and any(v is not None for v in d[k])]
    return f"<History {h.epochs} epochs" + (": " + ", ".join(parts) if parts else "") + ">"


def history_html(h) -> str:
    """The history as an HTML table, one row per epoch (columns without values left out)."""
    d = h.as_dict()
    cols = [k for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")
            if d.get(k) and any(v is not None for v in d[k])]
    head = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in cols)
    rows = ["<tr><td>" + str(i + 1) + "</td>" + "".join(
        f"<td>{_num(d[k][i]) if i < len(d[k]) else ''}</td>" for k in cols) + "</tr>"
        for i in range(h.epochs)]
    return ("<table class=\"symdl-history\">\n<thead><tr><th>epoch</th>" + head
            + "</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>")


# ------------------------------------------------------------------ registrations
register("repr", Derivation, derivation_repr)
register("latex", Derivation, lambda dv: display_latex(dv.render("latex")))
register("repr", LayerDerivation, layer_repr)
register("latex", LayerDerivation, lambda d: display_latex(layer_latex(d)))
register("repr", GraphDerivation, chain_repr)
register("latex", GraphDerivation, lambda gd: display_latex(chain_latex(gd)))
def _svg(graph):
    """The drawing, or no SVG output at all where nothing can draw (no matplotlib, no dot)."""
    try:
        return draw.svg(graph)
    except UsageError:
        return None


register("repr", Graph, graph_repr)
register("svg", Graph, _svg)
register("repr", GradGraph, grad_graph_repr)
register("svg", GradGraph, _svg)
register("repr", HVPGraph, lambda h: f"<HVPGraph of {h.loss}: H·v for {', '.join(h.wrt)}; "
         f"{len(h.graph)} nodes>")
register("svg", HVPGraph, lambda h: _svg(h.graph))


def module_repr(name: str, parts, width: int = 88) -> str:
    """``Name(a, b)`` on one line when it fits in ``width``, else one part a line (PyTorch's
    shape): ``(i): part`` for a list of parts, ``key: part`` for ``(key, part)`` pairs."""
    parts = list(parts)
    flat = [p if isinstance(p, str) else f"{p[0]}={p[1]}" for p in parts]
    one = f"{name}(" + ", ".join(flat) + ")"
    if len(one) <= width and "\n" not in one:
        return one
    rows = [f"({i}): {p}" if isinstance(p, str) else f"({p[0]}): {p[1]}"
            for i, p in enumerate(parts)]
    return f"{name}(\n" + "\n".join("  " + r.replace("\n", "\n  ") for r in rows) + "\n)"
