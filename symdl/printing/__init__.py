"""Printers: SymPy expressions and symdl derivations as text, LaTeX, Markdown, JSON.

The printers subclass SymPy's (``_print_<Class>`` methods): op calls print by
name (``σ(z)``, ``\\operatorname{softplus}``), ``Heaviside`` and 0/1
``Piecewise`` as indicators ``𝟙[x > 0]``, Greek symbol names as Greek.
Importing this package lets :class:`symdl.derive.steps.Derivation` render
itself (``str()``, ``_repr_latex_`` in Jupyter).
"""
from ..derive.rules import register_expr_printer
from ..derive.steps import register_renderer
from .derivation import (FORMATS, derivation_dict, derivation_json, derivation_latex,
                         derivation_markdown, derivation_text, render)
from .latex import SymdlLatexPrinter, latex
from .text import TextPrinter, text

for _fmt, _fn in FORMATS.items():
    register_renderer(_fmt, _fn)
from . import notebook as _notebook  # noqa: E402,F401  (reprs, Jupyter LaTeX and SVG)
register_expr_printer(text)  # the notes of derivation steps show expressions as text
register_expr_printer(latex, "latex")

__all__ = ["SymdlLatexPrinter", "TextPrinter", "latex", "text", "render", "FORMATS",
           "derivation_text", "derivation_latex", "derivation_markdown", "derivation_dict",
           "derivation_json"]
