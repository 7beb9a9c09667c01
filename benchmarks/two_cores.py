"""Two busy cores against one: the same single-threaded work alone, then two copies at once.

What a data-parallel run of 2 ranks x 1 thread can get from this machine at best (issue 17's
benchmarks/dp_cpu.py): pure Python, a cache-resident 256x256 SGEMM loop and a 16 MB streaming
multiply, each timed as one process and as two processes at the same time.
Run: ``python benchmarks/two_cores.py``.
"""
import os, sys, time, subprocess
os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
if len(sys.argv) > 1:
    import numpy as np
    kind = sys.argv[1]
    if kind == "gemm":
        a = np.random.rand(256, 256).astype(np.float32); c = np.empty_like(a)
        work = lambda: np.matmul(a, a, out=c)
        reps = 2000
    elif kind == "stream":
        a = np.random.rand(4_000_000).astype(np.float32); b = np.empty_like(a)  # 16 MB each
        work = lambda: np.multiply(a, 1.0001, out=b)
        reps = 200
    else:
        def work():
            s = 0
            for i in range(20000): s += i
        reps = 200
    work(); t = time.perf_counter()
    for _ in range(reps): work()
    print(time.perf_counter() - t)
    sys.exit()
for kind in ("python", "gemm", "stream"):
    one = float(subprocess.run([sys.executable, __file__, kind], capture_output=True, text=True).stdout)
    ps = [subprocess.Popen([sys.executable, __file__, kind], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    two = max(float(p.communicate()[0]) for p in ps)
    print(f"{kind:7s} one copy {one:.3f} s, two at once {two:.3f} s: two cores give {2 * one / two:.2f}x")
