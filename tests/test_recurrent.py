"""Recurrent layers against torch in float64: Embedding, RNN/LSTM/GRU cells and sequences.

Weights are copied from torch modules; outputs, final states and the
gradients with respect to the input, the initial state and every parameter
agree to 1e-10 (BPTT is reverse mode over the unrolled graph).  Also: finite
differences, torch's parameter layout and initialization bounds, the sum
rewrite that keeps the gradient of T time slices O(T) (one concat, not T
full-size pads), and per-step kernels sharing one source.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from symdl.backends.numpy_backend import compile_graph
from symdl.derive import grad
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.nn import GRU, LSTM, RNN, Embedding, GRUCell, LSTMCell, RNNCell
from symdl.testing import check_grad

F64 = "float64"
TOL = 1e-10
SEQ = {"rnn": (RNN, torch.nn.RNN), "lstm": (LSTM, torch.nn.LSTM), "gru": (GRU, torch.nn.GRU)}
CELLS = {"rnn": (RNNCell, torch.nn.RNNCell), "lstm": (LSTMCell, torch.nn.LSTMCell),
         "gru": (GRUCell, torch.nn.GRUCell)}


def _copy(m, t):
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})


def _close(a, b, what):
    np.testing.assert_allclose(a, b.detach().numpy() if torch.is_tensor(b) else b, rtol=TOL,
                               atol=TOL, err_msg=what)


def compare_sequence(kind, T=5, N=3, I=4, H=6, layers=1, bi=False, bf=False, h0=False, **kw):
    """``L = Σ c ⊙ tanh(output) + Σ h_n²`` through symdl and torch; compare everything."""
    cls, tcls = SEQ[kind]
    m = cls(I, H, num_layers=layers, bidirectional=bi, batch_first=bf, dtype=F64, **kw)
    t = tcls(I, H, num_layers=layers, bidirectional=bi, batch_first=bf, dtype=torch.float64, **kw)
    _copy(m, t)
    D = 2 if bi else 1
    g = Graph()
    x = g.input("x", ("N", T, I) if bf else (T, "N", I), F64)
    hx = None
    if h0:
        hx = [g.input(s, (layers * D, "N", H), F64) for s in (("h0", "c0") if kind == "lstm"
                                                               else ("h0",))]
    y, hn = m.build_all(g, x, hx)
    hn = hn if isinstance(hn, tuple) else (hn,)
    c = g.input("c", g.shape(y), F64)
    loss = g.add("add", g.add("sum", g.add("mul", c, g.add("tanh", y))),
                 g.add("sum", g.add("square", hn[0])), name="L")
    names = [n for n, _ in m.named_parameters()]
    wrt = ["x", *names, *(hx or [])]
    gg = grad(g, loss, wrt)
    prog = compile_graph(gg.graph, [y, loss, *hn] + [gg[w] for w in wrt],
                         bind={n: p.data for n, p in m.named_parameters()}, dims={"N": N})
    rng = np.random.default_rng(0)
    tx = torch.tensor(rng.normal(size=(N, T, I) if bf else (T, N, I)), requires_grad=True)
    ths = [torch.tensor(rng.normal(size=(layers * D, N, H)), requires_grad=True)
           for _ in (hx or [])]
    prog.inputs["x"][...] = tx.detach().numpy()
    for n, v in zip(hx or [], ths):
        prog.inputs[n][...] = v.detach().numpy()
    ty, thn = t(tx, None if not hx else tuple(ths) if kind == "lstm" else ths[0])
    thn = thn if isinstance(thn, tuple) else (thn,)
    cv = rng.normal(size=tuple(ty.shape))
    prog.inputs["c"][...] = cv
    prog.run()
    ((torch.tanh(ty) * torch.tensor(cv)).sum() + (thn[0] ** 2).sum()).backward()
    _close(prog.value(y), ty, "output")
    for a, b, nm in zip(hn, thn, ("h_n", "c_n")):
        _close(prog.value(a), b, nm)
    _close(prog.value(gg["x"]), tx.grad, "dx")
    tp = dict(t.named_parameters())
    for n in names:
        _close(prog.value(gg[n]), tp[n].grad, f"d{n}")
    for n, v in zip(hx or [], ths):
        _close(prog.value(gg[n]), v.grad, f"d{n}")
    return prog


@pytest.mark.parametrize("kind", list(SEQ))
@pytest.mark.parametrize("layers, bi, bf, h0", [(1, False, False, False), (2, True, True, True),
                                                 (2, False, False, True), (1, True, False, False)])
def test_sequence_layers_match_torch(kind, layers, bi, bf, h0):
    compare_sequence(kind, layers=layers, bi=bi, bf=bf, h0=h0)


@pytest.mark.parametrize("kind", list(SEQ))
def test_sequence_layers_without_bias_match_torch(kind):
    compare_sequence(kind, layers=2, bi=True, h0=True, bias=False)


def test_relu_rnn_and_one_step_match_torch():
    compare_sequence("rnn", layers=2, bi=True, nonlinearity="relu")
    compare_sequence("lstm", T=1, bi=True, h0=True)


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("with_state", [False, True])
def test_cells_match_torch(kind, with_state):
    cls, tcls = CELLS[kind]
    m, t = cls(4, 5, dtype=F64), tcls(4, 5, dtype=torch.float64)
    _copy(m, t)
    g = Graph()
    x = g.input("x", ("N", 4), F64)
    hx = None
    if with_state:
        hx = [g.input(s, ("N", 5), F64) for s in (("h", "c") if kind == "lstm" else ("h",))]
    state = m.build_state(g, x, hx if kind == "lstm" or hx is None else hx[0])
    assert state[0] == "step.h" and len(state) == (2 if kind == "lstm" else 1)
    cs = [g.input(f"c{i}", g.shape(s), F64) for i, s in enumerate(state)]
    loss = g.add("sum", g.add("concat", *(g.add("mul", c, g.add("tanh", s))
                                          for c, s in zip(cs, state)), axis=1), name="L")
    names = [n for n, _ in m.named_parameters()]
    wrt = ["x", *names, *(hx or [])]
    gg = grad(g, loss, wrt, unused="ignore")  # no state: weight_hh's gradient is 0, as torch's
    prog = compile_graph(gg.graph, [*state] + [gg[w] for w in wrt],
                         bind={n: p.data for n, p in m.named_parameters()}, dims={"N": 3})
    rng = np.random.default_rng(1)
    tx = torch.tensor(rng.normal(size=(3, 4)), requires_grad=True)
    ths = [torch.tensor(rng.normal(size=(3, 5)), requires_grad=True) for _ in (hx or [])]
    prog.inputs["x"][...] = tx.detach().numpy()
    for n, v in zip(hx or [], ths):
        prog.inputs[n][...] = v.detach().numpy()
    out = t(tx, None if not hx else tuple(ths) if kind == "lstm" else ths[0])
    out = out if isinstance(out, tuple) else (out,)
    cvs = [rng.normal(size=(3, 5)) for _ in out]
    for c, v in zip(cs, cvs):
        prog.inputs[c][...] = v
    prog.run()
    sum((torch.tanh(o) * torch.tensor(v)).sum() for o, v in zip(out, cvs)).backward()
    for s, o in zip(state, out):
        _close(prog.value(s), o, s)
    tp = dict(t.named_parameters())
    for w, want in [("x", tx.grad), *((n, tp[n].grad) for n in names),
                    *zip(hx or [], (v.grad for v in ths))]:
        _close(prog.value(gg[w]), want, f"d{w}")


def test_lstm_gradient_matches_finite_differences():
    m = LSTM(3, 4, num_layers=2, bidirectional=True, dtype=F64)
    g = Graph()
    y, (h, c) = m.build_all(g, g.input("x", (4, "N", 3), F64))
    loss = g.add("add", g.add("mean", g.add("square", y)), g.add("sum", g.add("tanh", c)),
                 name="L")
    res = check_grad(g, loss, wrt=["x", *g.params()], dims={"N": 2}, rtol=1e-6,
                     params={n: p.data for n, p in m.named_parameters()})
    assert res.n_checks == 3 * (1 + 16)


@pytest.mark.parametrize("kind", list(SEQ))
def test_parameter_layout_and_init_follow_torch(kind):
    cls, tcls = SEQ[kind]
    m, t = cls(7, 10, num_layers=2, bidirectional=True), tcls(7, 10, num_layers=2,
                                                               bidirectional=True)
    assert [(n, p.shape) for n, p in m.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in t.named_parameters()]
    w = np.concatenate([p.data.ravel() for p in m.parameters()])
    bound = 1 / np.sqrt(10)  # torch: every weight U(-1/sqrt(H), 1/sqrt(H))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)


def test_embedding_matches_torch_with_padding_and_repeats():
    t = torch.nn.Embedding(6, 3, padding_idx=2, dtype=torch.float64)
    m = Embedding(6, 3, padding_idx=2, dtype=F64)
    assert not m.weight.data[2].any()
    _copy(m, t)
    idx = np.array([[0, 2, 5], [5, 5, 2], [1, 0, 3], [2, 2, 4]])  # repeats and padding
    g = Graph()
    x = g.input("x", ("N", 3), "int64")
    y = m.build(g, x)
    assert g.shape(y) == ("N", 3, 3)
    c = g.input("c", g.shape(y), F64)
    loss = g.add("sum", g.add("mul", c, g.add("tanh", y)), name="L")
    gg = grad(g, loss, ["weight"])
    prog = compile_graph(gg.graph, [y, gg["weight"]], bind={"weight": m.weight.data},
                         dims={"N": 4})
    cv = np.random.default_rng(2).normal(size=(4, 3, 3))
    prog.inputs["x"][...] = idx
    prog.inputs["c"][...] = cv
    prog.run()
    ty = t(torch.tensor(idx))
    (torch.tanh(ty) * torch.tensor(cv)).sum().backward()
    _close(prog.value(y), ty, "embedding")
    _close(prog.value(gg["weight"]), t.weight.grad, "dweight")
    assert not prog.value(gg["weight"])[2].any() and prog.value(gg["weight"])[5].any()


def test_slice_gradients_are_summed_as_one_concat():
    """The T pads of dx[t] are one concat: no full-size (T, N, G·H) sum per step."""
    m = LSTM(3, 4, dtype=F64)
    g = Graph()
    y = m.build(g, g.input("x", (16, "N", 3), F64))
    gg = grad(g, g.add("sum", y, name="L"), ["x"])
    full = [n for n in gg.graph.order() if gg.graph.op(n) in ("pad", "add")
            and gg.graph.shape(n) == (16, "N", 16) and n not in g]
    assert full == [] and gg.graph.op("dl0.xwb") == "concat"
    assert len(gg.graph.args("dl0.xwb")) == 16


def test_pad_sum_rewrite_fills_gaps_and_equals_the_sum():
    g = Graph()
    x = g.input("x", (7, 2), F64)
    parts = [g.add("slice", x, begin=(b, 0), end=(e, None)) for b, e in ((1, 2), (3, 5), (5, 6))]
    loss = g.add("sum", g.add("concat", *(g.add("square", p) for p in parts), axis=0), name="L")
    gg = grad(g, loss, ["x"])
    assert gg.graph.op(gg["x"]) == "concat"
    prog = compile_graph(gg.graph, [gg["x"]])
    xv = np.arange(14.0).reshape(7, 2)
    prog.inputs["x"][...] = xv
    prog.run()
    want = 2 * xv * np.isin(np.arange(7), [1, 3, 4, 5])[:, None]
    np.testing.assert_array_equal(prog.value(gg["x"]), want)


def test_overlapping_slices_are_still_added():
    g = Graph()
    x = g.input("x", (5,), F64)
    a, b = (g.add("slice", x, begin=(i,), end=(i + 3,)) for i in (0, 2))
    loss = g.add("sum", g.add("mul", a, b), name="L")
    gg = grad(g, loss, ["x"])
    prog = compile_graph(gg.graph, [gg["x"]])
    prog.inputs["x"][...] = [1.0, 2, 3, 4, 5]
    prog.run()
    np.testing.assert_array_equal(prog.value(gg["x"]), [3, 4, 6, 2, 3])


def test_unrolled_steps_share_kernel_sources():
    m = GRU(3, 4)
    g = Graph()
    y = m.build(g, g.input("x", (12, "N", 3)))
    gg = grad(g, g.add("mean", g.add("square", y), name="L"))
    prog = compile_graph(gg.graph, [gg.loss, *gg.grads.values()], dims={"N": 2},
                         bind={n: p.data for n, p in m.named_parameters()})
    sources = {f.__source__ for f in prog.kernels.values()}
    assert len(prog.kernels) > 24 and len(sources) < 20


def test_bad_arguments_are_one_line_usage_errors():
    g = Graph()
    x = g.input("x", (5, "N", 3), F64)
    with pytest.raises(UsageError, match="expects .*T, N, 4"):
        LSTM(4, 2).build(g, x)
    with pytest.raises(UsageError, match="initial state must be 2 node"):
        LSTM(3, 2).build_all(g, x, g.input("h0", (1, "N", 2), F64))
    with pytest.raises(UsageError, match="nonlinearity must be tanh or relu"):
        RNN(3, 2, nonlinearity="sigmoid")
    with pytest.raises(UsageError, match="must be concrete"):
        GRU(3, 2, batch_first=True).build(g, g.input("xs", (4, "T", 3), F64))
    with pytest.raises(UsageError, match="integer indices"):
        Embedding(4, 2).build(g, x)
    with pytest.raises(UsageError, match="padding_idx"):
        Embedding(4, 2, padding_idx=4)
    with pytest.raises(UsageError, match="dropout probability"):
        GRU(3, 2, num_layers=2, dropout=1.5)


def test_gate_equations_are_read_from_the_cell_graphs():
    from symdl.nn.equations import cell_equations
    assert cell_equations("lstm") == (
        "i_t = σ(W_ii x_t + W_hi h_{t-1} + b_ii + b_hi)\n"
        "f_t = σ(W_if x_t + W_hf h_{t-1} + b_if + b_hf)\n"
        "g_t = tanh(W_ig x_t + W_hg h_{t-1} + b_ig + b_hg)\n"
        "o_t = σ(W_io x_t + W_ho h_{t-1} + b_io + b_ho)\n"
        "c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t\n"
        "h_t = o_t ⊙ tanh(c_t)\n")
    gru = cell_equations("gru")
    assert "n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))" in gru
    assert gru.endswith("h_t = z_t ⊙ (h_{t-1} − n_t) + n_t\n")  # (1 − z) ⊙ n + z ⊙ h
    assert cell_equations("rnn", nonlinearity="relu") == \
        "h_t = relu(W_ih x_t + W_hh h_{t-1} + b_ih + b_hh)\n"
    tex = cell_equations("lstm", "latex")
    assert tex.startswith("\\begin{align*}") and r"c_{t} &= f_{t} \odot c_{t-1}" in tex
    with pytest.raises(UsageError, match="kind must be"):
        cell_equations("transformer")


def test_gate_equations_follow_the_graph(monkeypatch):
    """The equations are the graph's: a cell that computed its candidate with sigmoid
    would print σ there (nothing in the printing knows which gate uses which op)."""
    from symdl.nn.equations import cell_equations
    real = Graph.add

    def add(self, op, *args, **kw):
        return real(self, "sigmoid" if kw.get("name") == "step.g" else op, *args, **kw)
    monkeypatch.setattr(Graph, "add", add)
    assert "g_t = σ(W_ig x_t + W_hg h_{t-1} + b_ig + b_hg)" in cell_equations("lstm")


def test_shared_weight_gradient_is_one_batched_product():
    """dW_hh = Σ_t h_{t-1}ᵀ δ_t is one (T-1)-batch matmul summed over the stack,
    not T − 1 products added by a (T − 1)-input kernel (values: the torch tests)."""
    m = RNN(3, 4, dtype=F64)
    g = Graph()
    y = m.build(g, g.input("x", (9, "N", 3), F64))
    gg = grad(g, g.add("sum", y, name="L"), ["weight_hh_l0"])
    adds = [n for n in gg.graph.order() if gg.graph.op(n) == "add" and n not in g
            and gg.graph.shape(n) == (4, 4)]
    assert adds == []
    mm = [n for n in gg.graph.order() if gg.graph.op(n) == "matmul" and n not in g
          and gg.graph.shape(n) == (8, 4, 4)]
    assert len(mm) == 1 and [gg.graph.op(c) for c in gg.graph.consumers(mm[0])] == ["sum"]
