"""``History``: the per-epoch metrics a training run returns (a table in Jupyter, ``.plot()``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..printing.notebook import history_html, history_repr

__all__ = ["History"]


@dataclass(repr=False)
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

    @property
    def history(self) -> dict:
        """Keras's ``history.history``: ``{"loss": [...], "accuracy": [...], "val_loss": ...}``
        (the metrics this run computed)."""
        named = {"loss": self.train_loss, "accuracy": self.train_accuracy,
                 "val_loss": self.val_loss, "val_accuracy": self.val_accuracy}
        return {k: list(v) for k, v in named.items() if any(x is not None for x in v)}

    def plot(self, ax=None):
        """Loss and accuracy curves (:func:`symdl.plot.history`); returns the figure."""
        from ..plot import history
        return history(self, ax)

    def __repr__(self) -> str:
        return history_repr(self)

    def _repr_html_(self) -> str:  # Jupyter: a table, one row per epoch
        return history_html(self)
