"""The gradient sum of data-parallel ranks on one host, through MPI-3 shared memory.

The ranks' flat gradients live in one ``MPI_Win_allocate_shared`` window: each rank's backward
pass writes its gradient straight into its own part.  A step's reduction is two polled barriers
with the arithmetic between them: each rank adds up its slice of every rank's gradient (in rank
order, weighted by rows: the backend's ``mix``) and writes that slice of the sum into every
rank's part.  One read and one write of the gradient per rank and no copies through MPI's
buffers; every element is summed by one rank, so all ranks hold the same bits, the bits of
``grad *= w`` and a two-rank ``MPI_Allreduce``.  ``Win_sync`` orders the loads and stores
around each barrier (the unified memory model's rule).
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["NodeReduce", "room"]


def room(nbytes: int, path: str = "/dev/shm") -> bool:
    """Whether the host's shared memory (the ``tmpfs`` at ``path``) has ``nbytes`` free with a
    tenth to spare: a window larger than that would end in SIGBUS when its pages are touched
    (a container's /dev/shm is often 64 MB), not in an error.  No such folder: True (MPI
    finds its own memory)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return True
    return st.f_bavail * st.f_frsize >= 1.1 * nbytes


class NodeReduce:
    """The gradient reduction of ranks on one host through an MPI-3 shared-memory window.

    Each rank's part of the window holds its flat gradient (``grads[r]``, ``n`` values; the
    rank's :class:`~symdl.nn.parameter.ParamPack` keeps its gradients there) and ``k``
    float64 numbers (``sums[r]``: the loss sum and hit count of its rows)."""

    def __init__(self, comm, MPI, grad, backend, part: tuple, k: int = 2):
        n, dtype = grad.size, np.dtype(grad.dtype)
        rank, size = comm.Get_rank(), comm.Get_size()
        gbytes = -(-n * dtype.itemsize // 64) * 64  # every part starts on a cache line
        sbytes = -(-8 * k // 64) * 64
        self.win = MPI.Win.Allocate_shared(gbytes + sbytes, 1, comm=comm)
        self.win.Lock_all()  # one passive epoch for good: Sync() orders loads and stores
        self.grads, self.sums = [], []
        for r in range(size):
            mem = np.frombuffer(self.win.Shared_query(r)[0], np.uint8)
            self.grads.append(mem[:n * dtype.itemsize].view(dtype))
            self.sums.append(mem[gbytes:gbytes + 8 * k].view(np.float64))
        self.lo, self.hi = part  # the slice of the gradient this rank adds up
        self.rank, self.backend = rank, backend

    def reduce(self, weights, sums, barrier) -> None:
        """Replace every rank's gradient by ``sum_r weights[r] * grads[r]`` and ``sums`` by the
        sum over the ranks; ``barrier()`` waits until every rank has called it."""
        self.sums[self.rank][:len(sums)] = sums
        self.win.Sync()
        barrier()  # every rank's gradient and sums are written
        self.win.Sync()
        self.backend.mix(self.grads, weights, self.lo, self.hi)
        total = np.zeros(len(sums))
        for part in self.sums:
            total += part[:len(sums)]
        self.win.Sync()
        barrier()  # every slice is written everywhere; nobody reads a part any more
        self.win.Sync()
        sums[...] = total
