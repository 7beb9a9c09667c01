"""``symdl derive`` on 300 random expressions over the registry's functions (Hypothesis).

Each ends in exit 0 with a result verified against, and equal to, SymPy's
``diff`` of the input (op calls expanded to their declarations), or in exit 2
with a one-line reason; never a traceback, never a wrong result, never more
than 20 s.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import time

import mpmath
import sympy as sp
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from symdl.cli import main
from symdl.derive.opfuncs import ELEMENTARY, expand_ops, op_function, op_names
from symdl.derive.parse import parse
from symdl.ops import OPS

X, Y = sp.Symbol("x", real=True), sp.Symbol("y", real=True)
UNARY = sorted(n for n in ELEMENTARY if n not in ("max", "min")) + \
    [n for n in op_names() if OPS[n].arity == 1]
BINARY = ["max", "min"] + [n for n in op_names() if OPS[n].arity == 2]
LEAVES = st.sampled_from(["x", "x", "x", "y", "0", "1", "2", "3", "-1", "0.5", "(1/3)", "pi", "e"])


@st.composite
def expressions(draw, depth: int = 4) -> str:
    """An expression over the registry's functions, up to ``depth`` levels deep."""
    if depth == 0 or draw(st.integers(0, 4)) == 0:
        return draw(LEAVES)
    kind = draw(st.sampled_from(["unary", "unary", "binop", "binop", "binary", "neg"]))
    if kind == "unary":
        return f"{draw(st.sampled_from(UNARY))}({draw(expressions(depth - 1))})"
    if kind == "binary":
        a, b = draw(expressions(depth - 1)), draw(expressions(depth - 1))
        return f"{draw(st.sampled_from(BINARY))}({a}, {b})"
    if kind == "neg":
        return f"-{draw(expressions(depth - 1))}"
    a, b = draw(expressions(depth - 1)), draw(expressions(depth - 1))
    return f"({a} {draw(st.sampled_from(['+', '-', '*', '/', '**']))} {b})"


_LOCALS = {"x": X, "y": Y, **{n: op_function(n) for n in op_names()}}


def _run(expr: str):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["derive", "--format", "json", "--wrt", "x", "--", expr])
    return code, out.getvalue(), err.getvalue()


def _agree(got: sp.Expr, want: sp.Expr) -> bool:
    """Equal at real points where SymPy's derivative is finite (kinks have measure 0)."""
    checked = 0
    for xv, yv in [(0.37, 1.3), (-1.21, 0.55), (2.3, -0.8), (-0.45, -1.7), (1.07, 2.2)]:
        pt = {X: sp.Float(xv, 30), Y: sp.Float(yv, 30)}
        with mpmath.workdps(30):
            try:
                w = complex(want.xreplace(pt).evalf(30))
            except (TypeError, ValueError, ArithmeticError):
                continue  # not a finite number there
            if not (math.isfinite(w.real) and math.isfinite(w.imag)):
                continue
            try:
                g = complex(got.xreplace(pt).evalf(30))
            except (TypeError, ValueError, ArithmeticError):
                return False
        if abs(g - w) > 1e-12 * max(1.0, abs(w)):
            return False
        checked += 1
    return True  # (where SymPy's derivative is nowhere finite at these points, nothing to compare)


# no shrinking: a failure is reported as drawn (shrinking can take minutes here)
@settings(max_examples=300, deadline=20_000, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(expressions())
def test_random_expressions_end_verified_or_refused(expr):
    t0 = time.monotonic()
    code, out, err = _run(expr)
    assert time.monotonic() - t0 < 20
    event(f"exit {code}: {err.splitlines()[0][14:40] if code == 2 else 'verified'}")
    assert code in (0, 2), f"{expr!r}: exit {code}\n{err}"
    if code == 2:
        first = err.splitlines()[0]
        assert first.startswith("symdl: error: ") and "Traceback" not in err, err
        assert out == "" or "could not be verified" in first, (expr, err)
        return
    doc = json.loads(out)
    assert doc["verified"], f"{expr!r}: not verified\n{out}"
    got = sp.sympify(doc["result"], locals=_LOCALS)
    want = sp.diff(expand_ops(parse(expr)), X)
    assert _agree(expand_ops(got), want), f"{expr!r}: {doc['result']} != {want}"
