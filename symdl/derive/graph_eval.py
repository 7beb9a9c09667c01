"""A graph evaluated on explicit instances: NumPy object arrays of SymPy expressions.

Every node is computed from its declaration, the same one that trains: an
elementwise op as a call of its op function (``σ(z)``, printed by name) or,
for plain arithmetic, its SymPy expression; a structural op by its own
``impl`` (``matmul``, ``slice``, ``permute``… run on object arrays); a row op
by its ``plain`` definition, row by row.  The dispatch is on the kind of
declaration, never on an op's name.  Layer derivations
(:mod:`symdl.derive.seq_layers`) check their stated rules against
``sympy.diff`` of these values; :mod:`symdl.nn.equations` prints a cell's
equations from them.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..graph import LEAVES, Graph
from ..ops import OPS, ElementwiseOp, RowOp
from .opfuncs import op_function, op_names

__all__ = ["evaluate", "symbols"]


def symbols(name: str, shape, **assumptions) -> np.ndarray:
    """An object array of real symbols ``name<i><j>…`` (``name`` alone for one entry)."""
    out = np.empty(shape, dtype=object)
    one = int(np.prod(shape)) == 1
    for idx in np.ndindex(*shape):
        out[idx] = sp.Symbol(name if one else name + "".join(map(str, idx)), real=True,
                             **assumptions)
    return out


def _elementwise(opdef: ElementwiseOp, params: dict):
    vals = opdef.param_values(params)
    if opdef.name in op_names():   # a named op: a call that prints as σ(z), tanh(z)
        f = op_function(opdef.name)
        extra = [sp.Float(vals[s.name], 15) for s in opdef.params]
        return lambda *a: f(*a, *extra)
    sub = {s: sp.Float(vals[s.name], 15) for s in opdef.params}
    expr = opdef.expr.xreplace(sub)   # plain arithmetic: x + y, x·y

    def apply(*a):
        return expr.xreplace(dict(zip(opdef.inputs, a)))
    return apply


def _rowop(opdef: RowOp, params: dict):
    vals = {s: sp.Float(v, 15) for s, v in zip(opdef.params, opdef.param_values(params).values())}

    def apply(*arrays):
        z = arrays[0]
        ops = [np.broadcast_to(a, z.shape) for a in arrays[1:]]
        rows = z.reshape(-1, z.shape[-1])
        outs = []
        for r in range(rows.shape[0]):
            row = opdef.plain(list(rows[r]), *[list(o.reshape(-1, z.shape[-1])[r]) for o in ops])
            outs.append(row)
        out = np.empty((rows.shape[0], len(outs[0]) if isinstance(outs[0], list) else 1),
                       dtype=object)
        for r, row in enumerate(outs):
            out[r] = [sp.sympify(e).xreplace(vals) for e in (row if isinstance(row, list)
                                                             else [row])]
        return out.reshape(z.shape if opdef.output == "element" else z.shape[:-1])
    return apply


def evaluate(g: Graph, feeds: dict, outputs=None, names=None) -> dict:
    """Every node's value on the object arrays ``feeds`` (one per leaf, by node id).

    ``names`` maps a node to an array of symbols that stand for it downstream: its
    value is computed and kept in the result, and later nodes see the symbols
    (``c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t`` rather than every gate spelled out).
    ``outputs`` limits the work to those nodes' ancestors.
    """
    names = dict(names or {})
    order = g.subgraph(outputs).order() if outputs is not None else g.order()
    values, seen = {}, {}
    for n in order:
        d = g.node(n)
        if d["op"] in LEAVES:
            if n not in feeds:
                raise KeyError(f"evaluate: no value for the leaf {n}")
            values[n] = np.asarray(feeds[n], dtype=object)
        else:
            opdef = OPS[d["op"]]
            args = [seen[a] for a in d["args"]]
            if isinstance(opdef, ElementwiseOp):
                f = np.frompyfunc(_elementwise(opdef, d["params"]), len(args), 1)
                values[n] = np.asarray(f(*args), dtype=object)
            elif isinstance(opdef, RowOp):
                values[n] = _rowop(opdef, d["params"])(*[np.asarray(a, dtype=object)
                                                         for a in args])
            else:   # structural: its own impl, on object arrays
                values[n] = np.asarray(opdef.impl(*args, **d["params"]), dtype=object)
        if n in names:
            seen[n] = np.asarray(names[n], dtype=object)
        else:
            seen[n] = values[n]
    return values
