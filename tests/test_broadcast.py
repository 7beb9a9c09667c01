"""Elementwise kernels over tensors of any rank with NumPy broadcasting.

For every declared elementwise op: random output shapes of rank 0-5, a
random broadcast pattern per input (leading dimensions dropped, others set
to 1), values from the op's domain.  The compiled program (numba loops and
the NumPy reference, fused and unfused) must give torch's values and
gradients in float64 to 1e-12 relative; the gradient of a broadcast input
is summed back to its shape by reverse mode.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symdl.backends.numpy_backend import compile_graph
from symdl.codegen.spec import collapse
from symdl.derive import grad
from symdl.graph import Graph
from symdl.ops import OPS

torch = pytest.importorskip("torch")
from test_ops import TORCH_FORWARD_ONLY, torch_refs  # noqa: E402

ELEMENTWISE = [op.name for op in OPS.declared("elementwise")]
LOW = {"real": -3.0, "positive": 0.1, "nonzero": 0.1, "unit": 0.0, "sign": -1.0}


@st.composite
def shapes(draw, arity):
    """An output shape of rank 0-5 and one broadcastable input shape per argument."""
    rank = draw(st.integers(0, 5))
    out = tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank)))
    ins = []
    for _ in range(arity):
        drop = draw(st.integers(0, rank))
        kept = out[drop:]
        ones = draw(st.lists(st.booleans(), min_size=len(kept), max_size=len(kept)))
        ins.append(tuple(1 if o else d for d, o in zip(kept, ones)))
    if arity:  # at least one input has the full shape, so the output is ``out``
        ins[draw(st.integers(0, arity - 1))] = out
    return out, ins


def values(rng, shape, domain):
    if domain == "sign":
        return rng.choice([-1.0, 1.0], size=shape)
    if domain == "nonzero":
        return rng.uniform(0.1, 3, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return rng.uniform(LOW[domain], 1.0 if domain == "unit" else 3.0, size=shape)


def run_symdl(name, ins, arrays, w, flavor, fuse):
    g = Graph()
    xs = [g.param(f"x{i}", s, "float64") for i, s in enumerate(ins)]
    y = g.add(name, *xs, name="y")
    wn = g.input("w", np.shape(w), "float64")
    # a second elementwise op after the first, so fusion has something to fuse
    L = g.add("sum", g.add("mul", g.add("tanh", y, name="t"), wn, name="tw"), name="L")
    gg = grad(g, L, xs, unused="ignore")
    prog = compile_graph(gg.graph, ["y", L, *gg.grads.values()],
                         {x: np.array(a, order="C") for x, a in zip(xs, arrays)}, {},
                         flavor=flavor, fuse=fuse)
    prog.inputs["w"][...] = w
    with np.errstate(all="raise"):
        prog.run()
    return prog.value("y").copy(), [prog.value(gg.grads[x]).copy() for x in xs]


def run_torch(name, arrays, w, params):
    ts = [torch.tensor(a, requires_grad=name not in TORCH_FORWARD_ONLY) for a in arrays]
    y = torch_refs()[name](*torch.broadcast_tensors(*ts), **params)
    if name in TORCH_FORWARD_ONLY:
        return y.detach().numpy(), None
    L = (torch.tanh(y) * torch.tensor(w)).sum()
    gs = torch.autograd.grad(L, ts, allow_unused=True)
    return y.detach().numpy(), [np.zeros(a.shape) if gr is None else gr.numpy()
                                for gr, a in zip(gs, arrays)]


@pytest.mark.parametrize("name", ELEMENTWISE)
@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_any_rank_broadcast_agrees_with_torch(name, data):
    op = OPS[name]
    out, ins = data.draw(shapes(op.arity))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    arrays = [values(rng, s, d) for s, d in zip(ins, op.domain)]
    w = rng.uniform(-1, 1, size=out)
    params = op.param_values({})
    ref_y, ref_g = run_torch(name, arrays, w, params)
    for flavor, fuse in (("numba", True), ("numba", False), ("numpy", True), ("numpy", False)):
        if (flavor, fuse) == ("numba", False) and len(out) % 2:
            continue  # numba compiles are the cost: unfused loops on half the ranks
        y, gs = run_symdl(name, ins, arrays, w, flavor, fuse)
        where = f"{name} {ins} -> {out}, {flavor}, fuse={fuse}"
        assert y.shape == out, where
        np.testing.assert_allclose(y, ref_y, rtol=1e-12, atol=1e-300, err_msg=where)
        for i, (a, b) in enumerate(zip(gs, ref_g or [])):
            assert a.shape == ins[i], where
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"d/dx{i} {where}")


@pytest.mark.parametrize("out, bias", [
    ((4, 3, 5, 5), (3, 1, 1)),      # a conv bias over (N, C, H, W)
    ((2, 7, 6), (1, 7, 6)),         # a positional table over (B, T, D)
    ((2, 7, 6), ()),                # a scalar
    ((3, 1, 4), (3, 5, 1)),         # both sides broadcast
])
def test_cnn_and_sequence_broadcasts_fuse_into_one_kernel(out, bias):
    g = Graph()
    x = g.input("x", out, "float64")
    b = g.param("b", bias, "float64")
    y = g.add("relu", g.add("add", x, b, name="z"), name="y")
    full = np.broadcast_shapes(out, bias)
    prog = compile_graph(g, [y], {"b": np.linspace(-1, 1, int(np.prod(bias))).reshape(bias)}, {})
    prog.inputs["x"][...] = np.linspace(-2, 2, int(np.prod(out))).reshape(out)
    prog.run()
    expect = np.maximum(prog.inputs["x"] + prog.buffers["b"], 0)
    assert prog.value(y).shape == full
    np.testing.assert_array_equal(prog.value(y), expect)
    assert len(prog.kernels) == 1, prog.source


def test_collapse_merges_dimensions_with_the_same_broadcast_status():
    assert collapse((8, 3, 4, 4), [(8, 3, 4, 4), (3, 1, 1)]) == \
        ((8, 3, 16), ((True, True, True), (False, True, False)))
    assert collapse((128, 10), [(128, 10), (10,)]) == ((128, 10), ((True, True), (False, True)))
    assert collapse((128, 10), [(128, 10), (128, 10)]) == ((1280,), ((True,), (True,)))
    assert collapse((), [()]) == ((1,), ((False,),))
    assert collapse((128, 10), [(128, 10)], keep={1}) == ((128, 10), ((True, True),))
