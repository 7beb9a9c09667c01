"""Code generation passes: scalar hoisting, in-place updates, constant folding, metrics."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from symdl.backends.metrics import count_hits
from symdl.backends.numpy_backend import compile_graph
from symdl.codegen.kernels import hoist
from symdl.derive import grad
from symdl.graph import Graph
from symdl.optim.base import update_kernel_source
from symdl.optim.rules_adaptive import adam_rule, nadam_rule

lr, c1, c2, m, v, eps = sp.symbols("lr c1 c2 m v eps", real=True)


def test_hoist_groups_scalar_factors_and_terms():
    lifted, (e,) = hoist([lr * m / (c1 * (sp.sqrt(v / c2) + eps))], {lr, c1, c2, eps})
    assert dict(lifted) == {sp.Symbol("h0", real=True): 1 / c2, sp.Symbol("h1", real=True): lr / c1}
    h0, h1 = (s for s, _ in lifted)
    assert e == h1 * m / (sp.sqrt(h0 * v) + eps)


def test_hoist_leaves_numbers_lone_and_negated_symbols():
    lifted, (e,) = hoist([-lr * m + 2 * m + c1], {lr, c1})
    assert lifted == [] and e == -lr * m + 2 * m + c1


@pytest.mark.parametrize("rule", [adam_rule(), nadam_rule()], ids=["adam", "nadam"])
@pytest.mark.parametrize("flavor", ["numba", "numpy"])
def test_update_kernels_are_in_place_and_divide_by_no_bias_correction_per_element(rule, flavor):
    src = update_kernel_source(rule, "float32", flavor)
    head = next(line for line in src.splitlines() if line.startswith("def kernel("))
    assert "out" not in head and head.startswith("def kernel(a_p, a_g, a_m, a_v,")
    body = src.split("for i0 in prange" if flavor == "numba" else "with np.errstate")[1]
    for scalar in ("c1", "c2", "mu_t", "mu_prod", "mu_next", "lr"):
        assert scalar not in body, scalar
    assert "a_p[i0] = " in body if flavor == "numba" else "a_p[...] = r0" in body


def test_constant_subgraphs_run_once_not_every_step():
    g = Graph()
    x, y = g.input("x", ("N", 3)), g.input("y", ("N",), "int64")
    W = g.param("W", (4, 3))
    z = g.add("matmul", x, g.add("transpose", W), name="z")
    L = g.add("mean", g.add("softmax_cross_entropy", z, y), name="L")
    gg = grad(g, L)
    prog = compile_graph(gg.graph, [L, gg.grads["W"]], dims={"N": 5})
    once, step = prog.source.split("def step():")
    assert "def once():" in once and "k0(" in once and "k0(" not in step
    seed = [n for n in gg.graph.order() if gg.graph.op(n) == "scale"][0]
    np.testing.assert_allclose(prog.value(seed), np.full(5, 1 / 5, np.float32))
    # the seed is still right after many steps
    rng = np.random.default_rng(0)
    prog.inputs["x"][...] = rng.normal(size=(5, 3))
    prog.inputs["y"][...] = [0, 1, 2, 3, 0]
    for _ in range(3):
        prog.run()
    unfused = compile_graph(gg.graph, [L, gg.grads["W"]], dims={"N": 5}, fuse=False)
    unfused.value("W")[...] = prog.value("W")
    unfused.inputs["x"][...] = prog.inputs["x"]
    unfused.inputs["y"][...] = prog.inputs["y"]
    unfused.run()
    np.testing.assert_allclose(prog.value(gg.grads["W"]), unfused.value(gg.grads["W"]), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_count_hits_matches_numpy_argmax_with_ties(dtype):
    rng = np.random.default_rng(1)
    z = rng.integers(0, 3, size=(200, 5)).astype(dtype)  # many ties: first maximum wins
    labels = rng.integers(0, 5, 200)
    assert count_hits(z, labels) == int(np.count_nonzero(z.argmax(1) == labels))
    assert count_hits(np.eye(4, dtype=dtype), np.arange(4)) == 4


def _mlp_program(n, width, fuse=True):
    g = Graph()
    x, y = g.input("x", ("N", 6)), g.input("y", ("N",), "int64")
    W1, b1 = g.param("W1", (width, 6)), g.param("b1", (width,))
    W2, b2 = g.param("W2", (3, width)), g.param("b2", (3,))
    h = g.add("relu", g.add("add", g.add("matmul", x, g.add("transpose", W1)), b1), name="h")
    z = g.add("add", g.add("matmul", h, g.add("transpose", W2)), b2, name="z")
    L = g.add("mean", g.add("softmax_cross_entropy", z, y, epsilon=0.1), name="L")
    gg = grad(g, L)
    outs = [L] + [gg.grads[p] for p in ("W1", "b1", "W2", "b2")]
    rng = np.random.default_rng(3)
    bind = {"W1": rng.normal(size=(width, 6)).astype("float32"), "b1": rng.normal(size=width).astype("float32"),
            "W2": rng.normal(size=(3, width)).astype("float32"), "b2": np.zeros(3, "float32")}
    prog = compile_graph(gg.graph, outs, bind, {"N": n}, fuse=fuse)
    prog.inputs["x"][...] = rng.normal(size=(n, 6))
    prog.inputs["y"][...] = rng.integers(0, 3, n)
    prog.run()
    return prog, outs


@pytest.mark.parametrize("n, width", [(7, 5), (300, 256)], ids=["serial", "parallel"])
def test_fused_reductions_and_loss_with_gradient_equal_the_unfused_program(n, width):
    prog, outs = _mlp_program(n, width)
    ref, _ = _mlp_program(n, width, fuse=False)
    for o in outs:
        np.testing.assert_allclose(prog.value(o), ref.value(o), rtol=2e-6, atol=1e-7, err_msg=o)
    step = prog.source.split("def step():")[1]
    calls, pending = [], []  # (comments naming the nodes, the call) per line of the step
    for line in (raw.strip() for raw in step.splitlines()):
        if line.startswith("#"):
            pending.append(line[2:])
        elif line.startswith("k"):
            calls.append(pending)
        if not line.startswith("#"):
            pending = []
    # one kernel computes the loss, its gradient, the batch mean and the last
    # bias gradient (the logits are small: a serial loop) ...
    assert ["softmax_cross_entropy1 = softmax_cross_entropy(z, y)",
            "dz = softmax_cross_entropy.grad0(z, y, dsoftmax_cross_entropy1)",
            "L = mean(softmax_cross_entropy1)", "db2 = sum_to(dz)"] in calls
    # ... and the first bias gradient rides on relu's backward when that loop is serial
    serial = n * width < (1 << 16)
    assert (["dadd1 = relu.grad0(h, dh)", "db1 = sum_to(dadd1)"] in calls) == serial
    assert len(calls) == (4 if serial else 5)


def test_column_sums_need_a_serial_numba_loop():
    from symdl.codegen.kernels import KernelInput, elementwise_kernel
    a = sp.Symbol("a", real=True)
    with pytest.raises(ValueError, match="serial"):
        elementwise_kernel("k", [KernelInput(a)], [], [2 * a], "float32", "numba", True, colsums=((0, False),))
    src = "\n".join(elementwise_kernel("k", [KernelInput(a)], [], [2 * a], "float32", "numba", False,
                                       colsums=((0, True),)))
    assert "sum0[i1] += out0[i0, i1]" in src and "sum0 /= np.float32(n0)" in src


@pytest.mark.parametrize("with_gradient", [False, True])
def test_row_loss_labels_must_be_int64_fused_or_not(with_gradient):
    from symdl.errors import UsageError
    g = Graph()
    z, y = g.param("z", (4, 3)), g.input("y", (4,), "int32")
    L = g.add("mean", g.add("softmax_cross_entropy", z, y), name="L")
    outs = [L, grad(g, L).grads["z"]] if with_gradient else [L]
    gg = grad(g, L).graph if with_gradient else g
    with pytest.raises(UsageError, match="must be int64"):
        compile_graph(gg, outs)


def test_values_inside_a_fused_kernel_have_no_buffer_and_say_so():
    from symdl.errors import UsageError
    prog, _ = _mlp_program(7, 5)
    assert "add1" in prog.graph and prog.value("h").shape == (7, 5)  # relu output: materialized
    with pytest.raises(UsageError, match="add1 is computed inside a fused kernel.*fuse=False"):
        prog.value("add1")  # the pre-activation lives only in registers
    assert "b_add1" not in prog.source
    ref, _ = _mlp_program(7, 5, fuse=False)
    np.testing.assert_allclose(np.maximum(ref.value("add1"), 0), prog.value("h"), rtol=1e-6)
