"""``Trainer.fit``: seeded mini-batch training of a module on a data set.

One graph (forward, loss, reverse mode) is compiled once per batch size;
each step fills the input buffers in place, runs the step function, checks
the loss and the gradient norm, and applies the optimizer's fused update.
A non-finite or diverging value stops training before the update is
applied (:mod:`symdl.train.guard`).  Regularizers: :mod:`symdl.train.regularize`.
The guard, early stopping, checkpoints and progress run as callbacks
(:mod:`symdl.train.callbacks`), beside the caller's own.
"""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np

from ..backends import get_backend
from ..data.dataset import bad_rows, integral_labels, nonfinite_rows
from ..derive import grad
from ..errors import DataError, Terminated, UsageError
from ..nn.norm import batchnorm_layers, set_batchnorm_mode, update_running_stats
from ..nn.parameter import ParamPack
from ..ops import OPS, RowLossOp
from ..optim.schedules import UNITS
from .callbacks import EarlyStopping, ModelCheckpoint, TerminateOnNaN, epoch_logs
from .checkpoint import FolderLock, check_writable, save_checkpoint
from .distributed import attach as attach_comm
from .graphs import build_training_graph, distinct_grads
from .history import History
from .loop import CallbackHost, as_dataset, deferred_signals, fit_data, start_state
from .loop import features as _features
from .progress import verbosity
from .regularize import add_input_noise, clip, dropout_masks, fill_masks
from .split import Splitter
from .state import LoopState, capture, run_settings

__all__ = ["History", "Trainer"]


