"""The NumPy backend: host arrays, numba loops (or the NumPy reference).

Implements :class:`~symdl.backends.base.Backend`.  Graphs compile into a
:class:`~symdl.backends.program.Program` through the lowering table of
:mod:`symdl.backends.numpy_lower` (and :mod:`symdl.backends.numpy_rowops`);
matrix products go to BLAS with ``out=``; elementwise groups, row losses,
reductions and optimizer updates run as generated kernels.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..codegen.kernels import hits_kernel
from ..codegen.render import module_header
from ..codegen.update import update_kernel_source
from ..errors import UsageError
from ..ops import G, Y
from . import numpy_rowops  # noqa: F401  (registers the row-op lowerings)
from . import numpy_structural  # noqa: F401  (slice, pad, concat, gather... rows)
from . import numpy_conv  # noqa: F401  (unfold, fold rows)
from .base import register_backend
from .blas_threads import quiet as quiet_blas
from .loader import load_function, numba_available
from .numpy_lower import NUMPY
from .program import Program, concrete

__all__ = ["NumpyBackend", "Program", "compile_graph", "concrete", "G", "Y"]


class NumpyBackend:
    """Host (NumPy) arrays; kernels in ``flavor`` ``"numba"`` or ``"numpy"``."""

    name = "numpy"
    lowerings = NUMPY

    def __init__(self, flavor: str = "auto"):
        if flavor == "auto":
            flavor = "numba" if numba_available() else "numpy"
        if flavor not in ("numba", "numpy"):
            raise UsageError(f"the NumPy backend's flavours are numba and numpy, not {flavor!r}")
        self.flavor = flavor
        self.namespace = {"np": np}
        self._updates: dict = {}
        quiet_blas()   # OpenBLAS's idle threads sleep: numba's loops get the cores

    # ------------------------------------------------------------ arrays
    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype)

    def full(self, shape, value, dtype):
        return np.full(shape, value, dtype)

    def asarray(self, host_array, dtype=None):
        return np.ascontiguousarray(host_array, dtype)

    def to_host(self, array) -> np.ndarray:
        return np.asarray(array)

    def matches(self, array, shape, dtype) -> bool:
        return (isinstance(array, np.ndarray) and array.shape == tuple(shape)
                and array.dtype == np.dtype(dtype) and array.flags.c_contiguous)

    # ------------------------------------------------------ graphs, kernels
    def compile(self, graph, outputs, bind=None, dims=None, fuse=True) -> Program:
        return Program(self, graph, outputs, bind, dims, fuse)

    def update_kernel(self, rule, dtype: str, parallel: bool):
        """The fused in-place kernel ``kernel(p, g, *state, *scalars)`` of ``rule``."""
        # rules are rebuilt per optimizer instance: key on what the kernel computes
        key = (repr((rule.name, rule.equations, rule.state, sorted(map(str, rule.kernel_scalars)))),
               dtype, parallel)
        if key not in self._updates:
            self._updates[key] = load_function(update_kernel_source(rule, dtype, self.flavor, parallel))
        return self._updates[key]

    # ------------------------------------------------- trainer primitives
    def gather(self, src, idx, out) -> None:
        """Rows ``idx`` of ``src`` into ``out``.  ``idx`` is always in bounds
        (a slice of a permutation), and ``mode="raise"`` would buffer the
        whole batch once more."""
        np.take(src, idx, axis=0, out=out, mode="clip")

    def mix(self, parts, weights, lo: int, hi: int) -> None:
        """``s = Σ_r weights[r] · parts[r][lo:hi]``, r in order, then ``parts[r][lo:hi] = s``
        for every r: one rank's slice of the data-parallel gradient sum (the ranks' gradients
        in shared memory); the same roundings as ``grad *= w`` and an all-reduce's sum."""
        w = np.asarray(weights, dtype=parts[0].dtype)
        acc = np.multiply(parts[0][lo:hi], w[0])
        tmp = np.empty_like(acc)
        for p, wk in zip(parts[1:], w[1:]):
            acc += np.multiply(p[lo:hi], wk, out=tmp)
        for p in parts:
            p[lo:hi] = acc

    def sq_norm(self, x) -> float:
        with np.errstate(over="ignore", invalid="ignore"):
            return float(np.dot(x, x))

    def dropout_mask(self, out, p: float, rng) -> None:
        """Inverted dropout: 1/(1 − p) where kept (probability 1 − p), else 0."""
        keep = rng.random(out.shape, dtype=np.float64 if out.dtype == np.float64 else np.float32)
        np.greater_equal(keep, p, out=keep)
        np.multiply(keep, 1.0 / (1.0 - p), out=out, casting="unsafe")

    def count_hits(self, logits, labels) -> int:
        """Rows of ``logits`` (N, C) whose argmax (the first, on ties, as
        ``np.argmax``) is the label; one generated loop under numba."""
        z = logits
        if self.flavor != "numba" or z.ndim != 2 or z.dtype.kind != "f" or z.shape[1] == 0:
            return int(np.count_nonzero(z.argmax(-1) == labels))
        return int(_hits()(z, labels))

    def first_nonfinite(self, program) -> str | None:
        """The first node, in execution order, holding a NaN or an infinity."""
        for n in program.graph.order():
            v = program.value(n)
            if np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v)):
                return f"{n} ({program.graph.op(n)})"
        return None


@lru_cache(maxsize=None)
def _hits():
    return load_function("\n".join(module_header("numba") + hits_kernel("kernel")))


_FLAVORS: dict = {}


def backend_for(flavor: str = "auto") -> NumpyBackend:
    """The NumPy backend with kernels of ``flavor`` (one instance each)."""
    if flavor not in _FLAVORS:
        _FLAVORS[flavor] = NumpyBackend(flavor)
    return _FLAVORS[flavor]


register_backend("numpy", backend_for)


def compile_graph(graph, outputs, bind=None, dims=None, flavor="auto", fuse=True) -> Program:
    """Compile ``graph`` to a :class:`Program` computing ``outputs`` on the
    NumPy backend; with ``fuse=False`` every node keeps its value (for
    diagnostics); ``flavor="numpy"`` uses the NumPy reference kernels."""
    return backend_for(flavor).compile(graph, outputs, bind, dims, fuse)
