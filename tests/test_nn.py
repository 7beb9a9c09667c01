"""Modules, parameters, state dicts and initializers."""
from __future__ import annotations

import numpy as np
import pytest

from symdl.errors import CheckpointError, UsageError
from symdl.nn import Activation, Dense, Sequential, initializer
from symdl.nn.init import variance


def mlp(hidden=4, seed=0):
    rng = np.random.default_rng(seed)
    m = Sequential(Dense(3, hidden, rng), Activation("tanh"), Dense(hidden, 2, rng))
    m.name_parameters()
    return m


def test_named_parameters_in_registration_order():
    assert [n for n, _ in mlp().named_parameters()] == ["0.W", "0.b", "2.W", "2.b"]
    assert mlp().num_parameters() == 3 * 4 + 4 + 4 * 2 + 2


def test_state_dict_round_trip_and_strict_errors():
    a, b = mlp(seed=0), mlp(seed=1)
    b.load_state_dict(a.state_dict())
    assert all(np.array_equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    sd = a.state_dict()
    sd.pop("0.b")
    sd["extra"] = np.zeros(1)
    sd["2.W"] = np.zeros((5, 5))
    with pytest.raises(CheckpointError, match=r"missing 0\.b; unexpected extra; reshaped 2\.W"):
        b.load_state_dict(sd)
    b.load_state_dict(sd, strict=False)  # loads what fits
    assert np.array_equal(b.state_dict()["0.W"], a.state_dict()["0.W"])


@pytest.mark.parametrize("name, kind", [("xavier_uniform", "xavier"), ("xavier_normal", "xavier"),
                                        ("he_uniform", "he"), ("he_normal", "he")])
def test_initializer_variances(name, kind):
    shape = (400, 300)
    w = initializer(name)(shape, np.random.default_rng(0), "float64")
    assert abs(w.var() / variance(kind, shape) - 1) < 0.03
    assert abs(w.mean()) < 0.01


def test_unknown_initializer_and_activation():
    with pytest.raises(UsageError, match="unknown initializer"):
        initializer("glorot_magic")
    with pytest.raises(UsageError, match="unknown activation 'matmul'"):
        Activation("matmul")


def test_dense_rejects_wrong_input_width():
    from symdl.graph import Graph
    g = Graph()
    x = g.input("x", ("N", 5))
    with pytest.raises(UsageError, match="expects 3 input features"):
        mlp().build(g, x)
