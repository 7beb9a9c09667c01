"""``Trainer.fit``: seeded mini-batch training of a module on a data set.

One graph (forward, loss, reverse mode) is compiled once per batch size;
each step fills the input buffers in place, runs the step function, checks
the loss and the gradient norm, and applies the optimizer's fused update.
A non-finite value stops training before the update is applied
(:class:`~symdl.errors.NumericalError`, exit code 3), naming the first node
whose value went bad.
"""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..backends.numpy_backend import compile_graph
from ..derive import grad
from ..errors import CheckpointError, DataError, NumericalError, UsageError
from ..graph import Graph
from ..nn.parameter import ParamPack
from ..ops import OPS, RowLossOp
from .checkpoint import check_writable, latest_good, load_checkpoint, save_checkpoint
from .progress import progress_bar
from .state import LoopState, capture, restore


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
                 batch_size=32, epochs=10, seed=0, progress=None, dtype="float32", *,
                 checkpoint=None, every=1, keep_last=2, resume="never", on_nonfinite="raise",
                 max_skips=10, drop_last=False, say=None):
        if int(batch_size) < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        if int(epochs) < 0:
            raise UsageError(f"epochs must be non-negative, got {epochs}")
        if on_nonfinite not in ("raise", "skip", "warn"):
            raise UsageError(f"on_nonfinite must be raise, skip or warn, not {on_nonfinite!r}")
        if int(every) < 1 or int(keep_last) < 1:
            raise UsageError("checkpoint every and keep_last must be at least 1")
        self.model, self.loss, self.loss_params = model, loss, dict(loss_params or {})
        self.batch_size, self.epochs, self.dtype = int(batch_size), int(epochs), dtype
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self.rng = np.random.default_rng(ss.spawn(1)[0])
        self.progress = progress
        self.checkpoint, self.every, self.keep_last = checkpoint, int(every), int(keep_last)
        self.resume, self.on_nonfinite, self.max_skips = str(resume), on_nonfinite, int(max_skips)
        self.drop_last = bool(drop_last)
        self.say = say or (lambda msg: print(f"symdl: {msg}", file=sys.stderr))
        self.history = History()
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

    def graph_hash(self) -> str:
        return self._graph.fingerprint()

    def _preflight(self, X, y):
        self._check_data(X, y)
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
        if bad.size:
            raise DataError(f"{bad.size} row(s) hold NaN or Inf, the first is row {bad[0]}")
        if len(X) < self.batch_size and self.drop_last:
            raise DataError(f"the data set has {len(X)} rows, fewer than one batch of "
                            f"{self.batch_size}, and --drop-last drops it")
        if self.checkpoint:
            need = 2 * sum(p.data.nbytes for p in self.params) * (1 + len(self.optimizer.rule.state))
            check_writable(self.checkpoint, need + len(X) * 8 + (1 << 16))

    def _start(self) -> LoopState:
        if self.resume == "never" or (self.resume == "auto" and not self.checkpoint):
            return LoopState()
        if self.resume == "auto":
            ckpt = latest_good(self.checkpoint, self.say)
            if ckpt is None:
                return LoopState()
        else:
            path = Path(self.resume)
            single = path.name.startswith("ckpt-") or (path / "arrays.npz").exists() \
                or (path / "meta.json").exists()
            ckpt = load_checkpoint(path) if single else latest_good(path, self.say)
            if ckpt is None:
                raise CheckpointError(f"no usable checkpoint in {path}")
        state = restore(self, ckpt)
        self.say(f"resumed from {ckpt.path} (epoch {state.epoch}, step {state.global_step})")
        return state

    def save(self, state: LoopState, reason: str) -> Path | None:
        """Write a checkpoint of the current state (a step boundary)."""
        if not self.checkpoint:
            return None
        arrays, meta = capture(self, state, reason)
        return save_checkpoint(self.checkpoint, f"ckpt-{state.global_step:09d}", arrays, meta,
                               self.keep_last)

    def fit(self, train, val=None) -> History:
        """Train until ``epochs`` epochs are done; returns the :class:`History`.

        Resumes from a checkpoint first when asked; Ctrl-C saves an
        "interrupted" checkpoint at the next step boundary and re-raises
        ``KeyboardInterrupt``.
        """
        X, y = train.X, self._targets(train)
        self._prepare(X, y)
        self._preflight(X, y)
        state = self._start()
        n, B = len(X), self.batch_size
        steps = n // B if self.drop_last else math.ceil(n / B)
        bar = progress_bar(max(self.epochs - state.epoch, 0) * steps, self.progress, "train")
        # non-finite values are caught by the step guard, not by NumPy warnings
        with _deferred_sigint() as interrupted, np.errstate(over="ignore", invalid="ignore",
                                                            divide="ignore"):
            try:
                while state.epoch < self.epochs:
                    t0 = time.perf_counter()
                    if state.perm is None:
                        state.perm = self.rng.permutation(n)
                        state.pos, state.total, state.correct = 0, 0.0, 0
                    while state.pos < steps:
                        if interrupted():
                            self.save(state, "interrupted")
                            raise KeyboardInterrupt
                        self._train_step(X, y, state)
                        bar.update(1)
                    self._end_epoch(state, n if not self.drop_last else steps * B, val, t0)
                    bar.set_postfix_str(_postfix(self.history))
                    if self.checkpoint and (state.epoch % self.every == 0 or state.epoch == self.epochs):
                        self.save(state, "epoch")
            finally:
                bar.close()
        return self.history

    def _train_step(self, X, y, state: LoopState):
        B = self.batch_size
        idx = state.perm[state.pos * B:(state.pos + 1) * B]
        prog = self.program(len(idx), True)
        self._batch(prog, X, y, idx)
        prog.run()
        loss = float(prog.value(self._L))
        ok = self._check_finite(prog, loss, state)
        if ok:
            self.optimizer.step()
            state.total += loss * len(idx)
            if self.classification:
                state.correct += int(np.count_nonzero(prog.value(self._out).argmax(1) == prog.inputs["y"]))
        state.pos += 1
        state.global_step += 1

    def _end_epoch(self, state, n, val, t0):
        h = self.history
        h.train_loss.append(state.total / n)
        h.train_accuracy.append(state.correct / n if self.classification else None)
        vl, va = self.evaluate(val) if val is not None else (None, None)
        h.val_loss.append(vl)
        h.val_accuracy.append(va)
        h.seconds.append(time.perf_counter() - t0)
        state.epoch += 1
        state.perm = None
        state.pos = 0

    def _check_finite(self, prog, loss, state) -> bool:
        """True when the step may be applied; otherwise the policy decides."""
        with np.errstate(over="ignore", invalid="ignore"):
            gsq = float(np.dot(self.pack.grad, self.pack.grad))
        if math.isfinite(loss) and math.isfinite(gsq):
            state.skips = 0
            return True
        what = "loss" if not math.isfinite(loss) else "gradient norm"
        where = f"epoch {state.epoch + 1}, step {state.pos + 1}"
        if self.on_nonfinite in ("skip", "warn"):
            state.skips += 1
            if self.on_nonfinite == "warn":
                self.say(f"warning: non-finite {what} at {where}; batch skipped")
            if state.skips < self.max_skips:
                return False
            raise NumericalError(f"{state.skips} consecutive batches gave a non-finite {what} "
                                 f"(last at {where}); stopping, no update applied from them")
        raise NumericalError(f"non-finite {what} at {where}; update not applied; first bad value at "
                             f"node {self.diagnose(prog)} (try a lower learning rate)")

    def diagnose(self, prog) -> str:
        """Re-run the batch with every node kept and name the first bad one."""
        gg = self._grad
        guard = compile_graph(gg.graph, [self._L] + [gg.grads[p.name] for p in self.params],
                              {p.name: p.data for p in self.params}, {"N": prog.dims["N"]}, fuse=False)
        for k, buf in prog.inputs.items():
            guard.inputs[k][...] = buf
        with np.errstate(all="ignore"):
            guard.run()
        bad = first_nonfinite(guard)
        if bad is None:
            big = max(self.params, key=lambda q: float(np.max(np.abs(q.grad))))
            bad = f"{big.name} (gradient overflows: max |g| = {float(np.max(np.abs(big.grad))):.3g})"
        return bad

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


@contextlib.contextmanager
def _deferred_sigint():
    """Turn Ctrl-C into a flag the loop reads at step boundaries."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag.is_set
        return
    previous = signal.signal(signal.SIGINT, lambda *_: flag.set())
    try:
        yield flag.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


def _postfix(h: History) -> str:
    s = f"loss {h.train_loss[-1]:.4f}"
    if h.train_accuracy[-1] is not None:
        s += f" acc {h.train_accuracy[-1]:.3f}"
    if h.val_accuracy[-1] is not None:
        s += f" val {h.val_accuracy[-1]:.3f}"
    return s
