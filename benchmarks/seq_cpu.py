"""Sequence-model training throughput on the CPU: symdl against PyTorch eager.

Three models, float32, plain SGD, softmax cross-entropy over 10 classes, on
random data (batch first):

* ``lstm``: one-layer LSTM, T = 32, batch 64, input 32, hidden 128; the final
  hidden state goes through a dense layer 128 -> 10;
* ``gru``: the same with a GRU;
* ``transformer``: one post-LN ``TransformerEncoderLayer`` (T = 64, batch 32,
  d = 128, 4 heads, feed-forward 512, ReLU, no dropout), the mean over time
  through a dense layer 128 -> 10.

symdl runs real ``Trainer.fit`` epochs (shuffle, batch copy, step, guard,
update); PyTorch eager runs its usual loop (zero_grad, forward, loss, backward,
SGD step) with the same thread count: ``--threads`` sets torch's threads and,
in both contenders' processes, OpenBLAS's, MKL's, OpenMP's and numba's.  Each
contender runs in its own process (symdl's numba pool and torch's OpenMP pool
spinning on the same cores would distort each other), rounds interleave them,
and ratios are the median of per-round ratios.  Progress goes to stderr.
``--clock cpu`` divides by the process's CPU time instead of wall time: on a
machine shared with other jobs, with ``--threads 1``, it measures the work
done rather than the share of the cores the process happened to get.
Run: ``python benchmarks/seq_cpu.py [--model lstm|gru|transformer|all] [--steps 40]
[--repeats 5] [--threads N] [--clock wall|cpu]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

#: model -> (T, batch, input features)
SHAPES = {"lstm": (32, 64, 32), "gru": (32, 64, 32), "transformer": (64, 32, 128)}
HIDDEN, HEADS, FF, CLASSES = 128, 4, 512, 10
now = time.perf_counter  # the clock measurements divide by (--clock)


def data(model, steps, seed=0):
    T, B, I = SHAPES[model]
    rng = np.random.default_rng(seed)
    n = max(steps, 4) * B
    return rng.standard_normal((n, T, I), dtype=np.float32), rng.integers(0, CLASSES, n)


# ------------------------------------------------------------------ symdl
def symdl_model(model):
    """The benchmark's network as a symdl module (batch first)."""
    from symdl.nn import GRU, LSTM, Module
    from symdl.nn.attention import TransformerEncoderLayer
    from symdl.nn.layers import Dense
    rng = np.random.default_rng(0)
    I = SHAPES[model][2]

    class Net(Module):
        def __init__(self):
            super().__init__()
            if model == "transformer":
                self.core = TransformerEncoderLayer(I, HEADS, FF, dropout=0.0, batch_first=True,
                                                    rng=rng)
            else:
                self.core = (LSTM if model == "lstm" else GRU)(I, HIDDEN, batch_first=True,
                                                               rng=rng)
            self.head = Dense(HIDDEN, CLASSES, rng)

        def build(self, g, x, prefix=""):
            if model == "transformer":
                y = self.core.build(g, x, prefix=f"{prefix}core.")
                h = g.add("mean", y, axes=(1,), name=f"{prefix}pool")
            else:
                _, hn = self.core.build_all(g, x, prefix=f"{prefix}core.")
                hn = hn[0] if isinstance(hn, tuple) else hn
                h = g.add("reshape", hn, shape=tuple(g.shape(hn))[1:], name=f"{prefix}last")
            return self.head.build(g, h, prefix=f"{prefix}head.")

    return Net()


def bench_symdl(model, X, y, steps, repeats):
    """Real ``Trainer.fit`` epochs over ``steps`` batches."""
    from symdl.data import Dataset
    from symdl.optim import SGD
    from symdl.train import Trainer
    B = SHAPES[model][1]
    t0 = time.perf_counter()
    tr = Trainer(symdl_model(model), lambda ps: SGD(ps, lr=0.01), "softmax_cross_entropy", {},
                 batch_size=B, epochs=1, progress=False, divergence=0)
    chunk = Dataset(X[:steps * B], y[:steps * B], CLASSES, "random")
    tr.fit(Dataset(X[:4 * B], y[:4 * B], CLASSES, "random"))  # compile, warm caches
    print(f"symdl {model}: compiled and warmed up in {time.perf_counter() - t0:.1f} s (wall)",
          file=sys.stderr, flush=True)
    rates = []
    for _ in range(repeats):
        t0 = now()
        tr.fit(chunk)
        tr.history.__init__()
        rates.append(steps * B / (now() - t0))
    return statistics.median(rates)


