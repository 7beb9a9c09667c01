"""Execution backends behind one protocol (:mod:`symdl.backends.base`).

``get_backend("numpy")`` (alias ``"cpu"``) is always there; a CuPy backend
registers itself as ``"cupy"`` when it is installed.
"""
from .base import Backend, BackendUnavailable, get_backend, register_backend
from .numpy_backend import NumpyBackend, compile_graph
from . import cupy_backend  # noqa: F401,E402  (registers "cupy" where CuPy is installed)
from .second_order import hessian, hvp

__all__ = ["Backend", "BackendUnavailable", "NumpyBackend", "compile_graph", "get_backend",
           "hessian", "hvp", "register_backend"]
