"""Tests for symdl.data: digits, synthetic sets, IDX files, validation."""
from __future__ import annotations

import gzip
import io
import struct
from importlib import resources

import numpy as np
import pytest

from symdl.data import (DATASETS, DIGITS_CITATION, SYNTHETIC, Dataset, load_dataset, load_digits,
                        load_mnist, read_idx, train_val_split, validate, write_idx, xor, xor_table)
from symdl.data.digits import _raw, write_npz
from symdl.errors import DataError

CLASSIFIERS = ["xor", "spirals", "moons", "circles"]


# ------------------------------------------------------------------ digits
def test_digits_all_shapes_and_ranges():
    ds = load_digits("all")
    assert ds.X.shape == (1797, 64) and ds.X.dtype == np.float32
    assert ds.y.shape == (1797,) and ds.y.dtype == np.int64
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0
    assert np.allclose(ds.X * 16, np.round(ds.X * 16))  # pixels were 0..16
    assert ds.n_classes == 10 and ds.task == "classification" and len(ds) == 1797
    assert np.bincount(ds.y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert validate(ds) is ds


def test_digits_npz_contents_and_first_row():
    images, labels = _raw()
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    assert images.max() == 16 and labels.max() == 9
    # first row of sklearn's digits.csv.gz (a zero)
    assert images[0, :8].tolist() == [0, 0, 5, 13, 9, 1, 0, 0] and labels[0] == 0
    assert labels[:10].tolist() == list(range(10))


def test_digits_npz_is_reproducible():
    images, labels = _raw()
    shipped = resources.files("symdl.data").joinpath("digits.npz").read_bytes()
    a, b = io.BytesIO(), io.BytesIO()
    write_npz(a, images=images, labels=labels)
    write_npz(b, images=images, labels=labels)
    assert a.getvalue() == b.getvalue() == shipped


def test_digits_split_disjoint_covering_deterministic():
    full = load_digits("all")
    train, test = load_digits("train"), load_digits("test")
    assert len(train) + len(test) == 1797 and len(test) == 355
    assert 0.18 < len(test) / 1797 < 0.22
    # rebuild the rule independently: the test rows are every 5th of each class
    test_rows = np.concatenate([np.flatnonzero(full.y == c)[4::5] for c in range(10)])
    mask = np.zeros(1797, bool)
    mask[test_rows] = True
    assert np.array_equal(test.X, full.X[mask]) and np.array_equal(test.y, full.y[mask])
    assert np.array_equal(train.X, full.X[~mask]) and np.array_equal(train.y, full.y[~mask])
    again = load_digits("test")
    assert np.array_equal(again.X, test.X) and np.array_equal(again.y, test.y)


def test_digits_every_class_in_both_splits():
    for split in ("train", "test"):
        counts = np.bincount(load_digits(split).y, minlength=10)
        assert counts.shape == (10,) and (counts > 0).all()
    test_counts = np.bincount(load_digits("test").y)
    assert test_counts.min() >= 34 and test_counts.max() <= 36


def test_digits_dtype_and_bad_arguments():
    assert load_digits("test", dtype="float64").X.dtype == np.float64
    with pytest.raises(DataError, match="unknown digits split 'validation'"):
        load_digits("validation")
    with pytest.raises(DataError, match="floating"):
        load_digits(dtype="int32")
    assert "Alpaydin" in DIGITS_CITATION and "CC BY 4.0" in DIGITS_CITATION


# ------------------------------------------------------------------ synthetic
@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_deterministic_and_seed_dependent(name):
    gen = SYNTHETIC[name]
    a, b, c = gen(seed=3), gen(seed=3), gen(seed=4)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    g = gen(seed=np.random.default_rng(3))
    assert np.array_equal(g.X, a.X)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_synthetic_classification_shapes_and_balance(name):
    ds = SYNTHETIC[name](n=101, seed=0)
    assert ds.X.shape == (101, 2) and ds.X.dtype == np.float32
    assert ds.y.shape == (101,) and ds.y.dtype == np.int64
    assert ds.n_classes == 2 and ds.task == "classification" and ds.name == name
    counts = np.bincount(ds.y, minlength=2)
    assert counts.tolist() in ([50, 51], [51, 50])
    assert validate(ds) is ds


def test_synthetic_default_sizes():
    sizes = {name: len(gen()) for name, gen in SYNTHETIC.items()}
    assert sizes == {"xor": 200, "spirals": 400, "moons": 400, "circles": 400, "sine": 200}


def test_xor_labels_match_signs():
    ds = xor(n=400, seed=1, noise=0.1)
    expected = (ds.X[:, 0] > 0) != (ds.X[:, 1] > 0)
    assert np.array_equal(ds.y, expected.astype(np.int64))
    assert np.all(np.abs(np.abs(ds.X) - 1) < 0.6)  # near the corners
    assert np.bincount(ds.y).tolist() == [200, 200]


def test_xor_table_exact():
    ds = xor_table()
    assert ds.X.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and ds.X.dtype == np.float32
    assert ds.y.tolist() == [0, 1, 1, 0]
    assert np.array_equal(ds.y, np.logical_xor(ds.X[:, 0], ds.X[:, 1]).astype(np.int64))


def test_circles_radii_and_sine_targets():
    c = SYNTHETIC["circles"](n=200, seed=0, noise=0.0)
    r = np.hypot(c.X[:, 0], c.X[:, 1])
    assert np.allclose(r[c.y == 0], 1.0, atol=1e-6) and np.allclose(r[c.y == 1], 0.5, atol=1e-6)
    s = SYNTHETIC["sine"](n=50, seed=0, noise=0.0)
    assert s.X.shape == (50, 1) and s.y.shape == (50, 1) and s.y.dtype == np.float32
    assert s.n_classes is None and s.task == "regression"
    assert np.abs(s.X).max() <= np.pi + 1e-6
    assert np.allclose(s.y, np.sin(s.X), atol=1e-6)


def test_spirals_are_point_reflections():
    ds = SYNTHETIC["spirals"](n=400, seed=0, noise=0.0)
    r = np.hypot(ds.X[:, 0], ds.X[:, 1])
    assert r.max() <= 1.0 + 1e-6
    # noise-free: angle - 3*pi*r is 0 (class 0) or pi (class 1) modulo 2*pi
    phase = np.mod(np.arctan2(ds.X[:, 1], ds.X[:, 0]) - 3 * np.pi * r, 2 * np.pi)
    dist0 = np.minimum(phase, 2 * np.pi - phase)
    assert np.all(np.where(ds.y == 0, dist0, np.abs(phase - np.pi)) < 1e-3)


def test_synthetic_bad_arguments():
    with pytest.raises(DataError, match="n must be an integer >= 4"):
        xor(n=2)
    with pytest.raises(DataError, match="noise"):
        SYNTHETIC["moons"](noise=-1.0)


def test_load_dataset_dispatch_and_splits():
    tr, te = load_dataset("moons", seed=5), load_dataset("moons", seed=5, split="test")
    assert not np.array_equal(tr.X, te.X)
    assert np.array_equal(tr.X, load_dataset("moons", seed=5).X)
    assert not np.array_equal(tr.X, load_dataset("moons", seed=6).X)
    assert len(load_dataset("digits", split="test")) == 355
    assert set(DATASETS) == {"digits", "mnist", "xor", "spirals", "moons", "circles", "sine"}
    with pytest.raises(DataError, match=r"unknown dataset 'foo' \(choose from: digits, mnist, xor"):
        load_dataset("foo")
    with pytest.raises(DataError, match="needs a data directory"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="unknown split 'all'"):
        load_dataset("xor", split="all")


# ------------------------------------------------------------------ IDX / MNIST
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_idx_roundtrip(tmp_path, gz, dtype):
    arr = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4)
    arr = np.abs(arr).astype(dtype) if dtype == "u1" else arr.astype(dtype)
    path = write_idx(tmp_path / "a.idx", arr, gzip=gz)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    out = read_idx(path)
    assert out.shape == arr.shape and out.dtype == arr.dtype and np.array_equal(out, arr)


