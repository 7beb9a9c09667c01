"""The CuPy backend.  Without a GPU: its whole wiring (lowering table, CUDA kernels rendered,
launched with converted arguments, host/device copies, update kernels) runs against a stand-in
``cupy`` whose arrays are NumPy's and whose ``RawModule`` builds the same CUDA source for the host;
a training step must equal the NumPy backend's.  With a GPU (marker ``gpu``): the same checks on
the real CuPy, and a checkpoint saved on the GPU resumes on the CPU."""
from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest

from symdl.backends import get_backend
from symdl.data import load_digits
from symdl.errors import BackendError
from symdl.nn import LSTM, Module, make_model
from symdl.nn.layers import Dense
from symdl.optim import SGD, Adam
from symdl.train import Trainer

CXX = shutil.which("g++") or shutil.which("c++")


# ------------------------------------------------------------ the stand-in
class _DevArray(np.ndarray):
    """A "device" array: NumPy's, with CuPy's explicit upload ``set``."""

    def set(self, host):
        assert isinstance(host, np.ndarray) and host.shape == self.shape
        self[...] = host


def _dev(a):
    return np.ascontiguousarray(a).view(_DevArray)


_BUILT: dict = {}  # source hash -> host library (each kernel source is built once per session)


class _Module:
    def __init__(self, code, options=()):
        name = hashlib.sha256(code.encode()).hexdigest()[:16]
        if name not in _BUILT:
            d = Path(tempfile.mkdtemp(prefix="fakecu-"))
            (d / f"{name}.cpp").write_text(code)
            subprocess.run([CXX, "-x", "c++", "-O0", "-shared", "-fPIC", "-Wall", "-Werror",
                            str(d / f"{name}.cpp"), "-o", str(d / f"{name}.so")], check=True)
            _BUILT[name] = ctypes.CDLL(str(d / f"{name}.so"))
        self.lib = _BUILT[name]

    def get_function(self, name):
        fn = getattr(self.lib, name)

        def launch(grid, block, args):
            conv = []
            for a in args:
                if isinstance(a, np.ndarray):
                    assert isinstance(a, _DevArray) and a.flags.c_contiguous, type(a)
                    conv.append(ctypes.c_void_p(a.ctypes.data))
                elif isinstance(a, np.float32):
                    conv.append(ctypes.c_float(a))
                elif isinstance(a, np.float64):
                    conv.append(ctypes.c_double(a))
                else:
                    assert isinstance(a, np.int64), type(a)
                    conv.append(ctypes.c_longlong(a))
            fn(*conv)
        return launch


#: what a step function may call through ``np`` (``cupy`` on a device): names CuPy has too.
#: Anything else (``np.put_along_axis``, ``np.errstate``...) fails here as it would there.
CUPY_NAMES = {"add", "all", "argmax", "copyto", "count_nonzero", "dot", "float32", "float64",
              "int64", "isfinite", "matmul", "may_share_memory", "mean", "shares_memory", "sum",
              "take", "transpose", "uint64"}


def _cupy_attr(name):
    if name not in CUPY_NAMES:
        raise AttributeError(f"the stand-in cupy has no {name!r} (see CUPY_NAMES)")
    return getattr(np, name)


def fake_cupy():
    m = types.ModuleType("cupy")
    m.__getattr__ = _cupy_attr
    m.ndarray = _DevArray
    for f in ("empty", "zeros", "full"):
        setattr(m, f, lambda *a, _f=getattr(np, f), **k: _f(*a, **k).view(_DevArray))
    m.asarray = lambda a, dtype=None: _dev(np.asarray(a, dtype))
    m.ascontiguousarray = lambda a, dtype=None: _dev(np.asarray(a, dtype))
    m.asnumpy = lambda a: np.array(a).view(np.ndarray)
    m.RawModule = _Module
    m.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
                                   memory=types.SimpleNamespace(OutOfMemoryError=MemoryError))
    return m


