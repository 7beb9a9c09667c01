"""Second order: gradients of gradients compile fused; hvp and hessian against SymPy and torch."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symdl.backends.second_order import hessian, hvp
from symdl.backends.numpy_backend import compile_graph
from symdl.backends.plan import plan
from symdl.derive import grad, hvp_graph
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.ops import OPS, G

F64 = "float64"
TF = torch.nn.functional


# ------------------------------------------------------------- the planner
def _crossing_groups():
    """Two fusable chains that each feed the other: a1 -> b1 and b2 -> a2.
    No path leaves and re-enters either group, yet merging both makes the
    schedule cyclic (group {a1, a2} needs b2, group {b2, b1} needs a1)."""
    g = Graph()
    x = g.input("x", ("N",), F64)
    a1 = g.add("tanh", x, name="a1")
    b2 = g.add("exp", x, name="b2")
    a2 = g.add("mul", a1, b2, name="a2")
    b1 = g.add("add", b2, a1, name="b1")
    return g, [a2, b1]


def _schedule_respects_dependencies(g, units):
    done = set(g.inputs()) | set(g.params())
    for u in units:
        inside = set(u.nodes)
        for n in u.nodes:
            for a in g.args(n):
                assert a in done or a in inside, f"{n} (unit {u.name}) runs before {a}"
        done |= inside


def test_groups_that_feed_each_other_are_not_both_merged():
    g, outs = _crossing_groups()
    units = plan(g, {n: (3,) for n in g.order()}, outs)
    _schedule_respects_dependencies(g, units)
    # the groups feed each other only directly, not through an outside node: one kernel
    assert len([u for u in units if u.fused]) == 1
    xv = np.array([-0.7, 0.2, 1.3])
    values = []
    for fuse in (True, False):
        prog = compile_graph(g, outs, dims={"N": 3}, fuse=fuse)
        prog.inputs["x"][...] = xv
        prog.run()
        values.append([prog.value(o).copy() for o in outs])
    want = [np.tanh(xv) * np.exp(xv), np.exp(xv) + np.tanh(xv)]
    for got in values:
        np.testing.assert_allclose(got, want, rtol=1e-14)


# ------------------------------------------- the registry's second derivatives
POINTS = {"real": (-1.3, 0.7, 2.1), "positive": (0.4, 1.7), "nonzero": (-0.8, 1.6),
          "unit": (0.3, 0.85), "sign": (-1.0, 1.0)}
def _points(op):
    cols = [POINTS[d] for d in op.domain]
    k = max(len(c) for c in cols)
    return [[c[(r + i) % len(c)] for i, c in enumerate(cols)] for r in range(k)]


@pytest.mark.parametrize("name", [op.name for op in OPS.declared("elementwise")])
def test_registry_derives_second_order_ops_that_compose_to_the_exact_hessian(name):
    """``<op>.grad<i>.grad<j>`` exist for every input of every derived op, and
    reverse mode's sum over their sources (an argument, the output y, the
    upstream g) is SymPy's own ∂²f/∂x_i∂x_k (and ∂f/∂x_i for the g source)."""
    op = OPS[name]
    f = op.expr.subs({s: sp.Float(v) for s, v in op.params.items()})
    for i in range(op.arity):
        gop = OPS[f"{name}.grad{i}"]
        for k in range(op.arity):
            total, via_g = sp.Integer(0), None
            for j, src in enumerate(gop.sources):
                d = OPS[f"{name}.grad{i}.grad{j}"]
                assert d.derived_from == (gop.name, j)
                e = d.expr.subs({G: 1}).subs({s: sp.Float(v) for s, v in op.params.items()})
                e = e.xreplace({sp.Symbol("g_1", real=True): sp.Integer(1),
                                sp.Symbol("y_1", real=True): f})
                if src == "y":
                    total += e * sp.diff(f, op.inputs[k])
                elif src == "g":
                    via_g = e
                elif src == k:
                    total += e
            want = sp.diff(f, op.inputs[i], op.inputs[k])
            for pt in _points(op):
                at = dict(zip(op.inputs, pt))
                got_v, want_v = complex(total.subs(at).evalf(30)), complex(want.subs(at).evalf(30))
                assert abs(got_v - want_v) <= 1e-14 * max(1.0, abs(want_v)), (name, i, k, pt)
                if via_g is not None:
                    first = complex(sp.diff(f, op.inputs[i]).subs(at).evalf(30))
                    assert abs(complex(via_g.subs(at).evalf(30)) - first) <= 1e-14 * max(
                        1.0, abs(first)), (name, i, pt)


