"""Property tests with Hypothesis over the op registry."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from symdl.backends.numpy_backend import compile_graph
from symdl.derive import grad
from symdl.graph import Graph
from symdl.ops import OPS

N = 6
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_PROGRAMS: dict = {}


def _floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=64)


DOMAINS = {
    "real": arrays(np.float64, N, elements=_floats(-40, 40)),
    "positive": arrays(np.float64, N, elements=_floats(1e-3, 40)),
    # |a| >= 1e-3 on both sides of 0 (a * sign(a - 20) would give 0 at a = 20)
    "nonzero": arrays(np.float64, N, elements=_floats(1e-3, 40)).map(lambda a: np.where(a < 20, -a, a)),
    "unit": arrays(np.float64, N, elements=_floats(0, 1)),
    "sign": arrays(np.float64, N, elements=st.sampled_from([-1.0, 1.0])),
}


def program(name):
    """``sum(op(inputs))`` with its gradients, float64, compiled once."""
    if name not in _PROGRAMS:
        op = OPS[name]
        g = Graph()
        xs = [g.param(f"x{i}", (N,), "float64") for i in range(op.arity)]
        y = g.add(name, *xs, name="y")
        L = g.add("sum", y, name="L")
        gg = grad(g, L, xs, unused="ignore")
        prog = compile_graph(gg.graph, ["y", L, *gg.grads.values()], dims={})
        _PROGRAMS[name] = (prog, xs, [gg.grads[x] for x in xs])
    return _PROGRAMS[name]


def _inputs(op):
    return st.tuples(*(DOMAINS[d] for d in op.domain))


ELEMENTWISE = [op.name for op in OPS.declared("elementwise")]


def run_on(name, data):
    """Draw inputs from the op's domain, run its program; (program, grads, inputs)."""
    values = data.draw(_inputs(OPS[name]))
    if name == "pow":  # keep a**b inside float64 range
        values = (values[0], np.clip(values[1], -30, 30))
    prog, xs, dxs = program(name)
    for x, v in zip(xs, values):
        prog.value(x)[...] = v
    with np.errstate(all="raise"):
        prog.run()
    return prog, dxs, values


@pytest.mark.parametrize("name", ELEMENTWISE)
@SETTINGS
@given(data=st.data())
def test_finite_inputs_give_finite_outputs_and_gradients(name, data):
    prog, dxs, values = run_on(name, data)
    assert np.all(np.isfinite(prog.value("y")))
    for d in dxs:
        assert np.all(np.isfinite(prog.value(d))), (name, values)


@pytest.mark.parametrize("name", ELEMENTWISE)
@SETTINGS
@given(data=st.data())
def test_generated_code_equals_the_declaration(name, data):
    op = OPS[name]
    prog, _, values = run_on(name, data)
    params = {s: sp.Float(v) for s, v in op.params.items()}
    f = sp.lambdify(op.inputs, op.expr.subs(params), modules="mpmath")
    with mpmath.workdps(40):
        want = np.array([float(f(*(mpmath.mpf(float(v[k])) for v in values))) for k in range(N)])
    np.testing.assert_allclose(prog.value("y"), want, rtol=1e-9, atol=1e-12)


def _row_program(kind):
    if kind not in _PROGRAMS:
        g = Graph()
        z = g.param("z", (N, 5), "float64")
        y = g.input("y", (N,), "int64")
        ce = g.add("softmax_cross_entropy", z, y, name="ce")
        L = g.add("sum", ce, name="L")
        gg = grad(g, L, [z])
        _PROGRAMS[kind] = (compile_graph(gg.graph, ["ce", gg.grads["z"]], dims={}), gg.grads["z"])
    return _PROGRAMS[kind]


@SETTINGS
@given(z=arrays(np.float64, (N, 5), elements=_floats(-1e3, 1e3)),
       labels=arrays(np.int64, N, elements=st.integers(0, 4)))
def test_cross_entropy_is_nonnegative_and_softmax_rows_sum_to_one(z, labels):
    prog, dz = _row_program("ce")
    prog.value("z")[...] = z
    prog.inputs["y"][...] = labels
    with np.errstate(all="raise"):
        prog.run()
    assert np.all(prog.value("ce") >= 0)
    # dL/dz = softmax(z) - onehot(y): adding the one-hot back gives softmax rows
    p = prog.value(dz) + np.eye(5)[labels]
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