@pytest.fixture
def fake(monkeypatch):
    if CXX is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    from symdl.backends.cupy_backend import CupyBackend
    return CupyBackend()


def _has_gpu() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.fixture
def gpu():
    if not _has_gpu():
        pytest.skip("no CUDA device with CuPy")
    return get_backend("cuda")


# ------------------------------------------------------------ shared checks
def _trainer(backend, dtype, opt, hidden=(32,), act="tanh", dropout=0.0, epochs=1, **kw):
    ss = np.random.SeedSequence(3)
    a, b = ss.spawn(2)
    spec = make_model("mlp", 64, 10, hidden, act, np.random.default_rng(a), dtype=dtype,
                      dropout=dropout)
    return Trainer(spec.module, opt, spec.loss, spec.loss_params, batch_size=50, epochs=epochs,
                   seed=b, progress=False, dtype=dtype, backend=backend, say=lambda m: None, **kw)


def _data(dtype):
    import dataclasses
    d = load_digits("train", dtype)
    return dataclasses.replace(d, X=d.X[:200], y=d.y[:200])


def _params(tr):
    return {p.name: tr.backend.to_host(p.data).copy() for p in tr.params}


OPTS = {"sgd": lambda ps: SGD(ps, lr=0.1, momentum=0.9), "adam": lambda ps: Adam(ps, lr=1e-3)}
TOL = {"float64": 1e-12, "float32": 2e-5}


def _same_training(backend, dtype, opt, **kw):
    data = _data(dtype)
    cpu, dev = _trainer("numpy", dtype, OPTS[opt], **kw), _trainer(backend, dtype, OPTS[opt], **kw)
    hc, hd = cpu.fit(data), dev.fit(data)
    src = dev.program(50, True).source
    assert "np.matmul(" in src and src.count("cuda") >= 5  # cuBLAS and generated kernels
    np.testing.assert_allclose(hd.train_loss, hc.train_loss, rtol=TOL[dtype])
    for name, want in _params(cpu).items():
        np.testing.assert_allclose(_params(dev)[name], want, rtol=TOL[dtype], atol=TOL[dtype],
                                   err_msg=name)


# ------------------------------------------------------------ CNN, LSTM
def _cnn_trainer(backend, dtype, pool="max", norm="batch"):
    """The CNN of ``symdl train --model cnn`` on 8x8 digits: conv 3x3 ('same') -> norm -> ReLU
    -> 2x2 pool, twice, then dense: every lowering a CNN step needs (unfold, fold, argmax,
    gather, scatter_add, batch-norm statistics, reductions over windows)."""
    ss = np.random.SeedSequence(4)
    a, b = ss.spawn(2)
    spec = make_model("cnn", 64, 10, activation="relu", rng=np.random.default_rng(a), dtype=dtype,
                      channels=(4, 6), pool=pool, norm=norm)
    return Trainer(spec.module, OPTS["sgd"], spec.loss, spec.loss_params, batch_size=25, epochs=1,
                   seed=b, progress=False, dtype=dtype, backend=backend, say=lambda m: None)


class _Sequence(Module):
    """One LSTM layer over the 8 rows of a digit (8 steps of 8 features), its last hidden
    state through a dense layer: the sequence benchmark's network, small."""

    def __init__(self, dtype, rng):
        super().__init__()
        self.core = LSTM(8, 12, batch_first=True, rng=rng, dtype=dtype)
        self.head = Dense(12, 10, rng, dtype=dtype)

    def build(self, g, x, prefix=""):
        x = g.add("reshape", x, shape=(g.shape(x)[0], 8, 8), name=f"{prefix}rows")
        _, (hn, _) = self.core.build_all(g, x, prefix=f"{prefix}core.")
        h = g.add("reshape", hn, shape=tuple(g.shape(hn))[1:], name=f"{prefix}last")
        return self.head.build(g, h, prefix=f"{prefix}head.")


