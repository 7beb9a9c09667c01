"""Training sequence models: the trainer's gradient buffers for recurrent layers, the CLI's
sequence options, and the acceptance runs (digits as sequences, the adding problem).

The acceptance runs are slow (tens of seconds each on two cores) and marked ``slow``;
they assert accuracy, never time.
"""
from __future__ import annotations

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
