"""The graph IR (errors, order, fingerprint), reverse mode, and check_grad."""
from __future__ import annotations

import doctest
import warnings

import numpy as np
import pytest
import sympy as sp

import symdl.testing
from symdl.backends.numpy_backend import compile_graph
from symdl.derive import grad
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.ops import OPS, ElementwiseOp, Y
from symdl.ops.claims import check_equal
from symdl.testing import GradCheckResult, check_grad

F64 = "float64"


# ------------------------------------------------------------------ errors
def test_matmul_shape_error_names_both_nodes_and_shapes():
    g = Graph()
    x = g.input("x", ("N", 3), F64)
    W = g.param("W", (4, 2), F64)
    with pytest.raises(UsageError) as e:
        g.add("matmul", x, W)
    msg = str(e.value)
    assert "x" in msg and "('N', 3)" in msg and "W" in msg and "(4, 2)" in msg


def test_broadcast_shape_error_names_both_nodes_and_shapes():
    g = Graph()
    x = g.input("feats", ("N", 3), F64)
    b = g.param("bias", (4,), F64)
    with pytest.raises(UsageError) as e:
        g.add("add", x, b)
    msg = str(e.value)
    assert "feats" in msg and "('N', 3)" in msg and "bias" in msg and "(4,)" in msg


def test_unknown_op_is_named():
    g = Graph()
    x = g.input("x", (3,), F64)
    with pytest.raises(UsageError, match="frobnicate"):
        g.add("frobnicate", x)


def test_unknown_op_parameter_is_named():
    g = Graph()
    x = g.input("x", (3,), F64)
    with pytest.raises(UsageError, match="beta"):
        g.add("leaky_relu", x, beta=0.1)


def test_arity_error():
    g = Graph()
    x = g.input("x", (3,), F64)
    with pytest.raises(UsageError, match=r"add takes 2 argument\(s\), got 1"):
        g.add("add", x)
    with pytest.raises(UsageError, match=r"tanh takes 1 argument\(s\), got 2"):
        g.add("tanh", x, x)


def test_missing_argument_node():
    g = Graph()
    with pytest.raises(UsageError, match="ghost"):
        g.add("tanh", "ghost")


def test_duplicate_node_name():
    g = Graph()
    x = g.input("x", (3,), F64)
    with pytest.raises(UsageError, match="'x' already exists"):
        g.input("x", (3,), F64)
    with pytest.raises(UsageError, match="'x' already exists"):
        g.param("x", (3,), F64)
    g.add("tanh", x, name="h")
    with pytest.raises(UsageError, match="'h' already exists"):
        g.add("neg", x, name="h")
    assert len(g) == 2


def test_mixed_float_dtypes():
    g = Graph()
    x = g.input("x", ("N", 3), "float32")
    w = g.param("w", (3,), F64)
    with pytest.raises(UsageError, match="mixed dtypes") as e:
        g.add("mul", x, w)
    assert "float32" in str(e.value) and "float64" in str(e.value)


def test_int_labels_do_not_count_as_a_mixed_dtype():
    g = Graph()
    z = g.input("z", ("N", 3), F64)
    y = g.input("y", ("N",), "int64")
    assert g.node(g.add("softmax_cross_entropy", z, y))["dtype"] == F64


def test_validate_detects_a_cycle():
    g = Graph()
    x = g.input("x", (3,), F64)
    h = g.add("tanh", x, name="h")
    k = g.add("neg", h, name="k")
    g.validate()  # fine so far
    g.nx.add_edge(k, h)
    with pytest.raises(UsageError, match="cycle") as e:
        g.validate()
    assert "h" in str(e.value) and "k" in str(e.value)


def test_validate_detects_a_stale_shape():
    g = Graph()
    x = g.input("x", (2, 3), F64)
    t = g.add("transpose", x, name="t")
    g.node(t)["shape"] = (2, 3)
    with pytest.raises(UsageError, match="t"):
        g.validate()


