"""The recurrent weight's gradient Σ_t h_{t-1}ᵀ δ_t of an unrolled LSTM/GRU:
the h_t are stacked (in time order) and the stack transposed once, a view, so
no step's h is transposed or copied; the δ_t stack is the memory the input
projection's gradient is already assembled in (a concat whose parts lie there
back to back is a view of it), so nothing is copied into it.  Values are those
of the unfused program (every node its own buffer) and of NumPy by hand."""
from __future__ import annotations

import numpy as np
import pytest

from symdl.backends.numpy_backend import compile_graph
from symdl.derive import grad
from symdl.graph import Graph
from symdl.nn import GRU, LSTM

F64 = "float64"


def _program(cls, T, fuse, N=4, I=3, H=5):
    m = cls(I, H, dtype=F64, rng=np.random.default_rng(0))
    g = Graph()
    x = g.input("x", (T, "N", I), F64)
    _, hn = m.build_all(g, x)
    L = g.add("sum", hn[0] if isinstance(hn, tuple) else hn, name="L")
    names = [n for n, _ in m.named_parameters()]
    gg = grad(g, L, ["x", *names])
    outs = [L] + [gg[w] for w in ["x", *names]]
    bind = {n: np.ascontiguousarray(getattr(m, n).data) for n in names}
    prog = compile_graph(gg.graph, outs, bind=bind, dims={"N": N}, fuse=fuse)
    prog.inputs["x"][...] = np.random.default_rng(1).normal(size=(T, N, I))
    prog.run()
    return prog, outs


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_the_recurrent_gradient_stacks_copy_nothing(cls):
    T = 6
    prog, outs = _program(cls, T, fuse=True)
    ref, _ = _program(cls, T, fuse=False)
    for o in outs:
        np.testing.assert_allclose(prog.value(o), ref.value(o), rtol=1e-12, atol=1e-13)
    body = prog.source.split("def step():")[1]
    g = prog.graph
    # the gradient of weight_hh's transpose: one product of two stacks of T-1 steps
    stacks = [n for n in g.nx if g.op(n) == "concat" and len(g.args(n)) == T - 1]
    assert len(stacks) == 2, stacks
    hs, ds = sorted(stacks, key=lambda n: g.shape(n)[-1])  # (T-1, N, H), (T-1, N, G·H)
    assert [g.args(g.args(hs)[t])[0] for t in range(T - 1)] == [f"l0.t{t}.h" for t in range(T - 1)]
    for s in stacks:  # nothing is copied into either stack
        assert f"# {s} = concat(" not in body and f"{prog.var(s)}_part" not in body, body
    assert not any(g.op(n) == "transpose" and g.args(n)[0].endswith(".h") for n in g.nx)
    if cls is GRU:  # its δ_t (of h W_hhᵀ + b_hh) are stacked nowhere else: computed in place
        return
    # the δ stack is a view of the input projection's gradient (steps 1..T-1)
    dxw = prog.value("dl0.xwb")
    assert np.shares_memory(prog.value(ds), dxw) and np.array_equal(prog.value(ds), dxw[1:])
    # and by hand: d weight_hh = Σ_t δ_tᵀ h_{t-1}
    h = np.stack([prog.value(f"l0.t{t}.h") for t in range(T - 1)])
    np.testing.assert_allclose(prog.value(outs[3]), np.einsum("tnk,tnh->kh", dxw[1:], h),
                               rtol=1e-12)


def test_a_shared_weights_gradient_is_made_in_its_own_layout():
    """x (N, T, I) @ Wᵀ: dW = Σ_b δ_bᵀ x_b, one folded GEMM written into dW's own
    buffer (bound, as the trainer binds it), not (Σ_b x_bᵀ δ_b)ᵀ, a view copied out."""
    g = Graph()
    x = g.input("x", ("N", 4, 3), F64)
    W = g.param("W", (5, 3), F64)
    y = g.add("matmul", x, g.add("transpose", W, name="Wt"), name="y")
    L = g.add("sum", g.add("mul", y, y, name="yy"), name="L")
    gg = grad(g, L, ["W"])
    dW = gg["W"]
    assert gg.graph.op(dW) == "sum", gg.graph.op(dW)
    bound = np.zeros((5, 3))
    prog = compile_graph(gg.graph, [L, dW], bind={dW: bound}, dims={"N": 2})
    rng = np.random.default_rng(4)
    xv, wv = rng.normal(size=(2, 4, 3)), rng.normal(size=(5, 3))
    prog.inputs["x"][...] = xv
    prog.buffers["W"][...] = wv
    prog.run()
    assert not prog._copy_out and "_bound[...]" not in prog.source
    np.testing.assert_allclose(bound, np.einsum("btk,bti->ki", 2 * xv @ wv.T, xv), rtol=1e-12)


def test_a_folded_products_strided_right_operand_is_copied_not_unfolded():
    """Batch-first input seen time-major (a permuted view): the folded GEMM of
    dW = Σ_t δ_tᵀ x_t copies x's stack once instead of running T small GEMMs."""
    g = Graph()
    x = g.input("x", ("N", 4, 3), F64)
    xt = g.add("permute", x, axes=(1, 0, 2), name="xt")
    W = g.param("W", (5, 3), F64)
    y = g.add("matmul", xt, g.add("transpose", W, name="Wt"), name="y")
    L = g.add("sum", g.add("mul", y, y, name="yy"), name="L")
    gg = grad(g, L, ["W"])
    dW = gg["W"]
    prog = compile_graph(gg.graph, [L, dW], dims={"N": 2})
    rng = np.random.default_rng(6)
    xv, wv = rng.normal(size=(2, 4, 3)), rng.normal(size=(5, 3))
    prog.inputs["x"][...] = xv
    prog.buffers["W"][...] = wv
    prog.run()
    np.testing.assert_allclose(prog.value(dW), np.einsum("btk,bti->ki", 2 * xv @ wv.T, xv),
                               rtol=1e-12)
    body = prog.source.split("def step():")[1]
    assert body.count("np.matmul(") == 2 and "folded3" in body, body
