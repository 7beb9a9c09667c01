"""One Adam step on 10M float32 parameters, on the CPU: symdl against its peers.

Measured in the same run, with 2 threads for everyone, the candidates called
in turn (median per step):

* symdl's fused kernel (``symdl.optim.Adam``: one generated numba loop
  reading p, g, m, v once and writing p, m, v once);
* naive NumPy expressions (one temporary array per operation);
* ``torch.optim.Adam(foreach=True)`` and ``torch.optim.Adam(fused=True)``;
* the memory-traffic limit: 28 bytes per parameter (4 arrays read, 3
  written, float32) over the copy bandwidth measured with ``np.copyto`` on a
  large array (2 x its bytes per copy).  ``np.copyto`` runs on one thread, so
  a 2-thread copy (numba ``prange``) is measured too, for context.

Then the subnormal check: after one step with random gradients, 2,000 steps
with zero gradients; Adam's first moment decays by β₁ = 0.9 per step into
float32 subnormals after ~800 steps (and ``0.9 x 2⁻¹⁴⁹`` rounds back up, so it
stays there).  The time per step of the last 100 steps over the first 100,
for symdl (flush-to-zero in the kernel), the same kernel declared without
the flush, naive NumPy and torch fused (best per-step time of each block: a
subnormal slowdown hits every step, while other load on the machine only
hits some).

Run: ``python benchmarks/optim_cpu.py [--n 10000000] [--repeats 21] [--json]``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

THREADS = 2
B1, B2, LR, EPS = 0.9, 0.999, 1e-3, 1e-8


def median_time(step, repeats, warmup=3):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(steps: dict, repeats, warmup=3):
    """Median seconds per call of each step, calling them in turn (load on the
    machine hits all alike), and the median over rounds of each one's time
    over the first step's in the same round (the machine's speed drifts)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {label: [] for label in steps}
    for _ in range(repeats):
        for label, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - t0)
    first = times[next(iter(steps))]
    ratios = {label: statistics.median(t / f for t, f in zip(ts, first)) for label, ts in times.items()}
    return {label: statistics.median(ts) for label, ts in times.items()}, ratios


def symdl_adam(p0, g0, cls=None):
    """``(step, zero_grad, first_moment)`` of one optimizer on fresh copies of ``p0``, ``g0``."""
    from symdl.nn.parameter import Parameter
    from symdl.optim import Adam
    q = Parameter(p0.copy(), "w")
    q.grad[...] = g0
    opt = (cls or Adam)([q], lr=LR, betas=(B1, B2), eps=EPS)
    return opt.step, opt.zero_grad, lambda: opt.state_arrays()["w.m"]


def numpy_adam(p0, g0):
    st = {"p": p0.copy(), "g": g0.copy(), "m": np.zeros_like(p0), "v": np.zeros_like(p0), "t": 0}
    b1, b2, lr, eps = (np.float32(x) for x in (B1, B2, LR, EPS))

    def step():
        st["t"] += 1
        t, g = st["t"], st["g"]
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        mhat = st["m"] / np.float32(1 - B1 ** t)
        vhat = st["v"] / np.float32(1 - B2 ** t)
        st["p"] -= lr * mhat / (np.sqrt(vhat) + eps)
    return step, lambda: st["g"].fill(0), lambda: st["m"]


def torch_adam(p0, g0, **kw):
    import torch
    q = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    q.grad = torch.from_numpy(g0.copy())
    opt = torch.optim.Adam([q], lr=LR, betas=(B1, B2), eps=EPS, **kw)
    return opt.step, lambda: q.grad.zero_(), lambda: opt.state[q]["exp_avg"].numpy()


