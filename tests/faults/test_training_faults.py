"""Faults during training and in its input: the policy, the message, the exit code."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from symdl.cli import main
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.nn.parameter import Parameter
from symdl.optim import SGD


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_skip_policy_aborts_after_consecutive_bad_batches(capsys):
    code, out, err = run(capsys, "train", "--lr", "1e4", "--on-nonfinite", "skip", "--max-skips", "3")
    assert code == 3
    assert "3 consecutive batches" in err and "no update applied" in err


def test_warn_policy_reports_each_skipped_batch(capsys):
    code, out, err = run(capsys, "train", "--lr", "1e4", "--on-nonfinite", "warn", "--max-skips", "4")
    assert code == 3
    assert err.count("batch skipped") == 4  # each bad batch, the 4th then stops


def test_integer_parameters_are_refused():
    with pytest.raises(UsageError, match="integer dtype"):
        SGD([Parameter(np.zeros(3, np.int64), "w")], lr=0.1)


def test_dataset_smaller_than_a_dropped_batch(capsys):
    code, out, err = run(capsys, "train", "--dataset", "xor", "--batch-size", "500", "--drop-last")
    assert code == 2 and "fewer than one batch" in err


def test_device_auto_falls_back_with_a_message(capsys):
    code, out, err = run(capsys, "train", "--device", "auto", "--epochs", "1", "--json")
    assert code == 0 and "using the CPU" in err


def _idx(path, magic, dims, payload: bytes, zipped=False):
    head = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)
    data = head + payload
    path.write_bytes(gzip.compress(data, mtime=0) if zipped else data)


@pytest.mark.parametrize("case, fragment", [
    ("magic", "magic"),
    ("truncated", "truncated"),
    ("missing", "t10k-images-idx3-ubyte"),
])
def test_bad_mnist_files_exit_2_and_write_nothing(capsys, tmp_path, monkeypatch, case, fragment):
    d = tmp_path / "mnist"
    d.mkdir()
    n = 4
    for split in ("train", "t10k"):
        if case == "missing" and split == "t10k":
            continue
        img_magic = 2049 if case == "magic" else 2051
        body = bytes(n * 28 * 28)[: (100 if case == "truncated" else None)]
        _idx(d / f"{split}-images-idx3-ubyte", img_magic, (n, 28, 28), body)
        _idx(d / f"{split}-labels-idx1-ubyte.gz", 2049, (n,), bytes(n), zipped=True)
    before = sorted(p.name for p in d.iterdir())
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "train", "--dataset", "mnist", "--data-dir", str(d))
    assert code == 2, err
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in d.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist"]


def test_unknown_op_names_it_and_lists_the_known_ones():
    g = Graph()
    x = g.input("x", (3,))
    with pytest.raises(UsageError, match=r"unknown op 'swoosh' \(known: .*sigmoid"):
        g.add("swoosh", x)


def test_a_node_used_twice_sums_both_paths():
    from symdl.backends.numpy_backend import compile_graph
    from symdl.derive import grad
    g = Graph()
    x = g.param("x", (3,), "float64")
    L = g.add("sum", g.add("mul", x, x))
    gg = grad(g, L)
    xs = np.array([1.0, -2.0, 0.5])
    prog = compile_graph(gg.graph, [gg.grads["x"]], {"x": xs})
    prog.run()
    assert np.array_equal(prog.value(gg.grads["x"]), 2 * xs)


def test_second_derivative_of_relu_never_reaches_code_generation():
    from symdl.ops import OPS
    second = OPS["relu"].grad_op(0).grad_op(0)  # d/dx of g * relu'(x)
    assert second.expr == 0
    from sympy import DiracDelta
    assert not second.expr.has(DiracDelta)
    from symdl.codegen.printers import ScalarPrinter
    with pytest.raises(ValueError, match="DiracDelta"):
        ScalarPrinter().doprint(DiracDelta(OPS["relu"].inputs[0]))
