"""Every command's human-readable output is printed by symdl's printers: no Python leaks.

Runs the commands in-process (``symdl.cli.main``) and scans what a reader sees (text,
LaTeX, Markdown, and the human-readable fields of JSON) for Python and SymPy syntax:
``*`` and ``**``, ``Piecewise``, ``Heaviside``, ``DiracDelta``, raw tuples ``('N',)``, and
graph node ids used as mathematical symbols (``0.W``, ``2.xWt``, ``hW2t``).  The graph
listing (``symdl graph``) is a listing of the IR: there node ids are the point, so only
the Python syntax is looked for.
"""
from __future__ import annotations

import json
import re

import pytest

from symdl.cli import build_parser, main
from symdl.derive.conv_layers import CONV_LAYERS
from symdl.derive.layers import LAYERS
from symdl.ops import OPS
from symdl.optim import OPTIMIZERS
from symdl.optim.schedules import SCHEDULES

FORBIDDEN = ("*", "Piecewise", "Heaviside", "DiracDelta", "Symbol(", "Float(")
#: a Python tuple of strings: ``('N',)``, ``('1/count', ('N',), None)`` (a module's repr
#: such as ``Activation('relu')`` is a call, not a tuple)
TUPLE = re.compile(r"\('[^']*',")
#: LaTeX environment names may end in * (``align*``): not maths
_ENV = re.compile(r"\\(?:begin|end)\{\w+\*\}")
#: node ids as maths: ``0.W``, ``4.block.0.bias``, ``2.xWt``; fused names such as ``hW2t``
NODE_ID = re.compile(r"(?<![\w.])\d+\.(?:[A-Za-z_]\w*)(?:\.\w+)*|\b(?:x|h)W\d*t\b|\bWt\b")
#: JSON keys whose values are for machines (SymPy source, node ids, op names)
MACHINE_KEYS = {"input", "result", "expr", "u", "node", "arg", "op", "kind", "path", "loss",
                "shape", "method", "wrt", "value", "upstream", "verified"}

MLP = ["--dataset", "xor", "--hidden", "2"]
CNN = ["--model", "cnn", "--channels", "2", "--dataset", "digits"]
ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "elu", "gelu", "softplus")
EXPRESSIONS = ("tan(x)", "cot(x)", "asec(x)", "log(x, 2)", "x**x", "relu(x)",
               "leaky_relu(x, alpha)", "max(x, 0)", "abs(x)**3", "x/(1+abs(x))",
               "(exp(z)-exp(-z))/(exp(z)+exp(-z))", "1/(1+exp(-z))", "bce_logits(z, t)",
               "(w*x + b - y)**2/2", "elu(x)", "gelu(x)", "step(x)")
FORMATS = ("text", "latex", "markdown", "json")


def run(capsys, *argv) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, (argv, err)
    return out


def human(out: str, fmt: str) -> str:
    """The part of ``out`` a reader sees: JSON reduced to its human-readable strings."""
    if fmt != "json":
        return out
    parts = []

    def walk(v, key=None):
        if key in MACHINE_KEYS:
            return
        if isinstance(v, dict):
            for k, w in v.items():
                walk(w, k)
        elif isinstance(v, list):
            for w in v:
                walk(w, key)
        elif isinstance(v, str):
            parts.append(v)

    walk(json.loads(out))
    return "\n".join(parts)


def assert_clean(text: str, what, ids: bool = True) -> None:
    text = _ENV.sub("", text)
    for bad in FORBIDDEN:
        assert bad not in text, f"{what}: {bad!r} in\n{_around(text, bad)}"
    m = TUPLE.search(text)
    assert m is None, f"{what}: a Python tuple in\n{_around(text, m.group())}"
    if ids:
        m = NODE_ID.search(text)
        assert m is None, f"{what}: node id {m.group()!r} in\n{_around(text, m.group())}"


def _around(text: str, bad: str) -> str:
    i = text.index(bad)
    return text[max(0, i - 200):i + 200]


# ------------------------------------------------------------------ derive
@pytest.mark.parametrize("expr", EXPRESSIONS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_derive(capsys, expr, fmt):
    wrt = "z" if "z" in expr else "w" if "w" in expr else "x"
    for steps in ("full", "brief"):
        out = run(capsys, "derive", "--format", fmt, "--wrt", wrt, "--steps", steps, "--", expr)
        assert_clean(human(out, fmt), (expr, fmt, steps))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_derive_optimizer(capsys, name):
    for fmt in ("text", "latex"):
        assert_clean(run(capsys, "derive", "--optimizer", name, "--format", fmt), (name, fmt))


SCHEDULE_ARGS = {"step": "step_size=10", "multistep": "milestones=10", "exponential": "gamma=0.9",
                 "time": "k=0.1", "cosine": "T_max=10", "cosine_restarts": "T_0=10",
                 "cyclic": "max_lr=0.1", "warmup_cosine": "warmup=5,T_max=50"}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_derive_schedule(capsys, name):
    spec = f"{name}:{SCHEDULE_ARGS[name]}" if name in SCHEDULE_ARGS else name
    for fmt in ("text", "latex"):
        assert_clean(run(capsys, "derive", "--schedule", spec, "--format", fmt), (spec, fmt))


# ------------------------------------------------------------------ explain
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_explain_mlp(capsys, fmt, activation):
    out = run(capsys, "explain", *MLP, "--activation", activation, "--numeric", "--format", fmt)
    if fmt == "json":  # the chains, then the worked backprop: two JSON documents
        first, _, rest = out.partition("\n}\n")
        out = first + "\n}\n"
        if rest.strip():
            human(rest, "json")  # still valid JSON
    assert_clean(human(out, fmt), (activation, fmt))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("model", ("logreg", "perceptron"))
def test_explain_linear_models(capsys, fmt, model):
    out = run(capsys, "explain", "--model", model, "--dataset", "xor", "--format", fmt)
    assert_clean(human(out, fmt), (model, fmt))


@pytest.mark.parametrize("fmt", ("text", "latex", "markdown"))
def test_explain_cnn(capsys, fmt):
    out = run(capsys, "explain", *CNN, "--norm", "batch", "--param", "1.weight", "--numeric",
              "--format", fmt)
    assert_clean(out, ("cnn", fmt))


ACTS = sorted(o.name for o in OPS.declared("elementwise") if o.arity == 1 and not o.derived_from)


@pytest.mark.parametrize("layer", LAYERS + CONV_LAYERS + tuple(ACTS))
def test_explain_layer(capsys, layer):
    for fmt in FORMATS:
        out = run(capsys, "explain", "--layer", layer, "--format", fmt)
        assert_clean(human(out, fmt), (layer, fmt))


# ------------------------------------------------------------------ graph, summary, help
@pytest.mark.parametrize("argv", [MLP, MLP + ["--no-grad"], CNN + ["--no-grad"]])
def test_graph_listing(capsys, argv):
    assert_clean(run(capsys, "graph", *argv), argv, ids=False)


@pytest.mark.parametrize("argv", [MLP, CNN + ["--norm", "layer", "--residual"]])
def test_summary(capsys, argv):
    assert_clean(run(capsys, "summary", *argv), argv, ids=False)


def _commands() -> list:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices) + [None]


@pytest.mark.parametrize("command", _commands())
def test_help_texts(capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"] if command else ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out  # * and ** are the input syntax derive's help describes
    assert_clean(out.replace("*", "") if command == "derive" else out, command, ids=False)
