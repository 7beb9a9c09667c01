"""PyTorch and Keras reflexes (issue 13, items 2 and 6): optimizer objects, fit(X, y), callbacks,
per-batch schedules, verbose, optimizer state dicts, Dataset indexing, batches; one JSON document
per JSON mode, options that do not apply refused, data set defaults, help everywhere, fast --help."""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from symdl.cli import COMMANDS, build_parser, main
from symdl.data import DataLoader, Dataset, batches, load_digits, load_dataset, xor
from symdl.errors import UsageError
from symdl.nn import Activation, Dense, Sequential, make_model
from symdl.optim import SGD, Adam
from symdl.optim.schedules import cosine_lr, make_schedule
from symdl.train import Trainer
from symdl.train.callbacks import Callback, EarlyStopping, LambdaCallback

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).parent / "reflex_scripts"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
DIGITS = load_digits("train")


def run_script(name, **kw):
    return subprocess.run([sys.executable, str(SCRIPTS / name)], cwd=ROOT, env=ENV, text=True,
                          stdout=subprocess.PIPE, timeout=600, **kw)


def mlp(seed=0, hidden=16):
    rng = np.random.default_rng(seed)
    return Sequential(Dense(64, hidden, rng), Activation("relu"), Dense(hidden, 10, rng))


# ------------------------------------------------------------ acceptance scripts
def test_a_pytorch_style_script_runs_unchanged():
    out = run_script("pytorch_style.py", stderr=subprocess.PIPE)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.splitlines()[-1])
    assert r["accuracy"] > 0.9
    assert r["same_optimizer"] and r["optimizer_steps"] == r["steps"] == 6 * 23
    assert r["calls"] == {"train_begin": 1, "epoch_end": 6, "batch_end": r["steps"], "train_end": 1}
    # the rate of every step is the cosine's at that step (per batch, not per epoch)
    T = r["steps"]
    want = [0.1 * (1 + math.cos(math.pi * t / T)) / 2 for t in range(T)]
    assert np.allclose(r["lrs"], want, rtol=0, atol=1e-12)
    assert len(set(r["lrs"][:23])) == 23  # it changes within the first epoch
    assert r["epoch_losses"] == r["history_losses"]


def test_a_keras_style_script_runs_unchanged_and_prints_each_epoch_when_it_ends():
    out = run_script("keras_style.py", stderr=subprocess.STDOUT)  # one pipe: the order as written
    assert out.returncode == 0, out.stdout
    lines = out.stdout.splitlines()
    r = json.loads(lines[-1])
    assert 4 <= r["epochs"] < 200 and r["test_accuracy"] > 0.9
    assert r["restored_val_loss"] == pytest.approx(min(r["val_loss"]), rel=1e-6)
    assert any("early stopping after epoch" in s for s in lines)
    order = [s for s in lines if s.startswith(("epoch", "[end of epoch"))]
    expect = []
    for e in range(1, r["epochs"] + 1):  # the epoch line, then the next callback's marker
        expect += [f"epoch {e:>3}", f"[end of epoch {e}]"]
    assert [s[:len(x)] for s, x in zip(order, expect)] == expect and len(order) == len(expect)


