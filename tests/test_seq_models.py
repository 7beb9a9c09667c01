"""Sequence architectures (symdl.nn.seqmodels) against torch in float64, and by finite differences.

A ViT and the many-to-one classifiers are rebuilt in torch from its own layers
(``Conv2d`` patches, ``TransformerEncoderLayer``, ``LSTM``...); with the weights copied across,
outputs and every parameter gradient agree to 1e-9.  The tagger, generator and encoder–decoder
are checked by finite differences and by what their outputs mean.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from symdl.backends.numpy_backend import compile_graph
from symdl.data.sequences import patchify, reverse, symbols
from symdl.derive import grad
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.nn.seqmodels import (Seq2Seq, SequenceClassifier, SequenceGenerator, SequenceTagger,
                                ViT, shift_right)
from symdl.testing import check_grad

F64 = "float64"
TOL = 1e-9


class TorchViT(torch.nn.Module):
    """The reference: conv patches, class token, learned positions, pre-LN encoder layers."""

    def __init__(self, side, p, n_out, dim, depth, heads, mlp):
        super().__init__()
        self.side = side
        self.conv = torch.nn.Conv2d(1, dim, p, stride=p)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, dim))
        self.pos = torch.nn.Parameter(torch.randn((side // p) ** 2 + 1, dim))
        self.layers = torch.nn.ModuleList(torch.nn.TransformerEncoderLayer(
            dim, heads, mlp, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(depth))
        self.norm = torch.nn.LayerNorm(dim)
        self.head = torch.nn.Linear(dim, n_out)

    def forward(self, x):
        n = x.shape[0]
        t = self.conv(x.reshape(n, 1, self.side, self.side)).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(n, -1, -1), t], 1) + self.pos
        for layer in self.layers:
            t = layer(t)
        return self.head(self.norm(t)[:, 0])


def _renamed(arrays, dim=None):
    """torch names and layouts -> symdl's: conv patches -> patch_embed (weight (dim, p²)),
    cls -> class_token, pos -> pos.weight, layers.<i>. -> layer<i>."""
    plain = {"conv.weight": "patch_embed.weight", "conv.bias": "patch_embed.bias",
             "cls": "class_token", "pos": "pos.weight"}
    out = {}
    for k, v in arrays.items():
        v = np.asarray(v)
        if k == "conv.weight":
            v = v.reshape(dim, -1)
        if k in plain:
            k = plain[k]
        elif k.startswith("layers."):
            i, rest = k[len("layers."):].split(".", 1)
            k = f"layer{i}.{rest}"
        out[k] = v
    return out


def _compare(m, t, x, rng):
    """``L = Σ c ⊙ model(x)`` in symdl and torch: outputs, input and parameter gradients."""
    g = Graph()
    xn = g.input("x", ("N", x.shape[1]), F64)
    y = m.build(g, xn)
    c = g.input("c", g.shape(y), F64)
    L = g.add("sum", g.add("mul", c, y), name="L")
    names = [n for n, _ in m.named_parameters()]
    gg = grad(g, L, ["x", *names])
    prog = compile_graph(gg.graph, [y, *(gg[n] for n in ["x", *names])],
                         bind={n: p.data for n, p in m.named_parameters()}, dims={"N": len(x)})
    tx = torch.tensor(x, requires_grad=True)
    ty = t(tx)
    cv = rng.normal(size=tuple(ty.shape))
    prog.inputs["x"][...] = x
    prog.inputs["c"][...] = cv
    prog.run()
    (ty * torch.tensor(cv)).sum().backward()
    np.testing.assert_allclose(prog.value(y), ty.detach().numpy(), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(prog.value(gg["x"]), tx.grad.numpy(), rtol=TOL, atol=TOL)
    return prog, gg, names


@pytest.mark.parametrize("patch, depth", [(4, 1), (2, 2)])
def test_vit_matches_torch(patch, depth):
    torch.manual_seed(0)
    dim, heads, mlp = 8, 2, 12
    t = TorchViT(8, patch, 5, dim, depth, heads, mlp).double()
    m = ViT(8, patch, 5, dim=dim, depth=depth, heads=heads, mlp_dim=mlp, dtype=F64)
    state = _renamed({k: v.detach().numpy() for k, v in t.state_dict().items()}, dim)
    assert sorted(state) == sorted(n for n, _ in m.named_parameters())
    m.load_state_dict(state)
    rng = np.random.default_rng(1)
    prog, gg, names = _compare(m, t, rng.normal(size=(3, 64)), rng)
    tg = _renamed({k: v.grad.numpy() for k, v in t.named_parameters()}, dim)
    for n in names:
        np.testing.assert_allclose(prog.value(gg[n]), tg[n], rtol=TOL, atol=TOL, err_msg=n)


def test_vit_patches_are_patchify():
    m = ViT(8, 2, 3, dim=4, depth=1, heads=1, dtype=F64)
    g = Graph()
    p = m.patches(g, g.input("x", ("N", 64), F64))
    prog = compile_graph(g, [p], dims={"N": 2})
    X = np.random.default_rng(0).normal(size=(2, 64))
    prog.inputs["x"][...] = X
    prog.run()
    np.testing.assert_array_equal(prog.value(p).reshape(2, -1), patchify(X, 8, 2))


class TorchSeq(torch.nn.Module):
    def __init__(self, kind, D, H, layers, bi, n_out):
        super().__init__()
        self.D = D
        self.rnn = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](
            D, H, layers, batch_first=True, bidirectional=bi)
        self.head = torch.nn.Linear(H * (2 if bi else 1), n_out)
        self.d = 2 if bi else 1

    def forward(self, x):
        _, hn = self.rnn(x.reshape(x.shape[0], -1, self.D))
        hn = hn[0] if isinstance(hn, tuple) else hn
        return self.head(hn[-self.d:].transpose(0, 1).reshape(x.shape[0], -1))


@pytest.mark.parametrize("kind, layers, bi", [("lstm", 2, True), ("gru", 1, False),
                                              ("rnn", 1, True)])
def test_classifier_matches_torch(kind, layers, bi):
    torch.manual_seed(0)
    t = TorchSeq(kind, 3, 5, layers, bi, 4).double()
    m = SequenceClassifier(kind, 6, 3, 4, hidden=5, layers=layers, bidirectional=bi, dtype=F64)
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    rng = np.random.default_rng(2)
    prog, gg, names = _compare(m, t, rng.normal(size=(4, 18)), rng)
    tp = dict(t.named_parameters())
    for n in names:
        np.testing.assert_allclose(prog.value(gg[n]), tp[n].grad.numpy(), rtol=TOL, atol=TOL,
                                   err_msg=n)


class TorchTransformerClassifier(torch.nn.Module):
    def __init__(self, T, D, E, heads, ff, layers, n_out):
        super().__init__()
        self.T, self.D = T, D
        self.embed = torch.nn.Linear(D, E)
        self.pos = torch.nn.Parameter(torch.randn(T, E))
        self.layers = torch.nn.ModuleList(torch.nn.TransformerEncoderLayer(
            E, heads, ff, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(layers))
        self.norm = torch.nn.LayerNorm(E)
        self.head = torch.nn.Linear(E, n_out)

    def forward(self, x):
        h = self.embed(x.reshape(x.shape[0], self.T, self.D)) + self.pos
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm(h).mean(1))


def test_transformer_classifier_matches_torch():
    torch.manual_seed(0)
    t = TorchTransformerClassifier(5, 3, 8, 2, 16, 2, 4).double()
    m = SequenceClassifier("transformer", 5, 3, 4, hidden=8, layers=2, heads=2, dtype=F64)
    m.load_state_dict(_renamed({k: v.detach().numpy() for k, v in t.state_dict().items()}))
    rng = np.random.default_rng(3)
    prog, gg, names = _compare(m, t, rng.normal(size=(3, 15)), rng)
    tp = _renamed({k: v.grad.numpy() for k, v in t.named_parameters()})
    for n in names:
        np.testing.assert_allclose(prog.value(gg[n]), tp[n], rtol=TOL, atol=TOL, err_msg=n)


def _loss_graph(m, n_in):
    g = Graph()
    y = m.build(g, g.input("x", ("N", n_in), F64))
    c = g.input("c", g.shape(y), F64)
    return g, g.add("sum", g.add("mul", c, g.add("tanh", y)), name="L")


@pytest.mark.parametrize("m, n_in", [
    (SequenceTagger("gru", 4, 2, 3, hidden=4, bidirectional=True, dtype=F64), 8),
    (SequenceTagger("transformer", 4, 2, 3, hidden=4, heads=2, dtype=F64), 8),
    (SequenceGenerator("lstm", 3, 4, 2, hidden=5, dtype=F64), 3),
    (SequenceGenerator("gru", 3, 3, 2, hidden=4, dtype=F64), 3),
    (Seq2Seq("lstm", 3, 2, 3, 4, hidden=5, dtype=F64), 3 * 2 + 3 * 4),
], ids=["tagger-gru-bi", "tagger-transformer", "generator-lstm", "generator-gru", "seq2seq"])
def test_finite_differences(m, n_in):
    g, L = _loss_graph(m, n_in)
    params = {n: p.data for n, p in m.named_parameters()}
    check_grad(g, L, wrt=["x", *params], params=params, dims={"N": 2})


def test_tagger_output_is_per_step():
    """Changing a late input step leaves the earlier outputs of a forward LSTM unchanged."""
    m = SequenceTagger("lstm", 5, 2, 3, hidden=4, dtype=F64)
    x = np.random.default_rng(0).normal(size=(2, 10))
    a = m(x).reshape(2, 5, 3)
    x2 = x.copy()
    x2[:, 8:] += 1.0  # step 4
    b = m(x2).reshape(2, 5, 3)
    np.testing.assert_array_equal(a[:, :4], b[:, :4])
    assert np.abs(a[:, 4] - b[:, 4]).max() > 1e-6


def test_teacher_forcing_and_free_running_agree_on_a_perfect_decoder():
    """With teacher forcing, step t's scores depend only on the decoder inputs before t;
    generate() feeds its own argmax, so on inputs equal to its own outputs they agree."""
    ds = reverse(4, 6, vocab=4, seed=0)
    m = Seq2Seq("gru", 6, 4, 6, 4, hidden=6, dtype=F64)
    out = m.generate(ds.X)
    onehot = np.eye(4)[out].reshape(4, -1)
    scores = m(np.concatenate([ds.X, shift_right(onehot, 4)], axis=1))
    np.testing.assert_array_equal(symbols(scores, 4), out)
    np.testing.assert_array_equal(shift_right(np.eye(3)[[[1, 2]]].reshape(1, 6), 3),
                                  [[0, 0, 0, 0, 1, 0]])


@pytest.mark.parametrize("make, msg", [
    (lambda: SequenceClassifier("tcn", 4, 2, 3), "unknown encoder"),
    (lambda: SequenceClassifier("transformer", 4, 2, 3, hidden=6, heads=4), "divisible"),
    (lambda: SequenceClassifier("transformer", 4, 2, 3, bidirectional=True), "bidirectional"),
    (lambda: SequenceClassifier("lstm", 0, 2, 3), "steps must be a positive"),
    (lambda: ViT(8, 3, 10), "must divide"),
    (lambda: ViT(8, 4, 10, dim=10, heads=4), "divisible"),
    (lambda: SequenceGenerator("transformer", 2, 3, 1), "unknown cell"),
])
def test_bad_settings_are_usage_errors(make, msg):
    with pytest.raises(UsageError, match=msg):
        make()


def test_wrong_input_width_is_named():
    with pytest.raises(UsageError, match=r"8 steps × 8 features \(N, 64\)"):
        SequenceClassifier("gru", 8, 8, 10)(np.zeros((2, 63), np.float32))
    with pytest.raises(UsageError, match=r"8×8 images"):
        ViT(8, 4, 10, dim=8, heads=2)(np.zeros((2, 63), np.float32))
