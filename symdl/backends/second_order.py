"""Second order, numerically: Hessian-vector products and small Hessians.

Both compile the graph of :func:`symdl.derive.higher.hvp_graph` once (fused
like any program) and run it: ``hvp`` once, ``hessian`` once per entry of
the differentiated nodes, with ``v`` a unit vector (row ``i`` of a Hessian
is ``H e_i``).  Leaves are filled by copying, so any array that has the
node's shape will do; dimension names (``"N"``) are read off the feeds.
"""
from __future__ import annotations

import numpy as np

from ..derive.higher import hvp_graph
from ..errors import UsageError
from .numpy_backend import compile_graph

__all__ = ["hessian", "hvp"]

#: entries a Hessian may have before :func:`hessian` refuses (P² values, P runs)
MAX_ENTRIES = 4096


def hvp(graph, loss, wrt, v, feeds=None, params=None, dims=None, fuse=True, flavor="auto",
        unused="warn"):
    """The Hessian-vector product ``H v`` of the scalar ``loss`` at a point.

    Parameters
    ----------
    graph : a :class:`symdl.graph.Graph` (not modified).
    loss : its scalar loss node.
    wrt : a node id, or a list of them (parameters or float inputs).
    v : an array shaped like ``wrt`` (one node), or a list / dict of arrays,
        one per node of ``wrt``.
    feeds, params : ``{node: array}`` for the graph's inputs and parameters
        (every leaf the loss needs, those in ``wrt`` included).
    dims : sizes of named dimensions not given by the feeds.
    fuse, flavor : as for :func:`symdl.backends.numpy_backend.compile_graph`.
    unused : ``"warn"``, ``"error"`` or ``"ignore"``: a node of ``wrt`` the
        loss does not depend on (its product is 0), as for :func:`symdl.derive.grad`.

    Returns
    -------
    An array shaped like ``wrt`` (one node), else ``{node: array}``.

    Examples
    --------
    >>> from symdl.graph import Graph
    >>> g = Graph()
    >>> w = g.param("w", (2,), "float64")
    >>> L = g.add("sum", g.add("mul", g.add("mul", w, w), w), name="L")  # Σ w³
    >>> hvp(g, L, w, np.array([1.0, 1.0]), params={w: np.array([1.0, 2.0])})
    array([ 6., 12.])
    """
    single = isinstance(wrt, str)
    names = [wrt] if single else list(wrt)
    if single:
        v = [v]
    elif isinstance(v, dict):
        missing = [w for w in names if w not in v]
        if missing:
            raise UsageError(f"v has no part for {missing[0]}")
        v = [v[w] for w in names]
    if len(v) != len(names):
        raise UsageError(f"v has {len(v)} part(s) for {len(names)} node(s) in wrt")
    run = _Runner(graph, loss, names, feeds, params, dims, fuse, flavor, unused)
    out = run([np.asarray(x) for x in v])
    return out[names[0]] if single else out


def hessian(graph, loss, wrt, feeds=None, params=None, dims=None, fuse=True, flavor="auto",
            unused="warn"):
    """The Hessian of the scalar ``loss`` at a point (small inputs only).

    Parameters are those of :func:`hvp`, without ``v``.

    Returns
    -------
    For one node of shape ``s``, an array of shape ``s + s`` (as
    ``torch.autograd.functional.hessian``); for a list of nodes, the
    ``(P, P)`` matrix over their entries flattened in order (C order each).
    """
    single = isinstance(wrt, str)
    names = [wrt] if single else list(wrt)
    run = _Runner(graph, loss, names, feeds, params, dims, fuse, flavor, unused)
    shapes = [run.shape(w) for w in names]
    sizes = [int(np.prod(s)) for s in shapes]
    total = sum(sizes)
    if total * total > MAX_ENTRIES:
        raise UsageError(f"a Hessian over {total} entries has {total * total} values "
                         f"(at most {MAX_ENTRIES}); use hvp for larger inputs")
    rows = np.zeros((total, total), run.dtype)
    flat = np.zeros(total, run.dtype)
    cuts = np.cumsum([0] + sizes)
    for i in range(total):
        flat[...] = 0.0
        flat[i] = 1.0
        out = run([flat[a:b].reshape(s) for a, b, s in zip(cuts[:-1], cuts[1:], shapes)])
        rows[i] = np.concatenate([out[w].reshape(-1) for w in names])
    return rows.reshape(shapes[0] + shapes[0]) if single else rows


class _Runner:
    """The compiled HVP program, its leaves filled; ``run(vs)`` gives ``{w: (H v)_w}``."""

    def __init__(self, graph, loss, names, feeds, params, dims, fuse, flavor, unused):
        if len(set(names)) != len(names):
            raise UsageError(f"wrt names a node twice: {', '.join(names)}")
        for w in names:
            if w not in graph:
                raise UsageError(f"cannot differentiate with respect to {w!r}: not in the graph")
        hv = hvp_graph(graph, loss, names, unused)
        self.hv, self.names = hv, names
        given = {**dict(feeds or {}), **dict(params or {})}
        for n in given:
            if n not in graph or graph.op(n) not in ("input", "param"):
                raise UsageError(f"{n!r} is not an input or parameter of the graph")
        g = hv.graph
        sizes = _dims(g, given, dims)
        outputs = [hv.products[w] for w in names]
        self.prog = compile_graph(g, outputs, dims=sizes, fuse=fuse, flavor=flavor)
        pg = self.prog.graph
        vectors = set(hv.vectors.values())
        for n in pg.order():
            if pg.op(n) in ("input", "param") and n not in vectors:
                if n not in given:
                    raise UsageError(f"no value given for {pg.op(n)} {n}")
                self._fill(n, given[n])
        self.dtype = np.dtype(graph.node(names[0])["dtype"])

    def shape(self, w) -> tuple:
        return self.prog.shapes.get(self.hv.products[w])

    def _fill(self, n, arr):
        buf = self.prog.value(n)
        arr = np.asarray(arr)
        if arr.shape != buf.shape:
            raise UsageError(f"value for {n} has shape {arr.shape}, the graph needs {buf.shape}")
        if buf.dtype.kind in "iu" and not np.array_equal(arr, np.round(arr)):
            raise UsageError(f"value for {n} must be integers (the graph's {n} is {buf.dtype})")
        buf[...] = arr

    def __call__(self, vs) -> dict:
        for w, arr in zip(self.names, vs):
            if np.shape(arr) != self.shape(w):
                raise UsageError(f"v for {w} has shape {np.shape(arr)}, {w} has {self.shape(w)}")
            if self.hv.vectors[w] in self.prog.graph:  # absent when the loss is linear in w
                self._fill(self.hv.vectors[w], arr)
        self.prog.run()
        return {w: self.prog.value(self.hv.products[w]).copy() for w in self.names}


def _dims(g, given: dict, dims) -> dict:
    """Sizes of the named dimensions, read off the given arrays."""
    out = dict(dims or {})
    for n, arr in given.items():
        shape, got = g.shape(n), np.shape(arr)
        if len(got) != len(shape):
            raise UsageError(f"value for {n} has shape {got}, the graph needs {tuple(shape)}")
        for d, s in zip(shape, got):
            if isinstance(d, str) and out.setdefault(d, s) != s:
                raise UsageError(f"dimension {d!r} is {out[d]} but the value for {n} gives {s}")
    return out