def test_second_order_through_abs():
    """d sign(x)/dx is DiracDelta: 0 away from the kink, as PyTorch's."""
    g = Graph()
    w = g.param("w", (3,), F64)
    L = g.add("sum", g.add("mul", g.add("abs", w), w), name="L")  # Σ |w| w: H = 2 sign(w)
    got = hessian(g, L, "w", params={"w": np.array([-1.0, 0.5, 2.0])})
    np.testing.assert_allclose(got, np.diag([-2.0, 2.0, 2.0]))


# ------------------------------------------------------- MLP against torch
N = 5
WRT = ["W1", "b1", "W2", "W3", "b3"]


def _mlp(loss):
    """x -> Dense -> h = tanh(z), used three times: u = h⊙h + h W2ᵀ -> Dense -> mean loss."""
    g = Graph()
    x, t = g.input("x", ("N", 3), F64), g.input("t", ("N", 2), F64)
    W1, b1 = g.param("W1", (4, 3), F64), g.param("b1", (4,), F64)
    W2, W3, b3 = g.param("W2", (4, 4), F64), g.param("W3", (2, 4), F64), g.param("b3", (2,), F64)
    z = g.add("add", g.add("matmul", x, g.add("transpose", W1)), b1, name="z")
    h = g.add("tanh", z, name="h")
    u = g.add("add", g.add("mul", h, h), g.add("matmul", h, g.add("transpose", W2)), name="u")
    o = g.add("add", g.add("matmul", u, g.add("transpose", W3)), b3, name="o")
    return g, g.add("mean", g.add(loss, o, t), name="L")


def _torch_mlp(loss, X, T):
    x, t = torch.as_tensor(X), torch.as_tensor(T)

    def f(W1, b1, W2, W3, b3):
        h = torch.tanh(x @ W1.T + b1)
        o = (h * h + h @ W2.T) @ W3.T + b3
        if loss == "mse":
            return ((o - t) ** 2).mean()
        return torch.nn.functional.binary_cross_entropy_with_logits(o, t)
    return f


def _point(seed=0):
    rng = np.random.default_rng(seed)
    P = {"W1": rng.normal(size=(4, 3)), "b1": rng.normal(size=4),
         "W2": 0.5 * rng.normal(size=(4, 4)), "W3": rng.normal(size=(2, 4)),
         "b3": rng.normal(size=2)}
    X, T = rng.normal(size=(N, 3)), rng.uniform(size=(N, 2))
    V = {k: rng.normal(size=p.shape) for k, p in P.items()}
    return P, X, T, V


def _rel(got, want):
    return np.max(np.abs(got - want)) / np.max(np.abs(want))


#: the fused numba program, and the unfused NumPy reference (one kernel per node
#: is many numba compilations for no extra coverage of the planner)
PROGRAMS = pytest.mark.parametrize("fuse, flavor", [(True, "auto"), (False, "numpy")],
                                   ids=["fused", "unfused-numpy"])


