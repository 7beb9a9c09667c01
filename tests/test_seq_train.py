"""Training sequence models: the trainer's gradient buffers for recurrent layers, the CLI's
sequence options, and the acceptance runs (digits as sequences, the adding problem).

The acceptance runs are slow (tens of seconds each on two cores) and marked ``slow``;
they assert accuracy, never time.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from symdl.backends.numpy_backend import compile_graph
from symdl.data import load_digits
from symdl.graph import Graph
from symdl.nn.seqmodels import SequenceClassifier
from symdl.optim import OPTIMIZERS
from symdl.train import Trainer


# ------------------------------------------------ gradient buffers of the trainer
def test_bound_view_node_is_written():
    """A bound node whose value is a view (the transpose of a product) is copied into the
    bound array each step, not left as it was."""
    g = Graph()
    a = g.input("a", (2, 3), "float64")
    b = g.input("b", (3, 4), "float64")
    t = g.add("transpose", g.add("matmul", a, b), name="t")
    out = np.full((4, 2), -1.0)
    prog = compile_graph(g, [t], bind={"t": out})
    prog.inputs["a"][...] = np.arange(6.0).reshape(2, 3)
    prog.inputs["b"][...] = np.ones((3, 4))
    prog.run()
    np.testing.assert_array_equal(out, (np.arange(6.0).reshape(2, 3) @ np.ones((3, 4))).T)


class _TorchHead(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](
            8, 16, batch_first=True)
        self.head = torch.nn.Linear(16, 10)

    def forward(self, x):
        _, h = self.rnn(x.reshape(-1, 8, 8))
        return self.head((h[0] if isinstance(h, tuple) else h)[-1])


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_trainer_gradients_of_recurrent_layers_match_torch(kind):
    """Every parameter's gradient buffer after one training step, against torch: an LSTM's
    ``bias_ih`` and ``bias_hh`` share one gradient node, and the weights' gradients are
    transposes; both reach their own buffers."""
    torch.manual_seed(0)
    t = _TorchHead(kind).double()
    m = SequenceClassifier(kind, 8, 8, 10, hidden=16, dtype="float64")
    m.load_state_dict({k: v.detach().numpy() for k, v in t.state_dict().items()})
    ds = load_digits("train", "float64")
    X, y = ds.X[:20], ds.y[:20]
    tr = Trainer(m, lambda ps: OPTIMIZERS["sgd"](ps, lr=0.0), batch_size=20, epochs=0,
                 dtype="float64", verbose=0)
    tr._prepare(X, y)
    tr._run_rows(X, y, np.arange(20))
    torch.nn.functional.cross_entropy(t(torch.tensor(X)), torch.tensor(y)).backward()
    tp = dict(t.named_parameters())
    for n, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, tp[n].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=n)


# ------------------------------------------------------------------ the CLI
def run_cli(capsys, *argv):
    from symdl.cli import main
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_option_tables_match_the_library():
    from symdl.commands.options import MODEL_DEFAULTS, MODELS, SEQ_MODELS, SEQ_TASKS
    from symdl.data.sequences import SEQ_TASKS as REAL_TASKS
    from symdl.nn.models import MODELS as REAL_MODELS
    from symdl.nn.seqmodels import ENCODERS
    assert MODELS == tuple(REAL_MODELS) and SEQ_MODELS == ENCODERS
    assert set(SEQ_TASKS) == set(REAL_TASKS)
    assert set(MODEL_DEFAULTS) == {*SEQ_MODELS, "vit"}


@pytest.mark.parametrize("argv, msg", [
    (["--model", "mlp", "--heads", "2"], "--heads does not apply to --model mlp"),
    (["--model", "lstm", "--patch", "2"], "--patch does not apply to --model lstm"),
    (["--model", "transformer", "--bidirectional"], "--bidirectional does not apply"),
    (["--model", "cnn", "--layers", "2"], "--layers does not apply to --model cnn"),
    (["--model", "vit", "--seq-task", "adding"], "--seq-task does not apply to --model vit"),
    (["--model", "lstm", "--seq-len", "5"], "--seq-len does not apply without --seq-task"),
    (["--model", "lstm", "--seq-task", "adding", "--dataset", "xor"], "--dataset does not apply"),
    (["--model", "gru", "--seq-task", "parity", "--augment"], "--augment does not apply"),
    (["--model", "gru", "--hidden", "3,4"], "takes one width"),
    (["--model", "vit", "--patch", "3"], "must divide the image side"),
    (["--model", "transformer", "--hidden", "30", "--heads", "4"], "divisible"),
    (["--model", "lstm", "--dataset", "xor"], "not side × side"),
    (["--model", "lstm", "--seq-task", "copy", "--seq-len", "7"], "even integer"),
    (["--model", "lstm", "--layers", "0"], "positive integer"),
])
def test_options_that_do_not_apply_are_refused(capsys, argv, msg):
    from symdl.cli import main
    try:
        code = main(["train", "--epochs", "1", *argv])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert msg in err.strip().splitlines()[-1], err


@pytest.mark.parametrize("task, model, extra", [
    ("parity", "gru", ["--seq-len", "6"]),
    ("sine", "rnn", ["--seq-len", "8"]),
    ("copy", "lstm", ["--seq-len", "6", "--bidirectional"]),
    ("adding", "transformer", ["--seq-len", "6", "--hidden", "8", "--heads", "2"]),
])
def test_seq_tasks_train_from_the_cli(capsys, task, model, extra):
    code, out, err = run_cli(capsys, "train", "--model", model, "--seq-task", task, "--epochs",
                             "1", "--hidden", "8", *extra, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["settings"]["seq_task"] == task and np.isfinite(d["test_loss"])
    assert (d["test_accuracy"] is None) == (task != "parity")
    # the model's defaults are used for what was not given
    assert d["settings"]["optimizer"] == "adam"


def test_checkpoint_resume_and_clip_norm(capsys, tmp_path):
    base = ["train", "--model", "gru", "--hidden", "8", "--seq-task", "adding", "--seq-len", "6",
            "--clip-norm", "0.5", "--checkpoint", str(tmp_path), "--json"]
    code, out, err = run_cli(capsys, *base, "--epochs", "2")
    assert code == 0, err
    first = json.loads(out)
    assert first["settings"]["clip_norm"] == 0.5
    code, out, err = run_cli(capsys, *base, "--epochs", "3")
    assert code == 0, err
    resumed = json.loads(out)
    assert resumed["epochs"] == 3 and resumed["train_loss"][:2] == first["train_loss"]
    fresh = json.loads(run_cli(capsys, *base[:-3], "--json", "--epochs", "3")[1])
    np.testing.assert_allclose(resumed["train_loss"], fresh["train_loss"], rtol=1e-6)


# ------------------------------------------------------------ acceptance (slow)
@pytest.mark.slow
@pytest.mark.parametrize("model, target", [("lstm", 0.95), ("gru", 0.95),
                                           ("transformer", 0.95), ("vit", 0.93)])
def test_defaults_reach_the_target_on_digits_as_sequences(capsys, model, target):
    """The digits as 8 rows of 8 pixels (ViT: 4×4 patches), every other setting the model's
    default: LSTM, GRU and transformer >= 95 %, ViT >= 93 % test accuracy."""
    code, out, err = run_cli(capsys, "train", "--model", model, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["test_accuracy"] >= target, (model, d["test_accuracy"])
    assert d["train_loss"][-1] < d["train_loss"][0] / 5


@pytest.mark.slow
def test_lstm_solves_the_adding_problem_where_the_rnn_does_not(capsys):
    """T = 50, the task's defaults for both (same width, steps, optimizer, clipping): the LSTM's
    test MSE is under 0.01; the plain RNN stays near the 1/6 of predicting the mean."""
    mse = {}
    for model in ("lstm", "rnn"):
        code, out, err = run_cli(capsys, "train", "--model", model, "--seq-task", "adding",
                                 "--json")
        assert code == 0, err
        d = json.loads(out)
        assert d["settings"]["seq_len"] is None and d["settings"]["hidden"] == [32]
        mse[model] = d["test_loss"]
    assert mse["lstm"] < 0.01, mse
    assert mse["rnn"] > 0.1, mse
