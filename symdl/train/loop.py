"""Helpers of ``Trainer``: fit's arguments as data sets, the optimizer and callbacks it holds,
and signals deferred to step boundaries.

``fit`` takes data as PyTorch and Keras users write it: ``fit(dataset)``,
``fit(train, val)``, ``fit(X, y)`` and ``fit(x=X, y=y, validation_data=(Xv, yv))``.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

import numpy as np

from ..data.dataset import Dataset, check_pairs
from ..errors import CheckpointError, DataError, UsageError
from ..optim.base import Optimizer
from .checkpoint import clean_stale, latest_good, load_checkpoint
from .state import LoopState, restore
from .callbacks import CallbackList, EarlyStopping, ModelCheckpoint, TerminateOnNaN
from .progress import EpochLines, ProgressBar, verbosity

__all__ = ["CallbackHost", "as_dataset", "deferred_signals", "features", "fit_data", "start_state"]


class CallbackHost:
    """The trainer's optimizer binding and callbacks: the built-in guard, early stopping and
    checkpoints (``guard`` and ``early`` read and replace theirs), the caller's callbacks,
    and the progress callback ``verbose`` asks for."""

    def _bind_optimizer(self, optimizer):
        if isinstance(optimizer, Optimizer):  # made before the flat pack: follow the new arrays
            mine = {id(p) for p in self.params}
            if any(id(q) not in mine for q in optimizer.params):
                raise UsageError("the optimizer holds parameters that are not this model's "
                                 "(make it from model.parameters())")
            optimizer.rebind()
            return optimizer
        if not callable(optimizer):
            raise UsageError("optimizer must be an Optimizer (SGD(model.parameters(), lr=0.1)) or a "
                             f"factory params -> Optimizer, got {type(optimizer).__name__}")
        return optimizer(self.params)

    def _attach(self, callbacks, keep: bool = True) -> list:
        """Attach callbacks; a built-in kind replaces the trainer's own.  The others are kept for
        every run (``keep``: given to the trainer) or returned (given to one ``fit``)."""
        run_only = []
        for cb in callbacks:
            if isinstance(cb, type) or not hasattr(cb, "set_trainer"):
                raise UsageError(f"callbacks must be Callback instances, got {cb!r}")
            if isinstance(cb, TerminateOnNaN):
                self._guard = cb
            elif isinstance(cb, EarlyStopping):
                self._early = cb
            elif isinstance(cb, ModelCheckpoint):
                self._checkpointer = cb
            elif not keep:
                run_only.append(cb)
            elif cb not in self.callbacks:
                self.callbacks.append(cb)
        for cb in (self._guard, self._early, self._checkpointer, *self.callbacks, *run_only):
            if cb is not None:
                cb.set_trainer(self)
        return run_only

    @property
    def guard(self):
        """The step guard (:class:`~symdl.train.guard.Guard`) the guard callback runs."""
        return self._guard.guard

    @guard.setter
    def guard(self, value) -> None:
        self._guard.guard = value

    @property
    def early(self):
        """Early stopping's state (patience, best epoch and weights), or None."""
        return None if self._early is None else self._early.state

    @early.setter
    def early(self, value) -> None:
        if value is None:
            self._early = None
            return
        if self._early is None:
            self._early = EarlyStopping(patience=value.patience)
            self._early.set_trainer(self)
        self._early.state = value

    def _run_callbacks(self, run_only=(), verbose=None) -> CallbackList:
        """The callbacks of one run: the guard, the display ``verbose`` asks for (none on an MPI
        rank other than 0), the caller's, early stopping, then the checkpoint."""
        verbose = self.verbose if verbose is None else verbose
        mine = [*self.callbacks, *run_only]
        if getattr(self, "dist", None) is not None and self.dist.rank:  # one rank speaks
            verbose, mine = 0, [cb for cb in mine if not isinstance(cb, (ProgressBar, EpochLines))]
        shown = {0: [], 1: [ProgressBar()], 2: [EpochLines()]}[verbose]
        for cb in shown:
            cb.set_trainer(self)
        return CallbackList([self._guard, *shown, *mine,
                             *(cb for cb in (self._early, self._checkpointer) if cb is not None)])

    def _configure(self, epochs, batch_size, callbacks, verbose) -> tuple:
        """``fit``'s own ``epochs`` and ``batch_size`` (kept), ``callbacks`` and ``verbose``
        (for this run only, as Keras's; a built-in kind of callback replaces the trainer's
        own); returns ``(callbacks, verbose)`` of the run."""
        if epochs is not None:
            if int(epochs) < 0:
                raise UsageError(f"epochs must be non-negative, got {epochs}")
            self.epochs = int(epochs)
        if batch_size is not None:
            if batch_size != "full" and int(batch_size) < 1:
                raise UsageError(f"batch size must be at least 1, got {batch_size}")
            self.batch_size = batch_size if batch_size == "full" else int(batch_size)
        verbose = None if verbose is None else verbosity(verbose)
        run_only = self._attach(callbacks, keep=False) if callbacks else []
        if callbacks:
            g = self.guard  # the settings a checkpoint records follow the callbacks given
            self.settings.update(divergence=g.divergence, on_nonfinite=g.policy,
                                 max_skips=g.max_skips,
                                 early_stopping=self.early.patience if self.early else None)
        return run_only, verbose



