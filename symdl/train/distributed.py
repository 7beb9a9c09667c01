"""Data-parallel training on MPI: sharded batches, one gradient all-reduce per step, rank 0 writes.

Every rank holds the whole model and the whole data set.  Each step, all ranks take the same
global batch of the same seeded permutation; rank ``r`` computes the gradient of its contiguous
slice (the first ``B mod N`` ranks get one row more), weights it by ``n_local / B`` (the loss is a
mean over the local rows) and one ``Allreduce(IN_PLACE, grad, SUM)`` of the flat gradient buffer
(:class:`~symdl.nn.parameter.ParamPack`) leaves on every rank exactly the one-process mean
gradient, up to rounding.  The loss and hit counts are reduced with it, so the step guard reads
the same numbers on every rank and takes the same decision, and every rank applies the same
update; a CRC32 of the flat parameters is compared every ``check_every`` steps and at the end of
each epoch.  A rank with no rows in a short last batch contributes a zero gradient.

On one host (and unless some rank sets ``SYMDL_DIST_SHM=0``) the gradients live in MPI-3 shared
memory and are summed there (:mod:`symdl.train.shared_memory`: 0.1 ms against 0.25-0.4 ms for
``MPI_Allreduce`` of the MLP's 1.08 MB on the 2-core development machine); the same bits.

Batch-norm batch statistics are per rank (each rank normalises its slice by the slice's own
mean and variance, as PyTorch's DDP without SyncBatchNorm); the running statistics are averaged
across ranks at the end of each epoch, so that every rank evaluates the same model.

Only rank 0 prints progress, takes the checkpoint folder's lock and writes checkpoints; at the
start it sends its state (fresh or resumed, through the checkpoint round trip of
:mod:`symdl.train.state`) to the others, so a run resumes on any number of ranks.

Failures never hang: every collective is non-blocking and polled.  While it waits, a rank checks
every half second that the peers on its host are alive (their PIDs were exchanged at start) and
waits at most ``timeout`` seconds for peers on other hosts; a dead or silent peer makes it print
one line naming the rank and leave with exit code 1 without any further collective
(``os._exit``; MPI is not finalized, which would wait for the dead peer).  mpi4py is imported
only when a :class:`Communicator` is made.  On GPUs, :class:`NcclCommunicator` all-reduces the
gradient with NCCL (``cupyx.distributed``) and keeps MPI for the rest.  docs/scaling.md has the
details, mpich's behaviour on a dead rank, and the cost model.
"""
from __future__ import annotations

import atexit
import os
import pickle
import signal
import socket
import sys
import threading
import time
import weakref
import zlib
from types import SimpleNamespace

import numpy as np

from ..errors import BackendError, NumericalError, SymdlError
from ..nn.norm import batchnorm_layers
from .checkpoint import check_writable
from .state import capture, restore

__all__ = ["Communicator", "NcclCommunicator", "ParameterMismatch", "RankError", "StartFailed",
           "attach", "import_mpi", "shard"]


class ParameterMismatch(SymdlError):
    """The ranks' parameters differ (exit code 1)."""


class RankError(SymdlError):
    """An error found on one rank only; its message names the rank (exit code 1)."""


class StartFailed(SymdlError):
    """Rank 0 could not start (its error, with its exit code, on the other ranks)."""

    def __init__(self, exit_code: int, message: str):
        super().__init__(f"rank 0 could not start: {message}")
        self.exit_code = int(exit_code)


def import_mpi():
    """``mpi4py.MPI``, imported on first use (with ``rc.finalize`` off: see the module notes)."""
    if "mpi4py.MPI" not in sys.modules:
        try:
            import mpi4py
        except ImportError:
            raise BackendError("data-parallel training needs mpi4py and an MPI library: "
                               "pip install 'symdl[mpi]' (mpi4py and mpich)") from None
        # MPI_Finalize at exit waits for every peer: a rank leaving after an error would hang
        mpi4py.rc.finalize = False
    from mpi4py import MPI
    return MPI


def shard(n: int, rank: int, size: int) -> tuple:
    """``(lo, hi)``: rank's contiguous slice of ``n`` rows (the first ``n mod size``: one more)."""
    q, rem = divmod(n, size)
    lo = rank * q + min(rank, rem)
    return lo, lo + q + (rank < rem)


