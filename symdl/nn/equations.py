"""Gate equations of the recurrent cells, read back from the graph each cell builds.

:func:`cell_equations` builds one step of a cell (with a previous state) and
folds its nodes into equations: a ``slice`` of the stacked gate rows picks the
gate's blocks of ``W_ih``, ``W_hh`` and the biases (PyTorch's notation
``W_ii``, ``W_hf``, ``b_in``…), ``matmul(a, Wᵀ)`` prints as ``W a``, and each
gate node the cell names (``i``, ``f``, ``g``, ``o``, ``c``, ``h``; GRU ``r``,
``z``, ``n``, ``h``) becomes one line.  What prints is what trains: the GRU's
update reads ``h_t = n_t + z_t ⊙ (h_{t−1} − n_t)``, the graph's form of
PyTorch's ``(1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}``.  (The study notes' GRU letters
differ: there ``z`` often names the gate that keeps the *new* candidate, so
their ``z`` is PyTorch's ``1 − z``.)
"""
from __future__ import annotations

from ..errors import UsageError
from ..graph import Graph

__all__ = ["cell_equations"]

_GATE_NODES = {"rnn": ("h",), "lstm": ("i", "f", "g", "o", "c", "h"),
               "gru": ("r", "zg", "n", "h")}
_LEAVES = {"x_t": "x_t", "h_prev": "h_{t-1}", "c_prev": "c_{t-1}", "weight_ih": "W_i{g}",
           "weight_hh": "W_h{g}", "bias_ih": "b_i{g}", "bias_hh": "b_h{g}"}
_TEXT = {"sigmoid": "σ", "tanh": "tanh", "relu": "relu", "mul": " ⊙ ", "sub": " − "}
_LATEX = {"sigmoid": r"\sigma", "tanh": r"\tanh", "relu": r"\operatorname{relu}",
          "mul": r" \odot ", "sub": " - "}


def cell_equations(kind: str, fmt: str = "text", nonlinearity: str = "tanh") -> str:
    """The equations of one step of an ``"rnn"``, ``"lstm"`` or ``"gru"`` cell, as
    text or LaTeX (``align*`` rows), folded from the graph the cell builds."""
    from .recurrent import GATES, GRUCell, LSTMCell, RNNCell
    if kind not in GATES or fmt not in ("text", "latex"):
        raise UsageError(f"cell_equations: kind must be rnn, lstm or gru and fmt text or latex, "
                         f"got {kind!r}, {fmt!r}")
    H = 2
    cell = {"rnn": lambda: RNNCell(3, H, nonlinearity=nonlinearity),
            "lstm": lambda: LSTMCell(3, H), "gru": lambda: GRUCell(3, H)}[kind]()
    g = Graph()
    x = g.input("x_t", ("N", 3))
    state = [g.input("h_prev", ("N", H))] + ([g.input("c_prev", ("N", H))] if kind == "lstm"
                                             else [])
    cell.build_state(g, x, state if kind == "lstm" else state[0])
    table = _TEXT if fmt == "text" else _LATEX
    letters = GATES[kind] if kind != "rnn" else ("h",)
    terms: dict = {}
    named = {f"step.{n}": _symbol(n, fmt) for n in _GATE_NODES[kind]}
    rows = []
    for n in g.order():
        op, args = g.op(n), g.args(n)
        if op in ("input", "param"):
            terms[n] = [_LEAVES[n]]
            continue
        a = [terms[m] for m in args]
        if op == "transpose":
            t = a[0]
        elif op == "matmul":  # a Wᵀ, printed W a
            t = [f"{a[1][0]} {_group(a[0])}"]
        elif op == "add":
            t = a[0] + a[1]
        elif op == "slice":
            letter = letters[g.node(n)["params"]["begin"][-1] // H]
            t = [s.replace("{g}", letter) for s in a[0]]
        elif op in ("mul", "sub"):
            t = [table[op].join(_group(s) for s in a)]
        elif op in table:
            t = [f"{table[op]}({' + '.join(a[0])})"]
        else:
            raise UsageError(f"cell_equations: no printed form for {op} (node {n})")
        terms[n] = t
        if n in named:
            rows.append((named[n], " + ".join(t).replace("{g}", "h")))  # RNN: W_ih, W_hh
            terms[n] = [named[n]]
    order = list(named.values())
    rows.sort(key=lambda r: order.index(r[0]))
    if fmt == "text":
        return "\n".join(f"{lhs} = {rhs}" for lhs, rhs in rows) + "\n"
    tex = [(lhs, _tex(rhs)) for lhs, rhs in rows]
    return "\\begin{align*}\n" + " \\\\\n".join(f"{lhs} &= {rhs}" for lhs, rhs in tex) + \
        "\n\\end{align*}\n"


def _symbol(name: str, fmt: str) -> str:
    return f"{ {'zg': 'z'}.get(name, name)}_t"


def _group(terms: list) -> str:
    """Terms as one factor: parenthesized when a sum or difference shows at the top level."""
    s = " + ".join(terms)
    depth, top = 0, False
    for k, ch in enumerate(s):
        depth += (ch == "(") - (ch == ")")
        top = top or (depth == 0 and s[k:k + 3] in (" + ", " − ", " - "))
    return f"({s})" if top else s


def _tex(s: str) -> str:
    """Subscripts of two letters in braces (``W_ii`` -> ``W_{ii}``), ``t-1`` kept."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "_" and i + 1 < len(s) and s[i + 1] != "{":
            j = i + 1
            while j < len(s) and s[j].isalnum():
                j += 1
            out.append("_{" + s[i + 1:j] + "}")
            i = j
        else:
            out.append(s[i])
            i += 1
    return "".join(out)