def test_piped_cli_epoch_lines_come_out_while_training_runs():
    cmd = [sys.executable, "-m", "symdl", "train", "--dataset", "xor", "--hidden", "4",
           "--epochs", "600", "--no-progress"]
    with subprocess.Popen(cmd, cwd=ROOT, env=ENV, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as proc:
        for line in proc.stdout:
            if line.startswith("epoch"):
                still_running = proc.poll() is None
                break
        rest = proc.stdout.read()
    assert still_running and line.startswith("epoch 100")
    assert "epoch 600" in rest and proc.returncode == 0


def test_the_quick_exit_loses_no_output_and_keeps_the_exit_code(tmp_path, capsys):
    # symdl.cli.run ends with os._exit (the interpreter's teardown is 0.4 s of a cold start):
    # what a piped command printed, a file it wrote and its exit code must all survive that
    args = ["graph", "--dataset", "xor", "--hidden", "3"]
    assert main(args) == 0
    expect = capsys.readouterr().out
    r = subprocess.run([sys.executable, "-m", "symdl", *args], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == expect and len(expect) > 500
    r = subprocess.run([sys.executable, "-m", "symdl", "train", "--epochs", "0", "--dataset",
                        "xor", "--save", str(tmp_path / "m")], env=ENV, capture_output=True,
                       text=True)
    assert r.returncode == 0 and (tmp_path / "m").is_dir(), r.stderr
    r = subprocess.run([sys.executable, "-m", "symdl", "train", "--lr", "-1"], env=ENV,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("symdl") and "Traceback" not in r.stderr


# ---------------------------------------------------------------- optimizer, fit
def test_an_optimizer_object_trains_exactly_as_a_factory():
    runs = []
    for make in ("object", "factory"):
        model = mlp()
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9) if make == "object" \
            else (lambda ps: SGD(ps, lr=0.1, momentum=0.9))
        tr = Trainer(model, opt, epochs=2, seed=3, verbose=0)
        runs.append((tr.fit(DIGITS).train_loss, [p.data.copy() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_fit_takes_arrays_a_dataset_or_keras_keywords_alike():
    train, val = DIGITS[:1200], DIGITS[1200:]
    hist = []
    for call in (lambda t: t.fit(train, val),
                 lambda t: t.fit(x=train.X, y=train.y, validation_data=(val.X, val.y)),
                 lambda t: t.fit(train.X.astype(np.float64), list(train.y), validation_data=val)):
        t = Trainer(mlp(), lambda ps: SGD(ps, lr=0.1), epochs=2, seed=1, verbose=0)
        hist.append(call(t).as_dict())
    for h in hist[1:]:
        assert {k: v for k, v in h.items() if k != "seconds"} == \
            {k: v for k, v in hist[0].items() if k != "seconds"}


def test_fit_keywords_replace_the_trainers_epochs_and_batch_size():
    t = Trainer(mlp(), lambda ps: SGD(ps, lr=0.1), epochs=9, batch_size=8, verbose=0)
    counter = LambdaCallback(on_batch_end=lambda step, logs: sizes.append(logs["size"]))
    sizes = []
    h = t.fit(DIGITS.X[:300], DIGITS.y[:300], epochs=2, batch_size=100, callbacks=[counter])
    assert h.epochs == 2 and sizes == [100] * 6
    assert set(h.history) == {"loss", "accuracy"} and h.history["loss"] == h.train_loss  # Keras's
    t.fit(DIGITS.X[:300], DIGITS.y[:300], epochs=1, verbose=2)  # fit's callbacks: that call's only
    assert len(sizes) == 6 and t.verbose == 0


@pytest.mark.parametrize("call, message", [
    (lambda t: t.fit(), "fit needs data"),
    (lambda t: t.fit(DIGITS.X), "targets missing"),
    (lambda t: t.fit(DIGITS, x=DIGITS.X, y=DIGITS.y), "takes the data once"),
    (lambda t: t.fit(DIGITS, validation_data=(DIGITS.X, DIGITS.y, DIGITS.y)), "a pair"),
    (lambda t: t.fit(DIGITS.X, DIGITS.y[:5]), "but y has 5"),
    (lambda t: t.fit(DIGITS, verbose=3), "verbose must be"),
])
def test_fit_refuses_unclear_data_with_one_line(call, message):
    t = Trainer(mlp(), lambda ps: SGD(ps, lr=0.1), epochs=1, verbose=0)
    with pytest.raises((UsageError, Exception), match=message):
        call(t)


def test_an_optimizer_of_other_parameters_is_refused():
    with pytest.raises(UsageError, match="not this model's"):
        Trainer(mlp(), SGD(mlp(1).parameters(), lr=0.1))
    with pytest.raises(UsageError, match="factory"):
        Trainer(mlp(), "sgd")


def test_optimizer_state_dict_round_trip_continues_exactly():
    def run(steps, load=None):
        model = mlp(2)
        opt = Adam(model.parameters(), lr=0.01, amsgrad=True)
        tr = Trainer(model, opt, batch_size=64, epochs=1, seed=5, verbose=0)
        if load is not None:
            for p, w in zip(model.parameters(), load[0]):
                p.data[...] = w
            opt.load_state_dict(load[1])
        tr.fit(DIGITS[:64 * steps])
        return [p.data.copy() for p in model.parameters()], opt.state_dict()
    w1, sd1 = run(3)
    # the state is per parameter (independent of packing) and a copy
    assert sd1["t"] == 3 and set(sd1["state"]) == {"m", "v", "vmax"}
    assert [a.shape for a in sd1["state"]["m"]] == [w.shape for w in w1]
    # loading it into a fresh, unpacked optimizer keeps every array and the step count
    plain = [Dense(64, 16), Dense(16, 10)]
    fresh = Adam([p for layer in plain for p in layer.parameters()], lr=0.01, amsgrad=True)
    fresh.load_state_dict(sd1)
    assert fresh.t == 3 and all(np.array_equal(a, b) for a, b in
                                zip(fresh.state_dict()["state"]["v"], sd1["state"]["v"]))
    # training on from the loaded state equals training on from the original
    ref_w, ref_sd = run(3, (w1, sd1))
    again_w, again_sd = run(3, (w1, sd1))
    assert all(np.array_equal(a, b) for a, b in zip(ref_w, again_w)) and ref_sd["t"] == 6


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.update(optimizer="SGD"), "state is of SGD"),
    (lambda sd: sd["state"].pop("v"), "does not match"),
    (lambda sd: sd["state"]["m"].pop(), "1 m array"),
    (lambda sd: sd["state"]["m"].__setitem__(0, np.zeros(3)), "has shape"),
    (lambda sd: sd["hyper"].pop("eps"), "hyperparameters"),
    (lambda sd: sd.update(t=-1), "non-negative"),
    (lambda sd: sd.pop("t"), "key 't' missing"),
])
def test_load_state_dict_is_strict_and_loads_nothing_on_error(edit, message):
    layer = Dense(3, 2)
    opt = Adam(layer.parameters(), lr=0.1)
    sd = opt.state_dict()
    edit(sd)
    before = opt.state_dict()
    with pytest.raises(UsageError, match=message):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["t"] == before["t"] and all(np.array_equal(a, b) for a, b in
                                             zip(after["state"]["m"], before["state"]["m"]))


# ------------------------------------------------------------------- callbacks
def test_callbacks_see_every_hook_in_order_and_the_guard_runs_before_the_update():
    seen = []

    class Spy(Callback):
        def on_train_begin(self, logs=None):
            seen.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            seen.append(f"epoch_begin {epoch}")

        def on_before_update(self, step, logs=None):
            assert "grad_sq_norm" in logs  # the guard already ran and passed the step
            seen.append("before_update")

        def on_epoch_end(self, epoch, logs=None):
            seen.append(f"epoch_end {epoch} {sorted(logs)}")

        def on_train_end(self, logs=None):
            seen.append("train_end")
    t = Trainer(mlp(), lambda ps: SGD(ps, lr=0.1), batch_size=100, epochs=2, verbose=0,
                callbacks=[Spy()])
    t.fit(DIGITS[:200])
    keys = ["accuracy", "loss", "lr", "seconds", "val_accuracy", "val_loss"]
    assert seen == ["train_begin", "epoch_begin 0", "before_update", "before_update",
                    f"epoch_end 0 {keys}", "epoch_begin 1", "before_update", "before_update",
                    f"epoch_end 1 {keys}", "train_end"]


def test_a_callback_can_skip_updates_and_stop_training():
    model = mlp()
    w0 = [p.data.copy() for p in model.parameters()]

    def stop(epoch, logs):
        t.stop_training = epoch == 1
    skip = LambdaCallback(on_before_update=lambda step, logs: logs.update(skip_update=True),
                          on_epoch_end=stop)
    t = Trainer(model, lambda ps: SGD(ps, lr=0.1), epochs=10, verbose=0, callbacks=[skip])
    h = t.fit(DIGITS[:100])
    assert h.epochs == 2 and t.optimizer.t == 0
    assert all(np.array_equal(a, p.data) for a, p in zip(w0, model.parameters()))
    with pytest.raises(UsageError, match="no hook 'on_epoch_ends'"):
        LambdaCallback(on_epoch_ends=print)


def test_early_stopping_callback_monitors_accuracy_upwards_and_replaces_the_trainers_own():
    es = EarlyStopping(monitor="accuracy", patience=2, min_delta=0.5)  # no gain is that large
    t = Trainer(mlp(), lambda ps: SGD(ps, lr=0.1), epochs=30, early_stopping=9, verbose=0,
                callbacks=[es], say=lambda m: None)
    h = t.fit(DIGITS[:300])
    assert t.early is es.state and h.epochs == 3 and es.state.best_epoch == 1


def test_schedules_step_per_epoch_or_per_batch():
    for unit, distinct in (("epoch", 2), ("batch", 6)):
        lrs = []
        rec = LambdaCallback(on_batch_begin=lambda s, logs: lrs.append(logs["lr"]))
        t = Trainer(mlp(), lambda ps: SGD(ps, lr=0.1), batch_size=100, epochs=2, verbose=0,
                    schedule=make_schedule("exponential:gamma=0.5", 0.1), schedule_unit=unit,
                    callbacks=[rec])
        t.fit(DIGITS[:300])
        assert len(set(lrs)) == distinct and lrs[-1] == pytest.approx(0.1 * 0.5 ** (distinct - 1))
    assert "per batch" in repr(cosine_lr(0.1, 10).with_unit("batch"))
    with pytest.raises(UsageError, match="schedule_unit"):
        Trainer(mlp(), lambda ps: SGD(ps, lr=0.1), schedule_unit="step")


def test_verbose_2_prints_a_line_per_epoch_and_0_nothing(capsys):
    Trainer(mlp(), lambda ps: SGD(ps, lr=0.1), epochs=3, verbose=2).fit(DIGITS[:200], DIGITS[200:300])
    out, err = capsys.readouterr()
    assert [s.split()[:2] for s in out.splitlines()] == [["epoch", "1"], ["epoch", "2"], ["epoch", "3"]]
    assert "validation" in out and err == ""
    Trainer(mlp(), lambda ps: SGD(ps, lr=0.1), epochs=3, verbose=0).fit(DIGITS[:200])
    assert capsys.readouterr() == ("", "")


def test_verbose_1_draws_a_tqdm_auto_bar_on_stderr(capsys):
    Trainer(mlp(), lambda ps: SGD(ps, lr=0.1), epochs=2, verbose=1).fit(DIGITS[:200])
    out, err = capsys.readouterr()
    assert out == "" and "train" in err and "step" in err
    assert "tqdm.auto" in sys.modules


# --------------------------------------------------------------------- data
def test_a_dataset_indexes_slices_and_iterates():
    ds = xor(n=10)
    x, y = ds[3]
    assert np.array_equal(x, ds.X[3]) and y == ds.y[3]
    assert np.array_equal(ds[-1][0], ds.X[9])
    part = ds[2:5]
    assert isinstance(part, Dataset) and len(part) == 3 and part.name == "xor"
    assert np.array_equal(part.X, ds.X[2:5]) and part.task == ds.task
    assert len(ds[ds.y == 1]) == int((ds.y == 1).sum()) and len(ds[[0, 0, 1]]) == 3
    rows = list(ds)
    assert len(rows) == 10 and all(np.array_equal(a, ds.X[i]) for i, (a, _) in enumerate(rows))
    with pytest.raises(IndexError, match="out of range"):
        ds[10]
    with pytest.raises(TypeError, match="indexed by"):
        ds[1, 2]


def test_batches_cover_every_row_once_per_pass_and_shuffle_by_seed():
    ds = Dataset(np.arange(20.0).reshape(10, 2), np.arange(10))
    plain = list(batches(ds, 4))
    assert [len(b[1]) for b in plain] == [4, 4, 2] and np.concatenate([b[1] for b in plain]).tolist() == list(range(10))
    a = [yb.tolist() for _, yb in batches(ds, 3, shuffle=True, seed=7)]
    b = [yb.tolist() for _, yb in batches(ds, 3, shuffle=True, seed=7)]
    assert a == b and sorted(sum(a, [])) == list(range(10)) and sum(a, []) != list(range(10))
    loader = DataLoader((ds.X, ds.y), batch_size=3, shuffle=True, seed=1, drop_last=True)
    first, second = ([yb.tolist() for _, yb in loader] for _ in range(2))
    assert len(loader) == 3 and len(first) == 3 and first != second  # a new order per pass
    with pytest.raises(UsageError, match="batch_size"):
        DataLoader(ds, batch_size=0)


# ------------------------------------------------------------- CLI: item 6
def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, flag", [
    (["--optimizer", "adam", "--momentum", "0.5"], "--momentum"),
    (["--model", "logreg", "--hidden", "8"], "--hidden"),
    (["--channels", "8,8"], "--channels"),
    (["--every", "2"], "--every"),
    (["--max-skips", "3"], "--max-skips"),
    (["--schedule-unit", "batch"], "--schedule-unit"),
    (["--dataset", "sine", "--label-smoothing", "0.1"], "--label-smoothing"),
    (["--data-dir", "/tmp"], "--data-dir"),
])
def test_an_option_that_does_not_apply_is_an_error_naming_it(capsys, argv, flag):
    code, out, err = cli(capsys, "train", *argv, "--epochs", "1")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert flag in err and "apply" in err


