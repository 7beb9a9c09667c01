"""Graph derivations: chain rule per parameter, worked backprop numbers."""
from __future__ import annotations

import numpy as np

from symdl.backends.numpy_backend import compile_graph
from symdl.backends.trace import numeric_backprop
from symdl.cli import main
from symdl.derive import grad
from symdl.derive.chains import derive_graph
from symdl.nn import make_model
from symdl.train import build_training_graph


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_default_mlp_prints_one_chain_per_parameter_with_shapes(capsys):
    code, out, _ = run(capsys, "explain")
    assert code == 0
    heads = [line for line in out.splitlines() if line.startswith("∂L/∂")]
    # node ids print as a course's symbols: 0.W -> W₁, 4.b -> b₃ (layers numbered from 1)
    assert [h.split()[0] for h in heads] == ["∂L/∂W₁", "∂L/∂b₁", "∂L/∂W₂", "∂L/∂b₂",
                                             "∂L/∂W₃", "∂L/∂b₃"]
    assert "∂L/∂W₁  shape (64, 64)" in out and "∂L/∂b₃  shape (10,)" in out
    # relu' in terms of its output (a SymPy-checked claim), kink at 0 -> 0, as an indicator
    assert "∂h₁/∂z₁      = ⊙ 𝟙[h₁ > 0]   (N, 64)" in out


def test_output_is_deterministic_in_every_format(capsys):
    for fmt in ("text", "latex", "markdown", "json"):
        a = run(capsys, "explain", "--hidden", "3", "--format", fmt)[1]
        b = run(capsys, "explain", "--hidden", "3", "--format", fmt)[1]
        assert a == b and a
    latex = run(capsys, "explain", "--hidden", "3", "--format", "latex", "--param", "0.W")[1]
    assert latex.startswith(r"\begin{align*}") and r"\frac{\partial L}{\partial W_{1}}" in latex
    assert r"&&\in \mathbb{R}^{3 \times 64}" in latex  # the chain rules show the shapes


def test_numeric_backprop_matches_the_backend_gradients():
    rng = np.random.default_rng(3)
    spec = make_model("mlp", 2, 2, (2,), "sigmoid", rng, "float64")
    g, out, L = build_training_graph(spec.module, 2, spec.loss, spec.loss_params, "float64")
    params = {p.name: p.data for p in spec.module.parameters()}
    feeds = {"x": np.array([[0.5, -1.0]]), "y": np.array([1])}
    rows = {r.node: r for r in numeric_backprop(g, L, feeds, params)}
    gg = grad(g, L)
    prog = compile_graph(gg.graph, [L, *gg.grads.values()], params, {"N": 1})  # fused, as training
    prog.inputs["x"][...] = feeds["x"]
    prog.inputs["y"][...] = feeds["y"]
    prog.run()
    for p in params:
        np.testing.assert_allclose(rows[p].upstream, prog.value(gg.grads[p]), rtol=1e-12)
    assert float(rows[L].value) == float(prog.value(L))
    # hand check of one local step: d sigmoid = upstream * s (1 - s)
    s = rows["1.sigmoid"].value
    np.testing.assert_allclose(rows["0.z"].upstream, rows["1.sigmoid"].upstream * s * (1 - s))


def test_shared_paths_are_all_listed():
    from symdl.graph import Graph
    g = Graph()
    x = g.param("x", (3,), "float64")
    y = g.add("mul", x, x, name="y")
    L = g.add("sum", g.add("add", y, x, name="s"), name="L")
    gd = derive_graph(g, L)
    assert len(gd.chains["x"]) == 2  # through y and directly into s


def test_numeric_cli(capsys):
    code, out, _ = run(capsys, "explain", "--dataset", "xor", "--hidden", "2", "--activation",
                       "sigmoid", "--numeric")
    assert code == 0 and "worked backprop on training example 0" in out
    assert "upstream gradient" in out and "h₁     sigmoid" in out


def test_every_layer_derivation_is_verified():
    from symdl.derive.layers import LAYERS, layer_derivation
    from symdl.nn.layers import ACTIVATIONS
    for name in (*LAYERS, *ACTIVATIONS()):
        d = layer_derivation(name)
        assert d.verified, name
        assert d.rules and d.method


def test_the_layer_check_rejects_a_wrong_rule():
    import sympy as sp
    from symdl.derive.layers import _grad, _mat, _same
    X, W, d = _mat("x", 2, 3), _mat("w", 2, 3), _mat("d", 2, 2)
    L = sum(d.multiply_elementwise(X * W.T))
    assert _same(_grad(L, W), d.T * X)
    assert not _same(_grad(L, W), d.T * X + sp.Matrix(2, 3, lambda i, j: int(i == j == 0)))


def test_layer_cli(capsys):
    code, out, _ = run(capsys, "explain", "--layer", "dense")
    assert code == 0 and "∂L/∂W = δᵀ X" in out and "verified" in out
    code, out, _ = run(capsys, "explain", "--layer", "softmax", "--format", "latex")
    assert r"\operatorname{diag}(s) - s s^{\top}" in out
    assert run(capsys, "explain", "--layer", "nope")[0] == 2