def test_loss_must_be_scalar():
    g = Graph()
    x = g.input("x", (3,), F64)
    with pytest.raises(UsageError, match="scalar"):
        grad(g, g.add("tanh", x))


# ------------------------------------------------------ order, fingerprint
def build_mlp(leaves_first="x", alpha=0.01, hidden=5):
    """A small classifier; ``leaves_first`` changes the insertion order only."""
    g = Graph()
    leaves = {
        "x": lambda: g.input("x", ("N", 4), F64),
        "y": lambda: g.input("y", ("N",), "int64"),
        "W1": lambda: g.param("W1", (hidden, 4), F64),
        "b1": lambda: g.param("b1", (hidden,), F64),
        "W2": lambda: g.param("W2", (3, hidden), F64),
        "b2": lambda: g.param("b2", (3,), F64),
    }
    order = list(leaves) if leaves_first == "x" else list(reversed(leaves))
    for k in order:
        leaves[k]()
    z1 = g.add("add", g.add("matmul", "x", g.add("transpose", "W1")), "b1", name="z1")
    a1 = g.add("leaky_relu", g.add("tanh", z1, name="t1"), name="a1", alpha=alpha)
    z2 = g.add("add", g.add("matmul", a1, g.add("transpose", "W2")), "b2", name="z2")
    s2 = g.add("sigmoid", z2, name="s2")
    loss = g.add("mean", g.add("softmax_cross_entropy", s2, "y", name="ce"), name="L")
    return g, loss


def test_order_is_topological_and_deterministic():
    g1, _ = build_mlp()
    g2, _ = build_mlp()
    g3, _ = build_mlp(leaves_first="b2")  # other insertion order
    o = g1.order()
    assert o == g2.order() == g3.order()
    pos = {n: i for i, n in enumerate(o)}
    for n in o:
        assert all(pos[a] < pos[n] for a in g1.args(n))
    assert g1.params() == ["W1", "W2", "b1", "b2"] == g3.params()


def test_fingerprint_is_stable_and_sensitive():
    g1, _ = build_mlp()
    fp = g1.fingerprint()
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert fp == build_mlp()[0].fingerprint() == build_mlp(leaves_first="b2")[0].fingerprint()
    assert fp == g1.copy().fingerprint()
    assert fp != build_mlp(alpha=0.02)[0].fingerprint()
    assert fp != build_mlp(hidden=6)[0].fingerprint()


# ------------------------------------------------------------ reverse mode
def run(graph, outputs, feeds, dims, bind=None, flavor="numba"):
    prog = compile_graph(graph, outputs, bind=bind, dims=dims, flavor=flavor)
    for k, v in feeds.items():
        prog.inputs[k][...] = v
    prog.run()
    return [prog.value(o).copy() for o in outputs]


@pytest.mark.parametrize("flavor", ["numba", "numpy"])
def test_x_times_x_gives_2x(flavor):
    g = Graph()
    x = g.input("x", ("N",), F64)
    L = g.add("sum", g.add("mul", x, x))
    gg = grad(g, L, wrt=[x])
    xv = np.array([-1.5, 0.0, 2.0, 3.25])
    (dx,) = run(gg.graph, [gg.grads[x]], {x: xv}, {"N": 4}, flavor=flavor)
    np.testing.assert_array_equal(dx, 2 * xv)


