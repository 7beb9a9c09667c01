"""Attention against torch in float64: MultiheadAttention, transformer layers, encodings.

Weights are copied from torch modules (dropout 0); outputs, attention weights
and the gradients with respect to the inputs and every parameter agree to
1e-10, with causal and key-padding masks, batch first or not, pre- and
post-LN, ReLU and GELU.  Also: the constant causal mask, a fully masked row
giving zeros, positional encodings and finite differences.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from symdl.backends.numpy_backend import compile_graph
from symdl.derive import grad
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.nn import (LearnedPositionalEncoding, MultiheadAttention, SinusoidalPositionalEncoding,
                      TransformerDecoderLayer, TransformerEncoderLayer)
from symdl.nn.attention import causal_mask, constant_inputs, scaled_dot_product_attention
from symdl.testing import check_grad

F64 = "float64"
TOL = 1e-10


def _close(a, b, what):
    np.testing.assert_allclose(a, b.detach().numpy() if torch.is_tensor(b) else b, rtol=TOL,
                               atol=TOL, err_msg=what)


def _keep(N, S):
    keep = np.ones((N, S))
    keep[0, -2:] = 0
    keep[2, -1] = 0
    return keep


def compare(m, t, build, run_torch, N=3, L=5, S=4, E=8, bf=False, cross=False, pad=None,
            weights=False):
    """Build ``m`` through ``build(g, x, mem, keep)``, compare with ``run_torch``."""
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    S = S if cross else L
    g = Graph()
    shape = (lambda T: ("N", T, E)) if bf else (lambda T: (T, "N", E))
    x = g.input("x", shape(L), F64)
    mem = g.input("mem", shape(S), F64) if cross else None
    kk = g.input("kk", ("N", S), F64) if pad else None
    out = build(g, x, mem, kk)
    y, w = out if isinstance(out, tuple) else (out, None)
    c = g.input("c", g.shape(y), F64)
    loss = g.add("sum", g.add("mul", c, g.add("tanh", y)))
    if w is not None:
        loss = g.add("add", loss, g.add("sum", g.add("square", w)))
    names = [n for n, _ in m.named_parameters()]
    wrt = ["x", *(["mem"] if cross else []), *names]
    gg = grad(g, loss, wrt)
    outs = [y] + ([w] if w else [])
    prog = compile_graph(gg.graph, outs + [gg[a] for a in wrt], dims={"N": N},
                         bind={n: p.data for n, p in m.named_parameters()})
    rng = np.random.default_rng(0)
    tx = torch.tensor(rng.normal(size=(N, L, E) if bf else (L, N, E)), requires_grad=True)
    tm = torch.tensor(rng.normal(size=(N, S, E) if bf else (S, N, E)), requires_grad=True)
    prog.inputs["x"][...] = tx.detach().numpy()
    if cross:
        prog.inputs["mem"][...] = tm.detach().numpy()
    kpm = None
    if pad:
        prog.inputs["kk"][...] = _keep(N, S)
        kpm = torch.tensor(_keep(N, S) == 0)
    tout = run_torch(t, tx, tm if cross else tx, kpm)
    ty, tw = tout if isinstance(tout, tuple) else (tout, None)
    cv = rng.normal(size=tuple(ty.shape))
    prog.inputs["c"][...] = cv
    prog.run()
    tl = (torch.tanh(ty) * torch.tensor(cv)).sum() + ((tw ** 2).sum() if w else 0)
    tl.backward()
    _close(prog.value(y), ty, "output")
    if w:
        _close(prog.value(w), tw, "weights")
    _close(prog.value(gg["x"]), tx.grad, "dx")
    if cross:
        _close(prog.value(gg["mem"]), tm.grad, "dmemory")
    tp = dict(t.named_parameters())
    for n in names:
        _close(prog.value(gg[n]), tp[n].grad, f"d{n}")


def _triu(L, S):
    return torch.triu(torch.ones(L, S, dtype=torch.bool), 1)


@pytest.mark.parametrize("bf, causal, pad, cross", [
    (False, False, False, False), (True, False, False, False), (False, True, False, False),
    (True, True, True, False), (False, False, True, True), (True, True, False, True)])
def test_multihead_attention_matches_torch(bf, causal, pad, cross):
    m = MultiheadAttention(8, 2, batch_first=bf, dtype=F64)
    t = torch.nn.MultiheadAttention(8, 2, batch_first=bf, dtype=torch.float64)

    def build(g, x, mem, kk):
        return m.build_all(g, x, mem, mem, key_keep=kk, causal=causal)

    def run_torch(t, x, mem, kpm):
        L, S = (x.shape[1], mem.shape[1]) if bf else (x.shape[0], mem.shape[0])
        return t(x, mem, mem, key_padding_mask=kpm, attn_mask=_triu(L, S) if causal else None)
    compare(m, t, build, run_torch, bf=bf, cross=cross, pad=pad)


LAYERS = [(nf, act, bf, pad, causal) for nf in (False, True)
          for act, bf, pad, causal in (("relu", True, True, True), ("gelu", False, False, False))]


@pytest.mark.parametrize("norm_first, act, bf, pad, causal", LAYERS)
def test_encoder_layer_matches_torch(norm_first, act, bf, pad, causal):
    kw = dict(dim_feedforward=16, dropout=0.0, activation=act, batch_first=bf,
              norm_first=norm_first)
    m = TransformerEncoderLayer(8, 2, dtype=F64, **kw)
    t = torch.nn.TransformerEncoderLayer(8, 2, dtype=torch.float64, **kw)
    compare(m, t, lambda g, x, mem, kk: m.build_all(g, x, key_keep=kk, causal=causal),
            lambda t, x, mem, kpm: t(x, src_mask=_triu(5, 5) if causal else None,
                                     src_key_padding_mask=kpm), bf=bf, pad=pad)


@pytest.mark.parametrize("norm_first, act, bf, pad, causal", LAYERS)
def test_decoder_layer_matches_torch(norm_first, act, bf, pad, causal):
    kw = dict(dim_feedforward=16, dropout=0.0, activation=act, batch_first=bf,
              norm_first=norm_first)
    m = TransformerDecoderLayer(8, 2, dtype=F64, **kw)
    t = torch.nn.TransformerDecoderLayer(8, 2, dtype=torch.float64, **kw)
    compare(m, t, lambda g, x, mem, kk: m.build_all(g, x, mem, memory_key_keep=kk,
                                                    tgt_causal=causal),
            lambda t, x, mem, kpm: t(x, mem, tgt_mask=_triu(5, 5) if causal else None,
                                     memory_key_padding_mask=kpm), bf=bf, pad=pad, cross=True)


def test_parameter_layout_and_init_follow_torch():
    m, t = TransformerDecoderLayer(16, 4, 32), torch.nn.TransformerDecoderLayer(16, 4, 32)
    assert sorted((n, p.shape) for n, p in m.named_parameters()) == \
        sorted((n, tuple(p.shape)) for n, p in t.named_parameters())
    w = m.self_attn.in_proj_weight.data
    bound = np.sqrt(6 / (16 + 48))  # xavier_uniform_ on (3E, E)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert not m.self_attn.in_proj_bias.data.any() and not m.self_attn.out_proj.bias.data.any()


@pytest.mark.parametrize("tq, tk", [(4, 4), (3, 5), (5, 2), (1, 1)])
def test_causal_mask_is_lower_triangular_and_constant(tq, tk):
    g = Graph()
    c = causal_mask(g, tq, tk, F64)
    prog = compile_graph(g, [c])
    np.testing.assert_array_equal(prog.value(c), np.tril(np.ones((tq, tk))))
    assert "def step():\n    return None" in prog.source  # computed once, at compile time


def test_a_fully_masked_row_gives_zeros_and_no_nan():
    g = Graph()
    q, k, v = (g.input(n, (2, 3, 4), F64) for n in "qkv")
    keep = g.input("keep", (2, 1, 3), F64)
    o, w = scaled_dot_product_attention(g, q, k, v, keep)
    loss = g.add("sum", g.add("square", o), name="L")
    gg = grad(g, loss, ["q", "k", "v"])
    prog = compile_graph(gg.graph, [o, w, *gg.grads.values()])
    rng = np.random.default_rng(3)
    for n in "qkv":
        prog.inputs[n][...] = rng.normal(size=(2, 3, 4))
    prog.inputs["keep"][...] = [[[1, 0, 1]], [[0, 0, 0]]]
    prog.run()
    assert not prog.value(o)[1].any() and not prog.value(w)[1].any()
    assert all(np.isfinite(prog.value(d)).all() for d in gg.grads.values())
    tq, tk, tv = (torch.tensor(prog.inputs[n][0]) for n in "qkv")
    want = torch.nn.functional.scaled_dot_product_attention(
        tq, tk, tv, attn_mask=torch.tensor([[True, False, True]]))
    _close(prog.value(o)[0], want, "batch 0")


def test_positional_encodings():
    pe = SinusoidalPositionalEncoding(6, max_len=50)
    tab = pe.table(7)
    assert tab[3, 0] == pytest.approx(np.sin(3)) and tab[3, 1] == pytest.approx(np.cos(3))
    assert tab[5, 4] == pytest.approx(np.sin(5 / 10000 ** (4 / 6)))
    g = Graph()
    x = g.input("x", ("N", 7, 6), F64)
    y = LearnedPositionalEncoding(10, 6, dtype=F64).build(g, pe.build(g, x), prefix="pos.")
    prog = compile_graph(g, [y], dims={"N": 2}, bind=constant_inputs(pe) | {
        "pos.weight": np.zeros((10, 6))})
    prog.inputs["x"][...] = 1.0
    prog.run()
    np.testing.assert_allclose(prog.value(y), 1.0 + np.broadcast_to(tab, (2, 7, 6)))
    with pytest.raises(UsageError, match="concrete T <= 5"):
        LearnedPositionalEncoding(5, 6).build(g, x, prefix="short.")


def test_encoder_gradient_matches_finite_differences():
    m = TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True, norm_first=True,
                                activation="gelu", dtype=F64)
    g = Graph()
    y = m.build_all(g, g.input("x", ("N", 3, 4), F64), causal=True)
    loss = g.add("mean", g.add("square", y), name="L")
    res = check_grad(g, loss, wrt=["x", *g.params()], dims={"N": 2}, rtol=1e-6,
                     params={n: p.data for n, p in m.named_parameters()})
    assert res.n_checks == 3 * 13


def test_bad_arguments_are_one_line_usage_errors():
    with pytest.raises(UsageError, match="divisible"):
        MultiheadAttention(10, 3)
    with pytest.raises(UsageError, match="relu or gelu"):
        TransformerEncoderLayer(8, 2, activation="tanh")
    g = Graph()
    x = g.input("x", (5, "N", 8))
    with pytest.raises(UsageError, match="key_keep must be"):
        MultiheadAttention(8, 2).build_all(g, x, key_keep=g.input("k", ("N", 4)))
    with pytest.raises(UsageError, match="needs the encoder's memory"):
        TransformerDecoderLayer(8, 2).build(g, x)
