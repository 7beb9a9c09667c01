"""explain for convolutional networks: layer derivations (index and im2col form, verified on
explicit SymPy instances), chains that skip integer indices, the tiny worked conv + pool."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from symdl.cli import main
from symdl.commands.explain_cnn import TINY, tiny_rows
from symdl.derive import conv_layers
from symdl.derive.chains import derive_graph
from symdl.derive.conv_layers import CONV_LAYERS
from symdl.derive.layers import layer_derivation
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.nn import make_model
from symdl.printing.layers import layer_latex, layer_text


@pytest.mark.parametrize("name", CONV_LAYERS)
def test_conv_layer_derivations_are_verified_and_print(name):
    d = layer_derivation(name)
    assert d.verified, name
    text, tex = layer_text(d), layer_latex(d)
    assert "verified:" in text and r"\checkmark" in tex
    if name in ("conv2d", "maxpool", "avgpool"):
        assert "index notation:" in text and "matrix form (im2col):" in text
        assert tex.count(r"\intertext") == 2
    else:
        axes = {"batchnorm": "(0, 2, 3)", "layernorm": "(1, 2, 3)", "instancenorm": "(2, 3)"}
        assert f"A = axes {axes[name]}" in text


def test_conv2d_rules_read_as_the_notes_write_them():
    text = layer_text(layer_derivation("conv2d"))
    assert "∂L/∂W[o,c,p,q]  = Σ_{n,i,j} δ[n,o,i,j]·x̃[n,c,iS+pD,jS+qD]" in text
    assert "fold(W_matᵀ δ_n)" in text


def test_the_checks_can_fail(monkeypatch):
    """A rule that reads the wrong pixel (rows and columns swapped) disagrees with the
    im2col form through symdl's unfold; a wrong claim is caught."""
    assert conv_layers._conv_instance(1, 1, 2, 4, 2, 2, 1, 2)
    real = conv_layers._at
    monkeypatch.setattr(conv_layers, "_at", lambda x, n, c, r, q, p: real(x, n, c, q, r, p))
    assert not conv_layers._conv_instance(1, 1, 1, 3, 2, 1, 0, 1)
    monkeypatch.undo()
    x = conv_layers._symbols("x", (2, 2))
    assert conv_layers._zero(x * 2, x + x) and not conv_layers._zero(x * 2, x + 1)


def test_unknown_layer_names_the_conv_layers():
    with pytest.raises(UsageError, match="conv2d, maxpool, avgpool"):
        layer_derivation("conv3d")


def test_chains_skip_integer_index_arguments():
    spec = make_model("cnn", 64, 10, channels=(4,), kernel=3, pool="max", norm="none",
                      rng=np.random.default_rng(0))
    g = Graph()
    x = g.input("x", ("N", 64), "float32")
    out = spec.module.build(g, x)
    y = g.input("y", ("N",), "int64")
    L = g.add("mean", g.add("softmax_cross_entropy", out, y, name="loss"), name="L")
    gd = derive_graph(g, L)
    assert any(g.op(n) == "argmax" for n in g.order())
    for chains in gd.chains.values():
        assert len(chains) == 1
        for ch in chains:
            assert not any(g.op(n) == "argmax" for n in ch.path), ch.path
    # a graph that uses a value both as data and as an index keeps its value path
    h = Graph()
    v = h.input("v", (2, 3), "float64")
    a = h.add("argmax", v, axis=1, name="a")
    s = h.add("sum", h.add("gather", v, a, axis=1, name="gv"), name="S")
    assert [c.path for c in derive_graph(h, s, ["v"]).chains["v"]] == [("v", "gv", "S")]


def test_tiny_worked_example_matches_torch():
    rows = {r.node: r for r in tiny_rows()}
    tx = torch.tensor(TINY["x"], requires_grad=True)
    tw = torch.tensor(TINY["weight"], requires_grad=True)
    tb = torch.tensor(TINY["bias"], requires_grad=True)
    z = torch.nn.functional.conv2d(tx, tw, tb)
    z.retain_grad()
    y = torch.nn.functional.max_pool2d(torch.relu(z), 2)
    L = (y * torch.tensor(TINY["c"])).sum()
    L.backward()
    assert rows["L"].value == pytest.approx(L.item())
    np.testing.assert_allclose(rows["pool.maxpool"].value, y.detach().numpy())
    np.testing.assert_allclose(rows["conv.weight"].upstream, tw.grad.numpy())
    np.testing.assert_allclose(rows["conv.bias"].upstream, tb.grad.numpy())
    np.testing.assert_allclose(rows["conv.z"].upstream, z.grad.numpy())


def test_explain_cli_for_conv_layers_and_the_cnn_model(capsys):
    assert main(["explain", "--layer", "maxpool"]) == 0
    out = capsys.readouterr().out
    assert "scatter_add" in out and "verified" in out and "NOT verified" not in out
    assert main(["explain", "--model", "cnn", "--numeric"]) == 0
    out = capsys.readouterr().out
    assert "∂gather₁/∂argmax₁" not in out and "∂gather₁/∂windows₁" in out
    assert "worked backprop on a tiny conv + pool example" in out
    assert "∂L/∂conv.weight:\n    7  2\n    6  7" in out
