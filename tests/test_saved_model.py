"""Saved models: train --save, predict in fresh processes; pickles and torn files refused."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symdl.train.saved as saved
from symdl.data import load_dataset, write_idx
from symdl.errors import CheckpointError, UsageError
from symdl.graph import Graph
from symdl.nn import (LSTM, Activation, BatchNorm1d, Dense, Dropout, Module, Sequential,
                      TransformerEncoderLayer, make_model)
from symdl.nn.config import rebuild
from symdl.train.checkpoint import meta_digest

ROOT = Path(__file__).resolve().parents[1]


def symdl_run(*args, cwd):
    """``python -m symdl ...`` in a fresh process (the checkout first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "symdl", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def python_run(code, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``symdl train --save`` on the digits: (folder, the run's JSON summary)."""
    d = tmp_path_factory.mktemp("saved")
    r = symdl_run("train", "--epochs", 2, "--hidden", 32, "--save", d / "model", "--json", cwd=d)
    assert r.returncode == 0, r.stderr
    assert f"saved the model to {d / 'model'}" in r.stderr
    return d, json.loads(r.stdout)


# ------------------------------------------------------------------ acceptance
def test_fresh_processes_predict_the_reported_test_accuracy(trained):
    d, summary = trained
    test = load_dataset("digits", split="test")
    raw = np.rint(test.X * 16).astype(np.uint8)  # the pixels 0..16 the loader divides by 16
    assert np.array_equal(raw.astype(np.float32) / np.float32(16), test.X)
    write_idx(d / "images-idx3-ubyte", raw.reshape(-1, 8, 8))
    np.save(d / "rows.npy", raw)
    accuracy = summary["test_accuracy"]
    assert 0.5 < accuracy < 1

    r = symdl_run("predict", d / "model", "--input", d / "images-idx3-ubyte", "--json", cwd=d)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # exactly one JSON document
    assert doc["n"] == len(test) and doc["labels"] == [str(c) for c in doc["predictions"]]
    assert np.mean(np.array(doc["predictions"]) == test.y) == accuracy

    r = symdl_run("predict", d / "model", "--input", d / "rows.npy", cwd=d)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == doc["labels"]  # text: one prediction per line
    header = ",".join(f"pixel{i}" for i in range(64))
    np.savetxt(d / "rows.csv", raw, fmt="%d", delimiter=",", header=header, comments="")
    r = symdl_run("predict", d / "model", "--input", d / "rows.csv", cwd=d)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == doc["labels"]  # CSV with a header line

    code = ("import numpy as np, symdl\nfrom symdl.data import load_dataset\n"
            "t = load_dataset('digits', split='test')\nm = symdl.load('model')\n"
            "print(repr(float(np.mean(m.predict(t.X) == t.y))))\n"
            "print(repr(float(np.mean(m.predict(m.preprocess(np.load('rows.npy'))) == t.y))))")
    r = python_run(code, d)
    assert r.returncode == 0, r.stderr
    assert [float(v) for v in r.stdout.split()] == [accuracy, accuracy]

    r = symdl_run("evaluate", d / "model", "--dataset", "digits", "--json", cwd=d)
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["accuracy"] == accuracy
    assert ev["loss"] == pytest.approx(summary["test_loss"], rel=1e-12)


def test_cli_mistakes_are_one_line_errors(trained):
    d, _ = trained
    np.save(d / "two.npy", np.zeros((3, 2)))
    for args, code, words in (
            (["predict", d / "nothere", "--input", d / "two.npy"], 4, "is not a saved model"),
            (["predict", d / "model", "--input", d / "missing.npy"], 2, "does not exist"),
            (["predict", d / "model", "--input", d / "two.npy"], 2, "the model takes (64,)"),
            (["evaluate", d / "model", "--dataset", "xor"], 2, "xor has examples of shape (2,)")):
        r = symdl_run(*args, cwd=d)
        assert r.returncode == code and r.stdout == "", (args, r.stderr)
        assert len(r.stderr.splitlines()) == 1 and words in r.stderr, (args, r.stderr)


def test_a_checkpoint_becomes_a_saved_model(tmp_path):
    flags = ("--epochs", 1, "--hidden", 16, "--json")
    r = symdl_run("train", *flags, "--checkpoint", tmp_path / "ck", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    acc = json.loads(r.stdout)["test_accuracy"]
    r = symdl_run("train", *flags, "--resume", tmp_path / "ck", "--save", tmp_path / "m",
                  cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["test_accuracy"] == acc
    m = saved.load(tmp_path / "m")
    test = load_dataset("digits", split="test")
    assert np.mean(m.predict(test.X) == test.y) == acc
    assert m.metadata["test_accuracy"] == acc and m.class_names == [str(c) for c in range(10)]


# ------------------------------------------------------------------ refusals
def _forge(folder: Path, arrays=None, meta_edit=None, weights: bytes | None = None):
    """Rewrite a saved model with other content and *valid* digests (a deliberate forgery)."""
    meta = json.loads((folder / "model.json").read_text())
    if arrays is not None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # object arrays are pickled by np.savez
        weights = buf.getvalue()
    if weights is not None:
        (folder / "weights.npz").write_bytes(weights)
        meta["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    if meta_edit:
        meta_edit(meta)
    meta["meta_sha256"] = meta_digest(meta)
    (folder / "model.json").write_text(json.dumps(meta))


@pytest.fixture
def small(tmp_path):
    spec = make_model("mlp", 4, 3, (5,), rng=np.random.default_rng(0))
    return saved.save(spec.module, tmp_path / "m", input_shape=(4,))


def _refused(folder, cwd, *needles):
    with pytest.raises(CheckpointError) as exc:
        saved.load(folder)
    np.save(cwd / "x.npy", np.zeros((2, 4), np.float32))
    r = symdl_run("predict", folder, "--input", cwd / "x.npy", cwd=cwd)
    assert r.returncode == 4 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("symdl: error: ") and "Traceback" not in r.stderr
    for needle in needles:
        assert needle in str(exc.value) and needle in lines[0]


def test_a_pickle_inside_the_weights_is_refused(small, tmp_path):
    with np.load(small / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["param/evil"] = np.array([{"a": 1}], dtype=object)
    _forge(small, arrays=arrays)
    _refused(small, tmp_path, "refused to load weights.npz")


def test_truncated_or_edited_files_are_refused(small, tmp_path):
    payload = (small / "weights.npz").read_bytes()
    (small / "weights.npz").write_bytes(payload[: len(payload) // 2])
    _refused(small, tmp_path, "does not match its SHA-256")
    (small / "weights.npz").write_bytes(payload)
    saved.load(small)  # intact again
    text = (small / "model.json").read_text()
    (small / "model.json").write_text(text[: len(text) // 2])
    _refused(small, tmp_path, "model.json is corrupt")
    (small / "model.json").write_text(text.replace('"n_out": 5', '"n_out": 6'))
    _refused(small, tmp_path, "model.json does not match its SHA-256")
    (small / "model.json").write_text(text)
    (small / "weights.npz").unlink()
    _refused(small, tmp_path, "weights.npz missing")


def test_forged_descriptions_are_refused(small):
    original = (small / "model.json").read_text()

    def unknown(meta):
        meta["architecture"]["class"] = "os.system"
    _forge(small, meta_edit=unknown)
    with pytest.raises(CheckpointError, match="unknown layer class 'os.system'"):
        saved.load(small)

    def bad_arg(meta):
        meta["architecture"] = {"class": "layers.Dense", "args": {"n_in": 4, "evil": 1}}
    _forge(small, meta_edit=bad_arg)
    with pytest.raises(CheckpointError, match="takes no argument 'evil'"):
        saved.load(small)

    (small / "model.json").write_text(original)

    def other_shape(meta):
        meta["architecture"]["args"]["layers"][0]["module"]["args"]["n_out"] = 6
    _forge(small, meta_edit=other_shape)
    with pytest.raises(CheckpointError, match="does not fit the model"):
        saved.load(small)


def test_saving_refuses_a_foreign_folder_and_a_changed_model(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    m = Sequential(Dense(2, 3))
    with pytest.raises(CheckpointError, match="not a saved model"):
        saved.save(m, tmp_path / "notes")
    assert (tmp_path / "notes" / "a.txt").read_text() == "mine"
    setattr(m, "1", Dense(3, 4))  # added after construction: not in its arguments
    with pytest.raises(UsageError, match="changed after it was constructed"):
        saved.save(m, tmp_path / "m")
    saved.save(Sequential(Dense(2, 3)), tmp_path / "m")
    saved.save(Sequential(Dense(2, 5)), tmp_path / "m")  # replaced atomically
    assert saved.load(tmp_path / "m").module.layers[0].n_out == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "notes"]  # no temporaries left


# ------------------------------------------------------------------ descriptions, model(X)
class Scaled(Module):
    """A user's own module: registered by defining it, described by its arguments."""

    def __init__(self, inner: Module, factor: float, shape=(1, 2)):
        super().__init__()
        self.inner, self.factor, self.shape = inner, factor, shape

    def build(self, g, x, prefix=""):
        return g.add("scale", self.inner.build(g, x, prefix=f"{prefix}inner."),
                     factor=self.factor, name=f"{prefix}scaled")


MODELS = {
    "mlp": lambda: make_model("mlp", 6, 3, (8, 5), "tanh", np.random.default_rng(1),
                              dropout=0.2).module,
    "cnn": lambda: make_model("cnn", 16, 3, rng=np.random.default_rng(2), channels=(2,),
                              norm="batch", residual=True, pool="l2").module,
    "user": lambda: Scaled(Sequential(Dense(6, 3), BatchNorm1d(3)), 0.5, shape=(3, 4)),
    "params": lambda: Sequential(Dense(6, 4), Activation("leaky_relu", alpha=0.2), Dense(4, 2)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_descriptions_rebuild_equal_models(name, tmp_path):
    m = MODELS[name]()
    rng = np.random.default_rng(3)
    for _, b in m.named_buffers():  # non-trivial running statistics
        b[...] = rng.uniform(0.5, 2, b.shape)
    X = rng.standard_normal((5, 16 if name == "cnn" else 6)).astype(np.float32)
    config = m.config()
    assert json.loads(json.dumps(config)) == config
    twin = rebuild(json.loads(json.dumps(config, sort_keys=True)))
    assert twin.config() == config and repr(twin) == repr(m)
    loaded = saved.load(saved.save(m, tmp_path / name)).module
    assert np.array_equal(loaded(X), m(X))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(loaded.named_buffers(),
                                                                  m.named_buffers()))
    if name == "user":
        assert config["class"].endswith("test_saved_model.Scaled")
        assert config["args"]["shape"] == {"tuple": [3, 4]} and twin.shape == (3, 4)


def test_sequence_and_attention_modules_round_trip():
    rng = np.random.default_rng(4)
    for m in (LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True),
              TransformerEncoderLayer(4, 2, dim_feedforward=8, batch_first=True, norm_first=True)):
        twin = rebuild(json.loads(json.dumps(m.config())))
        twin.load_state_dict(m.state_dict())
        X = rng.standard_normal((2, 3, 4 if "Transformer" in repr(m) else 3)).astype(np.float32)
        assert np.array_equal(twin(X), m(X))


def test_model_of_an_array_is_the_evaluation_forward_pass():
    rng = np.random.default_rng(5)
    m = Sequential(Dense(3, 4, rng, dtype="float64"), Dropout(0.5),
                   Dense(4, 2, rng, dtype="float64"))
    X = rng.standard_normal((7, 3))
    W1, b1, W2, b2 = (p.data for p in m.parameters())
    assert np.allclose(m(X), (X @ W1.T + b1) @ W2.T + b2, rtol=1e-13, atol=1e-13)  # no dropout
    assert np.array_equal(m(X.astype(np.float32)), m(X.astype(np.float32).astype(np.float64)))
    first = m(X)
    m.parameters()[0].data = W1 * 2  # copied into the same array: the program sees it
    assert not np.allclose(m(X), first)
    with pytest.raises(UsageError, match="needs its graph"):
        m("x")


def test_model_of_a_graph_node_builds_the_graph():
    m = Sequential(Dense(3, 4), Dense(4, 2))
    g = Graph()
    x = g.input("x", ("N", 3))
    out = m(g, x)
    h = Graph()
    assert out == m.build(h, h.input("x", ("N", 3))) and g.order() == h.order()
    assert g.shape(out) == ("N", 2)


def test_predictions_probabilities_and_regression(tmp_path):
    spec = make_model("mlp", 4, 3, (5,), rng=np.random.default_rng(6))
    m = saved.load(saved.save(spec.module, tmp_path / "c", class_names=["a", "b", "c"],
                              preprocessing={"divide": 2.0}))
    X = np.random.default_rng(7).standard_normal((6, 4)).astype(np.float32)
    p = m.predict_proba(X)
    assert np.allclose(p.sum(axis=1), 1) and np.array_equal(p.argmax(1), m.predict(X))
    assert np.array_equal(m.preprocess(X * 2), X) and m.class_names == ["a", "b", "c"]
    reg = make_model("mlp", 4, 1, (5,), rng=np.random.default_rng(6), task="regression")
    r = saved.load(saved.save(reg.module, tmp_path / "r", task="regression", loss="mse"))
    assert r.predict(X).shape == (6,) and np.array_equal(r.predict(X), r(X)[:, 0])
    with pytest.raises(UsageError, match="softmax classifier"):
        r.predict_proba(X)


def test_a_trainer_is_saved_with_its_loss_task_and_input_shape(tmp_path):
    from symdl.optim import SGD
    from symdl.train import Trainer
    train, test = load_dataset("sine"), load_dataset("sine", split="test")
    spec = make_model("mlp", 1, 1, (8,), "tanh", np.random.default_rng(0), task="regression")
    t = Trainer(spec.module, lambda ps: SGD(ps, lr=0.01, momentum=0.9), loss="mse", epochs=1,
                progress=False)
    t.fit(train)
    m = saved.load(saved.save(t, tmp_path / "sine"))
    assert (m.task, m.loss, m.input_shape) == ("regression", "mse", (1,))
    assert m.evaluate(test.X, test.y) == t.evaluate(test)  # the trainer's numbers, exactly
    assert np.array_equal(m.predict(test.X), t.predict(test.X)[:, 0])


@pytest.mark.slow
def test_two_mpi_ranks_save_once(tmp_path):
    pytest.importorskip("mpi4py")
    from symdl.commands.distributed import find_mpiexec
    # mpiexec itself (not --ranks, whose launcher is tested with the distributed trainer)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([find_mpiexec(), "-n", "2", sys.executable, "-m", "symdl", "train",
                        "--distributed", "--epochs", "1", "--hidden", "8", "--save",
                        str(tmp_path / "m"), "--json"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("saved the model to") == 1  # rank 0 alone writes
    test = load_dataset("digits", split="test")
    m = saved.load(tmp_path / "m")
    assert np.mean(m.predict(test.X) == test.y) == json.loads(r.stdout)["test_accuracy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


class Tagged(Module):
    """A user's module with its own from_config, which calls the default one."""

    def __init__(self, n: int):
        super().__init__()
        self.dense = Dense(n, n)

    def build(self, g, x, prefix=""):
        return self.dense.build(g, x, prefix=f"{prefix}dense.")

    @classmethod
    def from_config(cls, config):
        module = super().from_config(config)
        module.tag = "rebuilt by its own from_config"
        return module


def test_a_class_may_rebuild_itself_and_from_config_checks_the_class():
    config = Sequential(Tagged(3)).config()
    twin = Module.from_config(json.loads(json.dumps(config)))
    assert twin.layers[0].tag == "rebuilt by its own from_config"
    assert repr(Dense.from_config(Dense(2, 3).config())) == "Dense(2, 3)"
    with pytest.raises(CheckpointError, match="Dense.from_config got a description of"):
        Dense.from_config(config)
