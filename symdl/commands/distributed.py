"""``symdl train --distributed`` (one rank under mpiexec) and ``--ranks N`` (starts mpiexec).

``--ranks N`` runs ``mpiexec -disable-auto-cleanup -n N python -m symdl train ... --distributed``
on this machine, each rank below a small wrapper (:func:`shield`), and returns its exit code.
``-disable-auto-cleanup`` keeps mpich's launcher from killing the other ranks when one dies, so
that they report it themselves: one line naming the rank, exit code 1
(:mod:`symdl.train.distributed`).  Under a plain ``mpiexec -n N symdl train
--distributed`` mpich kills the others within a second of a death and prints its own banner.

Under ``--distributed`` only rank 0 writes to stdout; the other ranks keep quiet about errors
every rank meets alike (bad data or flags, a numerical failure read from the reduced gradient)
and name themselves in any other error.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import BackendError, SymdlError, UsageError

__all__ = ["add_distributed_args", "find_mpiexec", "launch_command", "rank_comm", "shield"]

#: Exit codes that mean the same from mpiexec as from one process (mpich ORs the ranks' codes).
PASSED_ON = (0, 1, 2, 3, 4, 130, 143)


def add_distributed_args(p) -> None:
    """Add ``--distributed`` and ``--ranks`` to the ``train`` parser and wrap its command."""
    g = p.add_argument_group("data parallel (MPI; pip install 'symdl[mpi]')")
    g.add_argument("--distributed", action="store_true",
                   help="run as one rank of an MPI job (mpiexec -n N symdl train --distributed "
                   "...): --batch-size is the global batch, rank 0 prints and writes checkpoints")
    g.add_argument("--ranks", type=int, metavar="N",
                   help="start N ranks on this machine with mpiexec and wait for them")
    p.set_defaults(run=_wrapped(p.get_default("run")))


_COMM: list = []  # this process's communicator, made once


def rank_comm(args):
    """The :class:`~symdl.train.distributed.Communicator` under ``--distributed``, else None."""
    if not getattr(args, "distributed", False):
        return None
    if not _COMM:  # --device cuda: NCCL for the gradient, one GPU per rank
        from ..train.distributed import Communicator, NcclCommunicator
        _COMM.append(NcclCommunicator() if getattr(args, "device", "cpu") == "cuda"
                     else Communicator())
    return _COMM[0]


def find_mpiexec() -> str:
    """``mpiexec`` next to the running Python (the mpich wheel puts it there), else on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if not found:
        raise BackendError("--ranks needs mpiexec, which was not found next to "
                           f"{sys.executable} nor on PATH: pip install 'symdl[mpi]' "
                           "(mpi4py and mpich)")
    return found


def launch_command(argv, ranks: int) -> list:
    """The mpiexec command line that runs ``symdl`` ``argv`` (without ``--ranks``) on ``ranks``
    ranks of this machine."""
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--ranks":
            skip = True
        elif not a.startswith("--ranks="):
            rest.append(a)
    return [find_mpiexec(), "-disable-auto-cleanup", "-n", str(ranks), sys.executable, "-m",
            "symdl.commands.distributed", sys.executable, "-m", "symdl", *rest, "--distributed"]


def shield(argv) -> int:
    """Run ``argv`` (a rank) as a child and return its exit code, passing on SIGUSR1, SIGINT
    and SIGTERM.  mpich's proxy, once a rank has died, may end the other ranks it started
    itself before they report (seen: about one run in three, even with SIGUSR1 ignored); a
    rank one process further down is left to print its line and leave with exit code 1."""
    import signal
    child = subprocess.Popen(argv, close_fds=False)  # keeps the PMI descriptor

    def forward(signum, _frame):
        child.send_signal(signum)
    for s in (signal.SIGUSR1, signal.SIGINT, signal.SIGTERM):
        signal.signal(s, forward)
    code = child.wait()
    return code if code >= 0 else 128 - code


def _launch(args) -> int:
    if args.ranks < 1:
        raise UsageError(f"--ranks must be at least 1, got {args.ranks}")
    try:
        import mpi4py  # noqa: F401  (the ranks need it; say so here, once)
    except ImportError:
        raise BackendError("--ranks needs mpi4py: pip install 'symdl[mpi]' (mpi4py and mpich)") \
            from None
    cmd = launch_command(args.argv, args.ranks)
    env = dict(os.environ)
    # the ranks import this very symdl, even where the installed one points elsewhere
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    try:
        code = subprocess.run(cmd, env=env).returncode  # Ctrl-C reaches mpiexec too
    except KeyboardInterrupt:
        return 130
    return code if code in PASSED_ON else 1


def _wrapped(run):
    def run_train(args) -> int:
        if args.ranks is not None:
            if args.distributed:
                raise UsageError("--ranks starts mpiexec itself; under mpiexec give --distributed")
            return _launch(args)
        if not args.distributed:
            return run(args)
        from ..train.distributed import RankError
        comm = rank_comm(args)
        if comm.rank == 0:
            return run(args)
        sys.stdout = open(os.devnull, "w")  # rank 0 alone prints results  # noqa: SIM115
        try:
            return run(args)
        except RankError:
            raise  # its message names the rank
        except SymdlError as exc:  # rank 0 meets the same error and reports it
            return exc.exit_code
        except KeyboardInterrupt as exc:
            return getattr(exc, "exit_code", 130)
        except Exception as exc:
            if getattr(args, "debug", False):
                raise
            print(f"symdl: error: rank {comm.rank}: {type(exc).__name__}: {exc}", file=sys.stderr,
                  flush=True)
            return 1
    run_train.__doc__ = run.__doc__
    return run_train


if __name__ == "__main__":  # the rank wrapper of --ranks: python -m symdl.commands.distributed ARGV
    sys.exit(shield(sys.argv[1:]))