def test_shared_weight_sums_both_uses():
    """h = x Wᵀ, out = h Wᵀ: dW is the sum of both uses' contributions, the
    same as two separate weights with equal values."""
    rng = np.random.default_rng(0)
    Wv = rng.normal(size=(3, 3))
    xv = rng.normal(size=(4, 3))

    g = Graph()
    x = g.input("x", ("N", 3), F64)
    W = g.param("W", (3, 3), F64)
    h = g.add("matmul", x, g.add("transpose", W))
    L = g.add("sum", g.add("square", g.add("matmul", h, g.add("transpose", W))))
    gg = grad(g, L)
    (dW,) = run(gg.graph, [gg.grads[W]], {x: xv}, {"N": 4}, bind={W: Wv.copy()})

    g2 = Graph()
    x2 = g2.input("x", ("N", 3), F64)
    A = g2.param("A", (3, 3), F64)
    B = g2.param("B", (3, 3), F64)
    h2 = g2.add("matmul", x2, g2.add("transpose", A))
    L2 = g2.add("sum", g2.add("square", g2.add("matmul", h2, g2.add("transpose", B))))
    gg2 = grad(g2, L2)
    dA, dB = run(gg2.graph, [gg2.grads[A], gg2.grads[B]], {x2: xv}, {"N": 4},
                 bind={A: Wv.copy(), B: Wv.copy()})
    # by hand: out = x Wᵀ Wᵀ, G = 2 out; dW = Gᵀ h + (G W)ᵀ x
    hv = xv @ Wv.T
    G = 2 * (hv @ Wv.T)
    want = G.T @ hv + (G @ Wv).T @ xv
    np.testing.assert_allclose(dW, want, rtol=1e-12)
    np.testing.assert_allclose(dW, dA + dB, rtol=1e-12)
    assert not np.allclose(dA, dB)  # both contributions matter


def test_skip_connection():
    g = Graph()
    x = g.input("x", ("N",), F64)
    y = g.add("add", g.add("tanh", x), x)
    L = g.add("sum", y)
    gg = grad(g, L, wrt=[x])
    xv = np.linspace(-2, 2, 5)
    (dx,) = run(gg.graph, [gg.grads[x]], {x: xv}, {"N": 5})
    np.testing.assert_allclose(dx, 1 - np.tanh(xv) ** 2 + 1, rtol=1e-14)


@pytest.mark.parametrize("bshape", [(3,), (1, 3)])
def test_broadcast_bias_gradient_is_reduced_to_its_shape(bshape):
    g = Graph()
    x = g.input("x", ("N", 3), F64)
    b = g.param("b", bshape, F64)
    z = g.add("add", x, b)
    L = g.add("sum", g.add("square", z))
    gg = grad(g, L)
    assert gg.graph.shape(gg.grads[b]) == bshape
    rng = np.random.default_rng(1)
    xv, bv = rng.normal(size=(5, 3)), rng.normal(size=bshape)
    (db,) = run(gg.graph, [gg.grads[b]], {x: xv}, {"N": 5}, bind={b: bv.copy()})
    want = (2 * (xv + bv)).sum(axis=0).reshape(bshape)
    assert db.shape == bshape
    np.testing.assert_allclose(db, want, rtol=1e-13)


def _unused_graph():
    g = Graph()
    x = g.input("x", ("N", 2), F64)
    w = g.param("w", (2,), F64)
    g.param("u", (2, 2), F64)  # never used
    L = g.add("sum", g.add("mul", x, w))
    return g, L


def test_unused_param_warns_by_default():
    g, L = _unused_graph()
    with pytest.warns(UserWarning, match="does not depend on u"):
        gg = grad(g, L)
    assert set(gg.grads) == {"w", "u"}


def test_unused_param_error():
    g, L = _unused_graph()
    with pytest.raises(UsageError, match="does not depend on u"):
        grad(g, L, unused="error")


def test_unused_param_ignore_is_silent_and_zero():
    g, L = _unused_graph()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gg = grad(g, L, unused="ignore")
    assert gg.graph.shape(gg.grads["u"]) == (2, 2)
    xv = np.array([[1.0, 2.0], [3.0, 4.0]])
    du, dw = run(gg.graph, [gg.grads["u"], gg.grads["w"]], {"x": xv}, {"N": 2},
                 bind={"u": np.ones((2, 2)), "w": np.ones(2)})
    np.testing.assert_array_equal(du, np.zeros((2, 2)))
    np.testing.assert_array_equal(dw, xv.sum(axis=0))


