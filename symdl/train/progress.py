"""Training progress as callbacks: a tqdm bar (``verbose=1``) or one line per epoch (``verbose=2``).

The bar comes from ``tqdm.auto`` (a widget in Jupyter, text on a terminal) on stderr;
epoch lines go to stdout, flushed as each epoch ends, so piped output shows them then
and not when ``fit`` returns.  ``verbose=None`` means a bar on a terminal or in a
notebook, nothing otherwise.
"""
from __future__ import annotations

import sys

from ..errors import UsageError
from .callbacks import Callback

__all__ = ["EpochLines", "ProgressBar", "default_verbose", "epoch_line", "in_notebook",
           "progress_bar", "verbosity"]


class _Silent:
    def update(self, n=1):
        pass

    def set_postfix_str(self, s):
        pass

    def close(self):
        pass


def in_notebook() -> bool:
    """Running in a Jupyter kernel (where stderr is no terminal but a bar still shows)?"""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def default_verbose() -> int:
    """1 (a bar) on a terminal or in a notebook, else 0."""
    return 1 if sys.stderr.isatty() or in_notebook() else 0


def verbosity(verbose, progress=None) -> int:
    """``verbose`` (0, 1, 2 or None) checked; None takes ``progress`` (True: 1, False: 0,
    None: :func:`default_verbose`), the trainer's older switch."""
    if verbose is None:
        return default_verbose() if progress is None else int(bool(progress))
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise UsageError(f"verbose must be 0 (silent), 1 (progress bar) or 2 (one line per "
                         f"epoch), got {verbose!r}")
    return int(verbose)


def progress_bar(total: int, enabled=None, desc: str = ""):
    """``enabled``: True, False, or None for "on a terminal or in a notebook"."""
    if enabled is None:
        enabled = default_verbose() == 1
    if not enabled:
        return _Silent()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, file=sys.stderr, unit="step", leave=False, dynamic_ncols=True)


def epoch_line(epoch: int, logs: dict) -> str:
    """``epoch   3  loss 0.1234  accuracy 97.00%  validation 95.00%`` (``epoch`` from 0)."""
    line = f"epoch {epoch + 1:>3}  loss {logs['loss']:.4f}"
    if logs.get("accuracy") is not None:
        line += f"  accuracy {logs['accuracy']:.2%}"
    if logs.get("val_accuracy") is not None:
        line += f"  validation {logs['val_accuracy']:.2%}"
    elif logs.get("val_loss") is not None:
        line += f"  validation loss {logs['val_loss']:.4f}"
    return line


def _write(line: str, file) -> None:
    """Print a line, flushed; above any live tqdm bar (which it would tear otherwise)."""
    tqdm_mod = sys.modules.get("tqdm")
    if tqdm_mod is not None and getattr(tqdm_mod.tqdm, "_instances", None):
        tqdm_mod.tqdm.write(line, file=file)
        file.flush()
        return
    print(line, file=file, flush=True)


class ProgressBar(Callback):
    """A tqdm bar over the run's remaining steps, with the last epoch's metrics beside it."""

    def __init__(self, desc: str = "train"):
        self.desc, self.bar = desc, _Silent()

    def on_train_begin(self, logs=None):
        t = self.trainer
        remaining = max(t.epochs - t.loop_state.epoch, 0) * t.steps_per_epoch
        self.bar = progress_bar(remaining, True, self.desc)

    def on_batch_end(self, step, logs=None):
        self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        s = f"loss {logs['loss']:.4f}"
        if logs.get("accuracy") is not None:
            s += f" acc {logs['accuracy']:.3f}"
        if logs.get("val_accuracy") is not None:
            s += f" val {logs['val_accuracy']:.3f}"
        self.bar.set_postfix_str(s)

    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        self.bar.close()
        self.bar = _Silent()


class EpochLines(Callback):
    """One line per ``every`` epochs (and the last one), on ``file`` (default stdout), flushed
    when the epoch ends."""

    def __init__(self, every: int = 1, file=None):
        if int(every) < 1:
            raise UsageError(f"EpochLines every must be at least 1, got {every}")
        self.every, self.file = int(every), file
        self._last = None

    def on_train_begin(self, logs=None):
        self._last = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.trainer.epochs:
            _write(epoch_line(epoch, logs), self.file or sys.stdout)
            self._last = None
        else:
            self._last = (epoch, dict(logs))

    def on_train_end(self, logs=None):
        if self._last is not None:  # stopped early: the epoch it stopped at
            _write(epoch_line(*self._last), self.file or sys.stdout)
            self._last = None
