"""Optimizers in training, schedules, penalties, dropout, clipping, early stopping."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from symdl.cli import main
from symdl.data import load_digits, train_val_split
from symdl.nn import make_model
from symdl.optim import SGD, Adam
from symdl.optim.schedules import make_schedule
from symdl.train import Trainer

DIGITS = load_digits("train")


def trainer(seed=0, opt=lambda ps: SGD(ps, lr=0.05, momentum=0.9), dropout=0.0, **kw):
    a, b = np.random.SeedSequence(seed).spawn(2)
    spec = make_model("mlp", 64, 10, (32,), "relu", np.random.default_rng(a), dropout=dropout,
                      label_smoothing=kw.pop("label_smoothing", 0.0))
    return Trainer(spec.module, opt, spec.loss, spec.loss_params, batch_size=kw.pop("batch_size", 64),
                   epochs=kw.pop("epochs", 3), seed=b, progress=False, **kw)


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_adam_reaches_97_percent_with_defaults(capsys):
    code, out, _ = cli(capsys, "train", "--optimizer", "adam", "--json")
    assert code == 0 and json.loads(out)["test_accuracy"] >= 0.97


def test_lr_100_diverges_with_exit_3_and_no_checkpoint(capsys, tmp_path):
    code, out, err = cli(capsys, "train", "--lr", "100", "--checkpoint", str(tmp_path / "ck"))
    assert code == 3 and "update not applied" in err
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").glob("ckpt-*"))


def test_dropout_is_identity_in_evaluation_and_seeded_in_training():
    t = trainer(dropout=0.5)
    plain = trainer(dropout=0.0)
    for p, q in zip(t.params, plain.params):
        q.data[...] = p.data
    X = DIGITS.X[:50]
    np.testing.assert_array_equal(t.predict(X), plain.predict(X))
    h1 = trainer(dropout=0.5).fit(DIGITS)
    h2 = trainer(dropout=0.5).fit(DIGITS)
    h0 = trainer(dropout=0.0).fit(DIGITS)
    assert h1.train_loss == h2.train_loss and h1.train_loss != h0.train_loss


def test_dropout_masks_keep_the_expected_fraction_scaled():
    t = trainer(dropout=0.25)
    t._prepare(DIGITS.X, DIGITS.y)
    prog = t.program(64, True)
    from symdl.train.regularize import fill_masks
    fill_masks(prog, t._masks, np.random.default_rng(0), train=True)
    (mask,) = [prog.inputs[n] for n in t._masks]
    assert set(np.unique(mask)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((mask > 0).mean() - 0.75) < 0.05


def test_l2_penalty_adds_lambda_w_to_the_gradient():
    lam = 0.3
    grads = []
    for l2 in (0.0, lam):
        t = trainer(l2=l2)
        t._prepare(DIGITS.X, DIGITS.y)
        prog = t.program(16, True)
        t._batch(prog, DIGITS.X, DIGITS.y, np.arange(16))
        prog.run()
        grads.append([p.grad.copy() for p in t.params])
        weights = [p.data.copy() for p in t.params]
    for (g0, g1, w, p) in zip(grads[0], grads[1], weights, t.params):
        expect = lam * w if w.ndim == 2 else 0 * w
        np.testing.assert_allclose(g1 - g0, expect, rtol=1e-5, atol=1e-6)


def test_clip_norm_bounds_the_applied_gradient():
    from symdl.train.regularize import clip
    g = np.array([3.0, 4.0], np.float32)
    clip(g, 25.0, norm=1.0, value=None)
    assert math.isclose(float(np.linalg.norm(g)), 1.0, rel_tol=1e-6)
    g = np.array([3.0, -4.0], np.float32)
    clip(g, 25.0, norm=None, value=2.0)
    assert g.tolist() == [2.0, -2.0]


def test_early_stopping_restores_the_best_weights():
    train, val = train_val_split(DIGITS, 0.2, np.random.default_rng(0))
    t = trainer(opt=lambda ps: SGD(ps, lr=2.0, momentum=0.9), epochs=40, early_stopping=2,
                divergence=0, on_nonfinite="skip", max_skips=1000)
    said = []
    t.say = said.append
    hist = t.fit(train, val)
    assert hist.epochs < 40 and any("early stopping" in s for s in said)
    best = min(v for v in hist.val_loss if v is not None)
    assert math.isclose(t.evaluate(val)[0], best, rel_tol=1e-5)


def test_schedule_sets_the_rate_per_epoch():
    sched = make_schedule("step:step_size=1,gamma=0.5", 0.1)
    t = trainer(schedule=sched, epochs=3)
    t.fit(DIGITS)
    assert math.isclose(t.optimizer.hyper["lr"], 0.1 * 0.5**2)


def test_full_batch_mode_takes_one_step_per_epoch():
    t = trainer(batch_size="full", epochs=2)
    t.fit(DIGITS)
    assert t.optimizer.t == 2


def test_label_smoothing_and_input_noise_change_training_deterministically():
    base = trainer().fit(DIGITS).train_loss
    smooth = trainer(label_smoothing=0.1).fit(DIGITS).train_loss
    noisy = [trainer(input_noise=0.1).fit(DIGITS).train_loss for _ in range(2)]
    assert smooth != base and noisy[0] == noisy[1] != base


def test_resume_with_dropout_and_adam_is_exact(tmp_path):
    kw = dict(opt=lambda ps: Adam(ps), dropout=0.3)
    full = trainer(epochs=4, **kw)
    full.fit(DIGITS)
    part = trainer(epochs=2, checkpoint=tmp_path, **kw)
    part.fit(DIGITS)
    rest = trainer(epochs=4, checkpoint=tmp_path, resume="auto", **kw)
    rest.say = lambda msg: None
    hist = rest.fit(DIGITS)
    assert hist.train_loss == full.history.train_loss
    assert all(np.array_equal(a.data, b.data) for a, b in zip(rest.params, full.params))


@pytest.mark.parametrize("flag, value, fragment", [
    ("--dropout", "1.5", "dropout probability"),
    ("--label-smoothing", "1", "label smoothing"),
    ("--schedule", "nope", "unknown schedule"),
    ("--l2", "-1", "non-negative"),
])
def test_bad_regularizer_settings_exit_2(capsys, flag, value, fragment):
    code, _, err = cli(capsys, "train", flag, value)
    assert code == 2 and fragment in err
