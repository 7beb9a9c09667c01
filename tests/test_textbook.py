"""``symdl derive`` reaches the textbook result: equal by SymPy, and in the textbook's form.

Each case runs the command in-process and checks three things: the printed final line
is the expected text (the form: ``sec²(x)``, ``1 − tanh²(z)``, ``σ(z) − t``); the
result is exactly the expected SymPy tree; and ``sympy.simplify`` finds it equal to
SymPy's own derivative of the input.  Every step of every derivation is verified.
"""
from __future__ import annotations

import json

import pytest
import sympy as sp

from symdl.cli import main
from symdl.derive.opfuncs import expand_ops, op_function
from symdl.derive.parse import parse
from symdl.derive.steps import derive
from symdl.derive.textbook import REWRITES, Rewrite, RewriteError, textbook_steps
from symdl.errors import UsageError

x, z, t, w, b, y = sp.symbols("x z t w b y", real=True)
sigma = op_function("sigmoid")
SEEDS_LOSS = "(w*x + b - y)**2/2"  # ½(f(x) − y)² for the seeds' model f(x) = w·x + b

#: input, variable, expected result, expected printed result
CASES = [
    ("sin(x)", "x", sp.cos(x), "cos(x)"),
    ("cos(x)", "x", -sp.sin(x), "−sin(x)"),
    ("tan(x)", "x", sp.sec(x) ** 2, "sec²(x)"),
    ("cot(x)", "x", -sp.csc(x) ** 2, "−csc²(x)"),
    ("sec(x)", "x", sp.sec(x) * sp.tan(x), "tan(x)·sec(x)"),
    ("csc(x)", "x", -sp.csc(x) * sp.cot(x), "−cot(x)·csc(x)"),
    ("asin(x)", "x", 1 / sp.sqrt(1 - x**2), "1/√(1 − x²)"),
    ("acos(x)", "x", -1 / sp.sqrt(1 - x**2), "−1/√(1 − x²)"),
    ("atan(x)", "x", 1 / (1 + x**2), "1/(x² + 1)"),
    ("sinh(x)", "x", sp.cosh(x), "cosh(x)"),
    ("cosh(x)", "x", sp.sinh(x), "sinh(x)"),
    ("(exp(z)-exp(-z))/(exp(z)+exp(-z))", "z", 1 - sp.tanh(z) ** 2, "1 − tanh²(z)"),
    ("1/(1+exp(-z))", "z", sigma(z) * (1 - sigma(z)), "σ(z)·(1 − σ(z))"),
    ("x/(1+abs(x))", "x", 1 / (1 + sp.Abs(x)) ** 2, "1/(|x| + 1)²"),
    ("softsign(x)", "x", 1 / (1 + sp.Abs(x)) ** 2, "1/(|x| + 1)²"),
    ("log(1+exp(x))", "x", sigma(x), "σ(x)"),
    ("softplus(x)", "x", sigma(x), "σ(x)"),
    ("bce_logits(z, t)", "z", sigma(z) - t, "σ(z) − t"),
    ("-(t*log(sigmoid(z)) + (1-t)*log(1-sigmoid(z)))", "z", sigma(z) - t, "σ(z) − t"),
    ("t*log(1+exp(-z)) + (1-t)*log(1+exp(z))", "z", sigma(z) - t, "σ(z) − t"),
    (SEEDS_LOSS, "w", (w * x + b - y) * x, "x·(b + w·x − y)"),
    (SEEDS_LOSS, "b", w * x + b - y, "b + w·x − y"),
]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_line(out: str) -> str:
    """The expression on the derivation's last line (without ``=`` and the rule)."""
    line = out.rstrip("\n").splitlines()[-1]
    return line.strip().removeprefix("= ").rsplit("   [", 1)[0].strip()


