"""The optimizers' part of the ``kernels/`` listing: one file per optimizer,
every variant of its rule, float32 and float64, numba, NumPy and CUDA."""
from __future__ import annotations

from ..codegen.cuda import cuda_module, render_cuda
from ..codegen.listing import DTYPES, FLAVORS
from ..codegen.update import update_spec
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
    for name, cls in sorted(OPTIMIZERS.items()):
        lines = []
        for label, rule in cls.variants():
            for dtype in DTYPES:
                lines += render_cuda(update_spec(rule, dtype, name=f"{label}_{dtype[-2:]}"))
        out[f"cuda/optim_{name}.cu"] = cuda_module(lines, [f"{name}: fused in-place updates"])
    return out
