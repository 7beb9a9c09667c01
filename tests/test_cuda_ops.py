"""Every op, forward and backward, on the CUDA backend equals the NumPy backend (reference flavour).

One small graph per case: ``y = op(inputs)``, ``L = sum(y * w)`` (``w`` random, so the
upstream gradient is not uniform), compiled with the gradients of every floating input on
both backends, fed the same arrays; values and gradients must agree within the dtype's
tolerance.  With a GPU (marker ``gpu``): on CuPy, float32 and float64.  Without one: the
same sweep on the stand-in device of test_cupy_backend (NumPy arrays, the same CUDA
kernels built for the host), float64, so the harness and every lowering row run here.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

from symdl.backends import get_backend
from symdl.backends.numpy_backend import NumpyBackend
from symdl.derive import grad
from symdl.graph import Graph
from symdl.ops import OPS, RowOp

ELEMENTWISE = sorted(op.name for op in OPS.declared("elementwise"))
ROWOPS = sorted(op.name for op in OPS.declared() if isinstance(op, RowOp))
POSITIVE = {"log", "sqrt", "pow"}   # first input drawn from a positive domain
TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=2e-5, atol=2e-6)}

_I = np.int64
#: (case id, op, [(shape, kind)], params): kind "x" a float input, "i:<high>" int64 indices
STRUCTURAL = [
    ("matmul", "matmul", [((3, 4), "x"), ((4, 2), "x")], {}),
    ("matmul_batched", "matmul", [((2, 3, 4), "x"), ((4, 2), "x")], {}),
    ("transpose", "transpose", [((3, 4), "x")], {}),
    ("reshape", "reshape", [((3, 4), "x")], {"shape": (4, 3)}),
    ("sum", "sum", [((3, 4), "x")], {"axes": 1}),
    ("mean", "mean", [((2, 3, 4), "x")], {"axes": (0, 2)}),
    ("broadcast_to", "broadcast_to", [((1, 4), "x")], {"shape": (3, 4)}),
    ("sum_to", "sum_to", [((3, 4), "x")], {"shape": (4,)}),
    ("scale", "scale", [((3, 4), "x")], {"factor": 2.5}),
    ("permute", "permute", [((2, 3, 4), "x")], {"axes": (2, 0, 1)}),
    ("slice", "slice", [((5, 4), "x")], {"begin": (1, 0), "end": (4, None), "step": (2, 1)}),
    ("pad", "pad", [((2, 3), "x")], {"low": (1, 0), "high": (0, 2)}),
    ("concat", "concat", [((2, 3), "x"), ((1, 3), "x")], {"axis": 0}),
    ("gather_rows", "gather", [((5, 3), "x"), ((4, 1), "i:5")], {"axis": 0}),
    ("gather_pool", "gather", [((2, 5, 3), "x"), ((2, 1, 3), "i:5")], {"axis": 1}),
    ("scatter_add", "scatter_add", [((2, 1, 3), "x"), ((2, 1, 3), "i:5")],
     {"axis": 1, "shape": (2, 5, 3)}),
    ("argmax", "argmax", [((2, 5, 3), "x")], {"axis": 1}),
    ("unfold", "unfold", [((2, 3, 6, 5), "x")],
     {"kernel": (3, 2), "stride": (2, 1), "padding": (1, 1), "dilation": (1, 2)}),
    ("unfold_1d", "unfold", [((2, 3, 9), "x")], {"kernel": (3,), "stride": (2,)}),
    ("fold", "fold", [((2, 12, 20), "x")], {"output_size": (5, 6), "kernel": (2, 2)}),
]


def _case(kind: str, name: str, dtype: str):
    """``(graph, feeds, outputs)`` of one case."""
    rng = np.random.default_rng(sum(map(ord, name)))
    g = Graph()
    feeds, args = {}, []
    if kind == "elementwise":
        op = OPS[name]
        specs, params = [((3, 4), "x")] * op.arity, {}
    elif kind == "rowop":
        op = OPS[name]
        specs, params = [((4, 5), "x")], {}
        specs += [((4,), "i:5") if k == "target" else ((4, 5), "mask") for k in op.operands]
    else:
        _, name, specs, params = next(c for c in STRUCTURAL if c[0] == kind)
    for k, (shape, how) in enumerate(specs):
        if how.startswith("i:"):
            a = rng.integers(0, int(how[2:]), shape).astype(_I)
            node = g.input(f"a{k}", shape, "int64")
        else:
            if how == "mask":
                a = np.where(rng.uniform(size=shape) < 0.3, -1.0, 1.0)
                a[:, 0] = 1.0
            elif kind == "elementwise" and (name in POSITIVE and k == 0 or name == "div" and k):
                a = rng.uniform(0.2, 3.0, shape)
            else:
                a = rng.normal(0, 2.0, shape)
            a = a.astype(dtype)
            node = g.input(f"a{k}", shape, dtype)
        feeds[node] = a
        args.append(node)
    y = g.add(name, *args, name="y", **params)
    outputs = [y]
    if g.node(y)["dtype"] == dtype:
        w = g.input("w", g.shape(y), dtype)
        feeds[w] = rng.normal(0, 1.0, g.shape(y)).astype(dtype)
        L = g.add("sum", g.add("mul", y, w, name="yw"), name="L")
        wrt = [a for a, (_, how) in zip(args, specs) if how in ("x",)]
        gg = grad(g, L, wrt=wrt)
        return gg.graph, feeds, outputs + [L] + [gg.grads[a] for a in wrt]
    return g, feeds, outputs


def _run(backend, graph, feeds, outputs) -> tuple:
    prog = backend.compile(graph, outputs)
    for n, a in feeds.items():
        prog.inputs[n][...] = backend.asarray(a, a.dtype)
    prog.run()
    return [np.array(backend.to_host(prog.value(o))) for o in outputs], prog.source


CASES = ([("elementwise", n) for n in ELEMENTWISE] + [("rowop", n) for n in ROWOPS]
         + [(c[0], c[1]) for c in STRUCTURAL])


def _same(device, kind, name, dtype):
    graph, feeds, outputs = _case(kind, name, dtype)
    want, _ = _run(NumpyBackend("numpy"), graph, feeds, outputs)
    got, source = _run(device, graph, feeds, outputs)
    for o, a, b in zip(outputs, got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, o
        np.testing.assert_allclose(a, b, **TOL[dtype], err_msg=f"{name}: {o}")
    return source


@pytest.fixture(scope="module")
def standin():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_cupy_backend import CXX, fake_cupy
    if CXX is None:
        pytest.skip("no C++ compiler")
    saved = sys.modules.get("cupy")
    sys.modules["cupy"] = fake_cupy()
    try:
        from symdl.backends.cupy_backend import CupyBackend
        yield CupyBackend()
    finally:
        if saved is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = saved


def test_the_sweep_covers_every_declared_op():
    covered = {OPS[n].name for k, n in CASES if k in ("elementwise", "rowop")}
    covered |= {c[1] for c in STRUCTURAL}
    assert covered >= {op.name for op in OPS.declared()} - {"fill"}


@pytest.mark.parametrize("kind,name", CASES, ids=[n if k in ("elementwise", "rowop") else k
                                                   for k, n in CASES])
def test_stand_in_device_op_forward_and_backward_equal_numpy(standin, kind, name):
    source = _same(standin, kind, name, "float64")
    assert "@host" not in source  # every op of the sweep has a device lowering
    if kind in ("elementwise", "rowop"):
        assert "cuda" in source   # a generated kernel ran


def _gpu():
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() > 0:
            return get_backend("cuda")
    except Exception:
        pass
    pytest.skip("no CUDA device with CuPy")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind,name", CASES, ids=[n if k in ("elementwise", "rowop") else k
                                                   for k, n in CASES])
def test_gpu_op_forward_and_backward_equal_numpy(kind, name, dtype):
    _same(_gpu(), kind, name, dtype)
