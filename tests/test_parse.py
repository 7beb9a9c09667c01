"""The safe expression parser (symdl.derive.parse): allowlist, limits, errors."""
from __future__ import annotations

import builtins

import pytest
import sympy as sp

from symdl.derive.opfuncs import OpFunctionBase, op_function
from symdl.derive.parse import MAX_DEPTH, MAX_LENGTH, ParseError, format_caret, parse
from symdl.errors import SymdlError, UsageError

x, y, z, t = sp.symbols("x y z t", real=True)


def sym(name):
    return sp.Symbol(name, real=True)


# ------------------------------------------------------ accepted input
@pytest.mark.parametrize("src, expected", [
    ("1/(1+exp(-z))", 1 / (1 + sp.exp(-z))),
    ("x**2 - 3*x + 1", x**2 - 3 * x + 1),
    ("-x", -x),
    ("+x", x),
    ("-+-x", x),
    ("2**10", sp.Integer(1024)),
    ("x - y - z", x - y - z),
    ("x / y / z", x / y / z),
    ("x**y**z", x ** (y**z)),
    ("sqrt(x) + abs(y)", sp.sqrt(x) + sp.Abs(y)),
    ("sin(x)*cos(x)*tan(x)", sp.sin(x) * sp.cos(x) * sp.tan(x)),
    ("sinh(x) + cosh(x) + tanh(x) + erf(x)", sp.sinh(x) + sp.cosh(x) + sp.tanh(x) + sp.erf(x)),
    ("max(x, 0) + min(x, y, 1)", sp.Max(x, 0) + sp.Min(x, y, 1)),
    ("log(x)", sp.log(x)),
    ("  x**2  ", x**2),
    ("pi*x + e**x", sp.pi * x + sp.exp(x)),
    ("0.5*x", sp.Float(0.5) * x),
])
def test_accepted(src, expected):
    assert parse(src) == expected


def test_free_names_are_real_symbols():
    e = parse("beta1*gamma*lambda*E*N*alpha_2")
    names = {s.name for s in e.free_symbols}
    assert names == {"beta1", "gamma", "lambda", "E", "N", "alpha_2"}
    assert all(s.is_real for s in e.free_symbols)
    assert parse("E") == sym("E") and parse("E") != sp.E
    assert parse("gamma") == sym("gamma")


def test_lambda_is_a_symbol_but_lambdas_are_refused():
    assert parse("lambda**2 + lambda*x") == sym("lambda") ** 2 + sym("lambda") * x
    with pytest.raises(ParseError, match="lambdas are not allowed"):
        parse("lambda: 0")


def test_op_calls_are_op_functions():
    e = parse("sigmoid(z)")
    assert isinstance(e, OpFunctionBase) and e == op_function("sigmoid")(z)
    assert parse("leaky_relu(x, 0.2)").args == (x, sp.Float(0.2))
    assert parse("leaky_relu(x)").expansion() == sp.Piecewise((x, x > 0), (x / 100, True))
    assert parse("mse(x, t)").expansion() == (x - t) ** 2


def test_long_flat_sum_is_not_deep():
    assert parse("+".join(["x"] * 900)) == 900 * x