@PROGRAMS
@pytest.mark.parametrize("loss", ["mse", "bce_logits"])
def test_hvp_of_an_mlp_with_tanh_used_twice_equals_torch(loss, fuse, flavor):
    g, L = _mlp(loss)
    P, X, T, V = _point()
    got = hvp(g, L, WRT, V, feeds={"x": X, "t": T}, params=P, fuse=fuse, flavor=flavor)
    f = _torch_mlp(loss, X, T)
    _, want = torch.autograd.functional.hvp(
        f, tuple(torch.tensor(P[k]) for k in WRT), tuple(torch.tensor(V[k]) for k in WRT))
    for k, w in zip(WRT, want):
        assert got[k].shape == P[k].shape
        assert _rel(got[k], w.numpy()) < 1e-10, (k, _rel(got[k], w.numpy()))


def test_hvp_graph_compiles_fused_into_fewer_kernels_and_agrees_with_unfused():
    g, L = _mlp("mse")
    hv = hvp_graph(g, L, WRT)
    outs = [hv.products[w] for w in WRT]
    P, X, T, V = _point(1)
    values, kernels = [], []
    for fuse in (True, False):
        prog = compile_graph(hv.graph, outs, dims={"N": N}, fuse=fuse, flavor="numpy")
        for n, arr in [*P.items(), ("x", X), ("t", T)] + [(hv.vectors[k], V[k]) for k in WRT]:
            prog.buffers[n][...] = arr
        prog.run()
        values.append([prog.value(o).copy() for o in outs])
        kernels.append(len(prog.kernels))
    assert kernels[0] < kernels[1]
    for a, b in zip(*values):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_hvp_with_respect_to_the_data():
    g, L = _mlp("mse")
    P, X, T, _ = _point(2)
    v = np.random.default_rng(3).normal(size=X.shape)
    got = hvp(g, L, "x", v, feeds={"x": X, "t": T}, params=P)
    tp = tuple(torch.tensor(P[k]) for k in WRT)
    _, want = torch.autograd.functional.hvp(lambda x: _torch_mlp("mse", x, T)(*tp),
                                            torch.tensor(X), torch.tensor(v))
    assert got.shape == X.shape and _rel(got, want.numpy()) < 1e-10


# ------------------------------------------------------------ Hessians
def _small_net():
    g = Graph()
    x, t = g.input("x", ("N", 2), F64), g.input("t", ("N",), F64)
    W = g.param("W", (3, 2), F64)
    w2 = g.param("w2", (3,), F64)
    h = g.add("tanh", g.add("matmul", x, g.add("transpose", W)))
    o = g.add("sum", g.add("mul", g.add("add", g.add("mul", h, h), h), w2), axes=(1,))
    return g, g.add("mean", g.add("mse", o, t), name="L")


def _torch_small(X, T):
    x, t = torch.tensor(X), torch.tensor(T)

    def f(W, w2):
        h = torch.tanh(x @ W.T)
        return ((((h * h + h) * w2).sum(1) - t) ** 2).mean()
    return f


@PROGRAMS
def test_hessian_of_a_small_net_equals_torch(fuse, flavor):
    g, L = _small_net()
    rng = np.random.default_rng(4)
    X, T = rng.normal(size=(6, 2)), rng.normal(size=6)
    W, w2 = rng.normal(size=(3, 2)), rng.normal(size=3)
    feeds, params = {"x": X, "t": T}, {"W": W, "w2": w2}
    f = _torch_small(X, T)
    got = hessian(g, L, "W", feeds, params, fuse=fuse, flavor=flavor)
    want = torch.autograd.functional.hessian(lambda a: f(a, torch.tensor(w2)), torch.tensor(W))
    assert got.shape == (3, 2, 3, 2)
    assert _rel(got, want.numpy()) < 1e-10
    full = hessian(g, L, ["W", "w2"], feeds, params, fuse=fuse, flavor=flavor)
    flat = torch.tensor(np.concatenate([W.ravel(), w2]))
    want = torch.autograd.functional.hessian(lambda p: f(p[:6].reshape(3, 2), p[6:]), flat)
    assert full.shape == (9, 9)
    assert _rel(full, want.numpy()) < 1e-10
    np.testing.assert_allclose(full, full.T, rtol=1e-12, atol=1e-14)


