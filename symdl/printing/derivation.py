"""Derivations rendered four ways: text, LaTeX (``align*``), Markdown and JSON.

Each renderer takes a :class:`symdl.derive.steps.Derivation` and returns a
string, the same bytes every time for the same derivation.
"""
from __future__ import annotations

import json

import sympy as sp

from ..derive.steps import Derivation
from .latex import latex
from .text import text

__all__ = ["FORMATS", "render", "derivation_text", "derivation_latex", "derivation_markdown",
           "derivation_dict", "derivation_json"]


def derivation_text(dv: Derivation) -> str:
    """Unicode text, one equality per line, the rule in brackets beside it.

    Examples
    --------
    >>> from symdl.derive.steps import derive
    >>> print(derivation_text(derive("sigmoid(z)")))
    d/dz[σ(z)]
      = σ(z)·(1 − σ(z))   [known op]
    """
    return text(dv)


def derivation_latex(dv: Derivation) -> str:
    r"""An ``align*`` block, the rule named beside each step with ``\text{...}``."""
    return latex(dv)


def derivation_markdown(dv: Derivation) -> str:
    """Markdown with ``$...$`` maths: the problem, a numbered list of steps, the result."""
    lines = [f"#### Derivative of ${latex(dv.input)}$ with respect to ${latex(dv.wrt)}$", "",
             f"$${latex(dv.start)}$$", ""]
    for i, s in enumerate(dv.steps, 1):
        sub = f", $u = {latex(s.u)}$" if s.u is not None else ""
        check = f"verified: {s.method}" if s.verified else "NOT VERIFIED"
        lines.append(f"{i}. _{_md_escape(s.rule)}_{sub}: $= {latex(s.after)}$  ")
        lines.append(f"   {_md_escape(s.note)}; {check}" if s.note else f"   {check}")
    check = (f"checked against SymPy's diff: {dv.method}" if dv.verified
             else "NOT VERIFIED against SymPy's diff")
    lines += ["", f"Result: ${latex(dv.result)}$ ({check})"]
    return "\n".join(lines) + "\n"


def _md_escape(s: str) -> str:
    return "".join("\\" + c if c in "\\`*_[]<>|$" else c for c in s)


def derivation_dict(dv: Derivation) -> dict:
    """Plain data: for machines, SymPy source (``input``, ``result``, ``expr``, ``u``:
    ``sympy.sympify`` reads them back); for readers, ``*_text`` and ``*_latex`` from
    symdl's printers; the checks."""
    return {
        "input": sp.sstr(dv.input),
        "input_text": text(dv.input),
        "input_latex": latex(dv.input),
        "wrt": dv.wrt.name,
        "result": sp.sstr(dv.result),
        "result_latex": latex(dv.result),
        "result_text": text(dv.result),
        "verified": bool(dv.verified),
        "method": dv.method,
        "steps": [{
            "rule": s.rule,
            "expr": sp.sstr(s.after),
            "latex": latex(s.after),
            "text": text(s.after),
            "note": s.note,
            "u": None if s.u is None else sp.sstr(s.u),
            "u_text": None if s.u is None else text(s.u),
            "verified": bool(s.verified),
            "method": s.method,
        } for s in dv.steps],
    }


def derivation_json(dv: Derivation) -> str:
    """:func:`derivation_dict` as indented JSON (UTF-8 text, not ASCII-escaped)."""
    return json.dumps(derivation_dict(dv), indent=2, ensure_ascii=False) + "\n"


FORMATS = {"text": derivation_text, "latex": derivation_latex,
           "markdown": derivation_markdown, "json": derivation_json}


def render(dv: Derivation, fmt: str = "text") -> str:
    """``dv`` in one of :data:`FORMATS` (``text``, ``latex``, ``markdown``, ``json``)."""
    try:
        return FORMATS[fmt](dv)
    except KeyError:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})") from None