def _lstm_trainer(backend, dtype):
    ss = np.random.SeedSequence(5)
    a, b = ss.spawn(2)
    net = _Sequence(dtype, np.random.default_rng(a))
    net.name_parameters()
    return Trainer(net, OPTS["adam"], "softmax_cross_entropy", {}, batch_size=25, epochs=1,
                   seed=b, progress=False, dtype=dtype, backend=backend, say=lambda m: None)


def _same_model_training(make, backend, dtype, kernels=(), **kw):
    """One epoch (eight steps) of ``make(backend)`` equals the NumPy backend's: losses,
    parameters, batch-norm running statistics; the step launches ``kernels`` on the device
    and runs nothing on host copies."""
    data = _data(dtype)
    cpu, dev = make("numpy", dtype, **kw), make(backend, dtype, **kw)
    hc, hd = cpu.fit(data), dev.fit(data)
    src = dev.program(25, True).source
    assert "@host" not in src, [line for line in src.splitlines() if "@host" in line][:3]
    for k in kernels:
        assert k in src, k
    np.testing.assert_allclose(hd.train_loss, hc.train_loss, rtol=TOL[dtype])
    for name, want in _params(cpu).items():
        np.testing.assert_allclose(_params(dev)[name], want, rtol=TOL[dtype], atol=TOL[dtype],
                                   err_msg=name)
    for (name, a), (_, b) in zip(sorted(_buffers(cpu.model)), sorted(_buffers(dev.model))):
        np.testing.assert_allclose(b, a, rtol=TOL[dtype], atol=TOL[dtype], err_msg=name)


def _buffers(module):
    from symdl.nn.norm import batchnorm_layers
    return [(f"{k}.{s}", getattr(bn, s)) for k, bn in enumerate(batchnorm_layers(module))
            for s in ("running_mean", "running_var")]


CNN_KERNELS = ("unfold", "fold", "argmax", "gather", "scatter_add")


