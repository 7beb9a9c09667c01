"""Keras-style callbacks: hooks around the training loop, and the built-in ones.

A :class:`Callback` is given the trainer (``self.trainer``) before training and is
called at the start and end of training, of each epoch (``epoch`` counted from 0)
and of each batch (``step``: the batch's index in its epoch), with a ``logs`` dict
of the values at hand: per batch ``loss``, ``lr``, ``size`` and ``global_step``; per
epoch ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``lr`` and ``seconds``
(Keras's names).  ``on_before_update`` runs once the gradient is computed and
before the optimizer's update: the step guard lives there, and a callback may set
``logs["skip_update"] = True``.  A callback stops training by setting
``trainer.stop_training = True``: the epoch in progress ends first.

Built in: :class:`TerminateOnNaN` (the step guard of :mod:`symdl.train.guard`),
:class:`EarlyStopping`, :class:`ModelCheckpoint` and :class:`LambdaCallback`.  The
trainer makes the first three from its own arguments (``on_nonfinite``,
``early_stopping``, ``checkpoint``); one passed in ``callbacks`` takes its place.
"""
from __future__ import annotations

from ..errors import UsageError
from .guard import Guard
from .regularize import EarlyStopping as _Patience

__all__ = ["HOOKS", "Callback", "CallbackList", "EarlyStopping", "LambdaCallback",
           "ModelCheckpoint", "TerminateOnNaN", "epoch_logs"]

#: The hooks a callback may define, in the order a run calls them.
HOOKS = ("on_train_begin", "on_epoch_begin", "on_batch_begin", "on_before_update", "on_batch_end",
         "on_epoch_end", "on_train_end")


class Callback:
    """Base class: every hook does nothing; override the ones you need.

    Examples
    --------
    >>> class CountEpochs(Callback):
    ...     def __init__(self):
    ...         self.epochs = 0
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         self.epochs += 1
    """

    trainer = None

    def set_trainer(self, trainer) -> None:
        """Called once the callback is attached (Keras's ``set_model``)."""
        self.trainer = trainer

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, step, logs=None):
        pass

    def on_before_update(self, step, logs=None):
        pass

    def on_batch_end(self, step, logs=None):
        pass

    def close(self) -> None:
        """Release what the callback holds (a progress bar) when training ends or fails."""


class LambdaCallback(Callback):
    """A callback from functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, **hooks):
        unknown = sorted(set(hooks) - set(HOOKS))
        if unknown:
            raise UsageError(f"LambdaCallback has no hook {unknown[0]!r} (hooks: {', '.join(HOOKS)})")
        for name, fn in hooks.items():
            setattr(self, name, fn)


class CallbackList:
    """Callbacks called in order; each hook only reaches the callbacks that define it (a
    batch costs nothing for epoch-only callbacks)."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)
        for name in HOOKS:
            fns = [getattr(cb, name) for cb in self.callbacks if _defines(cb, name)]
            setattr(self, name, _caller(fns))
        self.wants_batches = any(_defines(cb, h) for cb in self.callbacks
                                 for h in ("on_batch_begin", "on_batch_end"))

    def close(self) -> None:
        for cb in self.callbacks:
            cb.close()


def _defines(cb, name: str) -> bool:
    return name in vars(cb) or getattr(type(cb), name) is not getattr(Callback, name)


def _caller(fns):
    def call(*args):
        for fn in fns:
            fn(*args)
    return call


