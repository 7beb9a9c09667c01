"""Per-step metrics on backend arrays: the accuracy count of a classifier."""
from __future__ import annotations

from .numpy_backend import backend_for

__all__ = ["count_hits"]


def count_hits(z, labels) -> int:
    """Rows of the logits ``z`` (N, C) whose argmax is the label (ties: the
    first maximum, as ``np.argmax``); see :meth:`NumpyBackend.count_hits`."""
    return backend_for().count_hits(z, labels)
