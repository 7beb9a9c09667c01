"""What the CPU training benchmarks share: interleaved rounds in subprocesses, GEMM rates, ratios.

Each contender runs in a fresh process of its own (``script --only NAME ...``
printing its samples/s as the last word on stdout): symdl's numba pool and
torch's OpenMP pool spinning on the same cores would distort each other.
Rounds interleave the contenders, so that the machine's drifting speed hits
all of them alike, and ratios are taken per round, then their median.
Used by ``mlp_cpu.py`` and ``cnn_cpu.py``.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

import numpy as np

__all__ = ["timed_steps", "gemm_time", "interleaved", "ratio", "per_round"]


def timed_steps(step, steps: int, repeats: int, batch: int, clock=time.perf_counter) -> float:
    """Median samples/s of ``repeats`` runs of ``step(0) ... step(steps - 1)``
    (after one warm-up call, which compiles and faults pages in), by ``clock``."""
    step()
    rates = []
    for _ in range(repeats):
        t0 = clock()
        for s in range(steps):
            step(s)
        rates.append(steps * batch / (clock() - t0))
    return statistics.median(rates)


def gemm_time(shapes, repeats: int = 20, seed: int = 0, clock=time.perf_counter) -> tuple:
    """``(median seconds, FLOPs)`` of one pass of float32 ``(m, k) @ (k, n)``
    products with ``out=``, one per ``(m, k, n)`` in ``shapes``."""
    rng = np.random.default_rng(seed)
    mats = [(rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32),
             np.empty((m, n), np.float32)) for m, k, n in shapes]
    times = []
    for _ in range(repeats):
        t0 = clock()
        for a, b, c in mats:
            np.matmul(a, b, out=c)
        times.append(clock() - t0)
    return statistics.median(times), sum(2 * m * k * n for m, k, n in shapes)


def interleaved(script: str, names, args, repeats: int, label: str = "", env=None) -> dict:
    """``{name: [samples/s per round]}``: ``repeats`` rounds, each running every
    contender once as ``python script --only NAME *args`` in a fresh process (with
    ``env``, else this one's); progress on stderr; a failing contender ends the run
    with its last error line."""
    rates = {n: [] for n in names}
    for r in range(repeats):
        for name in names:
            print(f"{label}round {r + 1}/{repeats}: {name}", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, script, "--only", name, *map(str, args)],
                                 capture_output=True, text=True, env=env)
            if out.returncode:
                sys.exit(f"{name} failed: {out.stderr.strip().splitlines()[-1:]}")
            rates[name].append(float(out.stdout.split()[-1]))
    return rates


def per_round(rates: dict, a: str, b: str) -> list:
    """Per-round ratios ``a / b``."""
    return [x / y for x, y in zip(rates[a], rates[b])]


def ratio(rates: dict, a: str, b: str) -> float:
    """Median over rounds of ``a / b``."""
    return statistics.median(per_round(rates, a, b))
