"""Per-step metrics on backend arrays: the accuracy count of a classifier."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..codegen.kernels import hits_kernel, module_header
from .loader import load_function, numba_available


@lru_cache(maxsize=None)
def _hits():
    return load_function("\n".join(module_header("numba") + hits_kernel("kernel")))


def count_hits(z: np.ndarray, labels: np.ndarray) -> int:
    """Rows of the logits ``z`` (N, C) whose argmax is the label (ties: the
    first maximum, as ``np.argmax``).  One generated loop under numba (the
    NumPy expression costs several calls and a temporary per step)."""
    if not numba_available() or z.ndim != 2 or z.dtype.kind != "f" or z.shape[1] == 0:
        return int(np.count_nonzero(z.argmax(-1) == labels))
    return int(_hits()(z, labels))


__all__ = ["count_hits"]