def copy_bandwidth(nbytes=512 << 20, repeats=7):
    """Bytes moved per second by np.copyto (read + write), and by a 2-thread numba copy."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    one = median_time(lambda: np.copyto(dst, src), repeats)
    from numba import njit, prange

    @njit(parallel=True)
    def pcopy(a, b):
        for i in prange(a.shape[0]):
            b[i] = a[i]
    two = median_time(lambda: pcopy(src, dst), repeats)
    return 2 * src.nbytes / one, 2 * src.nbytes / two


def subnormal_check(n, steps=2000, block=100):
    """Per-step seconds of the first and last ``block`` of ``steps`` zero-gradient steps."""
    from symdl.optim import Adam
    from symdl.optim.rules_adaptive import adam_rule

    class AdamNoFlush(Adam):
        def build_rule(self, amsgrad=False):
            return adam_rule(amsgrad, flush_state=False)

    rng = np.random.default_rng(1)
    p0, g0 = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    runs = {"symdl (flush in kernel)": lambda: symdl_adam(p0, g0),
            "symdl without flush": lambda: symdl_adam(p0, g0, AdamNoFlush),
            "naive NumPy": lambda: numpy_adam(p0, g0),
            "torch fused": lambda: torch_adam(p0, g0, fused=True)}
    out = {}
    for label, make in runs.items():
        step, zero_grad, first_moment = make()
        step()  # one step with the random gradient: m, v nonzero
        zero_grad()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        first, last = min(times[:block]), min(times[-block:])
        m = np.abs(first_moment())
        out[label] = {"first_ms": first * 1e3, "last_ms": last * 1e3, "ratio": last / first,
                      "subnormal_fraction": float(np.mean((m > 0) & (m < np.finfo(np.float32).tiny)))}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="parameters (float32)")
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--subnormal-n", type=int, default=1_000_000)
    ap.add_argument("--subnormal-steps", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import numba
    import torch
    torch.set_num_threads(THREADS)
    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))

    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(args.n, dtype=np.float32)
    g0 = rng.standard_normal(args.n, dtype=np.float32)
    makers = {"symdl fused kernel": lambda: symdl_adam(p0, g0), "naive NumPy": lambda: numpy_adam(p0, g0),
              "torch Adam foreach": lambda: torch_adam(p0, g0, foreach=True),
              "torch Adam fused": lambda: torch_adam(p0, g0, fused=True)}
    results, ratios = interleaved({label: make()[0] for label, make in makers.items()}, args.repeats)
    bw1, bw2 = copy_bandwidth()
    traffic = 28 * args.n
    results["memory limit (np.copyto bandwidth)"] = traffic / bw1
    results["memory limit (2-thread copy bandwidth)"] = traffic / bw2
    sub = subnormal_check(args.subnormal_n, args.subnormal_steps)

    base = results["symdl fused kernel"]
    if args.json:
        print(json.dumps({"n": args.n, "threads": THREADS, "seconds": results, "round_ratios": ratios,
                          "copy_GBps": {"np.copyto": bw1 / 1e9, "2-thread": bw2 / 1e9},
                          "subnormal": sub}, indent=1))
        return 0
    print(f"Adam step, {args.n:,} float32 parameters, {THREADS} threads "
          f"(median of {args.repeats}); copy bandwidth {bw1 / 1e9:.1f} GB/s (np.copyto), "
          f"{bw2 / 1e9:.1f} GB/s (2 threads); {traffic / 1e6:.0f} MB moved per step")
    for label, sec in results.items():
        print(f"  {label:<40} {sec * 1e3:8.2f} ms   {sec / base:5.2f}x symdl's time")
    print("  symdl speed-up: "
          f"{results['naive NumPy'] / base:.2f}x naive NumPy, {results['torch Adam foreach'] / base:.2f}x "
          f"torch foreach, {results['torch Adam fused'] / base:.2f}x torch fused "
          f"({ratios['torch Adam fused']:.2f}x as the median of per-round ratios); "
          f"{results['memory limit (np.copyto bandwidth)'] / base:.2f} of the np.copyto limit, "
          f"{results['memory limit (2-thread copy bandwidth)'] / base:.2f} of the 2-thread copy limit")
    print("  (a copy also reads each destination line before writing it, so 2 x bytes undercounts its traffic;"
          " the in-place Adam update has no such read, hence can beat the copy-based limit)")
    print(f"Subnormals: {args.subnormal_steps} zero-gradient Adam steps on {args.subnormal_n:,} float32 "
          "parameters; ms per step (best of each block), first 100 -> last 100")
    for label, r in sub.items():
        print(f"  {label:<40} {r['first_ms']:7.3f} -> {r['last_ms']:7.3f}   last/first {r['ratio']:.2f}"
              f"   (first moment subnormal at the end: {r['subnormal_fraction']:.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
