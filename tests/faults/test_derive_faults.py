"""Malformed and malicious expressions given to ``symdl derive``: exit 2, nothing run."""
from __future__ import annotations

import pytest

from symdl.cli import main

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