def test_bad_unused_option():
    g, L = _unused_graph()
    with pytest.raises(UsageError, match="unused"):
        grad(g, L, unused="maybe")


# ------------------------------------------------------ second derivatives
def _second_derivative(name, xv, scale=None):
    """d/dx of sum(d/dx sum(f(x))) through two reverse passes (a Hessian
    diagonal for an elementwise f), compiled.  ``scale`` multiplies the
    first loss (a non-unit upstream gradient)."""
    g = Graph()
    x = g.input("x", ("N",), F64)
    y = g.add(name, x)
    if scale is not None:
        y = g.add("scale", y, factor=scale)
    L = g.add("sum", y)
    gg = grad(g, L, wrt=[x])
    h = gg.graph
    L2 = h.add("sum", gg.grads[x])
    gg2 = grad(h, L2, wrt=[x])
    d2 = gg2.grads[x]
    prog = compile_graph(gg2.graph, [d2], dims={"N": len(xv)}, flavor="numba")
    if x in prog.inputs:
        prog.inputs[x][...] = xv
    prog.run()
    return prog.value(d2).copy()


def _sympy_second(name, xv):
    op = OPS[name]
    (s,) = op.inputs
    f = sp.lambdify(s, sp.diff(op.expr, s, 2), "numpy")
    return np.broadcast_to(np.asarray(f(xv), dtype=float), xv.shape)


def test_second_derivative_tanh():
    xv = np.array([-1.0, -0.3, 0.5, 2.0])
    np.testing.assert_allclose(_second_derivative("tanh", xv), _sympy_second("tanh", xv),
                               rtol=1e-12, atol=1e-14)


def test_second_derivative_with_a_non_unit_upstream():
    xv = np.array([-1.0, -0.3, 0.5, 2.0])
    np.testing.assert_allclose(_second_derivative("gelu", xv, scale=3.0),
                               3.0 * _sympy_second("gelu", xv), rtol=1e-12, atol=1e-14)


def test_second_derivative_relu_is_zero_and_compiles():
    xv = np.array([-1.0, -0.3, 0.5, 2.0])
    d2 = _second_derivative("relu", xv)
    np.testing.assert_array_equal(d2, np.zeros(4))


def test_second_derivative_silu():
    xv = np.array([-1.0, -0.3, 0.5, 2.0])
    np.testing.assert_allclose(_second_derivative("silu", xv), _sympy_second("silu", xv),
                               rtol=1e-12, atol=1e-14)


def test_relu_derivative_has_no_dirac_delta():
    relu = OPS["relu"]
    d = relu.grad_op(0)
    for i in range(d.arity):
        assert not d.derivative(i).has(sp.DiracDelta)
        assert not d.diff(i).has(sp.DiracDelta)


# ---------------------------------------------------------------- check_grad
MLP_N = 6


def mlp_feeds(seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(MLP_N, 4)), "y": rng.integers(0, 3, MLP_N)}


def build_check_mlp(act="tanh", dtype=F64):
    """2 layers, tanh then sigmoid, softmax cross-entropy; ``act`` replaces tanh."""
    g = Graph()
    x = g.input("x", ("N", 4), dtype)
    y = g.input("y", ("N",), "int64")
    W1, b1 = g.param("W1", (5, 4), dtype), g.param("b1", (5,), dtype)
    W2, b2 = g.param("W2", (3, 5), dtype), g.param("b2", (3,), dtype)
    a1 = g.add(act, g.add("add", g.add("matmul", x, g.add("transpose", W1)), b1))
    a2 = g.add("sigmoid", g.add("add", g.add("matmul", a1, g.add("transpose", W2)), b2))
    return g, g.add("mean", g.add("softmax_cross_entropy", a2, y, epsilon=0.05))


