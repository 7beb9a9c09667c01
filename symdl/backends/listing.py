"""The NumPy backend's part of the ``kernels/`` listing: its hand-declared numba loops.

``unfold``/``fold`` over 2-D maps (:data:`~symdl.backends.numpy_conv.MAP_KERNELS`) and
``argmax``/``gather``/``scatter_add`` along a middle axis (max pooling,
:data:`~symdl.backends.numpy_structural.AXIS_KERNELS`) are written as numba source in the
backend, not rendered from SymPy; the listing holds exactly the text the backend loads, so
``symdl kernels --check`` notices any change to them.  Their CUDA counterparts are rendered
by :mod:`symdl.codegen.cuda_grid` and listed with the ops.
"""
from __future__ import annotations

from .numpy_conv import MAP_KERNELS
from .numpy_structural import AXIS_KERNELS

__all__ = ["backend_listing"]


def backend_listing() -> dict:
    """``{"numba/<op>.py": source}`` of every numba loop the NumPy backend declares."""
    return {f"numba/{op}.py": src.rstrip("\n") for op, src in sorted({**MAP_KERNELS,
                                                                        **AXIS_KERNELS}.items())}
