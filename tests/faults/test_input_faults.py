"""Faults of issue 12 in the input: bad hyperparameters, diverging runs, shapes
that broadcast to an outer product, labels, dtypes, forged IDX files and
graphs, and a missing GPU backend."""
from __future__ import annotations

import gzip
import struct

import networkx as nx
import numpy as np
import pytest

from symdl.cli import main
from symdl.data import Dataset, read_idx, xor
from symdl.derive import grad
from symdl.errors import DataError, UsageError
from symdl.graph import Graph
from symdl.nn import make_model
from symdl.optim import SGD
from symdl.train import Trainer

XOR = ["train", "--dataset", "xor", "--hidden", "4", "--epochs", "1", "--no-progress"]


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def trainer(dtype="float32", model_dtype=None, n_in=2, n_out=2, **kw):
    spec = make_model("mlp", n_in, n_out, (4,), "relu", np.random.default_rng(0),
                      model_dtype or dtype)
    return Trainer(spec.module, lambda ps: SGD(ps, lr=0.05), spec.loss, spec.loss_params,
                   batch_size=8, epochs=1, seed=0, progress=False, dtype=dtype, **kw)


# ------------------------------------------------- 9. hyperparameters, divergence
@pytest.mark.parametrize("flag, value", [("--lr", "nan"), ("--lr", "inf"), ("--lr", "-inf"),
                                         ("--momentum", "nan"), ("--weight-decay", "inf"),
                                         ("--clip-norm", "nan"), ("--lr", "-0.1")])
def test_non_finite_or_negative_hyperparameters_exit_2(capsys, tmp_path, monkeypatch, flag, value):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *XOR, f"{flag}={value}")
    assert code == 2 and out == ""
    assert (f"{flag}: expected a finite number" in err or f"{flag} must be a non-negative" in err)
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_diverging_loss_names_a_node(capsys):
    code, _, err = run(capsys, "train", "--lr", "1e4", "--momentum", "0", "--divergence", "10",
                       "--epochs", "1", "--no-progress")
    assert code == 3
    assert "diverging loss" in err and "update not applied; first bad node" in err
    assert "largest gradient: max |g|" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------- 10. shapes, labels, dtypes
def test_mse_of_n_by_1_against_n_is_refused_not_an_outer_product():
    g = Graph()
    p, t = g.input("pred", ("N", 1), "float64"), g.input("t", ("N",), "float64")
    with pytest.raises(UsageError, match=r"mse: pred \('N', 1\) and t \('N',\) broadcast to "
                                         r"\('N', 'N'\), repeating dimension N"):
        g.add("mse", p, t)
    g.add("mse", p, g.input("t2", ("N", 1), "float64"))  # matching shapes are fine
    g.add("mse", p, g.input("c", (), "float64"))         # and so is a scalar


@pytest.mark.parametrize("labels, fragment", [
    ([0, 1.5, 2.9, 1], r"row 1 has 1\.5 \(2 bad row\(s\): 1 \(1\.5\), 2 \(2\.9\)\)"),
    ([0, np.nan, 1, 1], r"row 1 has nan"),
])
def test_float_labels_that_are_not_integers_are_refused_by_fit(labels, fragment):
    X = np.zeros((4, 2), np.float32)
    t = trainer(n_out=3)
    ds = Dataset(X=X, y=np.array(labels, dtype=np.float64), n_classes=3, name="f")
    before = [p.data.copy() for p in t.params]
    with pytest.raises(DataError, match="class labels must be integers, " + fragment):
        t.fit(ds)
    assert all(np.array_equal(a, p.data) for a, p in zip(before, t.params))


def test_integral_float_labels_are_still_accepted():
    X = np.zeros((4, 2), np.float32)
    hist = trainer(n_out=3).fit(Dataset(X=X, y=np.array([0.0, 1.0, 2.0, 1.0]), n_classes=3, name="f"))
    assert len(hist.train_loss) == 1


def test_bad_label_message_lists_the_first_rows_and_values():
    X = np.zeros((12, 2), np.float32)
    y = np.zeros(12, np.int64)
    y[[0, 5, 9, 11]] = [7, -1, 2, 3]
    with pytest.raises(DataError, match=r"label 7 at row 0 is outside \[0, 2\) "
                                        r"\(4 bad row\(s\): 0 \(7\), 5 \(-1\), 9 \(2\), \.\.\.\)"):
        trainer().fit(Dataset(X=X, y=y, n_classes=None, name="l"))


def test_float16_is_a_usage_error_not_a_numba_traceback():
    with pytest.raises(UsageError, match="dtype must be float32 or float64, got 'float16'"):
        trainer(dtype="float16", model_dtype="float32")


def test_a_float64_model_is_not_cast_to_float32_silently():
    with pytest.raises(UsageError, match=r"parameters are float64 \(0\.W, 0\.b, 2\.W \.\.\.\) but "
                                         r"dtype='float32'"):
        trainer(dtype="float32", model_dtype="float64")


# ------------------------------------------------------------ 11. IDX, forged graphs
def _idx(path, dims, payload=b"", magic=2051):
    path.write_bytes(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload)
    return path


def test_idx_with_zero_images_exits_2(capsys, tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    for split in ("train", "t10k"):
        _idx(d / f"{split}-images-idx3-ubyte", (0, 28, 28))
        (d / f"{split}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(struct.pack(">II", 2049, 0), mtime=0))
    code, out, err = run(capsys, "train", "--dataset", "mnist", "--data-dir", str(d))
    assert code == 2 and "holds no images" in err and len(err.strip().splitlines()) == 1


def test_idx_dimensions_whose_product_overflows_are_a_data_error(tmp_path):
    path = _idx(tmp_path / "big", (2**31, 2**31, 2**31), bytes(16))
    with pytest.raises(DataError, match=r"truncated data: shape \(2147483648, 2147483648, "
                                        r"2147483648\) needs 9903520314283042199192993792 bytes"):
        read_idx(path)


def test_grad_of_a_forged_cyclic_graph_is_a_usage_error():
    g = Graph()
    w = g.param("w", (3,), "float64")
    h = g.add("mul", w, w)
    L = g.add("sum", h)
    g.nx.add_edge(L, h)  # forged: Graph.add never makes a cycle
    assert not nx.is_directed_acyclic_graph(g.nx)
    with pytest.raises(UsageError, match=r"the graph has a cycle \(.*\); reverse mode needs a DAG"):
        grad(g, L)


# ---------------------------------------------------------------- 16. missing backend
def test_device_cuda_without_a_backend_exits_1_naming_the_extras(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *XOR, "--device", "cuda")
    assert code == 1 and out == ""
    assert "symdl[cuda12]" in err and "symdl[cuda13]" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_xor_still_trains():  # the guards above refuse only what they should
    hist = trainer().fit(xor(seed=0))
    assert np.isfinite(hist.train_loss[0])