# ------------------------------------------------------ refused input
INJECTIONS = [
    ("__import__('os')", 1),
    ("().__class__", 4),
    ("x.__class__.__bases__", 13),
    ("lambda: 0", 1),
    ("(lambda: 0)()", 2),
    ("[x for x in y]", 1),
    ("{x for x in y}", 1),
    ("(x for x in y)", 1),
    ("'s'", 1),
    ("b'x'", 1),
    ("f'{x}'", 1),
    ("x.y", 3),
    ("x[0]", 3),
    ("f(**k)", 1),
    ("exp(**k)", 5),
    ("exp(*k)", 5),
    ("exp(x=1)", 5),
    ("open('f')", 1),
    ("getattr(x, 'y')", 1),
    ("(x := 1)", 2),
    ("x if y else z", 1),
    ("x < y", 1),
    ("x and y", 1),
    ("not x", 1),
    ("~x", 1),
    ("x % 2", 5),
    ("x // 2", 6),
    ("x @ y", 5),
    ("[x]", 1),
    ("(x, y)", 1),
    ("{}", 1),
    ("True", 1),
    ("None", 1),
    ("2j", 1),
    ("x; y", 2),
    ("import os", 1),
    ("_x", 1),
    ("exp", 1),
    ("exp(x, y)", 1),
    ("relu()", 1),
    ("x\ny", 2),
    ("1/0", 3),
    ("log(0)", 1),
    ("9**9**9**9", 7),
    ("x**100000", 4),
    ("1e999", 1),
    ("", 1),
]


@pytest.mark.parametrize("src, column", INJECTIONS)
def test_refused_with_column(src, column):
    with pytest.raises(ParseError) as info:
        parse(src)
    exc = info.value
    assert exc.column == column
    assert "\n" not in str(exc) and f"column {column}" in str(exc)
    assert isinstance(exc, UsageError) and isinstance(exc, SymdlError) and exc.exit_code == 2
    assert exc.text == src


def test_too_long():
    with pytest.raises(ParseError, match=f"longer than {MAX_LENGTH}") as info:
        parse("x" * (MAX_LENGTH + 1))
    assert info.value.column == MAX_LENGTH + 1
    parse("x+" * ((MAX_LENGTH - 1) // 2) + "x")  # at the limit: fine


@pytest.mark.parametrize("src", [
    "(" * (MAX_DEPTH + 10) + "x" + ")" * (MAX_DEPTH + 10),
    "exp(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1),
    "-" * 1500 + "x",
    "x**" * 100 + "x",
])
def test_too_deep(src):
    with pytest.raises(ParseError, match="deeper than") as info:
        parse(src)
    assert info.value.column >= 1


def test_nothing_is_executed(tmp_path, monkeypatch):
    """Injection attempts neither run nor reach eval/exec/parse_expr/sympify of text."""
    import sympy.parsing.sympy_parser as sympy_parser

    def banned(*args, **kwargs):
        raise AssertionError("user text reached an evaluator")

    monkeypatch.setattr(builtins, "eval", banned)
    monkeypatch.setattr(builtins, "exec", banned)
    monkeypatch.setattr(sympy_parser, "parse_expr", banned)
    target = tmp_path / "pwned"
    for src in (f"__import__('os').system('touch {target}')",
                f"open('{target}', 'w')",
                "().__class__.__base__.__subclasses__()",
                f"[__import__('os').system('touch {target}') for _ in (1,)]",
                f"(lambda: __import__('os').system('touch {target}'))()",
                f"exp(**{{'x': __import__('os').system('touch {target}')}})"):
        with pytest.raises(ParseError):
            parse(src)
    assert not target.exists()
    assert parse("sigmoid(x)**2") == op_function("sigmoid")(x) ** 2  # still works


def test_column_counts_characters_not_bytes():
    with pytest.raises(ParseError) as info:
        parse("αβ.x")  # the attribute name x is the 4th character (6th byte)
    assert info.value.column == 4
    with pytest.raises(ParseError) as info:
        parse("   y.z")  # leading blanks count
    assert info.value.column == 6


def test_unknown_function_lists_known():
    with pytest.raises(ParseError, match="unknown function 'foo'.*sigmoid"):
        parse("foo(x)")


def test_not_text():
    with pytest.raises(ParseError):
        parse(42)


# ------------------------------------------------------ caret
def test_format_caret():
    assert format_caret("x + y.z", 7) == "  x + y.z\n        ^"
    long = "x+" * 200 + "x.y"
    lines = format_caret(long, len(long)).split("\n")
    assert len(lines) == 2 and len(lines[0]) < 90
    assert lines[0][lines[1].index("^")] == "y"
