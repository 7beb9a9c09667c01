"""Display hooks: objects of a low layer render through functions a higher layer registers.

A derivation or a graph is data in a low layer; its printers (LaTeX, text) and its drawing
(SVG) live above it and must not be imported from below.  A class that inherits
:class:`Displayable` asks this table for its ``__repr__`` and Jupyter's ``_repr_latex_``,
``_repr_svg_`` and ``_repr_html_``; :mod:`symdl.printing.notebook` fills the table when the
package is imported.  Nothing registered: the plain object repr and no rich output.
"""
from __future__ import annotations

__all__ = ["Displayable", "register", "render", "KINDS"]

#: what a renderer may produce
KINDS = ("repr", "latex", "svg", "html")
_TABLE: dict = {}


def register(kind: str, cls: type, fn) -> None:
    """Render instances of ``cls`` (and subclasses) as ``kind`` by ``fn(obj) -> str``."""
    if kind not in KINDS:
        raise ValueError(f"unknown display kind {kind!r} (known: {', '.join(KINDS)})")
    _TABLE[kind, cls] = fn


def render(obj, kind: str):
    """``obj`` rendered as ``kind`` by the renderer of its nearest class, or None."""
    for cls in type(obj).__mro__:
        fn = _TABLE.get((kind, cls))
        if fn is not None:
            return fn(obj)
    return None


class Displayable:
    """Mixin: the repr and Jupyter's rich outputs come from :func:`render`.

    A dataclass that inherits it must say ``repr=False`` (its generated repr would win).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        out = render(self, "repr")
        return out if out is not None else object.__repr__(self)

    def _repr_latex_(self):
        return render(self, "latex")

    def _repr_svg_(self):
        return render(self, "svg")

    def _repr_html_(self):
        return render(self, "html")
