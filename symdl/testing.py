"""Testing helpers: check a graph's derived gradient against finite differences.

:func:`check_grad` compiles the forward and gradient program of a float64
graph and compares the analytic gradient with central differences of the
loss, either along a few seeded random directions (cheap, any size) or entry
by entry (``full=True``, for small parameters).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import UsageError

__all__ = ["GradCheckResult", "check_grad"]


@dataclass(frozen=True)
class GradCheckResult:
    """What :func:`check_grad` compared.

    Attributes
    ----------
    ok : always True (a failed check raises ``AssertionError`` instead).
    mode : ``"directions"`` or ``"full"``.
    loss : the loss at the checked point.
    n_checks : how many (analytic, numeric) pairs were compared.
    max_abs_err : the largest ``|analytic - numeric|``.
    max_rel_err : the largest ``|analytic - numeric| / max(|analytic|, |numeric|)``.
    grads : ``{node: analytic gradient}`` (copies).
    """

    ok: bool
    mode: str
    loss: float
    n_checks: int
    max_abs_err: float
    max_rel_err: float
    grads: dict = field(default_factory=dict, repr=False)


def _float64_only(graph) -> None:
    for n in graph.order():
        dt = graph.node(n)["dtype"]
        if np.issubdtype(np.dtype(dt), np.floating) and np.dtype(dt) != np.float64:
            raise UsageError(f"check_grad needs a float64 graph; node {n} is {dt}")


def _dims(graph, feeds: dict, dims: dict | None) -> dict:
    out = dict(dims or {})
    for n, arr in feeds.items():
        shape = graph.shape(n)
        arr = np.asarray(arr)
        if arr.ndim != len(shape):
            raise UsageError(f"feed for {n} has shape {arr.shape}, the graph needs {tuple(shape)}")
        for d, s in zip(shape, arr.shape):
            if isinstance(d, str):
                if out.setdefault(d, s) != s:
                    raise UsageError(f"dimension {d!r} is {out[d]} but the feed for {n} gives {s}")
    for n in graph.order():
        for d in graph.shape(n):
            if isinstance(d, str):
                out.setdefault(d, 3)
    return out


def check_grad(graph, loss, wrt=None, feeds=None, params=None, dims=None, n_directions=3,
               eps=1e-6, rtol=1e-5, atol=1e-7, full=False, seed=0, flavor="auto"):
    """Compare the derived gradient of ``loss`` with float64 central differences.

    The graph's forward and gradient program is compiled once; the nodes in
    ``wrt`` (parameters or float inputs) are perturbed in place in its
    buffers.  By default each node is checked along ``n_directions`` seeded
    random unit directions ``v``: ``(L(θ + εv) − L(θ − εv)) / 2ε`` against
    ``⟨∇L, v⟩``.  With ``full=True`` every entry of every node is checked
    (``2·size`` extra runs: small inputs only).

    Parameters
    ----------
    graph : symdl.graph.Graph
        A float64 graph (other float dtypes are refused).
    loss : str
        The scalar node to differentiate.
    wrt : list of str, optional
        Nodes to check (default: every parameter).
    feeds : dict, optional
        ``{input: array}``.  Float inputs not given are drawn from N(0, 1);
        integer inputs (class labels) must be given.
    params : dict, optional
        ``{param: array}``.  Parameters not given are drawn from N(0, 0.5²).
    dims : dict, optional
        Sizes of named dimensions; inferred from ``feeds``, else 3.
    n_directions : int
        Random directions per node (directional mode).
    eps : float
        Central-difference step.
    rtol, atol : float
        A pair passes when ``|a − n| <= atol + rtol · max(|a|, |n|)``.
    full : bool
        Check the whole gradient entry by entry.
    seed : int
        Seeds the random values and directions.
    flavor : str
        Backend kernel flavor (``"auto"``, ``"numba"`` or ``"numpy"``).

    Returns
    -------
    GradCheckResult

    Raises
    ------
    AssertionError
        On the first mismatch, naming the node, its position in ``wrt``, the
        direction or index, and both values.
    symdl.errors.UsageError
        For a graph that is not float64 or an integer input without a feed.

    Examples
    --------
    >>> from symdl.graph import Graph
    >>> from symdl.testing import check_grad
    >>> g = Graph()
    >>> x = g.input("x", ("N", 3), "float64")
    >>> W = g.param("W", (2, 3), "float64")
    >>> h = g.add("tanh", g.add("matmul", x, g.add("transpose", W)))
    >>> loss = g.add("mean", g.add("square", h))
    >>> res = check_grad(g, loss, dims={"N": 4})
    >>> res.ok, res.mode, res.n_checks
    (True, 'directions', 3)
    >>> check_grad(g, loss, dims={"N": 4}, full=True).n_checks
    6
    """
    from .backends.numpy_backend import compile_graph
    from .derive import grad

    if loss not in graph:
        raise UsageError(f"loss node {loss!r} is not in the graph")
    _float64_only(graph)
    rng = np.random.default_rng(seed)
    wrt = list(graph.params() if wrt is None else wrt)
    feeds = dict(feeds or {})
    params = dict(params or {})
    for n in list(feeds) + list(params):
        if n not in graph:
            raise UsageError(f"{n!r} is not a node of the graph")
    dims = _dims(graph, feeds, dims)

    gg = grad(graph, loss, wrt=wrt, unused="ignore")
    bind = {}
    for p in graph.params():
        shape = graph.shape(p)
        value = params[p] if p in params else 0.5 * rng.standard_normal(shape)
        bind[p] = np.ascontiguousarray(np.array(value, dtype=np.float64).reshape(shape))
    outputs = [loss] + [gg.grads[w] for w in wrt]
    prog = compile_graph(gg.graph, list(dict.fromkeys(outputs)), bind=bind, dims=dims,
                         flavor=flavor)
    for n, buf in prog.inputs.items():
        if n in feeds:
            buf[...] = feeds[n]
        elif np.issubdtype(buf.dtype, np.floating):
            buf[...] = rng.standard_normal(buf.shape)
        else:
            raise UsageError(f"check_grad: input {n} ({buf.dtype}) needs a value in feeds")

    def value() -> float:
        prog.run()
        return float(prog.value(loss))

    L0 = value()
    grads = {w: np.array(prog.value(gg.grads[w]), dtype=np.float64, copy=True) for w in wrt}
    if not np.isfinite(L0):
        raise AssertionError(f"check_grad: loss {loss} is {L0} at the checked point")

    n_checks, max_abs, max_rel = 0, 0.0, 0.0

    def compare(w, k, where, analytic, numeric):
        nonlocal n_checks, max_abs, max_rel
        n_checks += 1
        err = abs(analytic - numeric)
        scale = max(abs(analytic), abs(numeric))
        if not (np.isfinite(analytic) and np.isfinite(numeric)) or err > atol + rtol * scale:
            raise AssertionError(
                f"check_grad: gradient of {loss} with respect to node {w!r} (argument {k} of wrt), "
                f"{where}: analytic {analytic!r} != numeric {numeric!r} "
                f"(|diff| {err:.3g}, rtol {rtol}, atol {atol})")
        max_abs = max(max_abs, err)
        max_rel = max(max_rel, err / scale if scale else 0.0)

    for k, w in enumerate(wrt):
        buf = prog.value(w)
        base = buf.copy()
        gw = grads[w]
        try:
            if full:
                for idx in np.ndindex(buf.shape):
                    buf[idx] = base[idx] + eps
                    lp = value()
                    buf[idx] = base[idx] - eps
                    lm = value()
                    buf[idx] = base[idx]
                    compare(w, k, f"index {idx}", float(gw[idx]), (lp - lm) / (2 * eps))
            else:
                for d in range(n_directions):
                    v = rng.standard_normal(buf.shape)
                    v /= np.linalg.norm(v) or 1.0
                    buf[...] = base + eps * v
                    lp = value()
                    buf[...] = base - eps * v
                    lm = value()
                    buf[...] = base
                    compare(w, k, f"direction {d}", float(np.vdot(gw, v)), (lp - lm) / (2 * eps))
        finally:
            buf[...] = base
    return GradCheckResult(True, "full" if full else "directions", L0, n_checks, max_abs, max_rel,
                           grads)