def test_rmsprop_takes_momentum_and_json_prints_the_settings_and_version(capsys):
    import symdl
    code, out, _ = cli(capsys, "train", "--dataset", "xor", "--hidden", "4", "--epochs", "1",
                       "--optimizer", "rmsprop", "--momentum", "0.5", "--json")
    doc = json.loads(out)  # exactly one document
    assert code == 0 and doc["symdl_version"] == symdl.__version__
    s = doc["settings"]
    assert s["optimizer"] == "rmsprop" and s["optimizer_hyper"]["momentum"] == 0.5
    assert s["hidden"] == [4] and s["epochs"] == 1 and s["seed"] == 0 and s["batch_size"] == 32


def test_the_sine_dataset_trains_with_its_own_defaults(capsys):
    code, out, err = cli(capsys, "train", "--dataset", "sine", "--json")
    doc = json.loads(out)
    assert code == 0, err
    assert doc["test_loss"] < 0.05  # noise variance 0.01; sin itself has variance 0.5
    assert doc["settings"]["lr"] == 0.01 and doc["settings"]["epochs"] == 200
    # an explicit flag still wins over the data set's default
    code, out, _ = cli(capsys, "train", "--dataset", "sine", "--epochs", "2", "--json")
    assert code == 0 and json.loads(out)["epochs"] == 2


