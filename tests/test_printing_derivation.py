"""Printing expressions and derivations (symdl.printing) and the ``derive`` command."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest
import sympy as sp

from symdl.commands.derive import add_parser, format_error, run
from symdl.derive.opfuncs import op_function
from symdl.derive.parse import ParseError
from symdl.derive.steps import derive
from symdl.errors import UsageError
from symdl.printing import (FORMATS, derivation_dict, derivation_json, derivation_latex,
                            derivation_markdown, derivation_text, latex, render, text)

x, z = sp.symbols("x z", real=True)
sigmoid, softplus, relu = (op_function(n) for n in ("sigmoid", "softplus", "relu"))


# ------------------------------------------------------ expressions
@pytest.mark.parametrize("expr, expected", [
    (sigmoid(z) * (1 - sigmoid(z)), "σ(z)·(1 − σ(z))"),
    (1 - sp.tanh(z) ** 2, "1 − tanh²(z)"),
    (sigmoid(x) ** 2, "σ²(z)".replace("z", "x")),
    (sp.exp(-z) / (1 + sp.exp(-z)) ** 2, "e^(−z)/(1 + e^(−z))²"),
    (sp.Heaviside(x), "𝟙[x > 0]"),
    (sp.Piecewise((1, x > 0), (0, True)), "𝟙[x > 0]"),
    (sp.Symbol("alpha") * sp.Symbol("beta1") + sp.Symbol("lambda"), "α·β₁ + λ"),
    (sp.Abs(x) / 2, "|x|/2"),
    (sp.sqrt(x), "√x"),
    (x ** sp.Rational(3, 2), "x^(3/2)"),
    (sp.Derivative(x**2, x), "d/dx[x²]"),
])
def test_text(expr, expected):
    assert text(expr) == expected


@pytest.mark.parametrize("expr, expected", [
    (sigmoid(x) ** 2, r"\sigma^{2}\left(x\right)"),  # exp= honoured
    (sigmoid(x), r"\sigma\left(x\right)"),
    (softplus(x), r"\operatorname{softplus}\left(x\right)"),
    (relu(x) ** 3, r"\operatorname{ReLU}^{3}\left(x\right)"),
    (sp.Heaviside(x), r"\mathbf{1}\left[x > 0\right]"),
    (sp.Piecewise((1, x > 0), (0, True)), r"\mathbf{1}\left[x > 0\right]"),
    (sp.Symbol("alpha"), r"\alpha"),
    (sp.Symbol("lambda"), r"\lambda"),
    (sp.Symbol("gamma"), r"\gamma"),
    (sigmoid(z) * (1 - sigmoid(z)), r"\sigma\left(z\right) \left(1 - \sigma\left(z\right)\right)"),
])
def test_latex(expr, expected):
    assert latex(expr) == expected


def test_heaviside_is_not_theta():
    assert r"\theta" not in latex(derive("max(x, 0)").result)


def test_op_names_in_printing():
    assert latex(op_function("gelu_tanh")(x)).startswith(r"\operatorname{GELU}_{\tanh}")
    assert latex(op_function("mse")(x, z)).startswith(r"\operatorname{mse}")
    assert text(softplus(x)) == "softplus(x)"


# ------------------------------------------------------ derivations
RULES = ["chain (power)", "sum", "constant", "chain (exp)", "constant multiple", "identity",
         "rewrite in terms of the output"]


@pytest.fixture(scope="module")
def dv():
    return derive("1/(1+exp(-z))")


def test_derivation_rules(dv):
    assert [s.rule for s in dv.steps] == RULES


def test_text_derivation(dv):
    out = derivation_text(dv)
    lines = out.split("\n")
    assert lines[0] == "d/dz[1/(1 + e^(−z))]"
    assert lines[-1].startswith("  = σ(z)·(1 − σ(z))")
    assert all(f"[{r}" in out for r in RULES)
    assert "u = 1 + e^(−z)" in out
    assert str(dv) == out


def test_latex_derivation(dv):
    out = derivation_latex(dv)
    assert out.startswith("\\begin{align*}\n") and out.endswith("\n\\end{align*}")
    for r in RULES:
        assert r"\text{%s}" % r in out
    assert out.count(r"\\") == len(dv.steps) - 1
    assert out.count("&=") == len(dv.steps)
    assert r"u = 1 + e^{- z}" in out
    assert dv._repr_latex_() == out


def test_markdown_derivation(dv):
    out = derivation_markdown(dv)
    assert out.startswith("#### Derivative of $")
    for i, r in enumerate(RULES, 1):
        assert f"{i}. _{r}_" in out
    assert "Result: $" in out and "*" not in out  # no Markdown bold: no asterisks at all


def test_json_derivation(dv):
    data = json.loads(derivation_json(dv))
    assert {"input", "wrt", "result", "result_latex", "steps", "verified"} <= set(data)
    assert data["wrt"] == "z" and data["verified"] is True
    assert data["result"] == sp.sstr(dv.result) == "(1 - sigmoid(z))*sigmoid(z)"
    assert data["result_latex"] == latex(dv.result)
    for s, step in zip(data["steps"], dv.steps):
        assert {"rule", "expr", "latex", "verified"} <= set(s)
        assert s["rule"] == step.rule and s["expr"] == sp.sstr(step.after)
        assert s["verified"] is True
    assert data == derivation_dict(dv)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_deterministic_in_process(fmt):
    a = render(derive("log(x**2+1)*tanh(3*x) + sigmoid(beta1*x)", "x"), fmt)
    b = render(derive("log(x**2+1)*tanh(3*x) + sigmoid(beta1*x)", "x"), fmt)
    assert a == b and a.encode() == b.encode()


def test_deterministic_across_processes():
    code = ("from symdl.printing import render; from symdl.derive.steps import derive\n"
            "d = derive('x**2*sigmoid(x)*tanh(alpha*x) + max(x, 0) + abs(x - t)', 'x')\n"
            "import sys; sys.stdout.buffer.write(''.join(render(d, f) for f in "
            "('text', 'latex', 'markdown', 'json')).encode())")
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.append(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                   capture_output=True).stdout)
    assert outs[0] == outs[1] and outs[0]


def test_unknown_format(dv):
    with pytest.raises(ValueError):
        render(dv, "html")


# ------------------------------------------------------ the derive command
@pytest.fixture()
def cli():
    parser = argparse.ArgumentParser(prog="symdl")
    add_parser(parser.add_subparsers(dest="command"))
    return parser


def test_cli_text(cli, capsys):
    args = cli.parse_args(["derive", "1/(1+exp(-z))"])
    assert args.run is run and run(args) == 0
    out = capsys.readouterr().out
    assert "σ(z)·(1 − σ(z))" in out and out.endswith("\n")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_cli_formats(cli, capsys, fmt):
    assert run(cli.parse_args(["derive", "(x-t)**2", "--wrt", "x", "--format", fmt])) == 0
    out = capsys.readouterr().out
    assert out == render(derive("(x-t)**2", "x"), fmt).rstrip("\n") + "\n"
    if fmt == "json":
        assert json.loads(out)["result"] == "-2*t + 2*x"


def test_cli_needs_wrt_with_several_variables(cli):
    with pytest.raises(UsageError, match=r"several variables \(t, x\).*--wrt") as info:
        run(cli.parse_args(["derive", "(x-t)**2"]))
    assert info.value.exit_code == 2


def test_cli_bad_wrt(cli):
    with pytest.raises(UsageError, match="constant pi"):
        run(cli.parse_args(["derive", "x", "--wrt", "pi"]))
    with pytest.raises(UsageError, match="variable name"):
        run(cli.parse_args(["derive", "x", "--wrt", "x.y"]))


def test_cli_parse_error_and_caret(cli):
    with pytest.raises(ParseError) as info:
        run(cli.parse_args(["derive", "exp(x).real"]))
    assert info.value.exit_code == 2
    assert format_error(info.value) == ("attribute access is not allowed (column 8)\n"
                                        "  exp(x).real\n"
                                        "         ^")
    assert format_error(info.value, "exp(x).real") == format_error(info.value)
    assert format_error(UsageError("plain")) == "plain"
    assert info.value.cli_detail == "  exp(x).real\n         ^"


def test_cli_help_has_example(cli, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["derive", "--help"])
    out = capsys.readouterr().out
    assert "--wrt VAR" in out and "--format" in out and 'symdl derive "1/(1+exp(-z))"' in out
