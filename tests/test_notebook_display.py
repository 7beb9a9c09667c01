"""Notebook display: one LaTeX style for every derivation, readable reprs, graphs as SVG,
History as a table."""
from __future__ import annotations

import re

import numpy as np
import pytest

import symdl  # noqa: F401  (registers the renderers)
from symdl import draw
from symdl.derive import grad, hvp_graph
from symdl.derive.chains import derive_graph
from symdl.derive.layers import layer_derivation
from symdl.derive.steps import derive
from symdl.graph import Graph
from symdl.nn import Dense, Module, make_model
from symdl.optim import Adam
from symdl.optim.derivation import derivation as rule_of
from symdl.optim.schedules import make_schedule
from symdl.printing.notebook import display_latex, module_repr, prose_latex
from symdl.train import build_training_graph
from symdl.train.trainer import History


@pytest.fixture(scope="module")
def mlp():
    spec = make_model("mlp", 4, 3, (5,), "tanh")
    g, _, L = build_training_graph(spec.module, 4, spec.loss, spec.loss_params, "float32")
    return spec.module, g, L


def _objects(mlp):
    model, g, L = mlp
    opt = Adam(list(model.parameters()), lr=0.01)
    return {"scalar": derive("x**2*sigmoid(x)"), "layer": layer_derivation("dense"),
            "chain": derive_graph(g, L), "rule": rule_of(opt),
            "schedule": make_schedule("cosine:T_max=50", 0.1)}


def _one_align(tex: str) -> None:
    """The house style: exactly one align* environment and nothing outside it."""
    assert tex.startswith("\\begin{align*}\n") and tex.endswith("\n\\end{align*}")
    assert tex.count("\\begin{align*}") == 1 and tex.count("\\end{align*}") == 1
    assert not re.search(r"^%|\$|\\intertext", tex, re.M)  # no comment, no prose, no intertext
    assert tex.count("{") == tex.count("}")


@pytest.mark.parametrize("kind", ["scalar", "layer", "chain", "rule", "schedule"])
def test_every_derivation_has_latex_in_one_style(kind, mlp):
    obj = _objects(mlp)[kind]
    tex = obj._repr_latex_()
    _one_align(tex)
    r = repr(obj)
    assert "\n" not in r and len(r) < 200 and "=" in r
    assert not re.search(r"\b(Rule|Step|Factor|Chain|Symbol)\(|=\(|\\\\", r)  # no dataclass dump


def test_latex_keeps_the_printers_equations_and_legend(mlp):
    objs = _objects(mlp)
    tex = objs["rule"]._repr_latex_()
    assert r"&\textbf{adam: Adam}" in tex and r"\theta_{t} &= \theta_{t-1}" in tex
    assert r"\alpha = 0.01\text{ (}\texttt{lr}\text{), }" in tex  # the instance's value
    tex = objs["layer"]._repr_latex_()
    assert r"&\checkmark\ \text{explicit 2×3 instance" in tex
    tex = objs["scalar"]._repr_latex_()
    assert r"&& \text{product}" in tex


def test_reprs_say_what_the_object_is(mlp):
    objs = _objects(mlp)
    assert repr(objs["scalar"]) == ("<Derivation d/dx x²·σ(x) = x²·σ(x)·(1 − σ(x)) + 2·x·σ(x); "
                                    "3 steps, verified>")
    assert repr(objs["layer"]).startswith("<LayerDerivation dense: Z = X Wᵀ + b; ∂L/∂W = δᵀ X")
    assert repr(objs["chain"]).startswith("<GraphDerivation ∂L/∂0.W = ∂L/∂loss · ∂loss/∂2.z · ")
    assert repr(objs["chain"]).endswith("…; 4 parameters (0.W, 0.b, 2.W, 2.b), 4 paths>")
    assert repr(objs["rule"]).startswith("<RuleDerivation adam (Adam): θₜ = θₜ₋₁ - α")
    _, g, L = mlp
    assert repr(g) == "<Graph 15 nodes; inputs x, y; 4 params; outputs L>"
    assert repr(grad(g, L)) == "<GradGraph of L: 0.W→d0.W, 0.b→d0.b, 2.W→d2.W, 2.b→d2.b; 28 nodes>"


def test_graphs_render_as_svg(mlp):
    _, g, L = mlp
    for obj in (g, grad(g, L), hvp_graph(g, L)):
        out = obj._repr_svg_()
        assert out.startswith("<?xml") and "<svg" in out and out == obj._repr_svg_()
        assert obj._repr_latex_() is None  # no rich output that is not there
    assert draw.svg(g, engine="matplotlib") == g._repr_svg_() or draw.shutil.which("dot")


def test_layers_follow_topological_generations(mlp):
    _, g, L = mlp
    rows = draw.layers(g)
    where = {n: i for i, row in enumerate(rows) for n in row}
    assert sorted(where) == sorted(g.nx) and rows[-1] == [L]
    for a, b in g.nx.edges:
        assert where[a] < where[b]
    assert where["0.W"] == where["0.Wt"] - 1  # a parameter sits just above its first consumer
    kinds = draw.node_kinds(grad(g, L))
    assert kinds["d0.W"] == "grad" and kinds["x"] == "input" and kinds["0.W"] == "param"
    assert kinds["1.tanh"] == "op"


