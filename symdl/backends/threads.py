"""A small persistent pool of threads for work that BLAS and numba leave on one core.

A batched product of small matrices (the heads of an attention layer: 128
products of 64 x 64 x 32) is a loop of GEMMs each too small for OpenBLAS to
split over its threads, so it runs on one core however many the user gave.
:func:`run` splits such work into ``count()`` parts: the calling thread does
the first, idle pool threads the others (NumPy releases the GIL inside
``matmul``), and it returns when all are done.  Each part computes exactly
what it would alone, so results are bit-identical whatever the thread count.

The thread count is the one the user set for the kernels: numba's
(``NUMBA_NUM_THREADS``, ``numba.set_num_threads``), else ``OMP_NUM_THREADS``,
else the cores; with 1 (the data-parallel workers' setting) nothing starts.
Pool threads wait on a lock (no spinning: they never take a core from BLAS's
threads), are daemons, and are dropped in a forked child.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numpy as np

from .blas_threads import local_threads

__all__ = ["count", "run", "alone", "can_split", "batched_matmul", "copyto", "COPY_MIN"]

COPY_MIN = 1 << 18  # elements of a strided copy worth splitting over the threads

_workers: list = []
_busy = threading.Lock()


def count() -> int:
    """Threads the user allows (at least 1)."""
    try:
        import numba
        return max(1, int(numba.get_num_threads()))
    except ImportError:
        pass
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return max(1, os.cpu_count() or 1)


def can_split() -> bool:
    """Whether whole programs may run on several threads at once: numba's threading
    layer takes parallel loops from several threads (OpenMP or TBB; its ``workqueue``
    aborts the process) and the calling thread's BLAS thread count can be set."""
    try:
        import numba
        from numba.np.ufunc import parallel
        parallel._launch_threads()
        layer = numba.threading_layer()
    except (ImportError, ValueError, AttributeError):
        return False
    blas = local_threads(1) if layer in ("omp", "tbb") else None
    if blas is None:
        return False
    local_threads(blas)
    return True


@contextmanager
def alone():
    """This thread's numba loops and BLAS calls on one thread each (restored after)."""
    import numba
    before, blas = numba.get_num_threads(), local_threads(1)
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)
        if blas is not None:
            local_threads(blas)


class _Worker:
    def __init__(self):
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.job = self.error = None
        threading.Thread(target=self._loop, daemon=True, name="symdl-pool").start()

    def _loop(self):
        while True:
            self.go.acquire()
            try:
                self.job()
            except BaseException as e:  # re-raised in the caller's thread
                self.error = e
            self.job = None
            self.done.release()

    def start(self, job):
        self.job, self.error = job, None
        self.go.release()

    def wait(self):
        self.done.acquire()
        if self.error is not None:
            e, self.error = self.error, None
            raise e


def _reset():
    global _busy
    _workers.clear()
    _busy = threading.Lock()


os.register_at_fork(after_in_child=_reset)


def run(jobs: list) -> None:
    """Run the callables ``jobs`` at once: the first here, the others on pool threads."""
    if len(jobs) == 1 or not _busy.acquire(blocking=False):  # one caller at a time; another
        for job in jobs:  # thread of the user's meanwhile runs its parts itself
            job()
        return
    try:
        _dispatch(jobs)
    finally:
        _busy.release()


def _dispatch(jobs: list) -> None:
    while len(_workers) < len(jobs) - 1:
        _workers.append(_Worker())
    started = []
    try:
        for w, job in zip(_workers, jobs[1:]):
            w.start(job)
            started.append(w)
        jobs[0]()
    finally:
        errors = []
        for w in started:
            try:
                w.wait()
            except BaseException as e:
                errors.append(e)
        if errors:
            raise errors[0]


def _part(x, out, lo, hi):
    """Operand ``x``'s share of output rows ``lo:hi`` of the leading batch axis
    (all of it where that axis is broadcast)."""
    if x.ndim == out.ndim and x.shape[0] == out.shape[0]:
        return x[lo:hi]
    return x


def batched_matmul(a, b, out) -> None:
    """``np.matmul(a, b, out=out)`` with the leading batch axis split over the
    threads the user allows (each GEMM as small as it would be in one call)."""
    n = min(count(), out.shape[0])
    if n < 2:
        np.matmul(a, b, out=out)
        return
    _split(out.shape[0], n, lambda lo, hi: np.matmul(_part(a, out, lo, hi), _part(b, out, lo, hi),
                                                      out=out[lo:hi]))


def copyto(dst, src) -> None:
    """``np.copyto(dst, src)`` (same shapes; a strided gather such as the heads of
    an attention layer joined), split along the first axis over the threads."""
    n = min(count(), dst.shape[0]) if dst.ndim and dst.size >= COPY_MIN else 1
    if n < 2:
        np.copyto(dst, src)
        return
    _split(dst.shape[0], n, lambda lo, hi: np.copyto(dst[lo:hi], src[lo:hi]))


def _split(rows: int, n: int, part) -> None:
    """``part(lo, hi)`` for ``n`` near-equal row ranges of ``rows``, at once (:func:`run`)."""
    cuts = [rows * k // n for k in range(n + 1)]
    run([lambda lo=lo, hi=hi: part(lo, hi) for lo, hi in zip(cuts, cuts[1:])])
