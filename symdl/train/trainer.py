"""``Trainer.fit``: seeded mini-batch training of a module on a data set.

One graph (forward, loss, reverse mode) is compiled once per batch size;
each step fills the input buffers in place, runs the step function, checks
the loss and the gradient norm, and applies the optimizer's fused update.
A non-finite value stops training before the update is applied
(:class:`~symdl.errors.NumericalError`, exit code 3), naming the first node
whose value went bad.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..backends.numpy_backend import compile_graph
from ..derive import grad
from ..errors import DataError, NumericalError, UsageError
from ..graph import Graph
from ..nn.parameter import ParamPack
from ..ops import OPS, RowLossOp
from .progress import progress_bar


@dataclass
class History:
    """Per-epoch metrics (``val_*`` are ``None`` without a validation set)."""

    train_loss: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    def as_dict(self) -> dict:
        return asdict(self)


def build_training_graph(model, n_features: int, loss: str, loss_params: dict, dtype: str,
                         target_shape=("N",)):
    """Forward graph ``x -> model -> loss L`` (mean over the batch)."""
    g = Graph()
    x = g.input("x", ("N", n_features), dtype)
    opdef = OPS[loss]
    ydtype = "int64" if isinstance(opdef, RowLossOp) else dtype
    y = g.input("y", target_shape, ydtype)
    out = model.build(g, x)
    per_example = g.add(loss, out, y, name="loss", **loss_params)
    L = g.add("mean", per_example, name="L")
    return g, out, L


class Trainer:
    """Mini-batch training.

    Parameters
    ----------
    model : a :class:`~symdl.nn.Module` (parameters already initialised).
    optimizer : a factory ``params -> Optimizer`` (``lambda ps: SGD(ps, lr=0.1)``).
    loss, loss_params : the loss op and its parameters.
    batch_size, epochs, seed : as usual; ``seed`` is an int or a ``SeedSequence``.
    progress : show a tqdm bar on stderr (default: only on a terminal).
    """

    def __init__(self, model, optimizer, loss="softmax_cross_entropy", loss_params=None,
                 batch_size=32, epochs=10, seed=0, progress=None, dtype="float32"):
        if int(batch_size) < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        if int(epochs) < 0:
            raise UsageError(f"epochs must be non-negative, got {epochs}")
        self.model, self.loss, self.loss_params = model, loss, dict(loss_params or {})
        self.batch_size, self.epochs, self.dtype = int(batch_size), int(epochs), dtype
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self.rng = np.random.default_rng(ss.spawn(1)[0])
        self.progress = progress
        model.name_parameters()
        self.params = model.parameters()
        self.pack = ParamPack(self.params, dtype)
        self.optimizer = optimizer(self.params)
        self.classification = isinstance(OPS[loss], RowLossOp)
        self._programs: dict = {}
        self._graph = None

    # ----------------------------------------------------------- compiling
    def _prepare(self, X, y):
        if self._graph is None:
            tshape = ("N",) if y.ndim == 1 else ("N", y.shape[1])
            g, out, L = build_training_graph(self.model, X.shape[1], self.loss, self.loss_params,
                                             self.dtype, tshape)
            self._graph, self._out, self._L = g, out, L
            self._grad = grad(g, L, [p.name for p in self.params])
        elif X.shape[1] != self._graph.shape("x")[1]:
            raise DataError(f"data has {X.shape[1]} features, the model was built for "
                            f"{self._graph.shape('x')[1]}")

    def program(self, n: int, train: bool):
        key = (n, train)
        if key not in self._programs:
            bind = {p.name: p.data for p in self.params}
            if train:
                gg = self._grad
                bind.update({gg.grads[p.name]: p.grad for p in self.params})
                outs = [self._L, self._out] + [gg.grads[p.name] for p in self.params]
                self._programs[key] = compile_graph(gg.graph, outs, bind, {"N": n})
            else:
                self._programs[key] = compile_graph(self._graph, [self._L, self._out], bind, {"N": n})
        return self._programs[key]

    # ------------------------------------------------------------- running
    def _check_data(self, X, y):
        if len(X) == 0:
            raise DataError("empty data set: nothing to train on")
        if X.dtype != np.dtype(self.dtype):
            raise DataError(f"data is {X.dtype} but the parameters are {self.dtype}; cast the data")
        if self.classification:
            if not np.issubdtype(y.dtype, np.integer):
                raise DataError(f"class labels must be integers, got {y.dtype}")
            n_out = self._graph.shape(self._out)[-1]
            bad = np.flatnonzero((y < 0) | (y >= n_out))
            if bad.size:
                raise DataError(f"label {y[bad[0]]} at row {bad[0]} is outside [0, {n_out})")

    def _batch(self, prog, X, y, idx):
        np.take(X, idx, axis=0, out=prog.inputs["x"])
        np.take(y, idx, axis=0, out=prog.inputs["y"])

    def fit(self, train, val=None) -> History:
        """Train for ``epochs`` epochs; returns the :class:`History`."""
        X, y = train.X, self._targets(train)
        self._prepare(X, y)
        self._check_data(X, y)
        hist = History()
        n, B = len(X), self.batch_size
        steps = math.ceil(n / B)
        bar = progress_bar(self.epochs * steps, self.progress, "train")
        try:
            for epoch in range(1, self.epochs + 1):
                t0 = time.perf_counter()
                perm = self.rng.permutation(n)
                total, correct = 0.0, 0
                for s in range(steps):
                    idx = perm[s * B:(s + 1) * B]
                    prog = self.program(len(idx), True)
                    self._batch(prog, X, y, idx)
                    prog.run()
                    loss = float(prog.value(self._L))
                    self._check_finite(prog, loss, epoch, s + 1)
                    self.optimizer.step()
                    total += loss * len(idx)
                    if self.classification:
                        correct += int(np.count_nonzero(prog.value(self._out).argmax(1) == prog.inputs["y"]))
                    bar.update(1)
                hist.train_loss.append(total / n)
                hist.train_accuracy.append(correct / n if self.classification else None)
                vl, va = self.evaluate(val) if val is not None else (None, None)
                hist.val_loss.append(vl)
                hist.val_accuracy.append(va)
                hist.seconds.append(time.perf_counter() - t0)
                bar.set_postfix_str(_postfix(hist))
        finally:
            bar.close()
        return hist

    def _check_finite(self, prog, loss, epoch, step):
        with np.errstate(over="ignore", invalid="ignore"):
            gsq = float(np.dot(self.pack.grad, self.pack.grad))
        if math.isfinite(loss) and math.isfinite(gsq):
            return
        bad = first_nonfinite(prog)
        if bad is None:
            big = max(self.params, key=lambda q: float(np.max(np.abs(q.grad))))
            bad = f"{big.name} (gradient overflows: max |g| = {float(np.max(np.abs(big.grad))):.3g})"
        what = "loss" if not math.isfinite(loss) else "gradient norm"
        raise NumericalError(f"non-finite {what} at epoch {epoch}, step {step}; update not applied; "
                             f"first bad value at node {bad} (try a lower learning rate)")

    def _targets(self, ds):
        y = ds.y
        if not self.classification and y.ndim == 1:
            y = y.reshape(-1, 1)
        return y.astype(self.dtype) if not self.classification else y.astype(np.int64)

    def evaluate(self, ds, batch: int = 1024):
        """``(mean loss, accuracy or None)`` over a data set."""
        X, y = ds.X, self._targets(ds)
        self._prepare(X, y)
        self._check_data(X, y)
        total, correct = 0.0, 0
        for s in range(0, len(X), batch):
            idx = np.arange(s, min(s + batch, len(X)))
            prog = self.program(len(idx), False)
            self._batch(prog, X, y, idx)
            prog.run()
            total += float(prog.value(self._L)) * len(idx)
            if self.classification:
                correct += int(np.count_nonzero(prog.value(self._out).argmax(1) == prog.inputs["y"]))
        return total / len(X), (correct / len(X) if self.classification else None)

    def predict(self, X, batch: int = 1024) -> np.ndarray:
        """Model outputs (logits) for ``X``."""
        X = np.asarray(X, self.dtype)
        outs = []
        for s in range(0, len(X), batch):
            chunk = X[s:s + batch]
            prog = self.program(len(chunk), False)
            prog.inputs["x"][...] = chunk
            prog.run()
            outs.append(prog.value(self._out).copy())
        return np.concatenate(outs)


def first_nonfinite(prog) -> str | None:
    """The first node, in execution order, holding a NaN or an infinity."""
    for n in prog.graph.order():
        v = prog.value(n)
        if np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v)):
            return f"{n} ({prog.graph.op(n)})"
    return None


def _postfix(h: History) -> str:
    s = f"loss {h.train_loss[-1]:.4f}"
    if h.train_accuracy[-1] is not None:
        s += f" acc {h.train_accuracy[-1]:.3f}"
    if h.val_accuracy[-1] is not None:
        s += f" val {h.val_accuracy[-1]:.3f}"
    return s
