"""The CuPy backend: device arrays, generated CUDA kernels, cuBLAS.

Implements :class:`~symdl.backends.base.Backend` on one CUDA device.  Graphs
compile into the same :class:`~symdl.backends.program.Program` as on the CPU,
through the lowering table of :mod:`symdl.backends.cupy_lower`: kernels are
rendered from the same declarations (:mod:`symdl.codegen.cuda`) and loaded
with ``cupy.RawModule``; matrix products are ``cupy.matmul`` (cuBLAS).
Host/device copies are explicit (``asarray``, ``to_host``, a batch gathered
on the host and copied up); class labels are checked on the host by the
trainer before they reach a kernel, which would read out of bounds.
Dropout masks come from the host generator, so a GPU run draws the same
masks as a CPU run.  Out of device memory: a :class:`BackendError` that
suggests a smaller batch, raised before any state is saved.

CuPy is imported here only, lazily, when the backend is first asked for
(``get_backend("cuda")``); it registers itself when CuPy is installed.
"""
from __future__ import annotations

import importlib.util

import numpy as np

from ..codegen.cuda import BLOCK, cuda_module, render_cuda
from ..codegen.update import update_spec
from ..errors import BackendError
from .base import register_backend
from . import cupy_conv  # noqa: F401  (unfold, fold, max pooling rows)
from .cupy_lower import CUPY
from .program import Program

__all__ = ["CupyBackend", "Launch", "MISSING"]

MISSING = ("the CUDA backend needs CuPy and a CUDA GPU: install symdl[cuda12] or symdl[cuda13] "
           "(pip install 'symdl[cuda12]'), or use --device cpu")
OOM = ("out of GPU memory ({what}): try a smaller --batch-size (or a smaller model); "
       "nothing was saved from the interrupted step")
_MAX_BLOCKS = 1 << 16