# ---------------------------------------------------------------- pytorch
def bench_torch(model, X, y, steps, repeats, threads):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nn = torch.nn
    T, B, I = SHAPES[model]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            if model == "transformer":
                self.core = nn.TransformerEncoderLayer(I, HEADS, FF, dropout=0.0,
                                                       batch_first=True)
            else:
                self.core = (nn.LSTM if model == "lstm" else nn.GRU)(I, HIDDEN, batch_first=True)
            self.head = nn.Linear(HIDDEN, CLASSES)

        def forward(self, x):
            if model == "transformer":
                return self.head(self.core(x).mean(1))
            _, hn = self.core(x)
            return self.head((hn[0] if isinstance(hn, tuple) else hn)[0])

    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    perm = torch.from_numpy(np.random.default_rng(1).permutation(len(X)))
    nb = len(X) // B

    def step(s=0):
        idx = perm[(s % nb) * B:(s % nb + 1) * B]
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(Xt[idx]), yt[idx])
        loss.backward()
        opt.step()

    step()  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = now()
        for s in range(steps):
            step(s)
        rates.append(steps * B / (now() - t0))
    return statistics.median(rates)


# ------------------------------------------------------------------ rounds
def run_one(name, model, steps, repeats, threads):
    """One contender in this process."""
    X, y = data(model, steps)
    if name == "symdl":
        return bench_symdl(model, X, y, steps, repeats)
    return bench_torch(model, X, y, steps, repeats, threads)


def clock(kind: str):
    """The timer the measurements divide by."""
    return time.process_time if kind == "cpu" else time.perf_counter


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=(*SHAPES, "all"), default="all")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="divide by wall time (default) or by the process's CPU time")
    ap.add_argument("--only", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps < 1 or args.repeats < 1 or args.threads < 1:
        ap.error("--steps, --repeats and --threads must be at least 1")
    if args.only:
        global now
        now = clock(args.clock)
        print(json.dumps(run_one(args.only, args.model, args.steps, args.repeats, args.threads)))
        return
    env = dict(os.environ, **{v: str(args.threads) for v in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")})
    names = ("symdl", "pytorch eager")
    models = tuple(SHAPES) if args.model == "all" else (args.model,)
    print(f"{args.threads} thread(s), {args.steps} steps per measurement, {args.clock} clock, "
          f"median of {args.repeats} interleaved rounds")
    for model in models:
        # rounds interleave the contenders, each in a fresh process, so that the
        # machine's drifting speed hits all of them alike; ratios are taken per round
        rates = {n: [] for n in names}
        for r in range(args.repeats):
            for name in names:
                cmd = [sys.executable, __file__, "--only", name, "--model", model,
                       "--steps", str(args.steps), "--repeats", "2",
                       "--threads", str(args.threads), "--clock", args.clock]
                print(f"{model}, round {r + 1}/{args.repeats}: {name}", file=sys.stderr,
                      flush=True)
                out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
                if out.returncode:
                    sys.exit(f"{model}: {name} failed (exit {out.returncode})")
                rates[name].append(float(out.stdout.split()[-1]))
        T, B, I = SHAPES[model]
        ratios = [a / b for a, b in zip(rates["symdl"], rates["pytorch eager"])]
        print(f"-- {model} (T = {T}, batch {B}, input {I})")
        for name in names:
            print(f"{name:<14} {statistics.median(rates[name]):>10,.0f} samples/s")
        print(f"symdl / pytorch eager = {statistics.median(ratios):.2f}  (per round "
              f"{', '.join(f'{q:.2f}' for q in ratios)})", flush=True)


if __name__ == "__main__":
    main()
