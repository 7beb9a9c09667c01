"""Printing layer derivations (:mod:`symdl.derive.layers`) as text and LaTeX."""
from __future__ import annotations


def layer_text(d) -> str:
    out = [f"{d.name}: {d.forward}"]
    out += [f"  {rule}: {text}" for rule, text in d.steps]
    width = max(len(r.lhs) for r in d.rules)
    out += [f"  {r.lhs:<{width}} = {r.rhs}   ({r.shape})" for r in d.rules]
    mark = "verified" if d.verified else "NOT verified"
    out.append(f"  {mark}: {d.method}")
    return "\n".join(out) + "\n"


def layer_latex(d) -> str:
    lines = [r"\begin{align*}", d.forward_latex.replace("=", "&=", 1) + r" \\"]
    lines += [f"{r.lhs_latex} &= {r.rhs_latex} \\\\" for r in d.rules]
    lines[-1] = lines[-1].removesuffix(r" \\")
    mark = r"\checkmark" if d.verified else r"\times"
    return "\n".join(lines + [r"\end{align*}", f"% {mark} {d.method}"]) + "\n"
