"""Projected data-parallel efficiency from the ring all-reduce cost model (docs/scaling.md).

Per step, every rank computes its gradient (``T_c``, measured here on one core at a fixed batch
per rank: weak scaling) and then all-reduces it, in one call, after the backward pass (no
overlap, as ``symdl.train.distributed`` does):

    T_ar(N) = 2 (N - 1) / N * bytes / bandwidth + 2 (N - 1) * latency
    efficiency(N) = T_c / (T_c + T_ar(N))

``bytes`` is 4 x the parameter count that symdl itself reports (float32 gradients) for the
models of the benchmarks: the MLP of ``mlp_cpu.py``/``dp_cpu.py`` (784-256-256-10), the CNN of
``cnn_cpu.py`` (conv 3x3 32, pool, conv 3x3 64, pool, dense 10 on 1x28x28) and a small
transformer encoder (2 post-LN layers, d_model 128, 4 heads, feed-forward 512, 32 tokens,
flatten, dense 10).  ``T_c`` is the median time of a real ``Trainer.fit`` step on this machine
with 1 thread (``--step-ms`` replaces it with figures measured elsewhere).

Run: ``python benchmarks/dp_model.py [--steps 8] [--step-ms mlp=4.1,cnn=20,transformer=30]
[--latency-us 5] [--json | --write docs/scaling.md]``; ``--write`` replaces the table between
the ``dp_model`` markers of that file.
"""
from __future__ import annotations

import os

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_k, "1")  # T_c is one core's (set before numpy and numba load)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's symdl

RANKS = (8, 64, 512)
LINKS = {"100 Gb/s": 100e9 / 8, "400 Gb/s": 400e9 / 8}  # bytes per second
BEGIN, END = "<!-- dp_model:begin -->", "<!-- dp_model:end -->"


def say(msg: str) -> None:
    print(f"dp_model: {msg}", file=sys.stderr, flush=True)


def models():
    """``{name: (module, input shape per example, batch per rank)}``."""
    from symdl.nn import (Conv2d, Flatten, MaxPool2d, Sequential, TransformerEncoderLayer,
                          make_model)
    from symdl.nn.layers import Activation, Dense
    rng = np.random.default_rng(0)
    mlp = make_model("mlp", 784, 10, (256, 256), "relu", rng).module
    cnn = Sequential(Conv2d(1, 32, 3, rng=rng), Activation("relu"), MaxPool2d(2),
                     Conv2d(32, 64, 3, rng=rng), Activation("relu"), MaxPool2d(2), Flatten(),
                     Dense(64 * 5 * 5, 10, rng))
    T, d = 32, 128
    tf = Sequential(*(TransformerEncoderLayer(d, 4, 512, dropout=0.0, batch_first=True, rng=rng)
                      for _ in range(2)), Flatten(), Dense(T * d, 10, rng))
    for m in (cnn, tf):
        m.name_parameters()
    return {"mlp": (mlp, (784,), 128), "cnn": (cnn, (1, 28, 28), 64),
            "transformer": (tf, (T, d), 32)}


def step_ms(module, shape, batch: int, steps: int) -> float:
    """Median milliseconds of one ``Trainer.fit`` step (SGD, random data), after a warm-up."""
    from symdl.data import Dataset
    from symdl.optim import SGD
    from symdl.train import Trainer
    rng = np.random.default_rng(1)
    n = steps * batch
    X = rng.standard_normal((n, *shape), dtype=np.float32)
    ds = Dataset(X, rng.integers(0, 10, n), 10, "random")
    tr = Trainer(module, lambda ps: SGD(ps, lr=1e-3), "softmax_cross_entropy", {},
                 batch_size=batch, epochs=1, progress=False, divergence=0)
    tr.fit(Dataset(X[:2 * batch], ds.y[:2 * batch], 10, "random"))  # compile
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        tr.fit(ds)
        times.append((time.perf_counter() - t0) / steps)
    return 1e3 * statistics.median(times)