def test_dot_text(mlp):
    _, g, L = mlp
    dot = draw.to_dot(g)
    assert dot.startswith('digraph "symdl" {') and dot.endswith("}\n")
    assert '"0.W" [label="0.W\\nparam (5, 4)", shape=box' in dot
    assert dot.count(" -> ") == g.nx.number_of_edges()
    g2 = Graph()
    x = g2.input("x", (2,))
    g2.add("mul", x, x, name="sq")  # one edge for x*x
    assert draw.to_dot(g2).count(" -> ") == 1
    with pytest.raises(symdl.errors.UsageError):
        draw.to_dot(42)


def test_history_table_and_plot():
    h = History([1.0, 0.5], [0.5, 0.75], [None, None], [None, None], [0.1, 0.2])
    html = h._repr_html_()
    assert html.count("<tr>") == 3 and "<th>train loss</th>" in html and "val loss" not in html
    assert "<td>0.75</td>" in html
    assert repr(h) == "<History 2 epochs: train_loss 1 → 0.5, train_accuracy 0.5 → 0.75>"
    fig = h.plot()
    assert [a.get_title() for a in fig.axes] == ["loss", "accuracy"]


def test_module_repr_is_one_line_or_one_layer_a_line():
    assert repr(make_model("mlp", 4, 3, (5,)).module) == \
        "Sequential(Dense(4, 5), Activation('relu'), Dense(5, 3))"
    long = repr(make_model("cnn", 64, 10).module)
    assert long.startswith("Sequential(\n  (0): ") and long.endswith("\n)")

    class Net(Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = Dense(3, 4), Dense(4, 2)

    assert repr(Net()) == "Net(a=Dense(3, 4), b=Dense(4, 2))"
    assert module_repr("M", [("a", "x\ny")]) == "M(\n  (a): x\n  y\n)"


def test_display_latex_normalises_printer_fragments():
    tex = display_latex("% t: T\n\\begin{align*}\na &= b \\\\\n\\intertext{c:}\nd &= e\n"
                        "\\end{align*}\nwhere $x = 1$ (\\texttt{x\\_y}).\n")
    assert tex == ("\\begin{align*}\n&\\textbf{t: T} \\\\\na &= b \\\\\n&\\text{c:} \\\\\n"
                   "d &= e \\\\\n"
                   "&\\text{where }x = 1\\text{ (}\\texttt{x\\_y}\\text{).}\n\\end{align*}")
    assert prose_latex("50% & {x}") == r"\text{50\% \& \{x\}}"
    assert display_latex("a &= b") == "\\begin{align*}\n&\\text{a \\&= b}\n\\end{align*}"


def test_a_graph_displays_itself_whatever_was_imported_first():
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    code = ("from symdl.graph import Graph\ng = Graph()\n"
            "g.add('tanh', g.input('x', (2,)), name='h')\n"
            "print(repr(g)); print(g._repr_svg_()[:5])")
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert out == "<Graph 2 nodes; inputs x; 0 params; outputs h>\n<?xml\n"


SCHEDULE_SPECS = ("constant", "step:step_size=10", "multistep:milestones=5;9",
                  "exponential:gamma=0.9",
                  "time:k=0.1", "linear", "cosine:T_max=50", "cosine_restarts:T_0=10",
                  "cyclic:max_lr=1", "warmup_cosine:warmup=5,T_max=50")
LAYER_NAMES = ("dense", "softmax", "softmax_cross_entropy", "l1", "l2", "mse", "tanh", "relu")


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_every_layer_derivation_in_the_house_style(name):
    _one_align(layer_derivation(name)._repr_latex_())


@pytest.mark.parametrize("name", ["conv2d", "maxpool", "batchnorm"])
def test_conv_layer_derivations_in_the_house_style(name):
    from symdl.derive.conv_layers import conv_layer_derivation
    d = conv_layer_derivation(name)
    _one_align(d._repr_latex_())
    assert repr(d).startswith(f"<LayerDerivation {name}: ")


@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw",
                                  "adamax", "nadam"])
def test_every_optimizer_rule_in_the_house_style(name):
    from symdl.optim import OPTIMIZERS
    from symdl.nn import Parameter
    opt = OPTIMIZERS[name]([Parameter(np.zeros(2), "w")])
    d = opt.derivation()
    _one_align(d._repr_latex_())
    assert repr(d).startswith(f"<RuleDerivation {name} (") and "θₜ = θₜ₋₁" in repr(d)


@pytest.mark.parametrize("spec", SCHEDULE_SPECS)
def test_every_schedule_in_the_house_style(spec):
    _one_align(make_schedule(spec, 0.1)._repr_latex_())


def test_an_optimizer_shows_its_rule(mlp):
    model, _, _ = mlp
    opt = Adam(list(model.parameters()), lr=0.03)
    tex = opt._repr_latex_()
    _one_align(tex)
    assert r"\alpha = 0.03" in tex and repr(opt).startswith("Adam(lr=0.03")
