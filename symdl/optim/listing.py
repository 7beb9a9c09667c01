"""The optimizers' part of the ``kernels/`` listing: one file per optimizer,
every variant of its rule, float32 and float64, numba and NumPy."""
from __future__ import annotations

from ..codegen.listing import DTYPES, FLAVORS
from . import OPTIMIZERS
from .base import update_kernel_source


def optim_listing() -> dict:
    """``{relative path: source}`` for every optimizer in :data:`OPTIMIZERS`."""
    out = {}
    for flavor in FLAVORS:
        for name, cls in sorted(OPTIMIZERS.items()):
            parts = []
            for label, rule in cls.variants():
                for dtype in DTYPES:
                    src = update_kernel_source(rule, dtype, flavor).replace(
                        "def kernel(", f"def {label}_{dtype[-2:]}(")
                    parts.append(src if not parts else src.split("\n", 4)[4])
            out[f"{flavor}/optim_{name}.py"] = "\n".join(parts)
    return out
