"""Sequence data (symdl.data.sequences): shapes, the flat layout, seeds, and what each target is."""
from __future__ import annotations

import numpy as np
import pytest

from symdl.data import load_digits, validate
from symdl.data.sequences import (SEQ_TASKS, SequenceLayout, adding, copy, digit_patches,
                                  digit_rows, image_layout, layout, load_sequence_task, parity,
                                  patchify, reverse, sine_forecast, symbols)
from symdl.errors import DataError


@pytest.mark.parametrize("name", sorted(SEQ_TASKS))
def test_tasks_are_valid_seeded_and_follow_their_layout(name):
    a = load_sequence_task(name, seed=3, n=50)
    b = load_sequence_task(name, seed=3, n=50)
    c = load_sequence_task(name, seed=4, n=50)
    t = load_sequence_task(name, seed=3, n=50, split="test")
    validate(a)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X) and not np.array_equal(a.X, t.X)
    lay = layout(name)
    assert a.X.shape == (50, lay.steps * lay.features) and a.X.dtype == np.float32
    if lay.outputs_per_step:
        assert a.y.shape == (50, lay.steps * lay.outputs_per_step)
    else:
        assert a.y.shape == (50,)
    assert layout(name, 12).steps == 12
    assert load_sequence_task(name, length=12, n=3).X.shape[1] == 12 * lay.features


def test_adding_target_is_the_sum_of_the_two_marked_values():
    ds = adding(200, 30, seed=1)
    x = ds.X.reshape(200, 30, 2)
    marks = x[:, :, 1]
    assert (marks.sum(axis=1) == 2).all()
    assert (marks[:, :15].sum(axis=1) == 1).all() and (marks[:, 15:].sum(axis=1) == 1).all()
    np.testing.assert_allclose(ds.y, (x[:, :, 0] * marks).sum(axis=1), rtol=1e-6)
    assert ((x[:, :, 0] >= 0) & (x[:, :, 0] < 1)).all()


def test_parity_labels_and_balance():
    ds = parity(101, 9, seed=2)
    assert set(np.unique(ds.X)) <= {0.0, 1.0}
    np.testing.assert_array_equal(ds.y, ds.X.sum(axis=1).astype(int) % 2)
    assert abs(int(ds.y.sum()) - (101 - int(ds.y.sum()))) <= 1


def test_sine_forecast_target_is_the_next_sample():
    ds = sine_forecast(40, 15, seed=0)
    x = ds.X.astype(np.float64)
    # a noiseless sine obeys x[t+1] = 2 cos(ω) x[t] − x[t−1]; recover ω from the first three
    c = (x[:, 2] + x[:, 0]) / (2 * x[:, 1])
    pred = 2 * c * x[:, -1] - x[:, -2]
    np.testing.assert_allclose(pred, ds.y, atol=1e-3)
    noisy = sine_forecast(40, 15, seed=0, noise=0.1)
    assert np.abs(noisy.X - ds.X).max() > 0.05
    np.testing.assert_array_equal(noisy.y, ds.y)


@pytest.mark.parametrize("fn, flip", [(copy, False), (reverse, True)])
def test_copy_and_reverse(fn, flip):
    ds = fn(30, 8, vocab=5, seed=0)
    s_in, s_out = symbols(ds.X, 5), symbols(ds.y, 5)
    assert (s_in[:, :4] >= 1).all() and (s_in[:, 4:] == 0).all() and (s_out[:, :4] == 0).all()
    want = s_in[:, :4][:, ::-1] if flip else s_in[:, :4]
    np.testing.assert_array_equal(s_out[:, 4:], want)
    assert ds.X.sum() == 30 * 8  # one-hot


def test_digit_rows_and_patches():
    d = load_digits("test")
    rows = digit_rows("test")
    np.testing.assert_array_equal(rows.X, d.X)
    assert layout("digits") == image_layout(64) == SequenceLayout(8, 8)
    p = digit_patches("test", 4)
    assert p.X.shape == (len(d), 64) and layout("patches", patch=4) == SequenceLayout(4, 16)
    img = d.X[7].reshape(8, 8)
    np.testing.assert_array_equal(p.X[7, 16:32], img[0:4, 4:8].ravel())  # patch (0, 1)
    np.testing.assert_array_equal(p.X[7, 32:48], img[4:8, 0:4].ravel())  # patch (1, 0)
    assert sorted(p.X[7]) == sorted(d.X[7])
    assert layout("patches", patch=2) == SequenceLayout(16, 4)


def test_patchify_is_the_torch_conv_patch_order():
    torch = pytest.importorskip("torch")
    X = np.random.default_rng(0).standard_normal((3, 64))
    t = torch.nn.functional.unfold(torch.tensor(X).reshape(3, 1, 8, 8), 4, stride=4)
    np.testing.assert_array_equal(patchify(X, 8, 4), t.transpose(1, 2).reshape(3, 64).numpy())


@pytest.mark.parametrize("call, msg", [
    (lambda: load_sequence_task("nope"), "unknown sequence task"),
    (lambda: load_sequence_task("adding", split="val"), "unknown split"),
    (lambda: adding(10, 1), "length must be an integer >= 2"),
    (lambda: copy(10, 7), "even integer"),
    (lambda: parity(0), "n must be"),
    (lambda: copy(10, 8, vocab=1), "vocab"),
    (lambda: sine_forecast(10, 5, noise=-1), "noise"),
    (lambda: patchify(np.zeros((2, 64)), 8, 3), "does not divide"),
    (lambda: image_layout(10), "not side"),
    (lambda: layout("nope"), "unknown sequence task"),
])
def test_bad_arguments_are_one_line_data_errors(call, msg):
    with pytest.raises(DataError, match=msg) as e:
        call()
    assert "\n" not in str(e.value)
