"""MLP 784-256-256-10 training throughput on the CPU: symdl against its peers.

ReLU, softmax cross-entropy, batch 128, float32, plain SGD (or Adam), on random
MNIST-shaped data (60,000 x 784).  Measured in the same run:

* symdl (generated step function, numba kernels, BLAS with ``out=``);
* PyTorch eager on the CPU, same thread count;
* the same PyTorch training step through ``torch.compile`` (inductor);
* hand-written NumPy with preallocated buffers;
* the GEMM limit: 6 x batch x sum(in*out) FLOPs per step over the measured
  sgemm rate of these exact shapes.

Prints samples/second (median of several epochs-worth of steps) and the ratios.
Run: ``python benchmarks/mlp_cpu.py [--optimizer sgd|adam] [--steps 200] [--repeats 5]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
from harness import gemm_time, interleaved, per_round, ratio, timed_steps

SIZES = (784, 256, 256, 10)
BATCH = 128


def data(n=60000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64)


def timed(step, steps, repeats):
    return timed_steps(step, steps, repeats, BATCH)


def bench_symdl(X, y, steps, repeats, optimizer="sgd"):
    """Real ``Trainer.fit`` epochs (shuffle, batch copy, step, guard, update)."""
    from symdl.data import Dataset
    from symdl.nn import make_model
    from symdl.optim import SGD, Adam
    from symdl.train import Trainer
    spec = make_model("mlp", 784, 10, SIZES[1:-1], "relu", np.random.default_rng(0))
    opt = (lambda ps: SGD(ps, lr=0.01)) if optimizer == "sgd" else (lambda ps: Adam(ps, lr=1e-3))
    tr = Trainer(spec.module, opt, spec.loss, batch_size=BATCH, epochs=1, progress=False,
                 divergence=0)
    chunk = Dataset(X[:steps * BATCH], y[:steps * BATCH], 10, "random")
    tr.fit(Dataset(X[:4 * BATCH], y[:4 * BATCH], 10, "random"))  # compile, warm caches
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tr.fit(chunk)
        tr.history.__init__()
        rates.append(steps * BATCH / (time.perf_counter() - t0))
    return statistics.median(rates)


def bench_torch(X, y, steps, repeats, threads, optimizer="sgd", compile=False):
    """PyTorch eager, or with ``compile`` the same training step (forward, loss,
    backward, optimizer step) through ``torch.compile`` (inductor, CPU)."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = (torch.optim.SGD(model.parameters(), lr=0.01) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=1e-3, fused=True))
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    perm = torch.from_numpy(np.random.default_rng(1).permutation(len(X)))
    nb = len(X) // BATCH

    def train_step(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()

    run = torch.compile(train_step) if compile else train_step

    def step(s=0):
        idx = perm[(s % nb) * BATCH:(s % nb + 1) * BATCH]
        run(Xt[idx], yt[idx])
    if compile:
        for s in range(3):  # compile (and recompile once for the optimizer's state) outside the clock
            step(s)
    return timed(step, steps, repeats)


def bench_numpy(X, y, steps, repeats):
    rng = np.random.default_rng(0)
    W = [rng.standard_normal((b, a), dtype=np.float32) * np.float32(np.sqrt(2 / a))
         for a, b in zip(SIZES[:-1], SIZES[1:])]
    bs = [np.zeros(b, np.float32) for b in SIZES[1:]]
    Z = [np.empty((BATCH, b), np.float32) for b in SIZES[1:]]
    D = [np.empty((BATCH, b), np.float32) for b in SIZES[1:]]
    dW = [np.empty_like(w) for w in W]
    xb = np.empty((BATCH, 784), np.float32)
    yb = np.empty(BATCH, np.int64)
    perm = np.random.default_rng(1).permutation(len(X))
    nb = len(X) // BATCH
    rows = np.arange(BATCH)
    lr = np.float32(0.01)

    def step(s=0):
        idx = perm[(s % nb) * BATCH:(s % nb + 1) * BATCH]
        np.take(X, idx, axis=0, out=xb, mode="clip")  # "raise" buffers the batch
        np.take(y, idx, axis=0, out=yb, mode="clip")
        a = xb
        acts = [xb]
        for k in range(3):
            np.matmul(a, W[k].T, out=Z[k])
            Z[k] += bs[k]
            if k < 2:
                np.maximum(Z[k], 0, out=Z[k])
            a = Z[k]
            acts.append(a)
        z = Z[2]
        z -= z.max(1, keepdims=True)
        np.exp(z, out=D[2])
        D[2] /= D[2].sum(1, keepdims=True)
        D[2][rows, yb] -= 1
        D[2] /= BATCH
        for k in (2, 1, 0):
            np.matmul(D[k].T, acts[k], out=dW[k])
            db = D[k].sum(0)
            if k:
                np.matmul(D[k], W[k], out=D[k - 1])
                D[k - 1] *= Z[k - 1] > 0
            W[k] -= lr * dW[k]
            bs[k] -= lr * db
    return timed(step, steps, repeats)


def gemm_limit(repeats=20):
    """Samples/s if the step did nothing but its 8 GEMMs at the measured rate."""
    shapes = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        shapes.append((BATCH, a, b))          # forward  x @ W^T
        shapes.append((b, BATCH, a))          # dW = d^T x
        if i:
            shapes.append((BATCH, b, a))      # dx = d W
    t, flops = gemm_time(shapes, repeats)
    expected = 6 * BATCH * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    return BATCH / t, flops / t / 1e9, flops, expected


def run_one(name, steps, repeats, threads, optimizer="sgd"):
    """One contender in this process (thread pools of different libraries
    spinning on the same two cores would distort each other's figures)."""
    X, y = data()
    if name == "symdl":
        return bench_symdl(X, y, steps, repeats, optimizer)
    if name == "pytorch eager":
        return bench_torch(X, y, steps, repeats, threads, optimizer)
    if name == "torch.compile":
        return bench_torch(X, y, steps, repeats, threads, optimizer, compile=True)
    if name == "numpy by hand":
        return bench_numpy(X, y, steps, repeats)
    return gemm_limit()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                    help="sgd (vs torch SGD) or adam (vs torch Adam(fused=True))")
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="leave out the torch.compile peer (its compilation takes a minute)")
    ap.add_argument("--only", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:
        print(json.dumps(run_one(args.only, args.steps, args.repeats, args.threads, args.optimizer)))
        return
    limit, gflops, flops, expected = gemm_limit()
    names = ("symdl", "pytorch eager") + (("torch.compile",) if args.compile else ()) \
        + (("numpy by hand",) if args.optimizer == "sgd" else ())
    rates = interleaved(__file__, names + ("gemm limit",),
                        ("--steps", args.steps, "--repeats", 2, "--threads", args.threads,
                         "--optimizer", args.optimizer), args.repeats)
    med = {n: statistics.median(v) for n, v in rates.items()}
    print(f"GEMM limit: {med['gemm limit']:,.0f} samples/s (the 8 GEMMs of a step, {flops:,} FLOPs, "
          f"at {gflops:.1f} GFLOP/s in the first measurement; 6*B*sum(in*out) = {expected:,})")
    for name in names:
        print(f"{name:<14} {med[name]:>10,.0f} samples/s  "
              f"{ratio(rates, name, 'gemm limit'):5.2f} of the GEMM limit")
    for peer in names[1:]:
        rounds = per_round(rates, "symdl", peer)
        print(f"symdl / {peer} = {ratio(rates, 'symdl', peer):.2f}  "
              f"(median over {args.repeats} interleaved rounds; per round "
              f"{', '.join(f'{q:.2f}' for q in rounds)})")


if __name__ == "__main__":
    main()