@pytest.mark.parametrize("dataset", ["xor", "spirals", "moons", "circles"])
def test_every_classification_set_trains_with_the_defaults(capsys, dataset):
    code, out, _ = cli(capsys, "train", "--dataset", dataset, "--json")
    assert code == 0 and json.loads(out)["test_accuracy"] >= 0.95


@pytest.mark.parametrize("argv, keys", [
    (["explain", "--dataset", "xor", "--hidden", "2", "--numeric", "--format", "json"],
     {"loss", "parameters", "backprop"}),
    (["explain", "--layer", "dense", "--format", "json"], {"name", "rules", "verified"}),
    (["derive", "--optimizer", "adam", "--format", "json"], {"optimizer"}),
    (["derive", "--optimizer", "sgd", "--schedule", "cosine:T_max=5", "--format", "json"],
     {"optimizer", "schedule"}),
    (["info", "--json"], None),
])
def test_every_json_mode_prints_exactly_one_document(capsys, argv, keys):
    code, out, _ = cli(capsys, *argv)
    doc = json.loads(out)  # raises on text or on two documents
    assert code == 0 and (keys is None or keys <= set(doc))


def _options(parser, path="symdl"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_has_help_text():
    missing = [f"{path} {a.option_strings[0]}" for path, a in _options(build_parser())
               if not a.help or a.help == argparse.SUPPRESS]
    assert missing == []


def test_top_level_help_lists_every_command_without_importing_them():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {c.dest: c.help for c in sub._choices_actions} == COMMANDS
    assert [c.dest for c in sub._choices_actions] == list(COMMANDS)
    code = ("import contextlib, io, sys\nfrom symdl.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            "heavy = ('sympy', 'numba', 'numpy', 'networkx', 'scipy', 'symdl.nn', 'symdl.data')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
            "print('train' in out.getvalue() and 'predict' in out.getvalue())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, text=True,
                         capture_output=True, timeout=120)
    assert out.stdout.splitlines() == ["[]", "True"], out.stderr


def test_static_choices_match_the_registries():
    from symdl.commands.options import DATASETS, MODELS, REGRESSION_SETS
    from symdl.data import DATASETS as REAL_DATASETS
    from symdl.nn.models import MODELS as REAL_MODELS
    assert MODELS == tuple(REAL_MODELS) and DATASETS == tuple(REAL_DATASETS)
    synthetic = [d for d in DATASETS if d not in ("digits", "mnist")]
    assert [d for d in synthetic if load_dataset(d).task == "regression"] == list(REGRESSION_SETS)
    assert make_model("mlp", 2, 2) is not None
