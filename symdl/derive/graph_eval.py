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

from functools import lru_cache

import numpy as np
import sympy as sp

from ..graph import LEAVES, Graph
from ..ops import OPS, ElementwiseOp, RowOp
from .opfuncs import op_function, op_names

__all__ = ["evaluate", "jvp", "symbols"]


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


def _numbers(a: np.ndarray, digits: int, first_order=()) -> np.ndarray:
    """Entries without symbols as Floats of ``digits`` digits (σ(0.3) is a number, not a
    call); with ``first_order`` symbols, each entry as its first-order expansion in them at 0
    (``e(0) + Σ_k s_k ∂e/∂s_k(0)``, each ``∂`` SymPy's)."""
    out = np.empty(a.shape, dtype=object)
    zero = {s: 0 for s in first_order}
    for idx, e in np.ndenumerate(a):
        e = sp.sympify(e)
        if first_order and not e.is_number:
            e = e.xreplace(zero).evalf(digits) + sp.Add(*(
                s * sp.diff(e, s).xreplace(zero).evalf(digits) for s in first_order))
        out[idx] = e.evalf(digits) if e.is_number else e
    return out


def evaluate(g: Graph, feeds: dict, outputs=None, names=None, digits=None,
             first_order=()) -> dict:
    """Every node's value on the object arrays ``feeds`` (one per leaf, by node id).

    ``names`` maps a node to an array of symbols that stand for it downstream: its
    value is computed and kept in the result, and later nodes see the symbols
    (``c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t`` rather than every gate spelled out).
    ``outputs`` limits the work to those nodes' ancestors.  With ``digits``, entries that
    hold no symbol are evaluated to Floats of that many digits as they are computed (an
    instance with one symbol left free stays small); with ``first_order`` (symbols; needs
    ``digits``) every node is kept to first order in them: derivatives at 0 are then exact,
    each entry's from SymPy's ``diff`` of what its node computes.
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
            if digits is not None:
                values[n] = _numbers(values[n], digits, tuple(first_order))
        if n in names:
            seen[n] = np.asarray(names[n], dtype=object)
        else:
            seen[n] = values[n]
    return values


# ------------------------------------------------------------ forward mode, float64
class _Dual:
    """``v + d·ε`` with ``ε² = 0``: what a structural op's own ``impl`` computes on
    object arrays of these is its exact first-order expansion (matmul is bilinear)."""

    __slots__ = ("v", "d")

    def __init__(self, v, d=0.0):
        self.v, self.d = v, d

    def __add__(self, o):
        return _Dual(self.v + o.v, self.d + o.d) if isinstance(o, _Dual) else _Dual(self.v + o,
                                                                                     self.d)
    __radd__ = __add__

    def __mul__(self, o):
        if isinstance(o, _Dual):
            return _Dual(self.v * o.v, self.v * o.d + self.d * o.v)
        return _Dual(self.v * o, self.d * o)
    __rmul__ = __mul__

    def __neg__(self):
        return _Dual(-self.v, -self.d)

    def __sub__(self, o):
        return self + (-o)

    def __rsub__(self, o):
        return (-self) + o

    def __truediv__(self, o):
        return _Dual(self.v / o, self.d / o)


@lru_cache(maxsize=None)
def _numeric(name: str, i: int):
    """The declaration of op ``name`` (``i`` < 0) or SymPy's diff of it in input ``i``, as a
    NumPy function of the inputs and params."""
    opdef = OPS[name]
    return sp.lambdify((*opdef.inputs, *opdef.params), opdef.expr if i < 0 else opdef.diff(i),
                       "numpy")


def _elementwise_jvp(opdef: ElementwiseOp, params: dict, vals, tans):
    extra = list(opdef.param_values(params).values())
    out = np.asarray(_numeric(opdef.name, -1)(*vals, *extra), dtype=float)
    d = np.zeros(np.broadcast_shapes(*(np.shape(v) for v in vals)))
    for i, t in enumerate(tans):   # SymPy's diff of the declaration, at the point
        d = d + np.asarray(_numeric(opdef.name, i)(*vals, *extra)) * t
    return np.broadcast_to(out, d.shape).copy(), d


@lru_cache(maxsize=None)
def _row_numeric(name: str, C: int, operands: tuple, params: tuple):
    """A row op's ``plain`` definition on a row of ``C`` symbols (``operands``: the other
    arguments' rows, numbers) and SymPy's Jacobian of it, as NumPy functions of the row."""
    opdef = OPS[name]
    zs = sp.symbols(f"z0:{C}", real=True)
    out = opdef.plain(list(zs), *[list(o) for o in operands])
    out = [sp.sympify(e).xreplace(dict(zip(opdef.params, params)))
           for e in (out if isinstance(out, list) else [out])]
    jac = [[sp.diff(e, z) for z in zs] for e in out]
    return sp.lambdify([zs], out, "numpy"), sp.lambdify([zs], jac, "numpy")


def _rowop_jvp(opdef: RowOp, params: dict, vals, tans):
    z, dz = np.asarray(vals[0], float), np.asarray(tans[0], float)
    C = z.shape[-1]
    ops = [np.broadcast_to(a, z.shape).reshape(-1, C) for a in vals[1:]]
    pv = tuple(opdef.param_values(params).values())
    rows, drows = [], []
    for r, (zr, dr) in enumerate(zip(z.reshape(-1, C), dz.reshape(-1, C))):
        f, jac = _row_numeric(opdef.name, C, tuple(tuple(float(v) for v in o[r]) for o in ops),
                              pv)
        rows.append(np.asarray(f(zr), dtype=float))
        drows.append(np.asarray(jac(zr), dtype=float) @ dr)
    shape = z.shape if opdef.output == "element" else z.shape[:-1]
    return np.array(rows).reshape(shape), np.array(drows).reshape(shape)


def jvp(g: Graph, point: dict, tangent: dict, outputs=None) -> tuple:
    """``(values, tangents)`` of every node, float64: forward mode at ``point`` along
    ``tangent`` (leaves missing there stand still).  Each elementwise op's derivative is
    SymPy's ``diff`` of its declaration, a row op's that of its ``plain`` definition, and a
    structural op runs its own ``impl`` on dual numbers: a reference that shares nothing
    with reverse mode's stated forms and transposes."""
    order = g.subgraph(outputs).order() if outputs is not None else g.order()
    V, D = {}, {}
    for n in order:
        d = g.node(n)
        if d["op"] in LEAVES:
            V[n] = np.asarray(point[n], dtype=float)
            D[n] = np.asarray(tangent.get(n, np.zeros_like(V[n])), dtype=float)
            continue
        opdef = OPS[d["op"]]
        vals, tans = [V[a] for a in d["args"]], [D[a] for a in d["args"]]
        if isinstance(opdef, ElementwiseOp):
            V[n], D[n] = _elementwise_jvp(opdef, d["params"], vals, tans)
        elif isinstance(opdef, RowOp):
            V[n], D[n] = _rowop_jvp(opdef, d["params"], vals, tans)
        else:
            skip = getattr(opdef, "index_args", ())
            args = [v if i in skip else np.frompyfunc(_Dual, 2, 1)(v, t)
                    for i, (v, t) in enumerate(zip(vals, tans))]
            out = np.asarray(opdef.impl(*args, **d["params"]), dtype=object)
            V[n] = np.frompyfunc(lambda e: e.v if isinstance(e, _Dual) else e, 1, 1)(
                out).astype(float)
            D[n] = np.frompyfunc(lambda e: e.d if isinstance(e, _Dual) else 0.0, 1, 1)(
                out).astype(float)
    return V, D