# ------------------------------------------------------------ no GPU needed
def test_missing_cupy_is_one_line_naming_the_extras(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    from symdl.backends.cupy_backend import CupyBackend
    with pytest.raises(BackendError) as e:
        CupyBackend()
    msg = str(e.value)
    assert "symdl[cuda12]" in msg and "symdl[cuda13]" in msg and "\n" not in msg


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", sorted(OPTS))
def test_stand_in_device_trains_as_the_cpu(fake, dtype, opt):
    _same_training(fake, dtype, opt, hidden=(24, 16), act="relu")


def test_stand_in_device_dropout_draws_the_cpu_masks(fake):
    _same_training(fake, "float64", "sgd", hidden=(16,), act="sigmoid", dropout=0.2)


def test_stand_in_device_trains_the_cnn_as_the_cpu(fake):
    """Max pooling and batch norm: the generated unfold/fold/argmax/gather/scatter_add
    kernels (checked_launch counts bad indices) and the running statistics through the
    backend.  (float64 here; float32 on a GPU, and per kernel in test_cuda_codegen.)"""
    _same_model_training(_cnn_trainer, fake, "float64", kernels=("checked_launch",))


@pytest.mark.parametrize("pool", ["avg", "l2"])
def test_stand_in_device_trains_the_cnn_with_average_and_l2_pooling(fake, pool):
    _same_model_training(_cnn_trainer, fake, "float64", pool=pool, norm="none")


def test_stand_in_device_trains_the_lstm_as_the_cpu(fake):
    _same_model_training(_lstm_trainer, fake, "float64")


def test_stand_in_refuses_what_cupy_lacks(fake):
    with pytest.raises(AttributeError, match="put_along_axis"):
        fake.xp.put_along_axis  # noqa: B018


def test_out_of_memory_is_one_line_suggesting_a_smaller_batch(fake, monkeypatch):
    def boom(*a, **k):
        raise MemoryError("cudaErrorMemoryAllocation")
    monkeypatch.setattr(fake.xp, "zeros", boom)
    with pytest.raises(BackendError, match="out of GPU memory.*smaller --batch-size"):
        fake.zeros((1 << 20,), "float32")


def test_no_device_is_the_same_one_line_naming_the_extras(monkeypatch):
    cp = fake_cupy()
    cp.cuda.runtime.getDeviceCount = lambda: 0
    monkeypatch.setitem(sys.modules, "cupy", cp)
    from symdl.backends.cupy_backend import CupyBackend
    with pytest.raises(BackendError) as e:
        CupyBackend()
    assert "symdl[cuda12]" in str(e.value) and "\n" not in str(e.value)


def test_out_of_memory_in_a_step_saves_nothing_from_it(fake, monkeypatch, tmp_path):
    """GPU memory runs out in the third step of a run that checkpoints every epoch: one
    BackendError line suggesting a smaller batch, and no checkpoint written."""
    calls = {"n": 0}
    real = np.matmul

    def matmul(*a, **k):
        calls["n"] += 1
        if calls["n"] > 2 * 6:   # three matmuls forward, three backward: the third step
            raise MemoryError("cudaErrorMemoryAllocation")
        return real(*a, **k)
    tr = _trainer(fake, "float64", OPTS["sgd"], hidden=(8, 8), checkpoint=str(tmp_path / "ck"))
    monkeypatch.setattr(fake.xp, "matmul", matmul)
    with pytest.raises(BackendError, match="out of GPU memory.*running a training step.*"
                                           "smaller --batch-size"):
        tr.fit(_data("float64"))
    assert calls["n"] > 12
    ck = tmp_path / "ck"
    assert not ck.exists() or not any(ck.rglob("arrays.npz"))


def test_generated_device_kernels_are_the_listed_source(fake):
    """What the backend loads is the renderer's text (the source kernels/cuda/ lists)."""
    from symdl.optim.rules_adaptive import adam_rule
    k = fake.update_kernel(adam_rule(), "float32", True)
    src = next(iter(fake._modules))
    assert k.kinds.startswith("aaaa") and k.auto and "expf" not in src and "sqrtf(" in src
    assert "__global__ void kernel(" in src and "1.1754943508222875e-38F" in src


# ------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", sorted(OPTS))
def test_gpu_trains_as_the_cpu(gpu, dtype, opt):
    _same_training(gpu, dtype, opt, hidden=(24, 16), act="relu")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("pool", ["max", "avg", "l2"])
def test_gpu_trains_the_cnn_as_the_cpu(gpu, dtype, pool):
    _same_model_training(_cnn_trainer, gpu, dtype, pool=pool,
                         kernels=("checked_launch",) if pool == "max" else ())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpu_trains_the_lstm_as_the_cpu(gpu, dtype):
    _same_model_training(_lstm_trainer, gpu, dtype)


@pytest.mark.gpu
def test_gpu_checkpoint_resumes_on_the_cpu(gpu, tmp_path):
    _checkpoint_resumes_on_the_cpu(gpu, tmp_path)


def test_stand_in_checkpoint_resumes_on_the_cpu(fake, tmp_path):
    _checkpoint_resumes_on_the_cpu(fake, tmp_path)


def _checkpoint_resumes_on_the_cpu(gpu, tmp_path):
    """One epoch on the device, saved; the second on the CPU from that checkpoint equals two
    epochs on the CPU."""
    data = _data("float64")
    whole = _trainer("numpy", "float64", OPTS["adam"], epochs=2)
    whole.fit(data)
    first = _trainer(gpu, "float64", OPTS["adam"], epochs=1, checkpoint=str(tmp_path / "ck"))
    first.fit(data)
    rest = _trainer("numpy", "float64", OPTS["adam"], epochs=2, checkpoint=str(tmp_path / "ck"),
                    resume="auto")
    rest.fit(data)
    for name, want in _params(whole).items():
        np.testing.assert_allclose(_params(rest)[name], want, rtol=1e-12, atol=1e-12)
