"""Small CNN training throughput on the CPU: symdl against PyTorch eager.

Batch 64 of 1x28x28 random images, float32, plain SGD, softmax cross-entropy:
conv 3x3 32 -> ReLU -> maxpool 2 -> conv 3x3 64 -> ReLU -> maxpool 2 -> dense 10
(no padding: 28 -> 26 -> 13 -> 11 -> 5, dense 1600 -> 10), and the same net
with BatchNorm after each conv (``--norm batch``).  Measured in the same run:

* symdl through real ``Trainer.fit`` epochs (shuffle, batch copy, step, guard, update);
* PyTorch eager on the CPU, same thread count;
* the GEMM limit: samples/s if a step did nothing but the GEMMs of its convolutions
  (im2col form) and of the dense layer, forward and backward, at the rate measured
  for those exact shapes.

Each contender runs in its own process, rounds interleave them, and ratios are
the median of per-round ratios (``harness.py``, shared with ``mlp_cpu.py``).
``--threads`` sets torch's threads and, in every contender's process, OpenBLAS's,
MKL's, OpenMP's and numba's.  ``--clock cpu`` divides by the process's CPU time
instead of wall time: on a machine shared with other jobs, with ``--threads 1``,
it measures the work done rather than the share of the cores a process got.
Run: ``python benchmarks/cnn_cpu.py [--norm none|batch|both] [--steps 60] [--repeats 5]
[--threads N] [--clock wall|cpu]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
from harness import gemm_time, interleaved, per_round, ratio, timed_steps

BATCH = 64
CHANNELS = (32, 64)
now = time.perf_counter  # the clock measurements divide by (--clock)


def data(n=64 * 160, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64)


def bench_symdl(X, y, steps, repeats, norm):
    """Real ``Trainer.fit`` epochs over ``steps`` batches."""
    from symdl.data import Dataset
    from symdl.nn import BatchNorm2d, Conv2d, Flatten, MaxPool2d, Sequential
    from symdl.nn.layers import Activation, Dense
    from symdl.optim import SGD
    from symdl.train import Trainer
    rng = np.random.default_rng(0)
    layers, c = [], 1
    for width in CHANNELS:
        layers += [Conv2d(c, width, 3, rng=rng), *([BatchNorm2d(width)] if norm else []),
                   Activation("relu"), MaxPool2d(2)]
        c = width
    net = Sequential(*layers, Flatten(), Dense(64 * 5 * 5, 10, rng))
    net.name_parameters()
    tr = Trainer(net, lambda ps: SGD(ps, lr=0.01), "softmax_cross_entropy", {},
                 batch_size=BATCH, epochs=1, progress=False, divergence=0)
    chunk = Dataset(X[:steps * BATCH], y[:steps * BATCH], 10, "random")
    tr.fit(Dataset(X[:4 * BATCH], y[:4 * BATCH], 10, "random"))  # compile, warm caches
    rates = []
    for _ in range(repeats):
        t0 = now()
        tr.fit(chunk)
        tr.history.__init__()
        rates.append(steps * BATCH / (now() - t0))
    return statistics.median(rates)


def bench_torch(X, y, steps, repeats, threads, norm):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nn = torch.nn
    layers, c = [], 1
    for width in CHANNELS:
        layers += [nn.Conv2d(c, width, 3), *([nn.BatchNorm2d(width)] if norm else []),
                   nn.ReLU(), nn.MaxPool2d(2)]
        c = width
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 5 * 5, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    perm = torch.from_numpy(np.random.default_rng(1).permutation(len(X)))
    nb = len(X) // BATCH

    def step(s=0):
        idx = perm[(s % nb) * BATCH:(s % nb + 1) * BATCH]
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
        loss.backward()
        opt.step()

    return timed_steps(step, steps, repeats, BATCH, now)


def gemm_shapes():
    """``(m, k, n)`` of every GEMM in a step: per conv, forward W·cols, weight
    gradient δ·colsᵀ and (but for the first) input gradient Wᵀ·δ, each as one
    GEMM over the batch's stacked columns; the dense layer's three."""
    shapes, c, side = [], 1, 28
    for i, o in enumerate(CHANNELS):
        out = side - 2
        rows, cols = c * 9, BATCH * out * out
        shapes += [(o, rows, cols), (o, cols, rows)] + ([(rows, o, cols)] if i else [])
        c, side = o, out // 2
    feat = c * side * side
    shapes += [(BATCH, feat, 10), (10, BATCH, feat), (BATCH, 10, feat)]
    return shapes


def gemm_limit(repeats=20):
    """Samples/s if the step did nothing but its GEMMs at the rate measured for them."""
    t, flops = gemm_time(gemm_shapes(), repeats, clock=now)
    return BATCH / t, flops / t / 1e9, flops


def run_one(name, steps, repeats, threads, norm):
    """One contender in this process."""
    X, y = data(max(steps, 4) * BATCH)
    if name == "symdl":
        return bench_symdl(X, y, steps, repeats, norm)
    if name == "pytorch eager":
        return bench_torch(X, y, steps, repeats, threads, norm)
    return gemm_limit()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--norm", choices=("none", "batch", "both"), default="both",
                    help="the plain net, the one with BatchNorm after each conv, or both")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="divide by wall time (default) or by the process's CPU time")
    ap.add_argument("--only", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps < 1 or args.repeats < 1 or args.threads < 1:
        ap.error("--steps, --repeats and --threads must be at least 1")
    global now
    now = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.only:
        print(json.dumps(run_one(args.only, args.steps, args.repeats, args.threads,
                                 args.norm == "batch")))
        return
    env = dict(os.environ, **{v: str(args.threads) for v in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")})
    _, gflops, flops = gemm_limit()
    print(f"GEMM limit of a step: {flops:,} FLOPs in {len(gemm_shapes())} GEMMs, "
          f"{gflops:.1f} GFLOP/s in the first measurement; {args.threads} threads, "
          f"{args.clock} clock")
    names = ("symdl", "pytorch eager", "gemm limit")
    for norm in (("none", "batch") if args.norm == "both" else (args.norm,)):
        rates = interleaved(__file__, names, ("--steps", args.steps, "--repeats", 2, "--threads",
                                              args.threads, "--norm", norm, "--clock",
                                              args.clock),
                            args.repeats, label=f"norm {norm}, ", env=env)
        label = "with BatchNorm" if norm == "batch" else "plain"
        print(f"-- {label} net")
        for name in names:
            print(f"{name:<14} {statistics.median(rates[name]):>10,.0f} samples/s  "
                  f"{ratio(rates, name, 'gemm limit'):5.2f} of the GEMM limit")
        rounds = per_round(rates, "symdl", "pytorch eager")
        print(f"symdl / pytorch eager = {ratio(rates, 'symdl', 'pytorch eager'):.2f}  (median "
              f"over {args.repeats} interleaved rounds; per round "
              f"{', '.join(f'{q:.2f}' for q in rounds)})", flush=True)


if __name__ == "__main__":
    main()