class Launch:
    """A loaded kernel called like the CPU kernels: ``launch(*args)``.

    ``kinds`` says, per argument, ``a`` (a device array), ``s`` (a scalar of
    the kernel's dtype) or ``n`` (a size, ``long long``); the grid covers the
    product of the first ``span`` ``n`` arguments (all of them: elementwise; the
    first: rows, or the entry count of an index loop), and ``auto`` appends one
    size, the first array's, itself (an update kernel)."""

    def __init__(self, fn, kinds: str, dtype: str, span: int | None = None, auto: bool = False):
        self.fn, self.kinds, self.span, self.auto = fn, kinds, span, auto
        self.scalar = np.float32 if dtype == "float32" else np.float64

    def __call__(self, *args):
        if self.auto:
            args = args + (args[0].size,)
        conv, sizes = [], []
        for k, a in zip(self.kinds, args):
            if k == "a":
                conv.append(a)
            elif k == "s":
                conv.append(self.scalar(a))
            else:
                conv.append(np.int64(a))
                sizes.append(int(a))
        n = int(np.prod(sizes[:self.span]))
        if n == 0:
            return
        blocks = min((n + BLOCK - 1) // BLOCK, _MAX_BLOCKS)
        self.fn((blocks,), (BLOCK,), tuple(conv))


class CupyBackend:
    """Device (CuPy) arrays on the current CUDA device; kernels in CUDA C."""

    name = "cupy"
    flavor = "cuda"
    lowerings = CUPY

    def __init__(self):
        try:
            import cupy
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("no device")
        except Exception:  # ImportError, no driver, no device: one line, exit 1
            raise BackendError(MISSING) from None
        self.xp = cupy
        self.namespace = {"np": cupy}
        self._modules: dict = {}
        self._updates: dict = {}

    def _oom(self, what: str):
        return _Guard(self.xp, what)

    # ------------------------------------------------------------ arrays
    def empty(self, shape, dtype):
        with self._oom(f"allocating {tuple(np.atleast_1d(shape))} {dtype}"):
            return self.xp.empty(shape, dtype)

    def zeros(self, shape, dtype):
        with self._oom(f"allocating {tuple(np.atleast_1d(shape))} {dtype}"):
            return self.xp.zeros(shape, dtype)

    def full(self, shape, value, dtype):
        with self._oom(f"allocating {tuple(np.atleast_1d(shape))} {dtype}"):
            return self.xp.full(shape, value, dtype)

    def asarray(self, host_array, dtype=None):
        """A host array copied to the device (contiguous)."""
        with self._oom("copying data to the device"):
            return self.xp.ascontiguousarray(self.xp.asarray(host_array, dtype))

    def to_host(self, array) -> np.ndarray:
        """A device array copied to the host (host arrays pass through)."""
        if isinstance(array, np.ndarray):
            return array
        return self.xp.asnumpy(array)

    def matches(self, array, shape, dtype) -> bool:
        return (isinstance(array, self.xp.ndarray) and array.shape == tuple(shape)
                and array.dtype == np.dtype(dtype) and array.flags.c_contiguous)

    # ------------------------------------------------------ graphs, kernels
    def compile(self, graph, outputs, bind=None, dims=None, fuse=True) -> Program:
        with self._oom("compiling a graph's buffers"):
            prog = Program(self, graph, outputs, bind, dims, fuse)
        step = prog.run

        def run():
            with self._oom("running a training step"):
                return step()

        prog.run = run
        return prog

    def kernel(self, lines: list, kinds: str, dtype: str, span: int | None = None,
               auto: bool = False) -> Launch:
        """The kernel ``kernel`` of CUDA source ``lines``, compiled once per source
        (arguments as :class:`Launch` says)."""
        src = cuda_module(lines)
        if src not in self._modules:
            try:
                self._modules[src] = self.xp.RawModule(code=src, options=("-std=c++11",))
            except Exception as e:  # a compiler message: first line only
                raise BackendError(f"CUDA kernel failed to compile: {str(e).splitlines()[0]}") \
                    from None
        return Launch(self._modules[src].get_function("kernel"), kinds, dtype, span, auto)

    def update_kernel(self, rule, dtype: str, parallel: bool):
        """The fused in-place kernel ``kernel(p, g, *state, *scalars)`` of ``rule``."""
        key = (repr((rule.name, rule.equations, rule.state, sorted(map(str, rule.kernel_scalars)))),
               dtype)
        if key not in self._updates:
            spec = update_spec(rule, dtype)
            kinds = "a" * len(spec.inputs) + "s" * len(spec.scalars) + "n"
            self._updates[key] = self.kernel(render_cuda(spec), kinds, dtype, auto=True)
        return self._updates[key]

    # ------------------------------------------------- trainer primitives
    def gather(self, src, idx, out) -> None:
        """Rows ``idx`` of ``src`` into ``out``: on the device when ``src`` is
        there, else gathered on the host and copied up in one transfer."""
        xp = self.xp
        if isinstance(src, xp.ndarray):
            xp.take(src, xp.asarray(idx), axis=0, out=out)
        else:
            out.set(np.ascontiguousarray(np.take(src, idx, axis=0), out.dtype))

    def sq_norm(self, x) -> float:
        return float(self.xp.dot(x, x))

    def mix(self, parts, weights, lo: int, hi: int) -> None:
        """As :meth:`NumpyBackend.mix <symdl.backends.numpy_backend.NumpyBackend.mix>`."""
        xp = self.xp
        w = np.asarray(weights, dtype=parts[0].dtype)
        acc = xp.multiply(parts[0][lo:hi], w[0])
        for p, wk in zip(parts[1:], w[1:]):
            acc += xp.multiply(p[lo:hi], wk)
        for p in parts:
            p[lo:hi] = acc

    def dropout_mask(self, out, p: float, rng) -> None:
        """Inverted dropout from the host generator (the CPU run's masks)."""
        keep = rng.random(out.shape, dtype=np.float64 if out.dtype == np.float64 else np.float32)
        mask = np.where(keep >= p, 1.0 / (1.0 - p), 0.0).astype(out.dtype)
        out.set(mask)

    def count_hits(self, logits, labels) -> int:
        return int(self.xp.count_nonzero(logits.argmax(-1) == labels))

    def first_nonfinite(self, program) -> str | None:
        xp = self.xp
        for n in program.graph.order():
            v = program.value(n)
            if np.issubdtype(v.dtype, np.floating) and not bool(xp.all(xp.isfinite(v))):
                return f"{n} ({program.graph.op(n)})"
        return None


class _Guard:
    """``with``: CuPy's out-of-memory error becomes one :class:`BackendError` line."""

    def __init__(self, xp, what: str):
        self.xp, self.what = xp, what

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        oom = (self.xp.cuda.memory.OutOfMemoryError,)
        if kind is not None and issubclass(kind, oom):
            raise BackendError(OOM.format(what=self.what)) from None
        return False


if importlib.util.find_spec("cupy") is not None:
    register_backend("cupy", CupyBackend)
