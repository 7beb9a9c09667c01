"""Data-parallel scaling on the CPU: 1 rank x 1 thread against 2 ranks x 1 thread (MPI).

MLP 784-256-256-10 (ReLU, softmax cross-entropy, SGD momentum 0.9), float32, global batch 256
(128 rows per rank on 2 ranks), random MNIST-shaped data, real ``Trainer.fit`` epochs of
``--steps`` steps.  One ``mpiexec -n 2`` job holds both contenders, so that rounds interleave
without a process start between them: in each round rank 0 first trains alone (no
communicator: the one-process run; rank 1 sleeps), then both ranks train the same epoch
data-parallel.  OMP/OpenBLAS/MKL/numba threads are 1 in every rank.

Reported (medians over the rounds): samples/s of each, the speed-up and the scaling efficiency
(speed-up / 2), the time per step spent in the gradient all-reduce inside training (rank 0's
wait, so it includes waiting for the slower rank) and its share of the step, and the time of
the same reduction alone (both ranks ready: the pure cost of summing the 1.07 MB gradient; on
one host through shared memory, see :mod:`symdl.train.distributed`), and
a ceiling: the efficiency of 2 ranks that each train their own half of the rows at batch 128 at the
same time with no communication at all (what two busy cores of this machine give), and where a
step's time goes on each side (compute, all-reduce, wait, update, and the fit's own work outside
the steps: a data-parallel fit starts by sending rank 0's state to the others, about 10 ms, so
short epochs pay it more).
Goal (issue 17): efficiency >= 0.85 with the all-reduce under 10 % of the step, on an otherwise
idle machine with at least 2 cores.  Progress goes to stderr.
Run: ``python benchmarks/dp_cpu.py [--steps 234] [--rounds 5] [--json]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES = (784, 256, 256, 10)
PARTS = ("compute", "all-reduce", "wait", "update", "outside")
BATCH = 256  # global
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def say(msg: str) -> None:
    print(f"dp_cpu: {msg}", file=sys.stderr, flush=True)


def trainer(comm, batch: int = BATCH):
    from symdl.nn import make_model
    from symdl.optim import SGD
    from symdl.train import Trainer
    spec = make_model("mlp", SIZES[0], SIZES[-1], SIZES[1:-1], "relu", np.random.default_rng(0))
    return Trainer(spec.module, lambda ps: SGD(ps, lr=0.01, momentum=0.9), spec.loss,
                   batch_size=batch, epochs=1, progress=False, divergence=0, comm=comm)


class StepClock:
    """Times each step of one fit through a callback (:meth:`parts`): compute (batch
    gather, forward, backward: batch begin to the guard, less the time in the gradient
    all-reduce), the all-reduce (waiting for the slower rank included), the update (guard,
    optimizer step, checksum: the guard to the batch's end), and, per step, the fit's own
    work outside the steps (its start, the epoch ends)."""

    def __init__(self, comm=None):
        from symdl.train.callbacks import LambdaCallback
        self.comm = comm
        self.cb = LambdaCallback(on_batch_begin=self._begin, on_before_update=self._before,
                                 on_batch_end=self._end)
        self.rows = []

    def _reduced(self) -> float:
        return self.comm.reduce_seconds if self.comm is not None else 0.0

    def _begin(self, step, logs):
        self.t = [time.perf_counter(), self._reduced()]

    def _before(self, step, logs):
        self.t += [time.perf_counter(), self._reduced()]

    def _end(self, step, logs):
        (t0, r0, t1, r1), t2 = self.t, time.perf_counter()
        self.rows.append((t1 - t0 - (r1 - r0), r1 - r0, t2 - t1, t0, t2))

    def fit(self, trainer, data) -> float:
        """Run ``trainer.fit(data)``; returns its seconds."""
        self.rows = []
        t0 = time.perf_counter()
        trainer.fit(data, callbacks=[self.cb])
        self.wall = (t0, time.perf_counter())
        return self.wall[1] - t0

    def parts(self) -> np.ndarray:
        """``(array (steps, 3) of compute, all-reduce, update seconds, outside seconds per
        step)``."""
        a = np.array(self.rows)
        inside = (a[:, 4] - a[:, 3]).sum()
        return a[:, :3], ((self.wall[1] - self.wall[0]) - inside) / len(a)


def budget(mine: tuple, theirs: tuple) -> dict:
    """Milliseconds per step of a 2-rank step, from both ranks' :class:`StepClock` parts:
    the slower rank's compute, the pure all-reduce (the shorter of the two ranks' times in
    it: the rank that came last waited for nobody), the wait (what the step took beyond
    these and the update), the update, and the fit's work outside the steps."""
    (a, out_a), (b, out_b) = mine, theirs
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    compute = np.maximum(a[:, 0], b[:, 0])
    pure = np.minimum(a[:, 1], b[:, 1])  # the rank that came last waited for nobody
    step = np.maximum(a.sum(1), b.sum(1))
    update = np.maximum(a[:, 2], b[:, 2])
    wait = step - compute - pure - update
    return {k: 1e3 * float(v) for k, v in zip(PARTS, (compute.mean(), pure.mean(),
                                                    max(wait.mean(), 0.0), update.mean(),
                                                    max(out_a, out_b)))}


