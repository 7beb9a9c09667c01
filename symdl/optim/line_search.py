"""Learning-rate line search: backtracking (Armijo) along the gradient, and a grid over rates.

:func:`armijo` works on any loss ``f(w)`` of a flat vector; :class:`ModelLoss`
gives it a symdl model's full-batch loss and gradient (a compiled graph whose
parameters are the model's own arrays); :func:`descend` runs gradient descent
with a line search at every step; :func:`grid_search` picks the best of a
list of rates by a score (validation accuracy of a short run, say).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

__all__ = ["LineSearchResult", "armijo", "ModelLoss", "descend", "grid_search"]


@dataclass(frozen=True)
class LineSearchResult:
    """The accepted rate ``lr`` after ``tries`` evaluations; the loss ``f0`` at the start,
    ``f1`` after the step; ``slope`` is the directional derivative ``−‖g‖²``."""

    lr: float
    tries: int
    f0: float
    f1: float
    slope: float


def armijo(f, w, g, lr0: float = 1.0, c: float = 1e-4, shrink: float = 0.5,
           max_tries: int = 40, f0: float | None = None) -> LineSearchResult:
    """Backtracking line search along ``−g`` (Armijo's sufficient-decrease rule).

    Halve (``shrink``) the rate from ``lr0`` until ``f(w − η g) ≤ f(w) − c η ‖g‖²``:
    the first-order Taylor model ``f(w) − η‖g‖²`` with only a fraction ``c`` of its
    decrease demanded.  A non-finite trial loss counts as no decrease.

    >>> res = armijo(lambda w: float(w @ w), np.array([3.0]), np.array([6.0]))
    >>> res.lr, res.f1
    (0.5, 0.0)
    """
    if not (lr0 > 0 and 0 < c < 1 and 0 < shrink < 1 and max_tries >= 1):
        raise UsageError("armijo: need lr0 > 0, 0 < c < 1, 0 < shrink < 1, max_tries >= 1")
    w, g = np.asarray(w, dtype=np.float64), np.asarray(g, dtype=np.float64)
    f0 = float(f(w)) if f0 is None else float(f0)
    slope = -float(g @ g)
    lr = float(lr0)
    for tries in range(1, int(max_tries) + 1):
        f1 = float(f(w - lr * g))
        if math.isfinite(f1) and f1 <= f0 + c * lr * slope:
            return LineSearchResult(lr, tries, f0, f1, slope)
        lr *= shrink
    raise UsageError(f"armijo: no sufficient decrease after {max_tries} tries (last rate {lr:.3g})"
                     "; is g the gradient of f?")


class ModelLoss:
    """The full-batch mean loss of ``model`` on ``(X, y)`` and its gradient, as functions of
    the flat parameter vector (``model.parameters()`` concatenated, float64).

    The loss graph is compiled once with the NumPy reference kernels; the model's
    parameter arrays are bound into it, so :meth:`set` moves the model itself."""

    def __init__(self, model, X, y, loss: str = "softmax_cross_entropy",
                 loss_params: dict | None = None):
        from ..backends.numpy_backend import compile_graph
        from ..derive import grad
        from ..graph import Graph
        from ..ops import OPS, RowLossOp
        model.name_parameters()
        self.params = model.parameters()
        if not self.params:
            raise UsageError("ModelLoss: the model has no parameters")
        dtype = str(self.params[0].data.dtype)
        X = np.asarray(X, dtype=dtype)
        g = Graph()
        x = g.input("x", ("N", *X.shape[1:]), dtype)
        out = model.build(g, x)
        row = isinstance(OPS[loss], RowLossOp)
        t = g.input("y", ("N",) if row else g.shape(out), "int64" if row else dtype)
        L = g.add("mean", g.add(loss, out, t, name="loss", **dict(loss_params or {})), name="L")
        names = [p.name for p in self.params]
        gg = grad(g, L, names)
        self._L, self._grads = L, [gg[n] for n in names]
        self.prog = compile_graph(gg.graph, [L, *self._grads],
                                  bind={p.name: p.data for p in self.params},
                                  dims={"N": len(X)}, flavor="numpy")
        self.prog.inputs["x"][...] = X
        self.prog.inputs["y"][...] = np.asarray(y).reshape(self.prog.inputs["y"].shape)
        self.evaluations = 0

    def get(self) -> np.ndarray:
        """The parameters as one float64 vector."""
        return np.concatenate([p.data.ravel() for p in self.params]).astype(np.float64)

    def set(self, w) -> None:
        """Write the vector ``w`` into the model's parameter arrays."""
        k = 0
        for p in self.params:
            p.data[...] = np.asarray(w[k:k + p.data.size]).reshape(p.data.shape)
            k += p.data.size

    def __call__(self, w) -> float:
        """The loss at ``w`` (the model is left at ``w``)."""
        self.set(w)
        self.prog.run()
        self.evaluations += 1
        return float(self.prog.value(self._L))

    def gradient(self, w) -> np.ndarray:
        """The gradient at ``w``, one float64 vector."""
        self(w)
        return np.concatenate([np.asarray(self.prog.value(d)).ravel() for d in self._grads]
                              ).astype(np.float64)


def descend(model_loss: ModelLoss, steps: int = 20, lr0: float = 1.0, grow: float = 2.0,
            **armijo_kw) -> list:
    """Full-batch gradient descent with an Armijo search at every step; each search
    starts at ``grow`` times the previous accepted rate (at most ``lr0``).  Returns
    ``[LineSearchResult, ...]``, one per step; the model is left at the last point."""
    w = model_loss.get()
    out, lr = [], float(lr0)
    for _ in range(int(steps)):
        g = model_loss.gradient(w)
        f0 = float(model_loss.prog.value(model_loss._L))
        res = armijo(model_loss, w, g, lr0=lr, f0=f0, **armijo_kw)
        w = w - res.lr * g
        out.append(res)
        lr = min(float(lr0), res.lr * grow)
    model_loss.set(w)
    return out


def grid_search(score, rates) -> tuple:
    """``(best rate, [(rate, score), ...])``: ``score(rate)`` for each rate (higher is
    better; non-finite scores lose); ties keep the first rate."""
    rates = [float(r) for r in rates]
    if not rates or any(not (r > 0 and math.isfinite(r)) for r in rates):
        raise UsageError(f"grid_search: rates must be positive and finite, got {rates}")
    scores = [(r, float(score(r))) for r in rates]
    finite = [(r, s) for r, s in scores if math.isfinite(s)]
    if not finite:
        raise UsageError("grid_search: every rate gave a non-finite score")
    best = max(finite, key=lambda rs: rs[1])[0]
    return best, scores
