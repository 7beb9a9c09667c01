"""Gate equations of the recurrent cells, printed from the graph each cell builds.

:func:`cell_equations` builds one step of a cell (with a previous state) on a
1×1 instance (one input, one hidden unit, one sample) and evaluates it with
:func:`symdl.derive.graph_eval.evaluate`: every node from its own declaration,
so a gate's ``slice`` of the stacked weights picks that gate's row, which on
this instance is one symbol standing for the gate's whole block (PyTorch's
``W_ii``, ``W_hf``, ``b_in``…).  The named nodes of the cell (``i``, ``f``,
``g``, ``o``, ``c``, ``h``; GRU ``r``, ``z``, ``n``, ``h``) stand as symbols
in later equations.  The symdl printers render the expressions with the
``arrays`` setting: ``W x`` for a block times a vector, ``⊙`` between arrays.
What prints is what trains: the GRU's update reads ``h_t = z_t ⊙ (h_{t−1} −
n_t) + n_t``, the graph's form of PyTorch's ``(1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}``.
(The study notes' GRU letters differ: there ``z`` often names the gate that
keeps the *new* candidate, so their ``z`` is PyTorch's ``1 − z``.)
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..derive.graph_eval import evaluate
from ..errors import UsageError
from ..graph import Graph

__all__ = ["cell_equations", "cell_rows", "GRU_NOTE"]

GRU_NOTE = ("PyTorch's z keeps the old state: h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}; notes that "
            "write h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ n_t call PyTorch's 1 − z their z")
#: the cell's named nodes printed as rows, in order (``step.<node>``, printed ``<letter>_t``)
_ROWS = {"rnn": (("h", "h"),),
         "lstm": (("i", "i"), ("f", "f"), ("g", "g"), ("o", "o"), ("c", "c"), ("h", "h")),
         "gru": (("r", "r"), ("zg", "z"), ("n", "n"), ("h", "h"))}
#: printed order: a sort key prefix per role (SymPy orders a sum's terms and a product's
#: factors by symbol name): the input path before the hidden one, then biases; in a
#: product, a weight block before its vector and a gate before what it multiplies
_RANK = {"W_i": "a0", "x": "a9", "W_h": "b0", "h_prev": "b9", "b_i": "c0", "b_h": "c1",
         "gate": "d0", "value": "e0", "c_prev": "e9"}
_GATE_LETTERS = set("ifozr")


def _sym(rank: str, shown: str) -> sp.Symbol:
    return sp.Symbol(f"{_RANK[rank]}:{shown}", real=True)


def _cell(kind: str, nonlinearity: str):
    from .recurrent import GATES, GRUCell, LSTMCell, RNNCell
    if kind not in GATES:
        raise UsageError(f"cell_equations: kind must be rnn, lstm or gru, got {kind!r}")
    cell = {"rnn": lambda: RNNCell(1, 1, nonlinearity=nonlinearity),
            "lstm": lambda: LSTMCell(1, 1), "gru": lambda: GRUCell(1, 1)}[kind]()
    g = Graph()
    x = g.input("x_t", ("N", 1))
    state = [g.input("h_prev", ("N", 1))] + ([g.input("c_prev", ("N", 1))] if kind == "lstm"
                                             else [])
    cell.build_state(g, x, state if kind == "lstm" else state[0])
    gates = GATES[kind] if kind != "rnn" else ("h",)

    def col(rank, letter):   # one symbol per gate: the rows of a stacked (G·H, ·) leaf
        return np.array([_sym(rank, f"{letter}{k}") for k in gates], dtype=object)
    feeds = {"x_t": np.array([[_sym("x", "x_t")]], dtype=object),
             "h_prev": np.array([[_sym("h_prev", "h_{t-1}")]], dtype=object),
             "c_prev": np.array([[_sym("c_prev", "c_{t-1}")]], dtype=object),
             "weight_ih": col("W_i", "W_i").reshape(-1, 1),
             "weight_hh": col("W_h", "W_h").reshape(-1, 1),
             "bias_ih": col("b_i", "b_i"), "bias_hh": col("b_h", "b_h")}
    rows = {f"step.{node}": _sym("gate" if letter in _GATE_LETTERS else "value", f"{letter}_t")
            for node, letter in _ROWS[kind]}
    values = evaluate(g, {k: v for k, v in feeds.items() if k in g.nx},
                      names={n: np.array([[s]], dtype=object) for n, s in rows.items()})
    matrices = frozenset(s for k in ("weight_ih", "weight_hh") for s in feeds[k].flat)
    return [(s, values[n][0, 0]) for n, s in rows.items()], matrices


def cell_rows(kind: str, fmt: str = "text", nonlinearity: str = "tanh") -> list:
    """``[(lhs, rhs), ...]``: one step of an ``"rnn"``, ``"lstm"`` or ``"gru"`` cell, each
    named node of its graph as text or LaTeX (the symdl printers, ``arrays`` setting)."""
    from ..printing import latex, text
    if fmt not in ("text", "latex"):
        raise UsageError(f"cell_equations: fmt must be text or latex, got {fmt!r}")
    rows, matrices = _cell(kind, nonlinearity)
    syms = {s for lhs, rhs in rows for s in rhs.free_symbols | {lhs}}
    shown = {s: sp.Symbol(s.name.partition(":")[2], real=True) for s in syms}
    if fmt == "text":
        names = {s: d.name for s, d in shown.items()}
        pr = lambda e: text(e, symbol_names=names, arrays=True, matrices=matrices)  # noqa: E731
    else:
        names = {s: latex(d) for s, d in shown.items()}
        pr = lambda e: latex(e, symbol_names=names, arrays=True,  # noqa: E731
                             matrices=matrices)
    return [(names[lhs], pr(rhs)) for lhs, rhs in rows]


def cell_equations(kind: str, fmt: str = "text", nonlinearity: str = "tanh") -> str:
    """The equations of one step of an ``"rnn"``, ``"lstm"`` or ``"gru"`` cell, as text
    or LaTeX (``align*`` rows), printed from the graph the cell builds.

    >>> print(cell_equations("rnn"), end="")
    h_t = tanh(W_ih x_t + W_hh h_{t-1} + b_ih + b_hh)
    """
    rows = cell_rows(kind, fmt, nonlinearity)
    if fmt == "text":
        return "".join(f"{lhs} = {rhs}\n" for lhs, rhs in rows)
    return "\\begin{align*}\n" + " \\\\\n".join(f"{lhs} &= {rhs}" for lhs, rhs in rows) + \
        "\n\\end{align*}\n"