def worker(steps: int, rounds: int) -> dict:
    from symdl.data import Dataset
    from symdl.train.distributed import Communicator
    comm = Communicator()
    rank = comm.rank
    rng = np.random.default_rng(0)
    n = steps * BATCH
    data = Dataset(rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n), 10, "random")
    warm = Dataset(data.X[:4 * BATCH], data.y[:4 * BATCH], 10, "random")
    single = trainer(None) if rank == 0 else None
    dist = trainer(comm)
    # the ceiling: both ranks train their own half-size batches at the same time, no
    # communication at all (what two busy cores give before any all-reduce)
    half = trainer(None, BATCH // 2)

    def sync():  # polled (rank 1 sleeps while rank 0 trains alone)
        comm.wait([comm.comm.Ibarrier()], "a barrier")

    if single is not None:
        single.fit(warm)  # compile, fault the buffers in
    sync()
    dist.fit(warm)
    half.fit(Dataset(warm.X[:2 * BATCH], warm.y[:2 * BATCH], 10, "random"))
    sync()
    out = {"single": [], "dual": [], "reduce_in_step": [], "reduce_alone": [], "apart": []}
    clock1, clock2, budgets, budgets1 = StepClock(), StepClock(comm), [], []
    for r in range(rounds):
        if single is not None:
            out["single"].append(n / clock1.fit(single, data))
            p1, o1 = clock1.parts()
            budgets1.append({"compute": 1e3 * p1[:, 0].mean(), "update": 1e3 * p1[:, 2].mean(),
                             "outside": 1e3 * o1})
        sync()
        s0, c0 = comm.reduce_seconds, comm.reduce_calls
        out["dual"].append(n / clock2.fit(dist, data))
        out["reduce_in_step"].append((comm.reduce_seconds - s0) / (comm.reduce_calls - c0))
        parts = comm.comm.gather(clock2.parts(), root=0)
        if rank == 0:
            budgets.append(budget(*parts))
        sync()
        grad, rows = dist.pack.grad, [BATCH // 2] * 2
        t0 = time.perf_counter()
        for _ in range(20):  # the reduction training uses, both ranks ready
            comm.reduce_gradient(dist.pack, rows, np.zeros(2))
        out["reduce_alone"].append((time.perf_counter() - t0) / 20)
        sync()
        t0 = time.perf_counter()  # each rank its own half of the rows, no all-reduce
        half.fit(Dataset(data.X[rank::2], data.y[rank::2], 10, "random"))
        out["apart"].append(n / (time.perf_counter() - t0))  # both ranks together
        sync()
        if rank == 0:
            say(f"round {r + 1}/{rounds}: 1 rank {out['single'][-1]:,.0f} samples/s, 2 ranks "
                f"{out['dual'][-1]:,.0f} samples/s, all-reduce "
                f"{1e3 * out['reduce_in_step'][-1]:.3f} ms in the step, "
                f"{1e3 * out['reduce_alone'][-1]:.3f} ms alone")
    med = {k: statistics.median(v) for k, v in out.items() if v}
    if rank:
        return {}
    step_ms = 1e3 * BATCH / med["dual"]
    ratios = [d / s for d, s in zip(out["dual"], out["single"])]  # per round: interleaved pairs
    ceiling = [a / s for a, s in zip(out["apart"], out["single"])]
    two = {k: statistics.median(b[k] for b in budgets) for k in PARTS}
    one = {k: statistics.median(b[k] for b in budgets1) for k in budgets1[0]}
    return {"model": "mlp " + "-".join(map(str, SIZES)), "global_batch": BATCH, "ranks": 2,
            "threads_per_rank": 1, "steps": steps, "rounds": rounds,
            "gradient_bytes": int(grad.nbytes), "parameters": int(grad.size),
            "samples_per_s_1rank": med["single"], "samples_per_s_2ranks": med["dual"],
            "speedup": statistics.median(ratios), "efficiency": statistics.median(ratios) / 2,
            "step_ms_1rank": 1e3 * BATCH / med["single"], "step_ms_2ranks": step_ms,
            "allreduce_ms_in_step": 1e3 * med["reduce_in_step"],
            "allreduce_share_of_step": 1e3 * med["reduce_in_step"] / step_ms,
            "allreduce_ms_alone": 1e3 * med["reduce_alone"], "cpus": os.cpu_count(),
            "efficiency_without_communication": statistics.median(ceiling) / 2,
            "step_ms_parts_2ranks": two, "step_ms_parts_1rank": one}


def report(r: dict) -> str:
    return "\n".join([
        f"{r['model']}, global batch {r['global_batch']}, float32, SGD momentum; "
        f"{r['parameters']:,} parameters ({r['gradient_bytes'] / 1e6:.2f} MB gradient); "
        f"medians of {r['rounds']} interleaved rounds of {r['steps']} steps; {r['cpus']} CPUs",
        f"  1 rank  x 1 thread : {r['samples_per_s_1rank']:>9,.0f} samples/s "
        f"({r['step_ms_1rank']:.2f} ms/step)",
        f"  2 ranks x 1 thread : {r['samples_per_s_2ranks']:>9,.0f} samples/s "
        f"({r['step_ms_2ranks']:.2f} ms/step)",
        f"  speed-up {r['speedup']:.2f}x, scaling efficiency {r['efficiency']:.2f} (goal >= 0.85)",
        f"  all-reduce: {r['allreduce_ms_in_step']:.3f} ms per step inside training "
        f"({100 * r['allreduce_share_of_step']:.1f} % of the step, goal < 10 %), "
        f"{r['allreduce_ms_alone']:.3f} ms alone",
        f"  ceiling: 2 ranks each training its own half of the rows at batch "
        f"{r['global_batch'] // 2} with no communication at all reach efficiency "
        f"{r['efficiency_without_communication']:.2f}",
        "  where a step's time goes (ms per step, medians of the rounds' means):",
        "    1 rank : " + ", ".join(f"{k} {v:.3f}" for k, v in r["step_ms_parts_1rank"].items()),
        "    2 ranks: " + ", ".join(f"{k} {v:.3f}" for k, v in r["step_ms_parts_2ranks"].items()),
        "    (compute: gather, forward, backward, of the slower rank; all-reduce: the rank that "
        "came last; wait: the rest of the step's excess; update: guard, optimizer, checksum; "
        "outside: the fit's start and epoch ends)"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=234,
                    help="steps per timed epoch (default: 234, an MNIST epoch at batch 256)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        r = worker(a.steps, a.rounds)
        if r:
            print(json.dumps(r, indent=1) if a.json else report(r), flush=True)
        return 0
    here = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(here) if here.exists() else None
    if mpiexec is None:
        import shutil
        mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        say("mpiexec not found: pip install 'symdl[mpi]' (mpi4py and mpich)")
        return 1
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, **{k: "1" for k in THREADS},
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    say(f"mpiexec -n 2, 1 thread per rank, {a.rounds} rounds of {a.steps} steps (compiling first)")
    cmd = [mpiexec, "-disable-auto-cleanup", "-n", "2", sys.executable, str(Path(__file__)),
           "--worker", "--steps", str(a.steps), "--rounds", str(a.rounds)] + \
        (["--json"] if a.json else [])
    return subprocess.run(cmd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