class Communicator:
    """A thin wrapper of an mpi4py communicator for :class:`~symdl.train.Trainer` (``comm=``).

    Parameters
    ----------
    comm : an ``mpi4py.MPI.Comm`` (default ``COMM_WORLD``).
    check_every : compare the parameters' checksums every so many steps (and at epoch ends).
    timeout : seconds to wait in one collective for peers on other hosts (default: the
        ``SYMDL_DIST_TIMEOUT`` environment variable, else 600); peers on this host are
        checked by PID instead, so a long first compile on one of them is no failure.
    """

    def __init__(self, comm=None, check_every: int = 50, timeout: float | None = None):
        self.MPI = MPI = import_mpi()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.check_every = max(1, int(check_every))
        self.timeout = float(timeout or os.environ.get("SYMDL_DIST_TIMEOUT", 600))
        self.host = socket.gethostname()
        # the only blocking collective: no peer PIDs are known before it
        self.peers = self.comm.allgather((self.host, os.getpid()))
        self.reduce_seconds, self.reduce_calls = 0.0, 0  # time in the gradient all-reduce
        self.nodes = weakref.WeakKeyDictionary()  # ParamPack -> its shared_memory.NodeReduce
        # mpich's launcher under -disable-auto-cleanup signals a peer's death with SIGUSR1,
        # whose default action would end this rank silently: note it, and report it in wait()
        self.notified = False
        usr1 = getattr(signal, "SIGUSR1", None)
        if usr1 and threading.current_thread() is threading.main_thread() and \
                signal.getsignal(usr1) == signal.SIG_DFL:
            signal.signal(usr1, self._notice)
            # ranks leave without MPI_Finalize, which mpich reports to the others by the same
            # signal: once this one is leaving, a notice must not kill it (Python keeps SIG_IGN)
            atexit.register(signal.signal, usr1, signal.SIG_IGN)

    def _notice(self, signum, frame) -> None:
        self.notified = True

    # ------------------------------------------------------------ collectives
    def allreduce(self, *bufs, what: str = "the gradient all-reduce") -> None:
        """Sum each array in place over the ranks (one non-blocking call per array)."""
        if self.size == 1:
            return
        t0 = time.perf_counter()
        self.wait([self.comm.Iallreduce(self.MPI.IN_PLACE, b, op=self.MPI.SUM) for b in bufs], what)
        self.reduce_seconds += time.perf_counter() - t0
        self.reduce_calls += 1

    def share(self, pack) -> bool:
        """On one host, move ``pack``'s gradients into a shared-memory window (a
        :class:`~symdl.train.shared_memory.NodeReduce`) unless some rank has ``SYMDL_DIST_SHM=0``
        or too little free shared memory; collective.  Returns whether they moved."""
        from .shared_memory import NodeReduce, room
        wish = int(os.environ.get("SYMDL_DIST_SHM", "1") != "0" and isinstance(
            pack.grad, np.ndarray) and room(self.size * (pack.grad.nbytes + 128)))
        if self.size == 1 or not self.allgather_int(wish, "the start").all():
            return False
        node = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        one_host = node.Get_size() == self.size
        node.Free()
        if one_host:
            self.nodes[pack] = shared = NodeReduce(self.comm, self.MPI, pack.grad, pack.backend,
                                                   shard(pack.grad.size, self.rank, self.size))
            pack.move_grad(shared.grads[self.rank])
        return one_host

    def reduce_gradient(self, pack, rows, sums) -> None:
        """The global batch's mean gradient in ``pack.grad`` on every rank, from each rank's
        mean over its ``rows[r]`` rows; ``sums`` (loss sum, hits) summed over the ranks."""
        if self.size == 1:
            return
        node = self.nodes.get(pack)
        if node is None:
            pack.grad *= rows[self.rank] / sum(rows)  # weighted: the sum is the global mean's
            return self.allreduce(pack.grad, sums)
        t0 = time.perf_counter()
        total = sum(rows)
        node.reduce([r / total for r in rows], sums, lambda: self.wait(
            [self.comm.Ibarrier()], "the gradient reduction"))
        self.reduce_seconds += time.perf_counter() - t0
        self.reduce_calls += 1

    def allgather_int(self, value: int, what: str) -> np.ndarray:
        """Every rank's ``value`` (an int64 each)."""
        out = np.zeros(self.size, np.int64)
        self.wait([self.comm.Iallgather(np.array([value], np.int64), out)], what)
        return out

    def bcast_object(self, obj, what: str):
        """Rank 0's ``obj`` (pickled) on every rank."""
        if self.size == 1:
            return obj
        blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL) if self.rank == 0 else b""
        n = np.array([len(blob)], np.int64)
        self.wait([self.comm.Ibcast(n, root=0)], what)
        buf = np.frombuffer(blob, np.uint8).copy() if self.rank == 0 else np.empty(n[0], np.uint8)
        self.wait([self.comm.Ibcast(buf, root=0)], what)
        return obj if self.rank == 0 else pickle.loads(buf.tobytes())

    def wait(self, reqs, what: str, done=None) -> None:
        """Complete ``reqs`` (or wait until ``done()``), polling; a dead or silent peer ends
        this process (exit code 1)."""
        Testall = self.MPI.Request.Testall
        done = done or (lambda: Testall(reqs))
        t0 = time.monotonic()
        check_at, nap = t0 + 0.5, 1e-4
        while not done():
            now = time.monotonic()
            # a step's imbalance: poll (mpich progresses only inside Testall, on both sides);
            # a long wait (a peer compiling, writing a checkpoint): leave the core to others
            if now - t0 < 0.1:
                os.sched_yield()
            else:
                time.sleep(nap)
                nap = min(2 * nap, 5e-3)
            if now >= check_at or self.notified:
                check_at = now + 0.5
                dead = self.dead_peers()
                remote = [r for r, (h, _) in enumerate(self.peers) if h != self.host]
                if dead or self.notified:
                    # a peer that finished this very collective may leave before we see it end
                    grace = time.monotonic() + 0.2
                    while time.monotonic() < grace:
                        if done():
                            return
                        time.sleep(1e-3)
                    self.abandon(dead or remote, f"stopped (during {what})")
                if remote and now - t0 > self.timeout:
                    self.abandon(remote, f"did not answer for {self.timeout:g} s (in {what}); "
                                 "set SYMDL_DIST_TIMEOUT to wait longer")

    def dead_peers(self) -> list:
        """Ranks on this host whose process is gone (or a zombie)."""
        out = []
        for r, (host, pid) in enumerate(self.peers):
            if r == self.rank or host != self.host:
                continue
            try:
                os.kill(pid, 0)
                with open(f"/proc/{pid}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[-1].split()[0] in (b"Z", b"X"):
                        out.append(r)
            except ProcessLookupError:
                out.append(r)
            except OSError:  # no /proc (not Linux) or no permission: os.kill said it lives
                pass
        return out

    def abandon(self, ranks, why: str) -> None:
        """Print one line (from the lowest rank still alive) and leave at once with exit code 1."""
        ranks = sorted(ranks)
        if self.rank == min(set(range(self.size)) - set(ranks)):
            who = ", ".join(f"{r} (PID {self.peers[r][1]} on {self.peers[r][0]})" for r in ranks)
            who = f"rank{'s' if len(ranks) > 1 else ''} {who}" if ranks else "a rank"
            print(f"symdl: error: {who} {why}; the other ranks stop too (the last checkpoint is "
                  "kept)", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(1)

    # ------------------------------------------------------------ training
    def start(self, trainer, starter):
        """Rank 0 starts, fresh or resumed (``starter(trainer)``), and sends its state to the
        others; an error there (a corrupt checkpoint, other settings) reaches every rank, which
        raise it with rank 0's exit code.  Returns this rank's loop state."""
        if self.size == 1:
            return starter(trainer)
        what = "the start (rank 0 sends its state)"
        if self.rank == 0:
            try:
                state = starter(trainer)
            except SymdlError as exc:
                self.bcast_object(("error", exc.exit_code, str(exc)), what)
                raise
            self.bcast_object(("ok", capture(trainer, state, "start")), what)
        else:
            kind, *payload = self.bcast_object(None, what)
            if kind == "error":
                raise StartFailed(*payload)
            arrays, meta = payload[0]
            try:
                state = restore(trainer, SimpleNamespace(meta=meta, arrays=arrays,
                                                         path="of rank 0"))
            except SymdlError as exc:
                raise RankError(f"rank {self.rank}: its model or settings differ from rank 0's: "
                                f"{exc}") from None
            # independent dropout masks and input noise per rank (rank 0 keeps the run's stream)
            jumped = trainer.noise_rng.bit_generator.jumped(self.rank)
            trainer.noise_rng = np.random.Generator(jumped)
        self.check_parameters(trainer, state)
        return state

    def train_step(self, t, X, y, state, cbs) -> None:
        """One step of ``Trainer`` ``t`` on this rank's slice of the global batch: the
        distributed form of ``Trainer._train_step`` (same callbacks, same order)."""
        step, idx, logs = t._begin_step(state, cbs)
        lo, hi = shard(len(idx), self.rank, self.size)
        local = idx[lo:hi]
        sums = np.zeros(2)  # the loss summed over this rank's rows, its hits
        prog = t.current_program = None
        if len(local):
            prog = t._run_rows(X, y, local)
            sums[0] = float(prog.value(t._L)) * len(local)
            if t.classification:
                sums[1] = t.backend.count_hits(prog.value(t._out), prog.inputs["y"])
        else:
            t.pack.grad[...] = 0
        rows = [hi - lo for lo, hi in (shard(len(idx), r, self.size) for r in range(self.size))]
        self.reduce_gradient(t.pack, rows, sums)
        # one rank: the very number Trainer._train_step uses
        logs["loss"] = sums[0] / len(idx) if self.size > 1 else float(prog.value(t._L))
        try:  # the guard reads the reduced loss and gradient: the same decision on every rank
            cbs.on_before_update(step, logs)
        except (AttributeError, TypeError):
            if prog is not None:
                raise
            # the guard's diagnosis re-runs this rank's rows, and it had none
            raise NumericalError(f"non-finite or diverging values at epoch {state.epoch + 1}, "
                                 f"step {step + 1}; update not applied") from None
        t._apply_update(state, logs, prog, sums[0], sums[1] if t.classification else 0)
        state.pos += 1
        state.global_step += 1
        B = t.batch_size
        steps = getattr(t, "steps_per_epoch", None) or (len(X) // B if t.drop_last
                                                         else -(-len(X) // B))
        last = state.pos >= steps
        if last:
            self.average_running_stats(t)
        if last or state.global_step % self.check_every == 0:
            self.check_parameters(t, state)
        cbs.on_batch_end(step, logs)

    def average_running_stats(self, t) -> None:
        """Batch norm's running mean and variance, averaged over the ranks."""
        if self.size == 1:
            return
        stats = [getattr(bn, k) for bn in batchnorm_layers(t.model) if bn.nodes
                 for k in ("running_mean", "running_var")]
        for s in stats:
            host = np.ascontiguousarray(t.backend.to_host(s), np.float64)
            self.allreduce(host, what="the running-statistics average")
            s[...] = t.backend.asarray((host / self.size).astype(s.dtype))

    def check_parameters(self, t, state) -> None:
        """Compare a CRC32 of the flat parameters across ranks; a difference stops the run."""
        if self.size == 1:
            return
        crc = zlib.crc32(memoryview(np.ascontiguousarray(t.backend.to_host(t.pack.data))))
        sums = self.allgather_int(crc, "the parameter checksum")
        if (sums != sums[0]).any():
            odd = [r for r in range(self.size) if sums[r] != sums[0]]
            raise ParameterMismatch(
                f"parameters differ across ranks after step {state.global_step} (rank(s) "
                f"{', '.join(map(str, odd))} differ from rank 0); all ranks must run the same "
                "model, data, settings and software")


class NcclCommunicator(Communicator):
    """MPI for the start, checks and metrics; NCCL (``cupyx.distributed.NCCLBackend``) for the
    gradient, all-reduced in place on the GPU; one GPU per rank (local rank mod GPU count).
    The all-reduce is queued on the stream and its completion polled like the MPI calls."""

    def __init__(self, comm=None, check_every: int = 50, timeout: float | None = None):
        super().__init__(comm, check_every, timeout)
        try:
            import cupy
            from cupyx.distributed import NCCLBackend
        except ImportError:
            raise BackendError("data-parallel training on GPUs needs CuPy with NCCL: pip "
                               "install 'symdl[cuda12]' (or cuda13)") from None
        self.cupy = cupy
        local = sum(1 for h, _ in self.peers[:self.rank] if h == self.host)
        cupy.cuda.Device(local % cupy.cuda.runtime.getDeviceCount()).use()
        self.nccl = NCCLBackend(self.size, self.rank, use_mpi=True) if self.size > 1 else None

    def allreduce(self, *bufs, what: str = "the gradient all-reduce") -> None:
        device = [b for b in bufs if isinstance(b, self.cupy.ndarray)]
        host = [b for b in bufs if not isinstance(b, self.cupy.ndarray)]
        if self.size == 1:
            return
        t0 = time.perf_counter()
        for b in device:
            self.nccl.all_reduce(b, b, "sum")
        if device:
            ev = self.cupy.cuda.Event(block=False, disable_timing=True)
            ev.record()
            self.wait([], what, done=lambda: ev.done)
        if host:
            self.wait([self.comm.Iallreduce(self.MPI.IN_PLACE, b, op=self.MPI.SUM)
                       for b in host], what)
        self.reduce_seconds += time.perf_counter() - t0
        self.reduce_calls += 1


def attach(trainer, comm):
    """The :class:`Communicator` for ``Trainer(comm=...)``; ranks other than 0 are made quiet,
    write no checkpoints and take their state from rank 0 (:meth:`Communicator.start`)."""
    dist = comm if isinstance(comm, Communicator) else Communicator(comm)
    if dist.share(trainer.pack):  # before any program is compiled: they write the window
        trainer.optimizer.rebind()
    if dist.rank:
        if trainer.checkpoint:  # rank 0 checks it too, and alone writes there
            check_writable(trainer.checkpoint, 0)
        trainer.say = lambda msg: None
        trainer.progress, trainer.verbose = False, 0
        trainer.checkpoint, trainer.resume = None, "never"
    return dist