class Trainer(CallbackHost):
    """Mini-batch training.

    Parameters
    ----------
    model : a :class:`~symdl.nn.Module` (parameters already initialised).
    optimizer : an optimizer of the model's parameters (``SGD(model.parameters(), lr=0.1)``),
        or a factory ``params -> Optimizer`` (``lambda ps: SGD(ps, lr=0.1)``).
    loss, loss_params : the loss op and its parameters.
    batch_size, epochs, seed : as usual; ``seed`` is an int or a ``SeedSequence``.
    progress : show a tqdm bar on stderr (default: on a terminal or in a notebook);
        ``verbose`` (0 silent, 1 bar, 2 one line per epoch on stdout) overrides it.
    schedule, schedule_unit : a :class:`~symdl.optim.schedules.Schedule`, stepped per
        ``"epoch"`` or per ``"batch"`` (default: the schedule's own ``unit``).
    callbacks : :class:`~symdl.train.callbacks.Callback` objects (Keras's hooks); an
        ``EarlyStopping``, ``ModelCheckpoint`` or ``TerminateOnNaN`` among them replaces
        the one ``early_stopping``, ``checkpoint`` or ``on_nonfinite`` would make.
    explicit : the settings the caller chose explicitly (names as in the
        checkpoint's ``settings``: ``lr``, ``seed``, ``clip_norm``, ...); on
        resume those must equal the checkpoint's, the others take its values.
        ``None`` (default): all of them must equal.
    on_start : called with the loop state once resuming is settled.
    comm : data parallel over MPI (:mod:`symdl.train.distributed`): an mpi4py communicator.
    split : ``"auto"``, ``True`` or ``False``: run each step as one program per thread on a
        share of the batch's rows (:mod:`symdl.train.split` says when "auto" does); ``None``
        (default): the environment variable ``SYMDL_SPLIT`` (auto, on, off), else "auto".
    """

    def __init__(self, model, optimizer, loss="softmax_cross_entropy", loss_params=None,
                 batch_size=32, epochs=10, seed=0, progress=None, dtype="float32", *,
                 checkpoint=None, every=1, keep_last=2, resume="never", on_nonfinite="raise",
                 max_skips=10, divergence=1e4, drop_last=False, schedule=None, l1=0.0, l2=0.0,
                 clip_norm=None, clip_value=None, input_noise=0.0, early_stopping=None, say=None,
                 explicit=None, on_start=None, backend="numpy", callbacks=None, verbose=None,
                 schedule_unit=None, comm=None, split=None):
        if str(dtype) not in ("float32", "float64"):
            raise UsageError(f"dtype must be float32 or float64, got {dtype!r} (the kernels "
                             "have no float16 or integer flavour)")
        if batch_size != "full" and int(batch_size) < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        if int(epochs) < 0:
            raise UsageError(f"epochs must be non-negative, got {epochs}")
        if int(every) < 1 or int(keep_last) < 1:
            raise UsageError("checkpoint every and keep_last must be at least 1")
        if min(l1, l2, input_noise, clip_norm or 0, clip_value or 0) < 0:
            raise UsageError("penalties, noise and clipping thresholds must be non-negative")
        self.backend = get_backend(backend) if isinstance(backend, str) else backend
        self.model, self.loss, self.loss_params = model, loss, dict(loss_params or {})
        self.batch_size = batch_size if batch_size == "full" else int(batch_size)
        self.epochs, self.dtype = int(epochs), dtype
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        order_ss, noise_ss = ss.spawn(2)
        self.rng = np.random.default_rng(order_ss)        # data order
        self.noise_rng = np.random.default_rng(noise_ss)  # dropout masks, input noise
        self.progress, self.verbose = progress, verbosity(verbose, progress)
        self.checkpoint, self.every, self.keep_last = None, int(every), int(keep_last)
        self.resume, self.drop_last = str(resume), bool(drop_last)
        if schedule_unit is not None and schedule_unit not in UNITS:
            raise UsageError(f"schedule_unit must be {' or '.join(map(repr, UNITS))}, "
                             f"got {schedule_unit!r}")
        if schedule is not None and schedule_unit is not None:
            schedule = schedule.with_unit(schedule_unit)
        self.schedule, self.l1, self.l2 = schedule, float(l1), float(l2)
        self.clip_norm, self.clip_value, self.input_noise = clip_norm, clip_value, float(input_noise)
        # the built-in callbacks: the guard always, early stopping and checkpoints when asked
        self._guard = TerminateOnNaN(on_nonfinite, int(max_skips), float(divergence))
        self._early = EarlyStopping(patience=int(early_stopping)) if early_stopping else None
        self._checkpointer = ModelCheckpoint(checkpoint, every, keep_last) if checkpoint else None
        self.callbacks: list = []
        self.stop_training, self.loop_state, self.current_program = False, None, None
        self.say = say or (lambda msg: print(f"symdl: {msg}", file=sys.stderr))
        self.history = History()
        model.name_parameters()
        self.params = model.parameters()
        cast = [p.name for p in self.params if p.data.dtype != np.dtype(dtype)]
        if cast:  # never a silent cast (float64 -> float32 loses digits)
            raise UsageError(f"the model's parameters are {self.params[0].data.dtype} "
                             f"({', '.join(cast[:3])}{' ...' if len(cast) > 3 else ''}) but "
                             f"dtype={dtype!r}; build the model in {dtype} or train in its dtype")
        self.pack = ParamPack(self.params, dtype, self.backend)
        self.optimizer = self._bind_optimizer(optimizer)
        self.classification = isinstance(OPS[loss], RowLossOp)
        self._programs: dict = {}
        self._graph = None
        self._batchnorm = bool(batchnorm_layers(self.model))  # running statistics to keep
        # explicit: the settings the caller chose (None: all); on resume the others may
        # take the checkpoint's values (symdl.train.state)
        self.explicit, self.on_start = explicit, on_start
        self._attach(callbacks or ())
        self.settings = run_settings(self, ss)
        self.dist = None if comm is None else attach_comm(self, comm)  # ranks other than 0: quiet
        self._split = Splitter(self, split)

    # ----------------------------------------------------------- compiling
    def _prepare(self, X, y=None):
        if self._graph is None:
            tshape = None if y is None else ("N",) if y.ndim == 1 else ("N", y.shape[1])
            features = X.shape[1] if X.ndim == 2 else tuple(X.shape[1:])  # (C, H, W) images too
            g, out, L = build_training_graph(self.model, features, self.loss, self.loss_params,
                                             self.dtype, tshape, self.l1, self.l2)
            self._graph, self._out, self._L = g, out, L
            names = [p.name for p in self.params]
            self._grad = distinct_grads(grad(g, L, names), names)  # one node per gradient buffer
            self._masks = dropout_masks(g)
            self._split.decide()
        elif tuple(X.shape[1:]) != tuple(self._graph.shape("x")[1:]):
            raise DataError(f"data has {_features(X.shape[1:])}, the model was built for "
                            f"{_features(self._graph.shape('x')[1:])}")

    def program(self, n: int, train: bool, share: int = 0, grads=None):
        """The compiled program for ``n`` rows (training: with the gradients; ``share`` k > 0
        of a split step writes them into its own flat buffer ``grads``, laid out as the pack)."""
        key = (n, train, share)
        if key not in self._programs:
            bind = {p.name: p.data for p in self.params}
            if train:
                gg = self._grad
                views = [p.grad for p in self.params] if grads is None else \
                    ParamPack.views(self.params, grads)
                bind.update({gg.grads[p.name]: v for p, v in zip(self.params, views)})
                outs = [self._L, self._out] + [gg.grads[p.name] for p in self.params]
                self._programs[key] = self.backend.compile(gg.graph, outs, bind, {"N": n})
            else:
                self._programs[key] = self.backend.compile(self._graph, [self._L, self._out], bind,
                                                           {"N": n})
                fill_masks(self._programs[key], self._masks, None, train=False)
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
                raise DataError(f"label {y[bad[0]]} at row {bad[0]} is outside [0, {n_out}) "
                                f"({bad_rows(bad, y)})")

    def _batch(self, prog, X, y, idx):
        # idx is a slice of a permutation (or a range): always in bounds, and
        # mode="raise" would buffer the whole batch once more
        self.backend.gather(X, idx, prog.inputs["x"])
        self.backend.gather(y, idx, prog.inputs["y"])

    def graph_hash(self) -> str:
        return self._graph.fingerprint()

    def _preflight(self, X, y):
        self._check_data(X, y)
        bad = nonfinite_rows(X)
        if bad.size:
            raise DataError(f"{bad.size} row(s) hold NaN or Inf, the first is row {bad[0]}")
        if len(X) < self.batch_size and self.drop_last:
            raise DataError(f"the data set has {len(X)} rows, fewer than one batch of "
                            f"{self.batch_size}, and --drop-last drops it")
        if self.checkpoint:
            need = 2 * sum(p.data.nbytes for p in self.params) * (1 + len(self.optimizer.rule.state))
            check_writable(self.checkpoint, need + len(X) * 8 + (1 << 16))

    def save(self, state: LoopState, reason: str) -> Path | None:
        """Write a checkpoint of the current state (a step boundary)."""
        if not self.checkpoint:
            return None
        arrays, meta = capture(self, state, reason)
        return save_checkpoint(self.checkpoint, f"ckpt-{state.global_step:09d}", arrays, meta,
                               self.keep_last)

    def fit(self, train=None, val=None, *, x=None, y=None, validation_data=None, epochs=None,
            batch_size=None, callbacks=None, verbose=None) -> History:
        """Train until ``epochs`` epochs are done; returns the :class:`History`.

        Data as PyTorch and Keras users pass it: ``fit(X, y)``, ``fit(dataset)``,
        ``fit(train, val)`` or ``fit(x=X, y=y, validation_data=(Xv, yv))``; ``epochs`` and
        ``batch_size`` given here replace the trainer's; ``callbacks`` and ``verbose`` given
        here hold for this call.
        Resumes from a checkpoint first when asked (with the checkpoint folder
        locked for the whole run); Ctrl-C or SIGTERM saves an "interrupted"
        checkpoint at the next step boundary and raises ``KeyboardInterrupt``
        (:class:`~symdl.errors.Terminated`, a subclass, for SIGTERM).
        """
        train, val = fit_data(self, train, val, x, y, validation_data)
        run_only, verbose = self._configure(epochs, batch_size, callbacks, verbose)
        # rows are gathered every step: from a strided view (X[::2]) NumPy's take is ~5x slower
        # than from C order, so such data is copied once here
        X, y = np.ascontiguousarray(train.X), self._targets(train)
        self._prepare(X, y)
        if self.batch_size == "full":
            self.batch_size = len(X)
        self._preflight(X, y)
        cbs = self._run_callbacks(run_only, verbose)
        lock = FolderLock(self.checkpoint) if self.checkpoint else contextlib.nullcontext()
        # non-finite values are caught by the step guard, not by NumPy warnings
        with lock, deferred_signals() as interrupted, np.errstate(over="ignore", invalid="ignore",
                                                                  divide="ignore"):
            # with comm: rank 0 starts or resumes, and every rank takes its state
            state = self.loop_state = start_state(self) if self.dist is None \
                else self.dist.start(self, start_state)
            if self.on_start is not None:
                self.on_start(state)
            n, B = len(X), self.batch_size
            self.steps_per_epoch = steps = n // B if self.drop_last else math.ceil(n / B)
            self.stop_training = False
            try:
                cbs.on_train_begin({})
                while state.epoch < self.epochs and not self.stop_training:
                    t0 = time.perf_counter()
                    if state.perm is None:
                        state.perm = self.rng.permutation(n)
                        state.pos, state.total, state.correct = 0, 0.0, 0
                        if self.schedule is not None and self.schedule.unit == "epoch":
                            self.schedule.apply(self.optimizer, state.epoch)
                    cbs.on_epoch_begin(state.epoch, {"lr": self.optimizer.hyper.get("lr")})
                    while state.pos < steps:
                        if interrupted():
                            self.save(state, "interrupted")
                            raise Terminated() if interrupted() == signal.SIGTERM \
                                else KeyboardInterrupt
                        self._train_step(X, y, state, cbs)
                    self._end_epoch(state, n if not self.drop_last else steps * B, val, t0)
                    # early stopping, then the checkpoint (also written when stopping early)
                    cbs.on_epoch_end(state.epoch - 1, epoch_logs(self.history,
                                                                 self.optimizer.hyper.get("lr")))
                cbs.on_train_end({})
            finally:
                cbs.close()
        return self.history

    def _train_step(self, X, y, state: LoopState, cbs):
        if self.dist is not None:  # this rank's slice of the batch, one gradient all-reduce
            return self.dist.train_step(self, X, y, state, cbs)
        step, idx, logs = self._begin_step(state, cbs)
        if self._split.applies(len(idx)):  # one program per thread, each on a share of the rows
            prog, loss_sum, hits = self._split.run(X, y, idx)
            self.current_program = prog
            logs["loss"] = loss_sum / len(idx)
        else:
            prog = self._run_rows(X, y, idx)
            logs["loss"] = float(prog.value(self._L))
            loss_sum, hits = logs["loss"] * len(idx), None
        cbs.on_before_update(step, logs)  # the guard first: nothing bad is ever applied
        if hits is None:
            hits = self.backend.count_hits(prog.value(self._out), prog.inputs["y"]) \
                if self.classification and not logs.get("skip_update") else 0
        self._apply_update(state, logs, prog, loss_sum, hits)
        self._end_step(state, step, logs, cbs)

    # the parts of a step, shared with the distributed step (symdl.train.distributed)
    def _begin_step(self, state: LoopState, cbs):
        """``(step in the epoch, the global batch's rows, logs)``, the schedule stepped."""
        B, step = self.batch_size, state.pos
        idx = state.perm[step * B:(step + 1) * B]
        if self.schedule is not None and self.schedule.unit == "batch":
            self.schedule.apply(self.optimizer, state.global_step)
        logs = {"size": len(idx), "global_step": state.global_step,
                "lr": self.optimizer.hyper.get("lr")}
        cbs.on_batch_begin(step, logs)
        return step, idx, logs

    def _run_rows(self, X, y, idx):
        """Run the training program on rows ``idx`` (masks, batch statistics, noise)."""
        prog = self.current_program = self.program(len(idx), True)
        self._feed(prog, X, y, idx)
        prog.run()
        return prog

    def _feed(self, prog, X, y, idx):
        """Fill training program ``prog``'s inputs for rows ``idx`` (masks, batch statistics, noise)."""
        self._batch(prog, X, y, idx)
        if self._masks:
            fill_masks(prog, self._masks, self.noise_rng, train=True)
        if self._batchnorm:
            set_batchnorm_mode(prog, self.model, train=True)  # batch statistics
        if self.input_noise:
            add_input_noise(prog, self.input_noise, self.noise_rng)

    def _apply_update(self, state: LoopState, logs, prog, loss_sum: float, hits: int):
        """Unless the guard said skip: clip, step the optimizer, count the step's metrics."""
        if logs.get("skip_update"):
            return
        if self.clip_norm or self.clip_value:
            gsq = logs.get("grad_sq_norm")
            gsq = self.backend.sq_norm(self.pack.grad) if gsq is None else gsq
            clip(self.pack.grad, gsq, self.clip_norm, self.clip_value)
        self.optimizer.step()
        if prog is not None and self._batchnorm:
            update_running_stats(self.model, prog)
        state.total += loss_sum
        state.correct += int(hits)

    @staticmethod
    def _end_step(state: LoopState, step: int, logs, cbs):
        state.pos += 1
        state.global_step += 1
        cbs.on_batch_end(step, logs)

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

    def _targets(self, ds):
        y = ds.y
        if not self.classification and y.ndim == 1:
            y = y.reshape(-1, 1)
        # labels 1.5 or 2.9 are an error, never truncated to 1 and 2
        return y.astype(self.dtype) if not self.classification else integral_labels(y, "data")

    def evaluate(self, ds, y=None, *, batch: int = 1024):
        """``(mean loss, accuracy or None)`` over a data set: ``evaluate(dataset)``,
        ``evaluate(X, y)`` or ``evaluate((X, y))``."""
        if y is None and isinstance(ds, (tuple, list)) and len(ds) == 2:
            ds, y = ds
        ds = as_dataset(self, ds, y, "evaluation data")
        X, y = ds.X, self._targets(ds)
        self._prepare(X, y)
        self._check_data(X, y)
        total, correct = 0.0, 0
        for s in range(0, len(X), batch):
            idx = np.arange(s, min(s + batch, len(X)))
            prog = self.program(len(idx), False)
            self._batch(prog, X, y, idx)
            set_batchnorm_mode(prog, self.model, train=False)  # running statistics
            prog.run()
            total += float(prog.value(self._L)) * len(idx)
            if self.classification:
                correct += self.backend.count_hits(prog.value(self._out), prog.inputs["y"])
        return total / len(X), (correct / len(X) if self.classification else None)

    def predict(self, X, batch: int = 1024) -> np.ndarray:
        """Model outputs (logits) for ``X``."""
        X = np.asarray(X, self.dtype)
        self._prepare(X)
        outs = []
        for s in range(0, len(X), batch):
            chunk = X[s:s + batch]
            prog = self.program(len(chunk), False)
            prog.inputs["x"][...] = chunk
            set_batchnorm_mode(prog, self.model, train=False)
            prog.run()
            outs.append(prog.value(self._out).copy())
        return np.concatenate(outs)
