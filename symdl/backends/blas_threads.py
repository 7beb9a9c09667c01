"""OpenBLAS's idle threads sleep instead of spinning, so that numba's threads get the cores.

After each call, OpenBLAS's worker threads spin (yielding) for 2^28 cycles, about
0.1 s, waiting for the next one.  A training step alternates GEMMs with numba's
parallel loops every millisecond or two, so they spin the whole step, and on a
2-core machine numba's second thread shares a core with a spinner: measured on
the small CNN of ``benchmarks/cnn_cpu.py``, two threads were no faster than one
(29 ms a step either way, the CPU time doubled); with the workers sleeping at
once, 21-23 ms (PyTorch: 22-26 ms).  Sleeping at once (``OPENBLAS_THREAD_TIMEOUT=4``,
2^4 cycles) costs the sequence models, whose per-step GEMMs come every 0.1 ms: each
wakes the workers again (a GRU step's GEMMs 57 -> 115 us).  So the default is 2^20
cycles, about 0.4 ms: awake through a run of small GEMMs, asleep in the long numba
loops between a CNN's (quiet machine, 2 rounds each, symdl/PyTorch: GRU 0.89 at 4, 1.23
at 20, 1.36 at 28; CNN plain 1.09-1.15 at 4, 1.09 at 20, 1.04 at 28; with BatchNorm
1.59 at 4, 1.06 at 20, 0.93-0.97 at 28; noisy).  OpenBLAS
reads its environment when it is loaded (with NumPy, usually before symdl), so
:func:`quiet` sets the variable (unless the user did), has each OpenBLAS loaded
in the process re-read it, and stops its workers between calls: the next GEMM
starts them again with the short timeout.  Called when the NumPy backend is
made, before any step runs (stopping the workers while another thread is inside
BLAS is not safe).  Linux only (``/proc/self/maps``); a BLAS without these
OpenBLAS entry points is left alone.
"""
from __future__ import annotations

import ctypes
import os

__all__ = ["quiet", "openblas_paths", "local_threads"]

_quieted: list | None = None


def openblas_paths() -> list:
    """The OpenBLAS shared libraries loaded in this process (NumPy's, SciPy's...)."""
    try:
        with open("/proc/self/maps") as f:
            names = {line.split()[-1] for line in f if ".so" in line}
    except OSError:
        return []
    return sorted(p for p in names if "openblas" in os.path.basename(p).lower())


def quiet() -> list:
    """Make every loaded OpenBLAS put its idle threads to sleep soon (the
    timeout from ``OPENBLAS_THREAD_TIMEOUT``, 20 unless set); once per process.
    Returns the libraries changed."""
    global _quieted
    if _quieted is not None:
        return _quieted
    _quieted = []
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")
    for path in openblas_paths():
        try:
            lib = ctypes.CDLL(path)   # already loaded: the same library, not a copy
        except OSError:
            continue
        read = getattr(lib, "openblas_read_env", None)
        stop = getattr(lib, "blas_thread_shutdown_", None)
        if read is None or stop is None:
            continue
        read.restype = stop.restype = None
        read()
        stop()
        _quieted.append(path)
    return _quieted


_local: list | None = None


def local_threads(n: int) -> int | None:
    """Set the calling thread's OpenBLAS thread count (``openblas_set_num_threads_local``,
    OpenBLAS 0.3.27 on) in every loaded OpenBLAS; returns the previous count, or None
    where no loaded BLAS has the entry point (then nothing was changed)."""
    global _local
    if _local is None:
        _local = []
        for path in openblas_paths():
            try:
                fn = getattr(ctypes.CDLL(path), "openblas_set_num_threads_local", None)
            except OSError:
                continue
            if fn is not None:
                fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int]
                _local.append(fn)
    if not _local:
        return None
    before = [fn(int(n)) for fn in _local]
    return before[0]