def test_idx_gzip_detected_by_magic_not_name(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    path = tmp_path / "labels-no-suffix"
    path.write_bytes(gzip.compress(struct.pack(">II", 2049, 10) + arr.tobytes()))
    assert np.array_equal(read_idx(path), arr)
    plain = tmp_path / "plain.gz"  # .gz name but not compressed
    write_idx(plain, arr)
    assert np.array_equal(read_idx(plain), arr)


def test_idx_mnist_magic_numbers(tmp_path):
    write_idx(tmp_path / "img", np.zeros((2, 28, 28), np.uint8))
    write_idx(tmp_path / "lbl", np.zeros(2, np.uint8))
    assert (tmp_path / "img").read_bytes()[:4] == struct.pack(">I", 2051)
    assert (tmp_path / "lbl").read_bytes()[:4] == struct.pack(">I", 2049)
    with pytest.raises(DataError, match=r"lbl: wrong magic number 2049, expected 2051"):
        read_idx(tmp_path / "lbl", magic=2051)


def test_idx_wrong_magic(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(DataError, match=r"bad\.idx: wrong magic number .*not an IDX file"):
        read_idx(bad)
    bad.write_bytes(struct.pack(">II", 0x0000_0701, 1) + b"\x00")  # unknown type code 0x07
    with pytest.raises(DataError, match="wrong magic number 1793"):
        read_idx(bad)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_and_trailing(tmp_path, gz):
    good = struct.pack(">IIII", 2051, 3, 2, 2) + bytes(12)
    cases = {"trunc": (good[:-1], "truncated data"), "hdr": (good[:9], "truncated IDX header"),
             "tiny": (good[:3], "truncated IDX header"), "tail": (good + b"xy", "2 trailing bytes")}
    for stem, (payload, fragment) in cases.items():
        path = tmp_path / stem
        path.write_bytes(gzip.compress(payload) if gz else payload)
        with pytest.raises(DataError, match=fragment) as info:
            read_idx(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_idx_truncated_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(struct.pack(">II", 2049, 100) + bytes(100))[:-12])
    with pytest.raises(DataError, match="cut.gz: corrupt or truncated gzip"):
        read_idx(path)


def _write_mnist(d, prefix, n_img, n_lbl, gz=False, rng=None):
    rng = np.random.default_rng(0) if rng is None else rng
    images = rng.integers(0, 256, (n_img, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n_lbl, dtype=np.uint8)
    sfx = ".gz" if gz else ""
    write_idx(d / f"{prefix}-images-idx3-ubyte{sfx}", images, gzip=gz)
    write_idx(d / f"{prefix}-labels-idx1-ubyte{sfx}", labels, gzip=gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist(tmp_path, gz):
    images, labels = _write_mnist(tmp_path, "train", 7, 7, gz)
    timages, tlabels = _write_mnist(tmp_path, "t10k", 3, 3, gz, np.random.default_rng(1))
    ds = load_mnist(tmp_path)
    assert ds.X.shape == (7, 784) and ds.X.dtype == np.float32 and ds.y.dtype == np.int64
    assert np.allclose(ds.X * 255, images.reshape(7, 784)) and np.array_equal(ds.y, labels)
    assert 0.0 <= ds.X.min() and ds.X.max() <= 1.0 and ds.n_classes == 10
    te = load_dataset("mnist", data_dir=tmp_path, split="test")
    assert len(te) == 3 and np.array_equal(te.y, tlabels)
    assert load_mnist(tmp_path, "test", dtype="float64").X.dtype == np.float64


def test_load_mnist_count_mismatch(tmp_path):
    _write_mnist(tmp_path, "train", 5, 4)
    with pytest.raises(DataError, match="count mismatch: train-images-idx3-ubyte has 5 images "
                                        "but train-labels-idx1-ubyte has 4 labels"):
        load_mnist(tmp_path)


def test_load_mnist_missing_files(tmp_path):
    with pytest.raises(DataError, match="expected train-images-idx3-ubyte or train-images-idx3-ubyte.gz") as info:
        load_mnist(tmp_path)
    assert str(tmp_path) in str(info.value)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((1, 28, 28), np.uint8), gzip=True)
    with pytest.raises(DataError, match="expected t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz"):
        load_mnist(tmp_path, "test")
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(DataError, match="unknown MNIST split"):
        load_mnist(tmp_path, "val")


def test_load_mnist_swapped_files_and_bad_labels(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(3, np.uint8))  # a label file
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="wrong magic number 2049, expected 2051"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 12, 3], np.uint8))
    with pytest.raises(DataError, match=r"label 12 at row 1 is outside \[0, 10\)"):
        load_mnist(tmp_path)


