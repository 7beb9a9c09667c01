"""The models ``symdl train`` knows, with the loss each is trained with."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from .cnn import cnn
from .layers import Activation, Dense, Dropout, Sequential
from .seqmodels import ENCODERS, sequence_model

MODELS = ("mlp", "logreg", "perceptron", "cnn", *ENCODERS, "vit")
RELU_LIKE = ("relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu", "softplus")


@dataclass(frozen=True)
class ModelSpec:
    """A model and the loss (op name and params) it trains with."""

    module: Sequential
    loss: str
    loss_params: dict


def make_model(kind: str, n_in: int, n_out: int, hidden=(64, 64), activation: str = "relu",
               rng=None, dtype: str = "float32", task: str = "classification",
               dropout: float = 0.0, label_smoothing: float = 0.0, **options) -> ModelSpec:
    """``mlp`` (Dense+activation per hidden layer), ``logreg`` (one Dense,
    softmax cross-entropy) or ``perceptron`` (one Dense trained with the
    perceptron criterion: multiclass hinge with margin 0) or ``cnn``
    (:func:`symdl.nn.cnn.cnn`, given ``options``: channels, kernel, pool, norm, residual) or
    ``rnn``, ``lstm``, ``gru``, ``transformer``, ``vit``
    (:func:`symdl.nn.seqmodels.sequence_model`, given ``options``: layers, bidirectional, heads,
    patch, steps, features, outputs_per_step)."""
    if kind not in MODELS:
        raise UsageError(f"unknown model {kind!r} (choose from: {', '.join(MODELS)})")
    init = "he_uniform" if activation in RELU_LIKE else "xavier_uniform"
    layers, width = [], n_in
    if kind == "mlp":
        for h in hidden:
            if int(h) < 1:
                raise UsageError(f"hidden layer sizes must be positive, got {h}")
            layers += [Dense(width, int(h), rng, init, dtype=dtype), Activation(activation)]
            if dropout:
                layers.append(Dropout(dropout))
            width = int(h)
    if kind == "cnn":
        model = cnn(n_in, n_out, activation=activation, rng=rng, dtype=dtype, **options)
    elif kind in (*ENCODERS, "vit"):
        model = sequence_model(kind, n_in, n_out, hidden, rng=rng, dtype=dtype, **options)
    else:
        layers.append(Dense(width, n_out, rng, "xavier_uniform", dtype=dtype))
        model = Sequential(*layers)
    model.name_parameters()
    if task == "regression":
        return ModelSpec(model, "mse", {})
    if kind == "perceptron":
        return ModelSpec(model, "multi_hinge", {"margin": 0.0})
    if not 0 <= label_smoothing < 1:
        raise UsageError(f"label smoothing must be in [0, 1), got {label_smoothing}")
    return ModelSpec(model, "softmax_cross_entropy",
                     {"epsilon": label_smoothing} if label_smoothing else {})