def test_check_grad_passes_on_an_mlp():
    g, L = build_check_mlp()
    res = check_grad(g, L, feeds=mlp_feeds(), n_directions=4)
    assert isinstance(res, GradCheckResult) and res.ok
    assert res.mode == "directions" and res.n_checks == 4 * 4
    assert set(res.grads) == {"W1", "b1", "W2", "b2"} and res.grads["W1"].shape == (5, 4)
    assert np.isfinite(res.loss) and res.max_rel_err < 1e-5
    assert any(np.abs(v).max() > 1e-3 for v in res.grads.values())


def test_check_grad_full_jacobian():
    g, L = build_check_mlp()
    res = check_grad(g, L, feeds=mlp_feeds(1), full=True, flavor="numpy")
    assert res.mode == "full" and res.n_checks == 20 + 5 + 15 + 3
    res_x = check_grad(g, L, wrt=["x"], feeds=mlp_feeds(1), full=True)
    assert res_x.n_checks == MLP_N * 4 and res_x.grads["x"].shape == (MLP_N, 4)


def test_check_grad_uses_given_params():
    g, L = build_check_mlp()
    params = {"W1": np.zeros((5, 4)), "b1": np.zeros(5), "W2": np.zeros((3, 5)), "b2": np.zeros(3)}
    res = check_grad(g, L, feeds=mlp_feeds(), params=params)
    # all-zero weights: the hidden layer is 0 so dW2 is 0, and the input does not reach dW1
    np.testing.assert_array_equal(res.grads["W2"], 0.0)
    np.testing.assert_array_equal(res.grads["W1"], 0.0)
    assert res.loss == pytest.approx(np.log(3.0))


def test_check_grad_refuses_float32_and_missing_labels():
    g, L = build_check_mlp(dtype="float32")
    with pytest.raises(UsageError, match="float64"):
        check_grad(g, L, feeds=mlp_feeds())
    g, L = build_check_mlp()
    with pytest.raises(UsageError, match="y"):
        check_grad(g, L, feeds={"x": mlp_feeds()["x"]})


@pytest.fixture
def wrong_tanh():
    """tanh with a wrong stated derivative (1 - y² + y/20), registered under
    a temporary name: a real, honest gradient bug for check_grad to find."""
    tanh = OPS["tanh"]
    op = ElementwiseOp(name="tanh_wrong", inputs=tanh.inputs, expr=tanh.expr,
                       grad_forms={0: 1 - Y**2 + Y / 20})
    assert "tanh_wrong" not in OPS
    OPS["tanh_wrong"] = op
    try:
        yield op
    finally:
        for k in [k for k in OPS if k == "tanh_wrong" or k.startswith("tanh_wrong.")]:
            del OPS[k]


def test_wrong_tanh_is_a_wrong_claim(wrong_tanh):
    assert not check_equal(wrong_tanh.grad_forms[0].subs(Y, wrong_tanh.expr), wrong_tanh.diff(0)).ok


def test_check_grad_fails_on_a_wrong_gradient(wrong_tanh):
    g, L = build_check_mlp(act="tanh_wrong")
    # the second layer's gradients do not go through the wrong derivative
    check_grad(g, L, wrt=["W2", "b2"], feeds=mlp_feeds())
    with pytest.raises(AssertionError) as e:
        check_grad(g, L, wrt=["W2", "b2", "W1", "b1"], feeds=mlp_feeds())
    msg = str(e.value)
    assert "'W1'" in msg and "argument 2" in msg and "direction" in msg
    assert "analytic" in msg and "numeric" in msg


def test_check_grad_full_mode_names_the_index(wrong_tanh):
    g, L = build_check_mlp(act="tanh_wrong")
    with pytest.raises(AssertionError, match=r"'b1' \(argument 0 of wrt\), index \(\d,\)"):
        check_grad(g, L, wrt=["b1"], feeds=mlp_feeds(), full=True)


def test_check_grad_docstring_example_runs():
    res = doctest.testmod(symdl.testing, optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