# ------------------------------------------------------------------ validation
def _ds(X, y, n_classes=3, task="classification"):
    return Dataset(X=np.asarray(X), y=np.asarray(y), n_classes=n_classes, name="t", task=task)


GOOD_X = np.zeros((4, 2), np.float32)


@pytest.mark.parametrize("ds, fragment", [
    (_ds(np.zeros((0, 2)), np.zeros(0, np.int64)), "dataset 't' is empty"),
    (_ds(np.zeros(4), np.zeros(4, np.int64)), r"X must be 2-D .* got shape \(4,\)"),
    (_ds(np.zeros((4, 2, 1)), np.zeros(4, np.int64)), "X must be 2-D"),
    (_ds(GOOD_X, np.zeros(3, np.int64)), "X has 4 rows but y has 3 entries"),
    (_ds([[0, 0], [0, np.nan], [np.inf, 0], [1, 1]], [0, 1, 2, 0]),
     r"X has NaN/Inf in 2 row\(s\), first at row 1"),
    (_ds(GOOD_X, [0, 1, 1.5, 2]), r"labels must be integers, row 2 has 1\.5"),
    (_ds(GOOD_X, np.array(["a", "b", "c", "d"])), "labels must be integers, got dtype"),
    (_ds(GOOD_X, [0, 1, 2, 3]), r"label 3 at row 3 is outside \[0, 3\)"),
    (_ds(GOOD_X, [0, -1, 2, 5]), r"label -1 at row 1 is outside \[0, 3\) \(2 bad row"),
    (_ds(GOOD_X, [[0.0], [np.nan], [1.0], [2.0]], None, "regression"), "y has NaN/Inf in 1 row"),
    (_ds(GOOD_X, [0, 1, 2, 0], task="ranking"), "unknown task 'ranking'"),
])
def test_validate_rejects(ds, fragment):
    with pytest.raises(DataError, match=fragment) as info:
        validate(ds)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_validate_accepts_good_data():
    ds = _ds(GOOD_X, [0, 1, 2, 0])
    assert validate(ds) is ds
    floats = _ds(GOOD_X, np.array([0.0, 1.0, 2.0, 0.0]))  # integral floats are labels too
    assert validate(floats) is floats
    reg = _ds(GOOD_X, np.ones((4, 1)), None, "regression")
    assert validate(reg) is reg


# ------------------------------------------------------------------ train/val split
def test_train_val_split():
    ds = load_dataset("circles", seed=0)
    tr, va = train_val_split(ds, 0.25, np.random.default_rng(0))
    assert len(va) == 100 and len(tr) == 300
    rows = {tuple(r) for r in ds.X.tolist()}
    assert {tuple(r) for r in tr.X.tolist()} | {tuple(r) for r in va.X.tolist()} == rows
    assert not ({tuple(r) for r in tr.X.tolist()} & {tuple(r) for r in va.X.tolist()})
    tr2, va2 = train_val_split(ds, 0.25, 0)
    assert np.array_equal(va.X, va2.X) and np.array_equal(tr.y, tr2.y)
    _, va3 = train_val_split(ds, 0.25, 1)
    assert not np.array_equal(va.X, va3.X)
    assert va.n_classes == 2 and va.name == "circles"
    same, none = train_val_split(ds, 0.0, 0)
    assert same is ds and none is None
    with pytest.raises(DataError, match=r"must be in \[0, 1\)"):
        train_val_split(ds, 1.0, 0)
    with pytest.raises(DataError, match="leaves no training data"):
        train_val_split(xor_table(), 0.9, 0)
