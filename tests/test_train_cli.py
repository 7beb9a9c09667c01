"""Training and the command line: accuracy, determinism, error policy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from symdl.cli import main
from symdl.data import load_digits
from symdl.errors import DataError, NumericalError, UsageError
from symdl.nn import make_model
from symdl.optim import SGD
from symdl.train import Trainer

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def small_trainer(seed=0, epochs=2, **kw):
    ss = np.random.SeedSequence(seed)
    a, b = ss.spawn(2)
    spec = make_model("mlp", 64, 10, (16,), "relu", np.random.default_rng(a))
    return Trainer(spec.module, lambda ps: SGD(ps, lr=0.05, momentum=0.9), spec.loss,
                   batch_size=kw.pop("batch_size", 32), epochs=epochs, seed=b, progress=False, **kw)


def test_default_train_reaches_95_percent_on_digits(capsys):
    code, out, err = run_cli(capsys, "train", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["test_accuracy"] >= 0.95
    assert summary["epochs"] == 30 and len(summary["train_loss"]) == 30
    assert summary["parameters"] == 64 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10
    assert summary["train_loss"][-1] < summary["train_loss"][0]


def test_xor_reaches_100_percent(capsys):
    code, out, _ = run_cli(capsys, "train", "--dataset", "xor", "--json")
    assert code == 0
    assert json.loads(out)["test_accuracy"] == 1.0


def test_same_seed_same_history_different_seed_different():
    data = load_digits("train")
    h1 = small_trainer(0).fit(data)
    h2 = small_trainer(0).fit(data)
    h3 = small_trainer(1).fit(data)
    assert h1.train_loss == h2.train_loss
    assert h1.train_loss != h3.train_loss


def test_partial_last_batch_and_full_batch_mode():
    data = load_digits("train")
    n = len(data)
    hist = small_trainer(0, epochs=1, batch_size=n).fit(data)  # one full batch
    assert len(hist.train_loss) == 1 and np.isfinite(hist.train_loss[0])
    t = small_trainer(0, epochs=1, batch_size=1000)           # 1000 + a remainder
    t.fit(data)
    assert {k[0] for k in t._programs if k[1]} == {1000, n - 1000}


def exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return exc.code


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--dataset", "nope"], "invalid choice: 'nope'"),
    (["train", "--activation", "nope"], "unknown activation 'nope'"),
    (["train", "--optimizer", "nope"], "unknown optimizer 'nope'"),
    (["train", "--batch-size", "0"], "--batch-size >= 1"),
    (["train", "--hidden", "a,b"], "comma-separated integers"),
    (["train", "--dataset", "mnist"], "mnist"),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)
    code = exit_code(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_diverging_learning_rate_exits_3_without_applying_the_update(capsys):
    code, out, err = run_cli(capsys, "train", "--lr", "1e4", "--epochs", "2")
    assert code == 3
    assert "update not applied" in err and err.count("\n") == 1


def test_nan_in_data_is_refused_before_training():
    data = load_digits("train")
    bad = replace(data, X=data.X.copy())
    bad.X[[7, 9], 3] = np.nan
    t = small_trainer(0, epochs=1)
    before = [p.data.copy() for p in t.params]
    with pytest.raises(DataError, match="2 row.*row 7"):
        t.fit(bad)
    assert all(np.array_equal(a, p.data) for a, p in zip(before, t.params))


def test_overflow_stops_before_the_update_and_names_the_node():
    data = load_digits("train")
    t = small_trainer(0, epochs=1)
    t.params[0].data[...] = 3e38  # the first matmul overflows float32
    before = [p.data.copy() for p in t.params]
    with pytest.raises(NumericalError, match=r"update not applied; first bad value at node 0\.xWt"):
        t.fit(data)
    assert all(np.array_equal(a, p.data) for a, p in zip(before, t.params))


def test_data_errors():
    data = load_digits("train")
    t = small_trainer(0)
    with pytest.raises(DataError, match="row 0"):
        t.fit(replace(data, y=np.where(np.arange(len(data)) == 0, 10, data.y)))
    with pytest.raises(DataError, match="float64"):
        small_trainer(0).fit(replace(data, X=data.X.astype(np.float64)))
    with pytest.raises(DataError, match="features"):
        t.fit(replace(data, X=np.zeros((len(data), 5), np.float32)))
    with pytest.raises(DataError, match="empty"):
        small_trainer(0).fit(replace(data, X=data.X[:0], y=data.y[:0]))
    with pytest.raises(UsageError, match="batch size"):
        small_trainer(0, batch_size=0)


def test_perceptron_and_logreg_learn_digits(capsys):
    for model in ("perceptron", "logreg"):
        code, out, _ = run_cli(capsys, "train", "--model", model, "--epochs", "10", "--json")
        assert code == 0 and json.loads(out)["test_accuracy"] > 0.9


def test_regression_on_sine(capsys):
    code, out, _ = run_cli(capsys, "train", "--dataset", "sine", "--epochs", "60", "--lr", "0.01", "--json")
    s = json.loads(out)
    assert code == 0 and s["test_accuracy"] is None and s["test_loss"] < 0.1


def test_graph_listing_is_deterministic(capsys):
    _, a, _ = run_cli(capsys, "graph", "--hidden", "8")
    _, b, _ = run_cli(capsys, "graph", "--hidden", "8")
    assert a == b
    assert "d0.W = matmul(" in a.replace("  ", " ") or "d0.W" in a
    assert "softmax_cross_entropy.grad0" in a


def test_kernels_directory_matches_the_generator(capsys):
    code, out, err = run_cli(capsys, "kernels", "--check", "--out", str(ROOT / "kernels"))
    assert code == 0, err


def test_kernels_check_detects_a_difference(capsys, tmp_path):
    assert run_cli(capsys, "kernels", "--out", str(tmp_path))[0] == 0
    victim = tmp_path / "numba" / "sigmoid.py"
    victim.write_text(victim.read_text().replace("np.float32(1.0)", "np.float32(1.5)", 1))
    code, _, err = run_cli(capsys, "kernels", "--check", "--out", str(tmp_path))
    assert code == 1 and "numba/sigmoid.py" in err


def test_python_dash_m_and_info():
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "symdl", "info", "--json"], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["numpy"] == np.__version__ and "blas" in info and "gpu" in info
