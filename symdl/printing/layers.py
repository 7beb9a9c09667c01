"""Printing layer derivations (:mod:`symdl.derive.layers`) as text and LaTeX."""
from __future__ import annotations

from .latex import latex_text

__all__ = ["layer_latex", "layer_text"]

_FORMS = {"index": "index notation", "matrix": "matrix form (im2col)"}


def layer_text(d) -> str:
    out = [f"{d.name}: {d.forward}"]
    out += [f"  {rule}: {text}" for rule, text in d.steps]
    width = max(len(r.lhs) for r in d.rules)
    form = ""
    for r in d.rules:
        if r.form != form:
            form = r.form
            out.append(f"  {_FORMS.get(form, form)}:")
        out.append(f"  {r.lhs:<{width}} = {r.rhs}   ({r.shape})")
    mark = "verified" if d.verified else "NOT verified"
    out.append(f"  {mark}: {d.method}")
    return "\n".join(out) + "\n"


def layer_latex(d) -> str:
    lines = [r"\begin{align*}", d.forward_latex.replace("=", "&=", 1) + r" \\"]
    form = ""
    for r in d.rules:
        if r.form != form:
            form = r.form
            lines.append(r"\intertext{" + latex_text(_FORMS.get(form, form)) + ":}")
        lines.append(f"{r.lhs_latex} &= {r.rhs_latex} \\\\")
    lines[-1] = lines[-1].removesuffix(r" \\")
    mark = r"\checkmark" if d.verified else r"\times"
    return "\n".join(lines + [r"\end{align*}", f"% {mark} {d.method}"]) + "\n"
