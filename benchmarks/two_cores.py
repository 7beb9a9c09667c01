"""Two busy cores against one: the same single-threaded work alone, then two copies at once.

What a data-parallel run of 2 ranks x 1 thread can get from this machine at best (issue 17's
benchmarks/dp_cpu.py): pure Python, a cache-resident 256x256 SGEMM loop and a 16 MB streaming
multiply, each timed as one process and as two processes at the same time.
Run: ``python benchmarks/two_cores.py``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

KINDS = ("python", "gemm", "stream")


def work(kind: str):
    """``(one unit of the work, units to time)``."""
    import numpy as np
    if kind == "gemm":
        a = np.random.rand(256, 256).astype(np.float32)
        c = np.empty_like(a)
        return (lambda: np.matmul(a, a, out=c)), 2000
    if kind == "stream":
        a = np.random.rand(4_000_000).astype(np.float32)  # 16 MB in, 16 MB out
        b = np.empty_like(a)
        return (lambda: np.multiply(a, 1.0001, out=b)), 200

    def count():
        s = 0
        for i in range(20000):
            s += i
    return count, 200


def child(kind: str) -> None:
    step, reps = work(kind)
    step()
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    print(time.perf_counter() - t0)


def main() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    for kind in KINDS:
        print(f"{kind} ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, kind]
        one = float(subprocess.run(cmd, capture_output=True, text=True, env=env).stdout)
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
        two = max(float(p.communicate()[0]) for p in procs)
        print(f"{kind:7s} one copy {one:.3f} s, two at once {two:.3f} s: "
              f"two cores give {2 * one / two:.2f}x")


if __name__ == "__main__":
    child(sys.argv[1]) if len(sys.argv) > 1 else main()