def test_a_loss_linear_in_a_node_has_a_zero_hessian_and_no_warning():
    g = Graph()
    x, w = g.input("x", (3,), F64), g.param("w", (3,), F64)
    L = g.add("sum", g.add("mul", g.add("tanh", x), w), name="L")
    got = hessian(g, L, "w", feeds={"x": np.ones(3)}, params={"w": np.ones(3)})
    np.testing.assert_array_equal(got, np.zeros((3, 3)))


def test_hvp_through_a_gather_with_repeated_indices_equals_torch():
    g = Graph()
    w, idx = g.param("w", (5,), F64), g.input("idx", (3,), "int64")
    e = g.add("gather", g.add("tanh", w), idx, axis=0)
    L = g.add("sum", g.add("mul", e, e), name="L")
    wv, v, index = np.array([0.1, -0.5, 0.7, 1.2, -0.3]), np.arange(5.0), np.array([4, 1, 4])
    got = hvp(g, L, "w", v, feeds={"idx": index}, params={"w": wv})
    _, want = torch.autograd.functional.hvp(
        lambda a: (torch.tanh(a)[torch.tensor(index)] ** 2).sum(), torch.tensor(wv),
        torch.tensor(v))
    assert _rel(got, want.numpy()) < 1e-12
    with pytest.raises(UsageError, match="idx must be integers"):
        hvp(g, L, "w", v, feeds={"idx": np.array([4, 1.5, 4])}, params={"w": wv})


def test_bad_calls_give_one_line_messages():
    g, L = _small_net()
    X, T, W, w2 = np.ones((4, 2)), np.ones(4), np.ones((3, 2)), np.ones(3)
    cases = [
        (lambda: hvp(g, L, "W", W, {"x": X, "t": T}, {"W": W}), "no value given for param w2"),
        (lambda: hvp(g, L, "W", np.ones(3), {"x": X, "t": T}, {"W": W, "w2": w2}), "v for W"),
        (lambda: hvp(g, L, ["W", "w2"], [W], {"x": X, "t": T}, {"W": W, "w2": w2}), "1 part"),
        (lambda: hvp(g, L, "nope", W, {"x": X, "t": T}, {"W": W, "w2": w2}), "not in the graph"),
        (lambda: hvp(g, L, "W", W, {"x": X, "t": np.ones(5)}, {"W": W, "w2": w2}), "dimension 'N'"),
        (lambda: hvp(g, L, "W", W, {"x": X, "t": T, "zz": T}, {"W": W, "w2": w2}),
         "not an input or parameter"),
        (lambda: hessian(g, L, "x", {"x": np.ones((40, 2)), "t": np.ones(40)},
                         {"W": W, "w2": w2}), "use hvp"),
    ]
    for call, match in cases:
        with pytest.raises(UsageError, match=match) as e:
            call()
        assert "\n" not in str(e.value)


def test_hvp_through_softmax_cross_entropy_equals_torch():
    g = Graph()
    x, y = g.input("x", ("N", 3), F64), g.input("y", ("N",), "int64")
    W = g.param("W", (4, 3), F64)
    z = g.add("tanh", g.add("matmul", x, g.add("transpose", W)))
    L = g.add("mean", g.add("softmax_cross_entropy", z, y), name="L")
    rng = np.random.default_rng(5)
    X, Y, Wv, v = rng.normal(size=(N, 3)), rng.integers(0, 4, N), rng.normal(size=(4, 3)), \
        rng.normal(size=(4, 3))
    got = hvp(g, L, "W", v, feeds={"x": X, "y": Y}, params={"W": Wv})
    _, want = torch.autograd.functional.hvp(
        lambda w: TF.cross_entropy(torch.tanh(torch.tensor(X) @ w.T), torch.tensor(Y)),
        torch.tensor(Wv), torch.tensor(v))
    assert _rel(got, want.numpy()) < 1e-10


