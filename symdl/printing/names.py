"""Graph node ids as mathematical symbols: ``0.W`` → W₁, ``2.xWt`` → h₁W₂ᵀ, ``loss`` → ℓ.

Node ids (``0.W``, ``1.tanh``, ``2.xWt``, ``4.block.0.bias``) are identifiers of the IR;
a printed derivation names the same values the way a course does.  Layers are numbered
from 1 in the order of the modules that hold parameters; a module without parameters
(an activation, a pooling) takes the number of the layer before it, so the MLP
``x → 0 (dense) → 1 (tanh) → 2 (dense)`` reads ``z₁ = xW₁ᵀ + b₁``, ``h₁ = tanh(z₁)``,
``z₂ = h₁W₂ᵀ + b₂``.  A product node is named by its factors when they are known.
"""
from __future__ import annotations

import re

import sympy as sp

from ..ops import OPS, ElementwiseOp

__all__ = ["NodeNames"]

_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
#: suffixes that hold (a view of) a parameter: their module is a numbered layer
_PARAM_SUFFIXES = {"W", "Wt", "b", "weight", "bias", "Wmat", "bcol", "wcol"}
#: suffixes of a normalization's nodes: there ``weight``/``bias`` are γ and β
_NORM_SUFFIXES = {"running_mean", "xhat", "norm", "lnorm", "batch_mean", "scaled", "affine"}
#: (text, LaTeX) letters; ``{k}`` is the layer number
_LETTERS = {"W": ("W", "W"), "Wmat": ("W", "W"), "weight": ("W", "W"), "b": ("b", "b"),
            "bias": ("b", "b"), "bcol": ("b", "b"), "z": ("z", "z"), "wcol": ("γ", r"\gamma")}
_NORM_LETTERS = {"weight": ("γ", r"\gamma"), "bias": ("β", r"\beta"), "wcol": ("γ", r"\gamma"),
                 "bcol": ("β", r"\beta")}
_PLAIN = {"x": ("x", "x"), "y": ("y", "y"), "L": ("L", "L"), "loss": ("ℓ", r"\ell")}


def _key(prefix: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in prefix.split("."))


class NodeNames:
    """Printed names of the nodes ``ids``; ``args`` maps a product node to its two factors.

    Examples
    --------
    >>> names = NodeNames(["0.W", "0.Wt", "0.z", "1.tanh", "2.W", "2.xWt"],
    ...                   {"2.xWt": ("1.tanh", "2.Wt")})
    >>> [names.text(n) for n in ("0.W", "0.Wt", "1.tanh", "2.xWt", "loss")]
    ['W₁', 'W₁ᵀ', 'h₁', 'h₁W₂ᵀ', 'ℓ']
    >>> names.latex("2.xWt")
    'h_{1} W_{2}^{\\\\top}'
    """

    def __init__(self, ids, args=None):
        self.args = dict(args or {})
        ids = set(ids) | {a for pair in self.args.values() for a in pair}
        by_prefix: dict = {}
        for n in ids:
            prefix, _, suffix = n.rpartition(".")
            if prefix:
                by_prefix.setdefault(prefix, set()).add(suffix)
        self.norm = {p for p, s in by_prefix.items() if s & _NORM_SUFFIXES}
        self.layer, k = {}, 0
        for p in sorted(by_prefix, key=_key):
            if by_prefix[p] & _PARAM_SUFFIXES:
                k += 1
            self.layer[p] = max(k, 1)

    # ------------------------------------------------------------ names
    def _parts(self, node: str, latex: bool):
        """``(letter, subscript, transposed)`` or a whole name (a str) for ``node``."""
        i = int(latex)
        if node in _PLAIN:
            return _PLAIN[node][i]
        prefix, _, suffix = node.rpartition(".")
        if not prefix:  # a helper node such as mul3: name and number
            m = re.fullmatch(r"([A-Za-z_]+?)_?(\d+)", node)
            if m:
                return (self._word(m.group(1), latex), m.group(2), False)
            return self._word(node, latex)
        k = str(self.layer.get(prefix, 1))
        if suffix == "xWt" or suffix == "WX":
            pair = self.args.get(node)
            if pair:
                a, b = (self.latex(p) for p in pair) if latex else (self.text(p) for p in pair)
                return f"{a} {b}" if latex else f"{a}{b}"
            return ("u", k, False)
        if suffix == "Wt":
            return (_LETTERS["W"][i], k, True)
        if prefix in self.norm and suffix in _NORM_LETTERS:
            return (_NORM_LETTERS[suffix][i], k, False)
        if suffix in _LETTERS:
            return (_LETTERS[suffix][i], k, False)
        op = OPS.get(suffix)
        if isinstance(op, ElementwiseOp) and op.arity == 1:  # an activation's output
            return ("h", k, False)
        return (self._word(suffix, latex), k, False)

    @staticmethod
    def _word(w: str, latex: bool) -> str:
        if not latex:
            return w
        return w if len(w) == 1 else r"\mathrm{%s}" % w.replace("_", r"\_")

    def text(self, node: str) -> str:
        """Unicode: ``W₁``, ``W₁ᵀ``, ``h₁W₂ᵀ``, ``conv₁``."""
        p = self._parts(node, False)
        if isinstance(p, str):
            return p
        letter, k, t = p
        return letter + k.translate(_SUB) + ("ᵀ" if t else "")

    def latex(self, node: str) -> str:
        """LaTeX: ``W_{1}``, ``W_{1}^{\\top}``, ``h_{1} W_{2}^{\\top}``."""
        p = self._parts(node, True)
        if isinstance(p, str):
            return p
        letter, k, t = p
        return f"{letter}_{{{k}}}" + (r"^{\top}" if t else "")

    def transposed_text(self, node: str) -> str:
        """The transpose of ``node``'s value: ``(W₂ᵀ)ᵀ`` is printed ``W₂``."""
        p = self._parts(node, False)
        if not isinstance(p, str) and p[2]:
            return self.text(node)[:-1]
        name = self.text(node)
        return name + "ᵀ" if isinstance(p, str) or len(p[0]) == 1 else f"({name})ᵀ"

    def transposed_latex(self, node: str) -> str:
        p = self._parts(node, True)
        if not isinstance(p, str) and p[2]:
            return self.latex(node)[:-len(r"^{\top}")]
        name = self.latex(node)
        return (r"\left(%s\right)^{\top}" % name) if " " in name else name + r"^{\top}"

    def is_product(self, node: str) -> bool:
        """Whether ``node`` prints as a product of two names (``h₁W₂ᵀ``)."""
        return node.rpartition(".")[2] in ("xWt", "WX") and node in self.args

    def symbols(self, expr, latex: bool = False) -> dict:
        """``{symbol: printed name}`` for the node symbols in ``expr`` (printer settings)."""
        if not isinstance(expr, sp.Basic):
            return {}
        return {s: (self.latex(s.name) if latex else self.text(s.name))
                for s in expr.free_symbols if isinstance(s, sp.Symbol)}
