"""Sums over every axis but the channels, (N, H, W) of an (N, C, H, W) value, computed by the
fused kernel that produces the value (a batch norm's statistics and their gradients, a
convolution's bias gradient): no separate reduction, the same numbers as NumPy's."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from symdl.backends.numpy_backend import compile_graph
from symdl.codegen.render import render
from symdl.codegen.spec import KernelSpec, Operand
from symdl.graph import Graph
from symdl.nn import BatchNorm2d


def _graph(shape, dtype, op="mean", keepdims=True):
    g = Graph()
    x = g.input("x", shape, dtype)
    b = g.input("b", (shape[1],) + (1,) * (len(shape) - 2), dtype)
    z = g.add("relu", g.add("add", x, b), name="z")
    axes = (0, *range(2, len(shape)))
    m = g.add(op, z, axes=axes, keepdims=keepdims, name="m")
    return g, z, m


def _reduce_lines(prog):
    return [ln for ln in prog.source.splitlines() if "np.sum(" in ln or "np.mean(" in ln]


@pytest.mark.parametrize("op", ["mean", "sum"])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 3, 7), (2, 4, 2, 3, 2), (64, 32, 26, 26)])
def test_channel_sums_ride_on_the_producing_kernel(shape, op):
    g, z, m = _graph(shape, "float64", op)
    prog = compile_graph(g, [z, m], flavor="numba")
    assert _reduce_lines(prog) == [], prog.source
    assert any(f"m = {op}(z)" in ln for ln in prog.source.splitlines())
    rng = np.random.default_rng(0)
    xv, bv = rng.normal(size=shape), rng.normal(size=prog.inputs["b"].shape)
    for _ in range(2):   # the sums start again from zero each step
        prog.inputs["x"][...], prog.inputs["b"][...] = xv, bv
        prog.run()
    zv = np.maximum(xv + bv, 0)
    axes = (0, *range(2, len(shape)))
    want = getattr(np, op)(zv, axis=axes, keepdims=True)
    np.testing.assert_allclose(prog.value(m), want, rtol=1e-12, atol=1e-12)


def test_float32_sums_stay_close_to_float64():
    shape = (64, 32, 26, 26)
    g, z, m = _graph(shape, "float32", "sum", keepdims=False)
    prog = compile_graph(g, [m], flavor="numba")
    assert _reduce_lines(prog) == []
    rng = np.random.default_rng(1)
    xv = rng.random(shape, dtype=np.float32)
    prog.inputs["x"][...], prog.inputs["b"][...] = xv, 0.5
    prog.run()
    want = np.maximum(xv.astype(np.float64) + 0.5, 0).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(prog.value(m), want, rtol=2e-6)


def test_a_batch_of_one_keeps_numpy_reductions():
    """N = 1 collapses to a rank-2 loop: the sums stay separate and right."""
    g, z, m = _graph((1, 3, 4, 4), "float64")
    prog = compile_graph(g, [m], flavor="numba")
    assert len(_reduce_lines(prog)) == 1
    xv = np.arange(48.0).reshape(1, 3, 4, 4)
    prog.inputs["x"][...], prog.inputs["b"][...] = xv, 0.0
    prog.run()
    np.testing.assert_allclose(prog.value(m), xv.mean(axis=(0, 2, 3), keepdims=True))


def test_batchnorm_step_has_no_separate_statistics():
    g = Graph()
    x = g.input("x", (8, 4, 6, 6), "float32")
    b = g.input("b", (4, 1, 1), "float32")
    y = BatchNorm2d(4).build(g, g.add("add", x, b))   # as after a convolution's bias
    prog = compile_graph(g, [y], flavor="numba")
    assert _reduce_lines(prog) == []


@pytest.mark.parametrize("parallel", [False, True])
def test_rank3_column_sums_render(parallel):
    a, b = sp.symbols("a b", real=True)
    spec = KernelSpec("kernel", (Operand(a, (True, True, True)), Operand(b, (False, True, False))),
                      (), (a * b,), "float64", 3, parallel, colsums=((0, False),))
    src = "\n".join(["import numpy as np", "from numba import njit, prange", ""]
                    + render(spec, "numba"))
    assert ("prange(n1)" in src) == parallel
    ns: dict = {}
    exec(compile(src.replace("cache=True", "cache=False"), "<k>", "exec"), ns)
    rng = np.random.default_rng(2)
    av, bv = rng.normal(size=(3, 4, 5)), rng.normal(size=(4,))
    out, s = np.empty((3, 4, 5)), np.full(4, 9.0)
    ns["kernel"](av, bv, out, s)
    np.testing.assert_allclose(out, av * bv[:, None])
    np.testing.assert_allclose(s, (av * bv[:, None]).sum(axis=(0, 2)), rtol=1e-12)


def test_a_value_only_its_sum_reads_is_not_stored():
    g = Graph()
    x = g.input("x", (4, 3, 5, 5), "float64")
    b = g.input("b", (3, 1, 1), "float64")
    z = g.add("add", x, b, name="z")
    w = g.add("mul", z, z, name="w")           # read by its sum alone
    s = g.add("sum", w, axes=(0, 2, 3), name="s")
    prog = compile_graph(g, [z, s], flavor="numba")
    call = [ln for ln in prog.source.splitlines() if ln.strip().startswith("k")]
    assert len(call) == 1 and "b_z_" in call[0] and "b_w_" not in call[0], prog.source
    rng = np.random.default_rng(5)
    xv, bv = rng.normal(size=(4, 3, 5, 5)), rng.normal(size=(3, 1, 1))
    prog.inputs["x"][...], prog.inputs["b"][...] = xv, bv
    prog.run()
    np.testing.assert_allclose(prog.value(s), ((xv + bv) ** 2).sum(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_array_equal(prog.value(z), xv + bv)


def test_only_summed_outputs_of_rank3_kernels_are_dropped():
    a = sp.Symbol("a", real=True)
    with pytest.raises(ValueError, match="drop"):
        KernelSpec("kernel", (Operand(a, (True, True, True)),), (), (a,), "float64", 3, False,
                   dropped=(0,))
