"""Max pooling's unfold -> argmax -> gather chain and its gradient's scatter_add -> fold run as
one loop each over the image (backends/numpy_pool.py): the same values, to the bit, as the ops
run one by one (fuse=False), and torch's, for strides, dilations, paddings, ceil mode, ties, NaN."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from symdl.backends.numpy_backend import compile_graph
from symdl.backends.numpy_pool import POOL_KERNELS
from symdl.derive import grad
from symdl.graph import Graph
from symdl.nn import MaxPool2d
from symdl.ops.shape_ops import reduce_max


def _pool_graph(shape, dtype, **kw):
    g = Graph()
    x = g.input("x", shape, dtype)
    y = MaxPool2d(**kw).build(g, x)
    c = g.input("c", g.shape(y), dtype)
    L = g.add("sum", g.add("mul", c, y), name="L")
    return grad(g, L, ["x"]), y


def _run(prog, xv, cv, steps=2):
    for _ in range(steps):   # a second step must not see the first's scattered entries
        prog.inputs["x"][...], prog.inputs["c"][...] = xv, cv
        prog.run()


CASES = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
         dict(kernel_size=3, stride=1), dict(kernel_size=2, stride=1, dilation=2),
         dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=(2, 3), stride=(1, 2))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kw", CASES)
def test_fused_pool_matches_the_ops_one_by_one_and_torch(kw, dtype):
    shape = (3, 2, 9, 8)
    gg, y = _pool_graph(shape, dtype, **kw)
    outs = [y, gg["x"]]
    fused = compile_graph(gg.graph, outs, flavor="numba")
    plain = compile_graph(gg.graph, outs, flavor="numba", fuse=False)
    assert "window_argmax" in fused.source and "window_scatter" in fused.source, fused.source
    for op in ("b_argmax_numba", "b_gather_numba", "b_scatter_add_numba", "b_fold_numba"):
        assert op not in fused.source
    assert "window_argmax" not in plain.source and "b_argmax_numba" in plain.source
    rng = np.random.default_rng(3)
    xv = rng.integers(-2, 2, size=shape).astype(dtype)   # ties in most windows
    cv = rng.normal(size=fused.inputs["c"].shape).astype(dtype)
    for prog in (fused, plain):
        _run(prog, xv, cv)
    for n in outs:
        np.testing.assert_array_equal(fused.value(n), plain.value(n))
    tx = torch.tensor(xv, requires_grad=True)
    k = kw["kernel_size"]
    ty = torch.nn.functional.max_pool2d(tx, k, kw.get("stride", k), kw.get("padding", 0),
                                        kw.get("dilation", 1), kw.get("ceil_mode", False))
    (ty * torch.tensor(cv)).sum().backward()
    np.testing.assert_array_equal(fused.value(y), ty.detach().numpy())
    np.testing.assert_allclose(fused.value(gg["x"]), tx.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_first_nan_wins_as_numpy():
    gg, y = _pool_graph((1, 1, 4, 4), "float64", kernel_size=2)
    fused = compile_graph(gg.graph, [y, gg["x"]], flavor="numba")
    xv = np.arange(16.0).reshape(1, 1, 4, 4)
    xv[0, 0, 0, 1] = xv[0, 0, 1, 0] = np.nan   # window (0, 0): the first NaN, tap 1
    xv[0, 0, 2:, 2:] = 5.0                      # window (1, 1): all tied, tap 0
    cv = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    _run(fused, xv, cv)
    assert np.isnan(fused.value(y)[0, 0, 0, 0])
    want = np.zeros((1, 1, 4, 4))
    want[0, 0, 0, 1], want[0, 0, 2, 2] = 1.0, 4.0
    want[0, 0, 1, 3], want[0, 0, 3, 1] = 2.0, 3.0
    np.testing.assert_array_equal(fused.value(gg["x"]), want)


def test_max_over_windows_of_one_dimensional_maps():
    """The chain is found in any graph, not only MaxPool2d's: 1-D windows of an unfold."""
    g = Graph()
    x = g.input("x", (2, 3, 10), "float64")
    cols = g.add("unfold", x, kernel=(3,), stride=(2,), name="cols")
    win = g.add("reshape", cols, shape=(2, 3, 3, 4), name="win")
    m = reduce_max(g, win, axes=2, keepdims=True, name="m")
    c = g.input("c", g.shape(m), "float64")
    L = g.add("sum", g.add("mul", c, m), name="L")
    gg = grad(g, L, ["x"])
    fused = compile_graph(gg.graph, [m, gg["x"]], flavor="numba")
    assert "window_argmax" in fused.source and "window_scatter" in fused.source
    rng = np.random.default_rng(4)
    xv, cv = rng.integers(0, 3, size=(2, 3, 10)).astype(float), rng.normal(size=(2, 3, 1, 4))
    _run(fused, xv, cv)
    tx = torch.tensor(xv, requires_grad=True)
    ty = torch.nn.functional.max_pool1d(tx, 3, 2)
    (ty * torch.tensor(cv[:, :, 0])).sum().backward()
    np.testing.assert_array_equal(fused.value(m)[:, :, 0], ty.detach().numpy())
    np.testing.assert_array_equal(fused.value(gg["x"]), tx.grad.numpy())


def test_columns_read_elsewhere_are_not_fused():
    """Columns that something besides the max reads keep the ops one by one."""
    g = Graph()
    x = g.input("x", (2, 3, 6, 6), "float64")
    cols = g.add("unfold", x, kernel=(2, 2), stride=(2, 2), name="cols")
    win = g.add("reshape", cols, shape=(2, 3, 4, 9), name="win")
    m = reduce_max(g, win, axes=2, keepdims=True, name="m")
    s = g.add("sum", win, name="s")
    prog = compile_graph(g, [m, s], flavor="numba")
    assert "window_argmax" not in prog.source and "b_argmax_numba" in prog.source


def test_the_loops_are_listed_in_kernels():
    from symdl.backends.listing import backend_listing
    listing = backend_listing()
    for name, src in POOL_KERNELS.items():
        assert listing[f"numba/{name}.py"] == src.rstrip("\n")
