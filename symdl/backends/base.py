"""The backend protocol: the only door from ``nn``, ``optim`` and ``train``
to arrays and kernels.

A backend allocates and moves arrays, compiles graphs into
:class:`~symdl.backends.program.Program` objects through its lowering
table, provides the fused update kernel of an optimizer rule, and the few
primitives a training loop needs around a step (gather a batch, the
squared norm of the flat gradient, dropout masks, the accuracy count, the
first non-finite node).  The NumPy backend (numba loops, or the plain
NumPy reference) implements it; a CuPy backend implements the same.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..errors import BackendError

__all__ = ["Backend", "BackendUnavailable", "get_backend", "register_backend", "BACKENDS"]


#: the requested backend cannot run here (exit code 1: a runtime failure)
BackendUnavailable = BackendError


@runtime_checkable
class Backend(Protocol):
    """What ``nn``, ``optim`` and ``train`` may ask of a backend."""

    name: str            # "numpy", "cupy"
    flavor: str          # kernel flavour: "numba" or "numpy" (CPU), "cuda"
    lowerings: object    # the backend's lowering table
    namespace: dict      # names the generated step function sees

    # arrays
    def empty(self, shape, dtype): ...
    def zeros(self, shape, dtype): ...
    def full(self, shape, value, dtype): ...
    def asarray(self, host_array, dtype=None): ...
    def to_host(self, array): ...
    def matches(self, array, shape, dtype) -> bool: ...

    # graphs and kernels
    def compile(self, graph, outputs, bind=None, dims=None, fuse=True): ...
    def update_kernel(self, rule, dtype: str, parallel: bool): ...

    # trainer primitives
    def gather(self, src, idx, out) -> None: ...
    def sq_norm(self, x) -> float: ...
    def mix(self, parts, weights, lo: int, hi: int) -> None: ...
    def dropout_mask(self, out, p: float, rng) -> None: ...
    def count_hits(self, logits, labels) -> int: ...
    def first_nonfinite(self, program) -> str | None: ...


BACKENDS: dict = {}


def register_backend(name: str, factory) -> None:
    """``factory() -> Backend``, called once, on first use."""
    BACKENDS[name] = factory


_MADE: dict = {}


def get_backend(name: str = "numpy") -> Backend:
    """The backend called ``name`` (``"cpu"`` is ``"numpy"``); created once."""
    name = {"cpu": "numpy", "cuda": "cupy"}.get(name, name)
    if name == "cupy" and name not in BACKENDS:
        raise BackendUnavailable("the CUDA backend needs CuPy, which is not installed: "
                                 "pip install symdl[cuda12] or symdl[cuda13], or use the CPU")
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r} (known: {', '.join(sorted(BACKENDS))})")
    if name not in _MADE:
        _MADE[name] = BACKENDS[name]()
    return _MADE[name]
