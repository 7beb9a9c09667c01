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
from symdl.nn import make_model
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


class _Module:
    def __init__(self, code, options=()):
        d = Path(tempfile.mkdtemp(prefix="fakecu-"))
        name = hashlib.sha256(code.encode()).hexdigest()[:16]
        (d / f"{name}.cpp").write_text(code)
        subprocess.run([CXX, "-x", "c++", "-O1", "-shared", "-fPIC", "-Wall", "-Werror",
                        str(d / f"{name}.cpp"), "-o", str(d / f"{name}.so")], check=True)
        self.lib = ctypes.CDLL(str(d / f"{name}.so"))

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


def fake_cupy():
    m = types.ModuleType("cupy")
    m.__getattr__ = lambda name: getattr(np, name)
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


def test_out_of_memory_is_one_line_suggesting_a_smaller_batch(fake, monkeypatch):
    def boom(*a, **k):
        raise MemoryError("cudaErrorMemoryAllocation")
    monkeypatch.setattr(fake.xp, "zeros", boom)
    with pytest.raises(BackendError, match="out of GPU memory.*smaller --batch-size"):
        fake.zeros((1 << 20,), "float32")


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
def test_gpu_checkpoint_resumes_on_the_cpu(gpu, tmp_path):
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