# ------------------------------------------------------------------ built in
class TerminateOnNaN(Callback):
    """The step guard as a callback: after the gradient, before the update, a non-finite
    loss or gradient norm, or a loss over ``divergence`` times the first batch's, stops the
    update; ``on_nonfinite`` then raises (:class:`~symdl.errors.NumericalError`, naming the
    first bad node), or skips the batch (``skip``, ``warn``) up to ``max_skips`` in a row.
    Unlike Keras's, it always runs before the update, so nothing non-finite is applied."""

    def __init__(self, on_nonfinite: str = "raise", max_skips: int = 10, divergence: float = 1e4):
        self.guard = Guard(on_nonfinite, int(max_skips), float(divergence))

    def on_before_update(self, step, logs):
        t = self.trainer
        gsq = self.guard.check(t, t.current_program, logs["loss"], t.loop_state)
        if gsq is None:
            logs["skip_update"] = True
        else:
            logs["grad_sq_norm"] = gsq


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without an improvement of ``monitor`` larger than
    ``min_delta`` (Keras's arguments; ``patience`` 0 counts as 1).  With
    ``restore_best_weights`` (default True, unlike Keras) the best epoch's weights are
    put back when training ends."""

    def __init__(self, monitor: str = "val_loss", patience: int = 1, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = True):
        if mode not in ("auto", "min", "max"):
            raise UsageError(f"EarlyStopping mode must be auto, min or max, not {mode!r}")
        if monitor not in ("loss", "accuracy", "val_loss", "val_accuracy"):
            raise UsageError(f"EarlyStopping monitors loss, accuracy, val_loss or val_accuracy, "
                             f"not {monitor!r}")
        self.monitor, self.restore_best_weights = monitor, bool(restore_best_weights)
        self.sign = -1.0 if mode == "max" or (mode == "auto" and "accuracy" in monitor) else 1.0
        self.state = _Patience(max(int(patience), 1), abs(float(min_delta)))

    def on_train_begin(self, logs=None):
        s = self.state  # each fit starts afresh, as Keras's
        self.state = _Patience(s.patience, s.min_delta)

    def on_epoch_end(self, epoch, logs):
        t = self.trainer
        value = logs.get(self.monitor)
        if value is None and self.monitor.startswith("val_"):
            raise UsageError(f"early stopping monitors {self.monitor}: give validation data "
                             "(fit(..., validation_data=...); --val-fraction > 0)")
        if value is None:
            raise UsageError(f"early stopping monitors {self.monitor}, which this run does not "
                             "compute (accuracy needs a classification loss)")
        if self.state.update(self.sign * value, epoch + 1, t.params):
            t.stop_training = True
            s = self.state
            t.say(f"early stopping after epoch {epoch + 1}: no {_improvement(self.monitor)} for "
                  f"{s.patience} epochs; "
                  + (f"best weights (epoch {s.best_epoch}) restored" if self.restore_best_weights
                     else f"best epoch {s.best_epoch}"))

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.state.weights:
            self.state.restore(self.trainer.params)


def _improvement(monitor: str) -> str:
    return "validation improvement" if monitor == "val_loss" else f"{monitor} improvement"


class ModelCheckpoint(Callback):
    """Resumable checkpoints under ``directory``: every ``every`` epochs, at the last one and
    when training stops early, keeping the newest ``keep_last`` (atomic, verified on load;
    :mod:`symdl.train.checkpoint`).  Attaching it sets the trainer's checkpoint folder, so
    resuming (``Trainer(resume=...)``) and the save on Ctrl-C use the same folder."""

    def __init__(self, directory, every: int = 1, keep_last: int = 2):
        if int(every) < 1 or int(keep_last) < 1:
            raise UsageError("checkpoint every and keep_last must be at least 1")
        self.directory, self.every, self.keep_last = directory, int(every), int(keep_last)

    def set_trainer(self, trainer) -> None:
        super().set_trainer(trainer)
        trainer.checkpoint, trainer.every, trainer.keep_last = self.directory, self.every, \
            self.keep_last

    def on_epoch_end(self, epoch, logs=None):
        t = self.trainer
        done = epoch + 1
        if t.stop_training or done % self.every == 0 or done == t.epochs:
            t.save(t.loop_state, "epoch")


def epoch_logs(history, lr) -> dict:
    """Keras-named values of the last epoch of a :class:`~symdl.train.trainer.History`."""
    h = history
    return {"loss": h.train_loss[-1], "accuracy": h.train_accuracy[-1], "val_loss": h.val_loss[-1],
            "val_accuracy": h.val_accuracy[-1], "lr": lr, "seconds": h.seconds[-1]}
