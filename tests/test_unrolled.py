"""Compiling unrolled sequences: linear planning, in-place assembly, folded sums, fast forms.

* The planner's work (neighbours read by its merge tests) and the graph's size
  grow linearly with the sequence length (an LSTM of 256 steps plans in the
  time of 256 steps: the descendants search it replaced was quadratic).
* Merges never make the schedule cyclic (a group feeding itself through an
  outside node stays apart); separate argument groups of one shape merge (an
  LSTM cell is one kernel).
* Arguments computed in place (``concat``, ``pad``), a batched product summed
  over its batch as one GEMM, fused kernels over strided views: the same
  numbers as the unfused program.
* The loop printer's tanh and one-exp sigmoid stay within a few ulps.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from symdl.backends.numpy_backend import compile_graph
from symdl.backends.plan import Schedule, plan
from symdl.codegen.printers import tanh_form
from symdl.codegen.render import module_header, render
from symdl.codegen.spec import KernelSpec, Operand
from symdl.derive import grad
from symdl.graph import Graph
from symdl.nn import GRU, LSTM

F64 = "float64"


def _seq_grad_graph(cls, T, I=2, H=3):
    """``L = Σ h_n`` of a one-layer ``cls`` over T steps, and its gradient graph."""
    m = cls(I, H, dtype=F64)
    g = Graph()
    x = g.input("x", (T, "N", I), F64)
    _, hn = m.build_all(g, x)
    hn = hn[0] if isinstance(hn, tuple) else hn
    L = g.add("sum", hn, name="L")
    names = [n for n, _ in m.named_parameters()]
    gg = grad(g, L, ["x", *names])
    outs = [L] + [gg[w] for w in ["x", *names]]
    return m, gg.graph.subgraph(outs), outs


def _planned(sub, outs, N=2):
    shapes = {n: tuple(N if d == "N" else d for d in sub.shape(n)) for n in sub.order()}
    sched = Schedule()
    units = plan(sub, shapes, outs, schedule=sched)
    return units, sched


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_planning_and_graph_size_grow_linearly_with_the_sequence(cls):
    sizes, works, units = [], [], []
    for T in (16, 32, 64):
        _, sub, outs = _seq_grad_graph(cls, T)
        u, sched = _planned(sub, outs)
        sizes.append(len(sub))
        works.append(sched.work)
        units.append(len(u))
        # a few neighbours per node and edge: no search over the whole schedule
        assert sched.work <= 4 * (len(sub) + sub.nx.number_of_edges()), (T, sched.work)
    for series in (sizes, units):  # affine in T: the same increment per step
        assert series[2] - series[1] == 2 * (series[1] - series[0]), series
    assert works[2] - works[1] <= 2.2 * (works[1] - works[0]), works


def test_a_256_step_lstm_plans_in_linear_work():
    _, sub, outs = _seq_grad_graph(LSTM, 256)
    units, sched = _planned(sub, outs)
    assert len(sub) < 40 * 256
    assert sched.work <= 4 * (len(sub) + sub.nx.number_of_edges())
    _respects_dependencies(sub, units)


def _respects_dependencies(g, units):
    done = set(g.inputs()) | set(g.params())
    for u in units:
        inside = set(u.nodes)
        for n in u.nodes:
            for a in g.args(n):
                if g.op(a) not in ("input", "param"):
                    assert a in done or a in inside, f"{n} (unit {u.name}) runs before {a}"
        done |= inside


def test_a_group_that_would_feed_itself_through_an_outside_node_stays_apart():
    g = Graph()
    x = g.input("x", (3,), F64)
    a = g.add("tanh", x, name="a")
    s = g.add("sum", a, name="s")               # outside the group: a reduction
    b = g.add("mul", a, s, name="b")            # joining a's group would be a -> s -> a
    c = g.add("exp", a, name="c")
    units = plan(g, {n: g.shape(n) for n in g.order()}, [b, c])
    _respects_dependencies(g, units)
    unit_of = {n: u.name for u in units for n in u.nodes}
    assert unit_of["a"] == unit_of["c"] and unit_of["b"] != unit_of["a"]
    xv = np.array([0.3, -1.2, 2.0])
    for fuse in (True, False):
        prog = compile_graph(g, [b, c], dims={}, fuse=fuse)
        prog.inputs["x"][...] = xv
        prog.run()
        np.testing.assert_allclose(prog.value(b), np.tanh(xv) * np.tanh(xv).sum(), rtol=1e-14)
        np.testing.assert_allclose(prog.value(c), np.exp(np.tanh(xv)), rtol=1e-14)


def test_the_gates_of_an_lstm_step_are_one_kernel():
    _, sub, outs = _seq_grad_graph(LSTM, 3)
    units, _ = _planned(sub, outs)
    step1 = [u for u in units if u.fused and any(n.startswith("l0.t1.") for n in u.nodes)
             and not any(n.startswith("d") for n in u.nodes)]
    gates = {"l0.t1.i", "l0.t1.f", "l0.t1.g", "l0.t1.o", "l0.t1.c", "l0.t1.h"}
    assert any(gates <= set(u.nodes) for u in step1), [u.nodes for u in step1]


# ------------------------------------------------------------ in place, folded
def _both(g, outs, fill):
    got = []
    for fuse in (True, False):
        prog = compile_graph(g, outs, dims={"N": 4}, fuse=fuse)
        for k, v in fill.items():
            prog.inputs[k][...] = v
        prog.run()
        got.append([prog.value(o).copy() for o in outs])
        if fuse:
            fused = prog
    for a, b in zip(*got):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)
    return fused, got[0]


def test_concat_and_pad_arguments_are_computed_in_place():
    g = Graph()
    x = g.input("x", (4, 3), F64)
    a = g.add("tanh", x, name="a")
    b = g.add("exp", x, name="b")
    c = g.add("concat", a, b, axis=1, name="c")            # (4, 6), column blocks
    p = g.add("pad", c, low=(1, 0), high=(0, 2), name="p")  # (5, 8)
    q = g.add("concat", g.add("reshape", p, shape=(1, 5, 8), name="p1"),
              g.add("reshape", g.add("mul", p, p, name="pp"), shape=(1, 5, 8), name="pp1"),
              axis=0, name="q")                              # (2, 5, 8), whole blocks
    xv = np.random.default_rng(0).normal(size=(4, 3))
    prog, (qv,) = _both(g, [q], {"x": xv})
    inner = np.concatenate([np.tanh(xv), np.exp(xv)], axis=1)
    want = np.zeros((5, 8))
    want[1:, :6] = inner
    np.testing.assert_allclose(qv, np.stack([want, want * want]), rtol=1e-14)
    assert {"a", "b", "p", "pp"} <= set(prog.placed), prog.placed
    body = prog.source.split("def step():")[1]
    # the one copy left: c (itself assembled in place) into the pad's strided inner region,
    # which only a fused kernel's output may take
    assert body.count("np.copyto") == 1 and "np.copyto(b_p_inner, b_c)" in body, body
    assert "@njit" in next(iter(prog.kernels.values())).__source__ or prog.flavor != "numba"


def test_a_batched_product_summed_over_its_batch_is_one_gemm():
    g = Graph()
    a = g.input("a", (5, 3, "N"), F64)
    b = g.input("b", (5, "N", 2), F64)
    at = g.add("permute", g.add("permute", a, axes=(0, 2, 1)), axes=(0, 2, 1), name="at")
    for left, name in ((a, "s"), (at, "s2")):
        g.add("sum", g.add("matmul", left, b), axes=(0,), name=name)
    rng = np.random.default_rng(1)
    av, bv = rng.normal(size=(5, 3, 4)), rng.normal(size=(5, 4, 2))
    prog, (s, s2) = _both(g, ["s", "s2"], {"a": av, "b": bv})
    np.testing.assert_allclose(s, np.einsum("bmk,bkn->mn", av, bv), rtol=1e-13)
    np.testing.assert_allclose(s2, s, rtol=1e-14)
    body = prog.source.split("def step():")[1]
    assert body.count("np.matmul") == 2 and "np.sum" not in body, body


def test_fused_kernels_read_slices_as_strided_views():
    g = Graph()
    x = g.input("x", ("N", 8), F64)
    parts = [g.add("slice", x, begin=(0, k), end=(None, k + 4), name=f"s{k}") for k in (0, 4)]
    y = g.add("mul", g.add("sigmoid", parts[0]), g.add("tanh", parts[1]), name="y")
    xv = np.random.default_rng(2).normal(size=(4, 8)) * 3
    prog, (yv,) = _both(g, [y], {"x": xv})
    np.testing.assert_allclose(yv, np.tanh(xv[:, 4:]) / (1 + np.exp(-xv[:, :4])), rtol=1e-14)
    if prog.flavor == "numba":
        assert all("@njit" in k.__source__ for k in prog.kernels.values())


# ------------------------------------------------------------------- forms
def _loop(expr, dtype):
    from symdl.backends.loader import load_function, numba_available
    if not numba_available():
        pytest.skip("numba is not installed")
    v = sp.Symbol("v0", real=True)
    spec = KernelSpec("kernel", (Operand(v, (True,)),), (), (expr(v),), dtype, 1, False)
    return load_function("\n".join(module_header("numba") + render(spec, "numba")))


def _ulps(got, want, dtype):
    want = want.astype(np.longdouble)
    ulp = np.spacing(np.abs(want).astype(dtype)).astype(np.longdouble)
    return np.abs(got.astype(np.longdouble) - want) / ulp


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_loop_printers_tanh_is_within_four_ulps(dtype):
    fn = _loop(sp.tanh, dtype)
    mag = np.logspace(-30, 2.5, 40001)
    v = np.concatenate([mag, -mag, np.linspace(-1, 1, 20001)]).astype(dtype)
    out = np.empty_like(v)
    fn(v, out)
    assert _ulps(out, np.tanh(v.astype(np.longdouble)), dtype).max() <= 4
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)
    out = np.empty_like(special)
    fn(special, out)
    np.testing.assert_array_equal(out[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(out[1]) and np.isnan(out[4])
    assert "tanh" not in fn.__source__  # libm's tanh costs three to four exps


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_loop_printers_sigmoid_takes_one_exp(dtype):
    from symdl.ops import OPS
    fn = _loop(lambda v: OPS["sigmoid"].kernel_expr.xreplace(
        {OPS["sigmoid"].inputs[0]: v}), dtype)
    exp = {"float32": "_exp32(", "float64": "np.exp("}[dtype]  # float32: the vectorised exp
    assert fn.__source__.count("np.exp(") + fn.__source__.count("_exp32(") == 1
    assert fn.__source__.count(exp) == 1
    v = np.concatenate([np.linspace(-100, 100, 20001), [-1000.0, 1000.0]]).astype(dtype)
    out = np.empty_like(v)
    with np.errstate(all="raise"):
        fn(v, out)
    x = v.astype(np.longdouble)
    assert _ulps(out, 1 / (1 + np.exp(-x)), dtype).max() <= 4


def test_tanh_form_is_tanh():
    u = sp.Symbol("u", real=True)
    names = iter(sp.numbered_symbols("w", real=True))
    rows, value = tanh_form(u, lambda: next(names))
    for x in (-3.0, -0.2, -0.01, 0.0, 0.05, 0.124, 0.126, 0.9, 12.0):
        env = {u: sp.Float(x, 30)}
        for s, e in rows:
            env[s] = e.xreplace(env).evalf(30)
        assert abs(float(value.xreplace(env).evalf(30)) - np.tanh(x)) <= 1e-15 * max(1, abs(x))
