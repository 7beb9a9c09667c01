"""Malformed, malicious and unbounded expressions given to ``symdl derive``: exit 2, nothing run,
never a traceback, a wrong result or minutes of work."""
from __future__ import annotations

import time

import pytest

from symdl.cli import main
from symdl.derive.steps import derive
from symdl.errors import UsageError

CASES = [
    ("__import__('os').system('touch pwned')", "attribute access is not allowed"),
    ("__import__('os')", "unknown function '__import__'"),
    ("().__class__", "column"),
    ("x.real", "attribute access is not allowed"),
    ("lambda: 0", "column"),
    ("[x for x in y]", "column"),
    ("'text'", "column"),
    ("x[0]", "column"),
    ("f(**k)", "column"),
    ("open('f')", "unknown function 'open'"),
    ("x +", "column"),
    ("x" + "+x" * 1500, "long"),
    ("(" * 60 + "x" + ")" * 60, "deep"),
    ("swish(x)", "unknown function 'swish'"),
]


@pytest.mark.parametrize("expr, fragment", CASES)
def test_bad_expression_exits_2_and_runs_nothing(capsys, tmp_path, monkeypatch, expr, fragment):
    monkeypatch.chdir(tmp_path)
    code = main(["derive", expr])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("symdl: error: ") and fragment in err
    assert list(tmp_path.iterdir()) == []  # nothing executed, nothing written


def test_several_variables_need_wrt(capsys):
    assert main(["derive", "x*y"]) == 2
    assert "several variables" in capsys.readouterr().err
    assert main(["derive", "x*y", "--wrt", "y"]) == 0


# ---------------------------------------------- issue 12: values, size, time
def run(capsys, *argv):
    try:
        code = main(["derive", *argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["oo", "nan", "NaN", "zoo", "inf", "Infinity", "I"])
def test_infinities_nan_and_i_are_not_variable_names(capsys, name):
    code, out, err = run(capsys, f"x*{name}", "--wrt", "x")
    assert code == 2 and out == ""
    assert f"{name} is not a variable name here" in err.splitlines()[0]


@pytest.mark.parametrize("expr, fragment", [
    ("1/0", "not finite: division by zero"),
    ("x/(2 - 2)", "not finite: division by zero"),
    ("log(0)*x", "not finite"),
    ("sqrt(-1)*x", "not real: sqrt(-1) = I"),
    ("x*log(-2)", "not real: log(-2)"),
    ("x*sigmoid(exp(exp(exp(3))))", "number out of range"),      # ran past 300 s, 324 MB
    ("x*sigmoid(exp(exp(exp(exp(2)))))", "number out of range"),  # KeyError: 'zero'
])
def test_constants_must_be_finite_and_real(capsys, expr, fragment):
    code, out, err = run(capsys, expr)
    assert code == 2 and out == ""
    assert err.startswith("symdl: error: ") and fragment in err.splitlines()[0]


@pytest.mark.parametrize("expr", ["abs(sqrt(x))", "abs(log(x))", "abs(3 + sqrt(x))",
                                  "relu(x**(1/3))", "max(1, sqrt(x))"])
def test_a_kink_of_a_value_complex_somewhere_is_refused(capsys, expr):
    """abs(sqrt(x)) gave 0.5 at x = -1 where SymPy gives -0.5 ("not verified", exit 0)."""
    code, out, err = run(capsys, expr)
    assert code == 2 and out == ""
    assert "needs a real argument" in err and "is not real at x = -" in err


def test_a_real_argument_of_a_kink_is_still_fine(capsys):
    for expr in ["abs(sqrt(x**2 + 1))", "relu(y/x)", "abs(log(sigmoid(x)))"]:
        code, out, err = run(capsys, expr, "--wrt", "x")
        assert code == 0, (expr, err)


@pytest.mark.parametrize("expr", ["(x ** (1 / x + exp(x + 10))) ** y",
                                  "10 / sigmoid((sin(x) ** x) ** log(0 - y))"])
def test_huge_values_at_spot_checks_are_no_traceback(capsys, expr):
    """spot_check compared outside its try: OverflowError, exit 1."""
    code, out, err = run(capsys, expr, "--wrt", "x", "--format", "json")
    assert code == 0, err
    assert '"verified": true' in out


def _product(n):
    return "*".join(f"sin({k}*x)" for k in range(1, n + 1))


def _quotient(n):
    return "/".join(f"(x+{k})" for k in range(1, n + 1))


@pytest.mark.parametrize("expr, limit", [(_product(119), None), (_quotient(199), "2")])
def test_long_derivations_stop_with_too_large(capsys, expr, limit):
    """A 119-factor product of sines ran 28 s, a 199-factor quotient 89 s."""
    t0 = time.monotonic()
    code, out, err = run(capsys, expr, *(["--time-limit", limit] if limit else []))
    assert time.monotonic() - t0 < 20
    assert code == 2 and out == ""
    assert err.startswith("symdl: error: too large to derive") and len(err.splitlines()) == 1
    if limit:
        assert "in 2 s" in err


def test_the_python_entry_is_bounded_too():
    with pytest.raises(UsageError, match="too large to derive in 0.5 s"):
        derive(_quotient(199), "x", time_limit=0.5)


@pytest.mark.parametrize("expr", ["-x**2", "-2*x"])
def test_a_leading_minus_says_to_use_double_dash(capsys, expr):
    code, out, err = run(capsys, expr)
    assert code == 2
    assert f'needs -- before it: symdl derive -- "{expr}"' in err
    assert run(capsys, "--", expr)[0] == 0


def test_an_unverifiable_result_is_not_exit_0(capsys):
    """Undefined at almost every point (0**sinh(y) is 0 or zoo): shown, marked, exit 2."""
    expr = "hinge(mse(1/3, pi)/bce_logits(x, x), -mse(x, e))/min(-cos(3), 0**sinh(y))"
    code, out, err = run(capsys, expr, "--wrt", "x")
    assert code == 2 and "not verified" in out
    assert "could not be verified against SymPy's diff" in err
