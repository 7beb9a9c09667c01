"""The dedicated lowerings behind max pooling: argmax, gather and scatter_add along a middle
axis with one index per column, in both flavours, against NumPy's own functions and torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from symdl.backends.numpy_backend import compile_graph
from symdl.derive import grad
from symdl.errors import DataError
from symdl.graph import Graph
from symdl.nn import MaxPool2d
from symdl.ops.shape_ops import reduce_max

FLAVORS = ["numba", "numpy"]


def _max_graph(shape, axis, dtype="float64"):
    """``L = Σ c ⊙ max(x, axis)`` and its gradient: argmax, gather, scatter_add."""
    g = Graph()
    x = g.input("x", shape, dtype)
    m = reduce_max(g, x, axes=axis, keepdims=True, name="m")
    c = g.input("c", g.shape(m), dtype)
    L = g.add("sum", g.add("mul", c, m), name="L")
    gg = grad(g, L, [x])
    return g, gg, m, L


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("shape, axis", [((3, 4, 5), 1), ((2, 3, 4, 5), 2), ((6, 4), 1),
                                         ((4, 6), 0)])
def test_max_along_an_axis_and_its_gradient(flavor, shape, axis):
    g, gg, m, L = _max_graph(shape, axis)
    prog = compile_graph(gg.graph, [m, L, gg["x"]], flavor=flavor)
    ops = {"argmax": "b_argmax_numba(", "gather": "b_gather_numba",
           "scatter_add": "b_scatter_add_numba" if flavor == "numba" else "np.put_along_axis("}
    for op, call in ops.items():
        if flavor == "numba" or op == "scatter_add":
            assert call in prog.source, (op, prog.source)
    rng = np.random.default_rng(0)
    # small integers: ties in most windows, so the first-maximum rule is exercised
    xv = rng.integers(0, 3, size=shape).astype(float)
    cv = rng.normal(size=prog.inputs["c"].shape)
    for _ in range(2):   # the second step must not see the first's scattered entries
        prog.inputs["x"][...], prog.inputs["c"][...] = xv, cv
        prog.run()
    np.testing.assert_array_equal(prog.value(m), xv.max(axis, keepdims=True))
    tx = torch.tensor(xv, requires_grad=True)
    (tx.max(axis, keepdim=True).values * torch.tensor(cv)).sum().backward()
    np.testing.assert_array_equal(prog.value(gg["x"]), tx.grad.numpy())


def test_argmax_kernel_takes_the_first_nan_as_numpy():
    g = Graph()
    x = g.input("x", (2, 4, 3), "float32")
    a = g.add("argmax", x, axis=1, name="a")
    prog = compile_graph(g, [a], flavor="numba")
    assert "b_argmax_numba(" in prog.source
    xv = np.random.default_rng(1).normal(size=(2, 4, 3)).astype(np.float32)
    xv[0, 2, 1] = xv[0, 3, 1] = np.nan
    xv[1, 0, 2] = np.nan
    xv[1, :, 0] = 7.0   # all equal: index 0
    prog.inputs["x"][...] = xv
    prog.run()
    np.testing.assert_array_equal(prog.value(a), np.argmax(xv, axis=1, keepdims=True))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_gather_and_scatter_with_outside_indices(flavor):
    """Negative indices count from the end, as NumPy's; out of range is a one-line error."""
    g = Graph()
    x = g.input("x", (2, 3, 4), "float64")
    idx = g.input("idx", (2, 1, 4), "int64")
    y = g.add("gather", x, idx, axis=1, name="y")
    s = g.add("scatter_add", y, idx, axis=1, shape=(2, 3, 4), name="s")
    prog = compile_graph(g, [y, s], flavor=flavor)
    xv = np.arange(24.0).reshape(2, 3, 4)
    iv = np.array([[[0, -1, 2, 1]], [[-3, 2, 0, -2]]])
    prog.inputs["x"][...], prog.inputs["idx"][...] = xv, iv
    prog.run()
    want = np.take_along_axis(xv, iv, axis=1)
    np.testing.assert_array_equal(prog.value(y), want)
    back = np.zeros_like(xv)
    np.put_along_axis(back, iv, want, axis=1)
    np.testing.assert_array_equal(prog.value(s), back)
    prog.inputs["idx"][0, 0, 3] = 3
    with pytest.raises((DataError, IndexError), match="out of range|out of bounds"):
        prog.run()


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_max_pool_layer_on_both_flavors_matches_torch(flavor, dtype):
    g = Graph()
    x = g.input("x", (3, 2, 9, 8), dtype)
    y = MaxPool2d(3, stride=2, padding=1).build(g, x)
    c = g.input("c", g.shape(y), dtype)
    L = g.add("sum", g.add("mul", c, y), name="L")
    gg = grad(g, L, ["x"])
    prog = compile_graph(gg.graph, [y, gg["x"]], flavor=flavor)
    rng = np.random.default_rng(2)
    xv = rng.integers(-3, 3, size=(3, 2, 9, 8)).astype(dtype)
    cv = rng.normal(size=g.shape(y)).astype(dtype)
    prog.inputs["x"][...], prog.inputs["c"][...] = xv, cv
    prog.run()
    tx = torch.tensor(xv, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, 3, 2, 1)
    (ty * torch.tensor(cv)).sum().backward()
    np.testing.assert_array_equal(prog.value(y), ty.detach().numpy())
    np.testing.assert_allclose(prog.value(gg["x"]), tx.grad.numpy(), rtol=1e-6, atol=1e-6)
