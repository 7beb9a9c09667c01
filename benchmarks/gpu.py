"""symdl's CUDA backend against PyTorch CUDA eager, on one GPU (runs only where one is).

Measured in the same run, CUDA events around each candidate (median per call, after warm-up):

* MLP 784-1024-1024-10 (ReLU, softmax cross-entropy, SGD momentum 0.9), batch 1024, float32:
  training samples/s of one full step (forward, backward, update), symdl's compiled program on
  the CuPy backend against the same network in PyTorch eager;
* the CNN of issue 11 at batch 256 (1x28x28 float32 images: conv 3x3 32 -> ReLU -> maxpool 2 ->
  conv 3x3 64 -> ReLU -> maxpool 2 -> dense 10, plain SGD) and the LSTM of issue 14 (one layer,
  T = 32, batch 64, input 32, hidden 128, the last hidden state through dense 128 -> 10, plain
  SGD): training samples/s of one full step, symdl against PyTorch CUDA eager;
* a fused activation backward (sigmoid: ``g * y * (1 - y)``) over 2^28 float32 elements: symdl's
  generated kernel (``kernels/cuda/sigmoid.cu``) against PyTorch eager and against the
  device-to-device copy bandwidth (the kernel moves 3 arrays, a copy 2: the ratio reported is
  achieved bytes/s over copy bytes/s);
* one Adam step on 2^26 float32 parameters: symdl's fused in-place kernel against
  ``torch.optim.Adam(fused=True)``.

Goals (issue 15): >= 1.0x PyTorch on the MLP and the CNN, >= 0.8 of copy bandwidth for the
elementwise kernel, >= 1.0x torch's fused Adam (the LSTM is reported, no goal).  Without CuPy and
a device it says so on stderr and exits 1.  Progress goes to stderr.
Run: ``python benchmarks/gpu.py [--repeats 20] [--only mlp,cnn,lstm,act,adam] [--json]``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np


def timed(fn, repeats: int, warmup: int = 3) -> float:
    """Median seconds per call, CUDA events around each call."""
    import cupy
    for _ in range(warmup):
        fn()
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
    return statistics.median(times)


def mlp(repeats: int) -> dict:
    import torch

    from symdl.backends import get_backend
    from symdl.nn import make_model
    from symdl.optim import SGD
    from symdl.train import Trainer
    n, sizes = 1024, (784, 1024, 1024, 10)
    rng = np.random.default_rng(0)
    spec = make_model("mlp", sizes[0], sizes[-1], sizes[1:-1], "relu", rng)
    tr = Trainer(spec.module, lambda ps: SGD(ps, lr=0.01, momentum=0.9), spec.loss,
                 batch_size=n, epochs=1, progress=False, backend=get_backend("cuda"))
    X = rng.normal(0, 1, (n, sizes[0])).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    tr._prepare(X, y)
    prog = tr.program(n, True)
    prog.inputs["x"].set(X)
    prog.inputs["y"].set(y)

    def symdl_step():
        prog.run()
        tr.optimizer.step()

    t_symdl = timed(symdl_step, repeats)
    dev = torch.device("cuda")
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1]).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    xt, yt = torch.from_numpy(X).to(dev), torch.from_numpy(y).to(dev)

    def torch_step():
        opt.zero_grad(set_to_none=False)
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()

    t_torch = timed(torch_step, repeats)
    return {"symdl_samples_s": n / t_symdl, "torch_samples_s": n / t_torch,
            "ratio": t_torch / t_symdl}


def _symdl_step(model, X, y, lr=0.01):
    """One compiled training step of ``model`` on the CUDA backend (forward, backward, SGD),
    the batch already on the device: ``(step, batch size)``."""
    from symdl.backends import get_backend
    from symdl.optim import SGD
    from symdl.train import Trainer
    be = get_backend("cuda")
    model.name_parameters()
    tr = Trainer(model, lambda ps: SGD(ps, lr=lr), "softmax_cross_entropy", {},
                 batch_size=len(X), epochs=1, progress=False, backend=be, divergence=0)
    tr._prepare(X, y)
    prog = tr.program(len(X), True)
    prog.inputs["x"][...] = be.asarray(X)
    prog.inputs["y"][...] = be.asarray(y)

    def step():
        prog.run()
        tr.optimizer.step()
    return step


def _torch_step(net, X, y, lr=0.01):
    import torch
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    xt, yt = torch.from_numpy(X).cuda(), torch.from_numpy(y).cuda()

    def step():
        opt.zero_grad(set_to_none=False)
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return step


def _versus(name, n, ours, theirs, repeats) -> dict:
    print(f"gpu.py: {name}: symdl...", file=sys.stderr, flush=True)
    t_symdl = timed(ours, repeats)
    print(f"gpu.py: {name}: torch...", file=sys.stderr, flush=True)
    t_torch = timed(theirs, repeats)
    return {"symdl_samples_s": n / t_symdl, "torch_samples_s": n / t_torch,
            "ratio": t_torch / t_symdl}


def cnn(repeats: int) -> dict:
    """The CNN of issue 11 (benchmarks/cnn_cpu.py) at batch 256."""
    import torch

    from symdl.nn import Conv2d, Flatten, MaxPool2d, Sequential
    from symdl.nn.layers import Activation, Dense
    n, rng = 256, np.random.default_rng(0)
    X = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    layers, c = [], 1
    for width in (32, 64):
        layers += [Conv2d(c, width, 3, rng=rng), Activation("relu"), MaxPool2d(2)]
        c = width
    ours = _symdl_step(Sequential(*layers, Flatten(), Dense(64 * 5 * 5, 10, rng)), X, y)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 10)).cuda()
    return _versus("CNN", n, ours, _torch_step(net, X, y), repeats)


def lstm(repeats: int) -> dict:
    """The LSTM of issue 14 (benchmarks/seq_cpu.py): T = 32, batch 64, input 32, hidden 128."""
    import torch

    from symdl.nn import LSTM, Module
    from symdl.nn.layers import Dense
    T, n, inputs, hidden = 32, 64, 32, 128
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, T, inputs), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)

    class Net(Module):
        def __init__(self):
            super().__init__()
            self.core = LSTM(inputs, hidden, batch_first=True, rng=rng)
            self.head = Dense(hidden, 10, rng)

        def build(self, g, x, prefix=""):
            _, (hn, _) = self.core.build_all(g, x, prefix=f"{prefix}core.")
            h = g.add("reshape", hn, shape=tuple(g.shape(hn))[1:], name=f"{prefix}last")
            return self.head.build(g, h, prefix=f"{prefix}head.")

    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.core = torch.nn.LSTM(inputs, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, 10)

        def forward(self, x):
            return self.head(self.core(x)[1][0][0])

    return _versus("LSTM", n, _symdl_step(Net(), X, y), _torch_step(TorchNet().cuda(), X, y),
                   repeats)


def activation_backward(repeats: int) -> dict:
    import cupy
    import torch

    from symdl.codegen.listing import op_listing
    n = 1 << 28
    src = op_listing()["cuda/sigmoid.cu"]
    fn = cupy.RawModule(code=src, options=("-std=c++11",)).get_function("sigmoid_b0_32")
    y = cupy.random.random(n, dtype=cupy.float32)
    g = cupy.random.random(n, dtype=cupy.float32)
    out = cupy.empty_like(y)
    blocks = min((n + 255) // 256, 1 << 16)
    argnames = src.split("void sigmoid_b0_32(")[1].split(")")[0]
    args = [y if "a_y" in a else g if "a_g" in a else out for a in argnames.split(",")[:-1]]
    t_symdl = timed(lambda: fn((blocks,), (256,), (*args, np.int64(n))), repeats)
    t_copy = timed(lambda: cupy.copyto(out, y), repeats)
    yt, gt = torch.as_tensor(y, device="cuda"), torch.as_tensor(g, device="cuda")
    t_torch = timed(lambda: torch.ops.aten.sigmoid_backward(gt, yt), repeats)
    kernel_bw, copy_bw = 3 * 4 * n / t_symdl, 2 * 4 * n / t_copy
    return {"symdl_GB_s": kernel_bw / 1e9, "copy_GB_s": copy_bw / 1e9,
            "of_copy_bandwidth": kernel_bw / copy_bw, "vs_torch": t_torch / t_symdl}


def adam(repeats: int) -> dict:
    import cupy
    import torch

    from symdl.backends import get_backend
    from symdl.optim.rules_adaptive import adam_rule
    n = 1 << 26
    k = get_backend("cuda").update_kernel(adam_rule(), "float32", True)
    p, g = cupy.random.random(n, dtype=cupy.float32), cupy.random.random(n, dtype=cupy.float32)
    m, v = cupy.zeros(n, cupy.float32), cupy.zeros(n, cupy.float32)
    scal = {"beta1": 0.9, "beta2": 0.999, "c1": 0.1, "c2": 0.001, "eps": 1e-8, "lr": 1e-3,
            "weight_decay": 0.0}
    names = [str(s) for s in adam_rule().kernel_scalars]
    t_symdl = timed(lambda: k(p, g, m, v, *[scal[s] for s in names]), repeats)
    pt = torch.nn.Parameter(torch.rand(n, device="cuda"))
    pt.grad = torch.rand(n, device="cuda")
    opt = torch.optim.Adam([pt], lr=1e-3, fused=True)
    t_torch = timed(opt.step, repeats)
    return {"symdl_ms": t_symdl * 1e3, "torch_fused_ms": t_torch * 1e3, "ratio": t_torch / t_symdl}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--only", default="mlp,cnn,lstm,act,adam",
                    help="comma-separated: mlp, cnn, lstm, act (activation backward), adam")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    runs = {"mlp": mlp, "cnn": cnn, "lstm": lstm, "act": activation_backward, "adam": adam}
    only = [k.strip() for k in args.only.split(",") if k.strip()]
    if not only or any(k not in runs for k in only):
        ap.error(f"--only: choose from {', '.join(runs)}")
    try:
        import cupy
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:
        print("benchmarks/gpu.py: no CUDA device with CuPy here; nothing measured", file=sys.stderr)
        return 1
    res = {"device": name}
    for k in only:
        print(f"gpu.py: {k}", file=sys.stderr, flush=True)
        res[k] = runs[k](args.repeats)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"device: {name}")
    models = {"mlp": "MLP 784-1024-1024-10, batch 1024", "cnn": "CNN 32-64 on 28x28, batch 256",
              "lstm": "LSTM T=32 hidden 128, batch 64"}
    for k, what in models.items():
        if k in res:
            r = res[k]
            print(f"{what}: symdl {r['symdl_samples_s']:.0f} samples/s, "
                  f"torch {r['torch_samples_s']:.0f}: {r['ratio']:.2f}x")
    if "act" in res:
        r = res["act"]
        print(f"sigmoid backward, 2^28 float32: {r['symdl_GB_s']:.0f} GB/s = "
              f"{r['of_copy_bandwidth']:.2f} of copy ({r['copy_GB_s']:.0f} GB/s); "
              f"{r['vs_torch']:.2f}x torch")
    if "adam" in res:
        r = res["adam"]
        print(f"Adam, 2^26 float32: symdl {r['symdl_ms']:.2f} ms, torch fused "
              f"{r['torch_fused_ms']:.2f} ms: {r['ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