@pytest.mark.parametrize("src, var, want, printed", CASES, ids=[f"{c[0]} d{c[1]}" for c in CASES])
def test_textbook_result(capsys, src, var, want, printed):
    for steps in ("full", "brief"):
        code, out, err = run(capsys, "derive", "--wrt", var, "--steps", steps, "--", src)
        assert code == 0, err
        assert last_line(out) == printed, out
    code, out, _ = run(capsys, "derive", "--wrt", var, "--format", "json", "--", src)
    doc = json.loads(out)
    assert doc["verified"] and all(s["verified"] for s in doc["steps"])
    assert doc["result_text"] == printed
    dv = derive(src, var)
    assert dv.all_verified
    assert dv.result == want  # the same tree, not only an equal value
    v = sp.Symbol(var, real=True)
    assert sp.simplify(expand_ops(dv.result) - sp.diff(expand_ops(parse(src)), v)) == 0


def test_tan_names_the_identity_and_the_other_form():
    dv = derive("tan(x)")
    assert [s.rule for s in dv.steps] == ["trig", "1 + tan² = sec²"]
    assert dv.steps[0].after == 1 + sp.tan(x) ** 2 and "1 + tan²u" in dv.steps[1].note
    assert "d/du tan(u) = sec²(u)" in dv.steps[0].note


def test_tanh_from_exponentials_splits_then_recognises():
    dv = derive("(exp(z)-exp(-z))/(exp(z)+exp(-z))")
    assert [s.rule for s in dv.steps][-2:] == ["split the fraction", "recognise tanh"]
    assert dv.steps[-1].before == 1 - (sp.exp(z) - sp.exp(-z)) ** 2 / (sp.exp(z) + sp.exp(-z)) ** 2


def test_brief_folds_the_rules_and_keeps_the_rewrites(capsys):
    src = "(exp(z)-exp(-z))/(exp(z)+exp(-z))"
    code, out, _ = run(capsys, "derive", "--steps", "brief", "--", src)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4
    assert "[rules: quotient, sum" in lines[1] and "[split the fraction]" in lines[2]
    full = derive("(exp(z)-exp(-z))/(exp(z)+exp(-z))")
    brief = full.brief()
    assert brief.steps[0].before == full.steps[0].before and brief.result == full.result
    assert len(brief.steps) == 3 and all(s.verified for s in brief.steps)


ELEMENTARY = ["cot(x)", "sec(x)", "csc(x)", "acot(x)", "asec(x)", "acsc(x)", "asinh(x)",
              "acosh(x)", "atanh(x)", "acoth(x)", "coth(x)", "sech(x)", "csch(x)", "log(x, 2)",
              "ln(x)", "cbrt(x)", "root(x, 5)", "x**n", "a**x", "x**x", "sqrt(x)*abs(x)",
              "exp(atan(x)**2)", "log(asin(x), 10)"]


def sympy_equal(a, b) -> bool:
    """``simplify(a − b) == 0``, or on each side of 0 where ``|x|``/``sign(x)`` resolve
    (equal wherever both are defined: ``x²·√(1 − 1/x²) = |x|·√(x² − 1)``)."""
    if sp.simplify(a - b) == 0:
        return True
    p = sp.Symbol("p", positive=True)
    return all(sp.simplify((a - b).xreplace({x: k * p})) == 0 for k in (1, -1))


@pytest.mark.parametrize("src", ELEMENTARY)
def test_every_elementary_function_derives_with_named_rules(src):
    dv = derive(src, "x")
    assert dv.all_verified and "sympy" not in {s.rule for s in dv.steps}
    assert sympy_equal(expand_ops(dv.result), sp.diff(parse(src), x))


def test_log_base_and_root_arguments_are_checked():
    assert parse("log(x, 2)") == sp.log(x) / sp.log(2)
    for bad in ("log(x, 1)", "log(x, -2)", "log(x, 0)", "root(x, 0)", "root(x)", "sin(x, 2)"):
        with pytest.raises(UsageError):
            parse(bad)


def test_a_rewrite_that_does_not_verify_is_an_internal_error():
    wrong = Rewrite("wrong", lambda e: sp.sin(x) if e == sp.cos(x) else None, "not an identity")
    with pytest.raises(RewriteError, match="internal error.*'wrong'"):
        textbook_steps(sp.cos(x) + 1, (wrong,))
    assert RewriteError.exit_code == 1  # not a usage error: a bug, never printed as a result


def test_rewrites_are_a_table():
    assert all(isinstance(r, Rewrite) and r.name and r.note for r in REWRITES)
    assert len({r.name for r in REWRITES}) == len(REWRITES)
