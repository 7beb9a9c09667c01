"""A training step split over threads (symdl.train.split): the same training as one
program up to rounding, the rule that decides it, and what it never splits."""
from __future__ import annotations

import numba
import numpy as np
import pytest

from symdl.backends import threads
from symdl.data import Dataset, load_digits
from symdl.errors import UsageError
from symdl.nn import BatchNorm1d, Sequential
from symdl.nn.layers import Activation, Dense, Dropout
from symdl.nn.seqmodels import SequenceClassifier
from symdl.optim import OPTIMIZERS
from symdl.train import Trainer

pytestmark = pytest.mark.skipif(not threads.can_split(), reason="numba's threading layer or "
                                "BLAS cannot run programs on several threads")


@pytest.fixture
def two_threads():
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    yield
    numba.set_num_threads(before)


def _train(model, split, dtype, rows=70, batch=31, opt="adam", **kw):
    ds = load_digits("train", dtype)
    tr = Trainer(model, lambda ps: OPTIMIZERS[opt](ps, lr=0.01), batch_size=batch, epochs=2,
                 dtype=dtype, verbose=0, split=split, seed=3, **kw)
    tr.fit(Dataset(ds.X[:rows], ds.y[:rows], 10, "digits"))
    return tr


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_split_trains_as_one_program(two_threads, kind, dtype, rtol):
    """Batches of 31 rows (shares of 16 and 15) and a short last batch of 8 (not split:
    under 2 x MIN_ROWS): parameters, losses and accuracies as one program's, to rounding."""
    runs = {}
    for split in (False, True):
        m = SequenceClassifier(kind, 8, 8, 10, hidden=12, dtype=dtype)
        runs[split] = _train(m, split, dtype)
    one, two = runs[False], runs[True]
    assert one._split.ways == 1 and two._split.ways == 2
    scale = np.abs(one.pack.data).max()
    np.testing.assert_allclose(two.pack.data, one.pack.data, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(two.history.train_loss, one.history.train_loss, rtol=rtol)
    assert two.history.train_accuracy == one.history.train_accuracy
    assert any(share for _, _, share in two._programs)  # the second share: a program of its own


def _dropout_mlp():
    return Sequential(Dense(64, 32, np.random.default_rng(0), dtype="float64"),
                      Activation("relu"), Dropout(0.3),
                      Dense(32, 10, np.random.default_rng(1), dtype="float64"))


def test_split_with_dropout_is_reproducible(two_threads):
    """Masks are drawn per share, in share order: the same run twice gives the same bytes."""
    runs = [_train(_dropout_mlp(), True, "float64", opt="sgd") for _ in range(2)]
    assert runs[0]._split.ways == 2
    np.testing.assert_array_equal(runs[0].pack.data, runs[1].pack.data)


def test_auto_splits_sequences_and_images_not_flat_samples(two_threads):
    def prepared(model, features):
        tr = Trainer(model, lambda ps: OPTIMIZERS["sgd"](ps, lr=0.01), batch_size=32, verbose=0)
        tr._prepare(np.zeros((4, features), np.float32), np.zeros(4, np.int64))
        return tr
    seq = prepared(SequenceClassifier("lstm", 8, 8, 10, hidden=12), 64)
    assert seq._split.ways == 2 and seq._split.applies(32) and not seq._split.applies(15)
    seq._split.ways = 16  # sixteen threads: a batch of 40 splits into 5 shares of 8
    assert seq._split.shares(40) == 5 and seq._split.shares(200) == 16
    mlp = prepared(Sequential(Dense(64, 16, np.random.default_rng(0)), Activation("relu"),
                              Dense(16, 10, np.random.default_rng(1))), 64)
    assert mlp._split.ways == 1  # weight gradients over a share's rows only: not split
    forced = Trainer(mlp.model, lambda ps: OPTIMIZERS["sgd"](ps, lr=0.01), batch_size=32,
                     verbose=0, split=True)
    forced._prepare(np.zeros((4, 64), np.float32), np.zeros(4, np.int64))
    assert forced._split.ways == 2


def test_never_splits_batch_statistics_or_one_thread(two_threads):
    m = Sequential(Dense(64, 16, np.random.default_rng(0), dtype="float64"),
                   BatchNorm1d(16, dtype="float64"), Activation("relu"),
                   Dense(16, 10, np.random.default_rng(1), dtype="float64"))
    tr = _train(m, True, "float64", opt="sgd")
    assert tr._split.ways == 1  # each share would normalise by its own statistics
    numba.set_num_threads(1)
    tr = _train(SequenceClassifier("gru", 8, 8, 10, hidden=12, dtype="float64"), True, "float64")
    assert tr._split.ways == 1


@pytest.mark.parametrize("bad", ["yes", 1, "on"])
def test_split_setting_is_checked(bad):
    with pytest.raises(UsageError, match="split must be"):
        Trainer(SequenceClassifier("gru", 8, 8, 10, hidden=12), lambda ps: OPTIMIZERS["sgd"](
            ps, lr=0.01), split=bad)


@pytest.mark.parametrize("value,mode", [("off", False), ("ON", True), (" auto", "auto")])
def test_split_from_the_environment(monkeypatch, value, mode):
    monkeypatch.setenv("SYMDL_SPLIT", value)
    tr = Trainer(SequenceClassifier("gru", 8, 8, 10, hidden=12), lambda ps: OPTIMIZERS["sgd"](
        ps, lr=0.01))
    assert tr._split.mode is mode or tr._split.mode == mode
    monkeypatch.setenv("SYMDL_SPLIT", "sometimes")
    with pytest.raises(UsageError, match="SYMDL_SPLIT must be auto, on or off"):
        Trainer(SequenceClassifier("gru", 8, 8, 10, hidden=12), lambda ps: OPTIMIZERS["sgd"](
            ps, lr=0.01))


def test_three_shares_train_as_one_program(two_threads):
    """More shares than two (a machine with more threads): three programs, three buffers."""
    ds = load_digits("train", "float64")
    data = Dataset(ds.X[:70], ds.y[:70], 10, "digits")
    runs = []
    for ways in (1, 3):
        m = SequenceClassifier("gru", 8, 8, 10, hidden=12, dtype="float64")
        tr = Trainer(m, lambda ps: OPTIMIZERS["sgd"](ps, lr=0.05), batch_size=31, epochs=1,
                     dtype="float64", verbose=0, split=ways > 1, seed=3)
        tr._prepare(data.X, data.y)
        tr._split.ways = ways
        tr.fit(data)
        runs.append(tr)
    assert len(runs[1]._split._grads) == 2 and runs[1]._split.shares(31) == 3
    scale = np.abs(runs[0].pack.data).max()
    np.testing.assert_allclose(runs[1].pack.data, runs[0].pack.data, rtol=0, atol=1e-12 * scale)