def allreduce_ms(nbytes: float, ranks: int, bandwidth: float, latency: float) -> float:
    """The ring all-reduce's time: reduce-scatter and all-gather, 2 (N-1) messages each way."""
    return 1e3 * (2 * (ranks - 1) / ranks * nbytes / bandwidth + 2 * (ranks - 1) * latency)


def project(figures: dict, latency: float) -> list:
    rows = []
    for name, f in figures.items():
        nbytes = 4 * f["parameters"]
        for link, bw in LINKS.items():
            cells = []
            for n in RANKS:
                t = allreduce_ms(nbytes, n, bw, latency)
                cells.append({"ranks": n, "allreduce_ms": t,
                              "efficiency": f["step_ms"] / (f["step_ms"] + t)})
            rows.append({"model": name, "link": link, "cells": cells})
    return rows


def markdown(figures: dict, rows: list, latency: float, source: str) -> str:
    out = ["| model | parameters | gradient | batch/rank | T_c (ms) |",
           "|---|---:|---:|---:|---:|"]
    for name, f in figures.items():
        out.append(f"| {name} | {f['parameters']:,} | {4 * f['parameters'] / 1e6:.2f} MB | "
                   f"{f['batch']} | {f['step_ms']:.2f} |")
    out += ["", f"T_c: {source}.  Latency per message {latency * 1e6:g} µs.", "",
            "| model | link | " + " | ".join(f"N = {n}" for n in RANKS) + " |",
            "|---|---|" + "---:|" * len(RANKS)]
    for r in rows:
        out.append(f"| {r['model']} | {r['link']} | " + " | ".join(
            f"{c['efficiency']:.2f} ({c['allreduce_ms']:.2f} ms)" for c in r["cells"]) + " |")
    out += ["", "Each cell: efficiency T_c / (T_c + T_ar), and T_ar, the all-reduce's time per "
            "step."]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="steps per timed epoch (default: 8)")
    ap.add_argument("--step-ms", default="", metavar="NAME=MS,...",
                    help="use these compute times per step instead of measuring")
    ap.add_argument("--latency-us", type=float, default=5.0,
                    help="latency per message in microseconds (default: 5)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--write", metavar="FILE", help="replace the table between the markers")
    a = ap.parse_args(argv)
    given = dict((k, float(v)) for k, v in (kv.split("=") for kv in a.step_ms.split(",") if kv))
    figures = {}
    for name, (module, shape, batch) in models().items():
        f = {"parameters": int(module.num_parameters()), "batch": batch}
        if name in given:
            f["step_ms"] = given[name]
        else:
            say(f"timing {name} ({f['parameters']:,} parameters, batch {batch}, 1 thread)")
            f["step_ms"] = step_ms(module, shape, batch, a.steps)
        figures[name] = f
    measured = sorted(n for n in figures if n not in given)
    parts = [f"median Trainer.fit step with 1 thread, measured for {', '.join(measured)} on "
             f"{platform.node()} ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}) "
             f"on {time.strftime('%Y-%m-%d')}"] if measured else []
    parts += [f"given (--step-ms) for {', '.join(sorted(given))}"] if given else []
    source = "; ".join(parts)
    rows = project(figures, a.latency_us * 1e-6)
    if a.json:
        print(json.dumps({"figures": figures, "latency_s": a.latency_us * 1e-6,
                          "projection": rows, "source": source}, indent=1))
        return 0
    table = markdown(figures, rows, a.latency_us * 1e-6, source)
    if a.write:
        path = Path(a.write)
        text = path.read_text()
        if BEGIN not in text or END not in text:
            say(f"{path} has no {BEGIN} ... {END} markers")
            return 2
        head, rest = text.split(BEGIN, 1)
        path.write_text(f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}")
        say(f"wrote the table into {path}")
        return 0
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