def test_a_row_loss_whose_float_targets_depend_on_a_parameter_is_refused_not_dropped():
    """Row ops give their operands no gradient: a soft target computed from a
    parameter (or, in second order, an upstream g that depends on one) must
    fail by name rather than lose its share of the gradient."""
    g = Graph()
    z = g.param("z", (2, 3), F64)
    p = g.param("p", (2, 3), F64)
    L = g.add("mean", g.add("softmax_cross_entropy", z, g.add("sigmoid", p)), name="L")
    with pytest.raises(UsageError, match="no gradient with respect to its target sigmoid"):
        grad(g, L, [z, p])
    grad(g, L, [z])  # targets that do not depend on what is differentiated are fine


# ------------------------------------ random graphs: grad of grad, fused
TORCH = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "softplus": TF.softplus, "silu": TF.silu,
         "gelu": TF.gelu, "gelu_tanh": lambda a: TF.gelu(a, approximate="tanh"),
         "log_sigmoid": TF.logsigmoid, "neg": torch.neg, "square": torch.square,
         "exp": torch.exp, "add": torch.add, "sub": torch.sub, "mul": torch.mul,
         "mse": lambda a, b: (a - b) ** 2}
RN = 4


@st.composite
def _random_graphs(draw):
    """Steps ``(op, arg indices)`` over the pool [x, y, earlier results]; args
    are reused freely, so values fan out as in ``tanh(z)`` used twice."""
    steps = []
    for k in range(draw(st.integers(2, 7))):
        name = draw(st.sampled_from(sorted(TORCH)))
        steps.append((name, [draw(st.integers(0, k + 1)) for _ in range(OPS[name].arity)]))
    return steps


def _symdl_graph(steps):
    g = Graph()
    pool = [g.param("x", (RN,), F64), g.param("y", (RN,), F64)]
    for name, idx in steps:
        pool.append(g.add(name, *(pool[i] for i in idx)))
    return g, g.add("sum", g.add("add", pool[-1], pool[-2]), name="L")


def _torch_loss(steps):
    def f(x, y):
        pool = [x, y]
        for name, idx in steps:
            pool.append(TORCH[name](*(pool[i] for i in idx)))
        return (pool[-1] + pool[-2]).sum()
    return f


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_random_graphs(), seed=st.integers(0, 2**16))
def test_grad_of_grad_of_random_graphs_compiles_fused_and_equals_torch(steps, seed):
    g, L = _symdl_graph(steps)
    rng = np.random.default_rng(seed)
    P = {"x": rng.uniform(-1.2, 1.2, RN), "y": rng.uniform(-1.2, 1.2, RN)}
    V = {"x": rng.normal(size=RN), "y": rng.normal(size=RN)}
    hv = hvp_graph(g, L, ["x", "y"], unused="ignore")
    outs = [hv.products["x"], hv.products["y"]]
    units = plan(hv.graph.subgraph(outs), {n: hv.graph.shape(n) for n in hv.graph.order()}, outs)
    _schedule_respects_dependencies(hv.graph, units)
    got = [hvp(g, L, ["x", "y"], V, params=P, fuse=fuse, flavor="numpy", unused="ignore")
           for fuse in (True, False)]
    _, want = torch.autograd.functional.hvp(
        _torch_loss(steps), (torch.tensor(P["x"]), torch.tensor(P["y"])),
        (torch.tensor(V["x"]), torch.tensor(V["y"])))
    for k, w in zip("xy", want):
        w = w.numpy()
        tol = 1e-10 * max(1.0, np.max(np.abs(w)))
        np.testing.assert_allclose(got[0][k], w, rtol=1e-10, atol=tol, err_msg=str(steps))
        np.testing.assert_allclose(got[0][k], got[1][k], rtol=1e-12, atol=1e-2 * tol)