def _is_dataset(obj) -> bool:
    return isinstance(obj, Dataset) or (hasattr(obj, "X") and hasattr(obj, "y"))


def as_dataset(trainer, X, y, where: str):
    """A :class:`~symdl.data.Dataset` of arrays ``X`` (cast to the trainer's float dtype, as a
    framework casts its inputs) and targets ``y``; a data set is returned as it is."""
    if _is_dataset(X):
        if y is not None:
            raise UsageError(f"{where}: a Dataset already holds its targets; pass it alone")
        return X
    if y is None:
        raise UsageError(f"{where}: targets missing: fit(X, y), fit(x=X, y=y) or fit(dataset)")
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim < 2:
        raise DataError(f"{where}: X needs a row per example, shape (n, features), got {X.shape}")
    check_pairs(X, y, where)
    task = "classification" if trainer.classification else "regression"
    return Dataset(X.astype(trainer.dtype, copy=False), y, None, where, task)


def fit_data(trainer, train, val, x, y, validation_data) -> tuple:
    """``(training set, validation set or None)`` from ``fit``'s arguments."""
    if x is not None or y is not None:
        if train is not None or val is not None:
            raise UsageError("fit takes the data once: fit(X, y), fit(dataset) or fit(x=..., y=...)")
        train, val = as_dataset(trainer, x, y, "training data"), None
    elif train is None:
        raise UsageError("fit needs data: fit(X, y), fit(dataset) or fit(x=..., y=...)")
    elif _is_dataset(train):
        train = as_dataset(trainer, train, None, "training data")
    else:  # fit(X, y): the second argument holds the targets
        train, val = as_dataset(trainer, train, val, "training data"), None
    if validation_data is not None:
        if val is not None:
            raise UsageError("validation data given twice (second argument and validation_data)")
        val = validation_data
    if val is None:
        return train, None
    if _is_dataset(val):
        return train, val
    if isinstance(val, (tuple, list)) and len(val) == 2:
        return train, as_dataset(trainer, val[0], val[1], "validation data")
    raise UsageError("validation_data must be a Dataset or a pair (X_val, y_val), got "
                     f"{type(val).__name__}{f' of {len(val)}' if isinstance(val, (tuple, list)) else ''}")


def start_state(trainer) -> LoopState:
    """The loop state a run starts from: fresh, or resumed from a checkpoint as ``resume`` asks
    (clearing what a killed writer left in the locked checkpoint folder first)."""
    if trainer.checkpoint:  # the folder is locked: whatever a killed writer left is stale
        stale = clean_stale(trainer.checkpoint)
        if stale:
            trainer.say(f"cleared {len(stale)} leftover(s) of an interrupted run in "
                        f"{trainer.checkpoint}: {', '.join(stale[:3])}{' ...' if len(stale) > 3 else ''}")
    if trainer.resume == "never" or (trainer.resume == "auto" and not trainer.checkpoint):
        return LoopState()
    if trainer.resume == "auto":
        ckpt = latest_good(trainer.checkpoint, trainer.say, aside=True)
        if ckpt is None:
            return LoopState()
    else:
        path = Path(trainer.resume)
        single = path.name.startswith("ckpt-") or (path / "arrays.npz").exists() \
            or (path / "meta.json").exists()
        own = trainer.checkpoint and path.resolve() == Path(trainer.checkpoint).resolve()
        ckpt = load_checkpoint(path) if single else latest_good(path, trainer.say, aside=own)
        if ckpt is None:
            raise CheckpointError(f"no usable checkpoint in {path}")
    state = restore(trainer, ckpt)
    trainer.say(f"resumed from {ckpt.path} (epoch {state.epoch}, step {state.global_step})")
    return state


def features(shape) -> str:
    shape = tuple(shape)
    return f"{shape[0]} features" if len(shape) == 1 else f"examples of shape {shape}"


@contextlib.contextmanager
def deferred_signals():
    """Turn Ctrl-C and SIGTERM into a flag (the signal's number) that the loop
    reads at step boundaries: both save an "interrupted" checkpoint first."""
    got = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: 0
        return
    handler = lambda signum, _frame: got.append(signum)  # noqa: E731
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: got[0] if got else 0
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
