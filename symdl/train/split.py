"""A training step split over threads: each thread takes a share of the batch's rows.

With two threads, a step of one program waits for its threads at every unit:
BLAS splits each GEMM and joins its threads, numba's loops fork and join, and
units too small for either (an unrolled LSTM's 64 x 128 cell kernels, 32 of
them a step) run on one core while the other waits.  Split instead, the step
runs as ``threads`` programs compiled for the rows' shares
(:func:`~symdl.train.distributed.shard`, as data-parallel ranks take them),
each on its own thread with one BLAS and one numba thread
(:func:`symdl.backends.threads.alone`; the kernels release the GIL), and the
shares' gradients (each of its share's mean loss) are added weighted by
``n_share / B``: the data-parallel all-reduce, in memory.  The threads meet once
a step.  The result is the one-program step's up to rounding (the order of the
sums over rows), deterministic for a given thread count.

Measured on 2 cores (quiet, 3 interleaved rounds each, split / one program):
LSTM 1.16-1.22, GRU 1.36, transformer layer 1.35, the small CNN 1.22, and the
MLP 784-256-256-10 at batch 128 0.71: its weight gradients are GEMMs whose inner
dimension is the share's 64 rows, well under BLAS's rate, where a sequence's or
an image's sum over every position of the share's samples (1,024 and more).

``Trainer(split=...)``: ``"auto"`` splits when all of these hold, ``True`` when
the first three do, ``False`` never; ``None`` (default) takes the environment
variable ``SYMDL_SPLIT`` (``auto``, ``on`` or ``off``), else ``"auto"``:

* the user allows two threads or more (:func:`symdl.backends.threads.count`)
  and the backend is the NumPy one with numba kernels, numba's threading layer
  takes loops from several threads and the calling thread's BLAS threads can be
  set (:func:`symdl.backends.threads.can_split`);
* no layer couples a batch's rows (batch normalisation's statistics), the run
  is not data-parallel already (``comm``);
* each share has at least :data:`MIN_ROWS` rows (a batch too small for one share per
  thread is split into fewer shares);
* ``"auto"`` only: the samples have positions (some node of the model's graph has
  the batch dimension and two more: a sequence, an image), so that each share's
  weight gradients still sum over many rows.

Dropout masks and input noise are drawn per share (share 0 first), so a split
run draws them in another order than an unsplit one; both are reproducible.
"""
from __future__ import annotations

import math
import os

from ..backends import threads
from ..errors import UsageError
from .distributed import shard

__all__ = ["Splitter", "split_mode", "positions", "MIN_ROWS"]

MIN_ROWS = 8


_NAMED = {"auto": "auto", "on": True, "off": False}


def split_mode(value):
    """``"auto"``, True or False from ``Trainer``'s ``split`` (None: ``$SYMDL_SPLIT``)."""
    if value is None:
        name = os.environ.get("SYMDL_SPLIT", "auto").strip().lower()
        if name not in _NAMED:
            raise UsageError(f"SYMDL_SPLIT must be auto, on or off, not {name!r}")
        return _NAMED[name]
    if not (value == "auto" or value is True or value is False):
        raise UsageError(f"split must be 'auto', True or False, got {value!r}")
    return value


class Splitter:
    """The split step of one :class:`~symdl.train.Trainer` (``trainer._split``)."""

    def __init__(self, trainer, mode=None):
        self.t, self.mode = trainer, split_mode(mode)
        self.ways = 1
        self._grads: list = []  # flat gradient buffers of shares 1.. (share 0: the pack's)

    def decide(self) -> None:
        """Settle ``ways`` (1: no split) once the trainer's graphs are built."""
        t, n = self.t, threads.count()
        self.ways = 1
        if self.mode is False or n < 2 or t.dist is not None or t._batchnorm:
            return
        if getattr(t.backend, "flavor", None) != "numba" or not threads.can_split():
            return
        if self.mode == "auto" and not positions(t._graph):
            return
        self.ways = n

    def shares(self, rows: int) -> int:
        """Into how many shares a batch of ``rows`` splits (at most one per thread, each of
        at least :data:`MIN_ROWS` rows; 1: not split)."""
        return max(1, min(self.ways, rows // MIN_ROWS))

    def applies(self, rows: int) -> bool:
        return self.shares(rows) > 1

    def _program(self, k: int, n: int):
        """Share ``k``'s training program for ``n`` rows (share 0: the trainer's own)."""
        t = self.t
        if k == 0:
            return t.program(n, True)
        while len(self._grads) < k:
            self._grads.append(t.backend.zeros(t.pack.grad.shape, t.pack.grad.dtype))
        return t.program(n, True, share=k, grads=self._grads[k - 1])

    def run(self, X, y, idx) -> tuple:
        """One step's forward and backward on the shares of rows ``idx``, the gradient
        combined into the trainer's pack.  Returns ``(program, loss summed over the
        rows, hits)``; the program is the first share's with a non-finite loss (for
        the guard's diagnosis), else share 0's."""
        t, B = self.t, len(idx)
        ways = self.shares(B)
        shares = [shard(B, k, ways) for k in range(ways)]
        progs = [self._program(k, hi - lo) for k, (lo, hi) in enumerate(shares)]
        for prog, (lo, hi) in zip(progs, shares):
            t._feed(prog, X, y, idx[lo:hi])
        threads.run([lambda p=p: _alone(p) for p in progs])
        # the shares' mean gradients, weighted by their rows: the batch mean's
        t.pack.grad *= (shares[0][1] - shares[0][0]) / B
        for flat, (lo, hi) in zip(self._grads, shares[1:]):
            flat *= (hi - lo) / B
            t.pack.grad += flat
        losses = [float(p.value(t._L)) for p in progs]
        total = sum(v * (hi - lo) for v, (lo, hi) in zip(losses, shares))
        hits = sum(int(t.backend.count_hits(p.value(t._out), p.inputs["y"])) for p in progs) \
            if t.classification else 0
        bad = [p for p, v in zip(progs, losses) if not math.isfinite(v)]
        return (bad or progs)[0], total, hits


def positions(g) -> bool:
    """Whether the samples of graph ``g`` have positions: some node with the batch
    dimension ``N`` and two more (parameters do not count)."""
    return any(len(s) >= 3 and "N" in s for s in (tuple(g.shape(n)) for n in g.order()))


def _alone(prog) -> None:
    with threads.alone():
        prog.run()
