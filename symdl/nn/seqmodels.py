"""Sequence architectures from the recurrent and attention layers: many-to-one classification,
many-to-many tagging, one-to-many generation, an encoder–decoder with teacher forcing; and the
factory of ``symdl train``'s sequence models and vision transformer (:mod:`symdl.nn.vit`).

Every model takes flat rows, as the trainer gathers them (:mod:`symdl.data.sequences`): a
sequence of ``steps`` × ``features`` is a row of ``steps·features`` numbers, reshaped to
``(N, T, D)`` by a ``reshape`` node.  Everything is a graph of registry ops; every gradient
is reverse mode's (backpropagation through time included).
"""
from __future__ import annotations

import numpy as np

from ..errors import UsageError
from .attention import LearnedPositionalEncoding, Linear, TransformerEncoderLayer
from .layers import LayerNorm
from .module import Module
# the step and weight-node builders of the recurrent layers, reused so that a decoder's cell is
# the same equations (and parameter layout) as LSTMCell/GRUCell/RNNCell
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, _params, _step
from .vit import ViT

__all__ = ["ENCODERS", "Seq2Seq", "SequenceClassifier", "SequenceGenerator", "SequenceTagger",
           "ViT", "sequence_model", "shift_right"]

#: the sequence encoders a classifier or tagger can use
ENCODERS = ("rnn", "lstm", "gru", "transformer")
_RECURRENT = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
_CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


def _positive(who, **values):
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise UsageError(f"{who}: {k} must be a positive integer, got {v!r}")


def _as_steps(g, x, T, D, prefix, who):
    """Flat rows (N, T·D) -> (N, T, D); (N, T, D) passes."""
    s = tuple(g.shape(x))
    if s[1:] == (T, D):
        return x
    if len(s) != 2 or s[1] != T * D:
        raise UsageError(f"{prefix}{who} expects rows of {T} steps × {D} features "
                         f"(N, {T * D}), {x} has shape {s}")
    return g.add("reshape", x, shape=(s[0], T, D), name=f"{prefix}steps")


class _Encoder(Module):
    """The per-step features (N, T, width) of a recurrent or transformer encoder over flat
    rows, and a linear head (width -> n_out); shared by the classifier (the head on the
    summary) and the tagger (the head at every step)."""

    def __init__(self, cell, steps, features, n_out, hidden=64, layers=1, bidirectional=False,
                 heads=4, feedforward=None, rng=None, dtype="float32"):
        super().__init__()
        who = type(self).__name__
        if cell not in ENCODERS:
            raise UsageError(f"{who}: unknown encoder {cell!r} (choose from: "
                             f"{', '.join(ENCODERS)})")
        _positive(who, steps=steps, features=features, n_out=n_out, hidden=hidden,
                  layers=layers, heads=heads)
        rng = rng if rng is not None else np.random.default_rng(0)
        self.cell, self.steps, self.features, self.n_out = cell, int(steps), int(features), \
            int(n_out)
        self.hidden, self.layers, self.heads = int(hidden), int(layers), int(heads)
        self.bidirectional = bool(bidirectional)
        if cell == "transformer":
            if self.bidirectional:
                raise UsageError(f"{who}: a transformer encoder sees both directions already; "
                                 "bidirectional applies to rnn, lstm and gru")
            if self.hidden % self.heads:
                raise UsageError(f"{who}: the model width {self.hidden} must be divisible by "
                                 f"the {self.heads} heads")
            ff = 2 * self.hidden if feedforward is None else int(feedforward)
            self.embed = Linear(self.features, self.hidden, rng=rng, dtype=dtype)
            self.pos = LearnedPositionalEncoding(self.steps, self.hidden, rng=rng, dtype=dtype)
            for k in range(self.layers):
                setattr(self, f"layer{k}", TransformerEncoderLayer(
                    self.hidden, self.heads, ff, dropout=0.0, activation="gelu",
                    batch_first=True, norm_first=True, rng=rng, dtype=dtype))
            self.norm = LayerNorm(self.hidden, dtype=dtype)
            self.width = self.hidden
        else:
            self.rnn = _RECURRENT[cell](self.features, self.hidden, self.layers, batch_first=True,
                                        bidirectional=self.bidirectional, rng=rng, dtype=dtype)
            self.width = self.hidden * (2 if self.bidirectional else 1)
        self.head = Linear(self.width, self.n_out, rng=rng, dtype=dtype)  # per sequence or step

    def encode(self, g, x, prefix):
        """``(per-step features (N, T, width), summary (N, width))``: the summary is the
        last layer's final state (both directions' for a bidirectional encoder) or, for a
        transformer, the mean over the steps."""
        x = _as_steps(g, x, self.steps, self.features, prefix, type(self).__name__)
        if self.cell == "transformer":
            h = self.pos.build(g, self.embed.build(g, x, prefix=f"{prefix}embed."),
                               prefix=f"{prefix}pos.")
            for k in range(self.layers):
                h = getattr(self, f"layer{k}").build(g, h, prefix=f"{prefix}layer{k}.")
            h = self.norm.build(g, h, prefix=f"{prefix}norm.")
            return h, g.add("mean", h, axes=(1,), name=f"{prefix}pooled")
        out, hn = self.rnn.build_all(g, x, prefix=f"{prefix}rnn.")
        hn = hn[0] if isinstance(hn, tuple) else hn  # LSTM: (h_n, c_n)
        d = 2 if self.bidirectional else 1
        L, N = g.shape(hn)[:2]
        last = g.add("slice", hn, begin=(L - d, 0, 0), end=(L, None, None),
                     name=f"{prefix}last_layer")
        last = g.add("permute", last, axes=(1, 0, 2), name=f"{prefix}last_nd")
        return out, g.add("reshape", last, shape=(N, self.width), name=f"{prefix}summary")

    def __repr__(self):
        extra = ", bidirectional=True" if self.bidirectional else ""
        extra += f", heads={self.heads}" if self.cell == "transformer" else ""
        return (f"{type(self).__name__}({self.cell!r}, {self.steps}×{self.features} -> "
                f"{self.n_out}, hidden={self.hidden}, layers={self.layers}{extra})")


class SequenceClassifier(_Encoder):
    """Many-to-one: an encoder (``rnn``, ``lstm``, ``gru`` or ``transformer``) over
    ``steps`` × ``features`` rows, then a linear head on its summary (the final hidden state,
    or the transformer's mean over steps): ``n_out`` logits or regression outputs.

    >>> m = SequenceClassifier("lstm", steps=8, features=8, n_out=10, hidden=16)
    >>> m(np.zeros((2, 64), np.float32)).shape
    (2, 10)
    """

    def build(self, g, x, prefix=""):
        _, summary = self.encode(g, x, prefix)
        return self.head.build(g, summary, prefix=f"{prefix}head.")


class SequenceTagger(_Encoder):
    """Many-to-many: the same encoders, a linear head applied at every step; the output is
    flat, ``(N, steps·n_out)`` (step-major, as the targets of :mod:`symdl.data.sequences`)."""

    def build(self, g, x, prefix=""):
        seq, _ = self.encode(g, x, prefix)
        y = self.head.build(g, seq, prefix=f"{prefix}head.")
        N = g.shape(y)[0]
        return g.add("reshape", y, shape=(N, self.steps * self.n_out), name=f"{prefix}tags")


# --------------------------------------------------------------- generation
def _shared_linear(lin, g, prefix):
    """``x -> x Wᵀ + b`` with ``lin``'s parameter nodes made once, for use at every step."""
    w = g.param(f"{prefix}weight", lin.weight.shape, str(lin.weight.dtype))
    w_t = g.add("transpose", w, name=f"{prefix}weight_t")
    b = g.param(f"{prefix}bias", lin.bias.shape, str(lin.bias.dtype)) if lin.has_bias else None

    def apply(x, name):
        y = g.add("matmul", x, w_t, name=f"{name}_xw")
        return y if b is None else g.add("add", y, b, name=name)
    return apply


def _unroll(cell, head, g, inputs, state, steps, names, prefix, N):
    """Run ``cell`` (its weights shared by every step; ``names`` = the prefixes of the cell's and
    the head's parameters) for ``steps`` steps from ``state`` and apply ``head`` at each
    (nodes ``<prefix>t<t>.…``): step t reads
    ``inputs[t]`` (teacher forcing) or, when ``inputs`` is None, the previous step's output
    (zeros first: free running).  Returns the outputs (N, steps, k)."""
    W = _params(cell, g, names[0], "")
    lin = _shared_linear(head, g, names[1])
    k, dtype = head.out_features, str(head.weight.dtype)
    outs, prev = [], None
    for t in range(steps):
        if inputs is not None:
            xt = inputs[t]
        elif prev is None:
            xt = g.add("fill", value=0.0, shape=(N, k), dtype=dtype, name=f"{prefix}go")
        else:
            xt = prev
        xw = g.add("matmul", xt, W["wih_t"], name=f"{prefix}t{t}.xw")
        if W["bx"] is not None:
            xw = g.add("add", xw, W["bx"], name=f"{prefix}t{t}.xwb")
        state = _step(cell.kind, g, xw, state, W["whh_t"], W["bh"], f"{prefix}t{t}.",
                      cell.nonlinearity)
        prev = lin(state[0], f"{prefix}t{t}.y")
        outs.append(g.add("reshape", prev, shape=(N, 1, k), name=f"{prefix}t{t}.y1"))
    return outs[0] if steps == 1 else g.add("concat", *outs, axis=1, name=f"{prefix}outputs")


def _state_from(cell, g, h, prefix):
    """An initial cell state from ``h``: ``(h,)``, or ``(h, 0)`` for an LSTM."""
    if isinstance(cell, LSTMCell):
        zero = g.add("fill", value=0.0, shape=tuple(g.shape(h)), dtype=g.node(h)["dtype"],
                     name=f"{prefix}c0")
        return (h, zero)
    return (h,)


class SequenceGenerator(Module):
    """One-to-many: a vector (N, features) sets the initial hidden state ``h₀ = tanh(x W + b)``;
    the cell then runs ``steps`` steps feeding back its own previous output (zeros at the first
    step) and emits ``n_out`` values per step, flat ``(N, steps·n_out)``."""

    def __init__(self, cell: str, features: int, steps: int, n_out: int, hidden: int = 32,
                 rng=None, dtype: str = "float32"):
        super().__init__()
        if cell not in _CELLS:
            raise UsageError(f"SequenceGenerator: unknown cell {cell!r} (choose from: "
                             f"{', '.join(_CELLS)})")
        _positive("SequenceGenerator", features=features, steps=steps, n_out=n_out,
                  hidden=hidden)
        rng = rng if rng is not None else np.random.default_rng(0)
        self.cell_kind, self.features, self.steps = cell, int(features), int(steps)
        self.n_out, self.hidden, self.dtype = int(n_out), int(hidden), str(dtype)
        self.init = Linear(self.features, self.hidden, rng=rng, dtype=dtype)
        self.cell = _CELLS[cell](self.n_out, self.hidden, rng=rng, dtype=dtype)
        self.head = Linear(self.hidden, self.n_out, rng=rng, dtype=dtype)

    def build(self, g, x, prefix=""):
        s = tuple(g.shape(x))
        if len(s) != 2 or s[1] != self.features:
            raise UsageError(f"{prefix}SequenceGenerator expects (N, {self.features}), {x} has "
                             f"shape {s}")
        h0 = g.add("tanh", self.init.build(g, x, prefix=f"{prefix}init."), name=f"{prefix}h0")
        state = _state_from(self.cell, g, h0, prefix)
        y = _unroll(self.cell, self.head, g, None, state, self.steps,
                    (f"{prefix}cell.", f"{prefix}head."), f"{prefix}gen.", s[0])
        return g.add("reshape", y, shape=(s[0], self.steps * self.n_out), name=f"{prefix}gen")


def shift_right(y: np.ndarray, vocab: int) -> np.ndarray:
    """Teacher forcing's decoder inputs: one-hot targets (N, T·vocab) moved one step later, a
    zero vector (the start token) first."""
    y = np.asarray(y)
    steps = y.reshape(len(y), -1, vocab)
    out = np.zeros_like(steps)
    out[:, 1:] = steps[:, :-1]
    return out.reshape(len(y), -1)


class Seq2Seq(Module):
    """Encoder–decoder with teacher forcing: an encoder RNN/LSTM/GRU reads ``src_steps`` ×
    ``features``; its final state starts a decoder cell that reads the *true* previous target
    (teacher forcing: :func:`shift_right`) at each of ``tgt_steps`` steps and emits ``vocab``
    scores.  A row is the source and the decoder inputs side by side, ``(N, src_steps·features
    + tgt_steps·vocab)``; the output is ``(N, tgt_steps·vocab)``.  :meth:`generate` decodes
    free running (each step reads the previous step's argmax)."""

    def __init__(self, cell: str, src_steps: int, features: int, tgt_steps: int, vocab: int,
                 hidden: int = 64, rng=None, dtype: str = "float32"):
        super().__init__()
        if cell not in _CELLS:
            raise UsageError(f"Seq2Seq: unknown cell {cell!r} (choose from: {', '.join(_CELLS)})")
        _positive("Seq2Seq", src_steps=src_steps, features=features, tgt_steps=tgt_steps,
                  vocab=vocab, hidden=hidden)
        rng = rng if rng is not None else np.random.default_rng(0)
        self.cell_kind, self.hidden = cell, int(hidden)
        self.src_steps, self.features = int(src_steps), int(features)
        self.tgt_steps, self.vocab = int(tgt_steps), int(vocab)
        self.encoder = _RECURRENT[cell](self.features, self.hidden, batch_first=True, rng=rng,
                                        dtype=dtype)
        self.decoder = _CELLS[cell](self.vocab, self.hidden, rng=rng, dtype=dtype)
        self.head = Linear(self.hidden, self.vocab, rng=rng, dtype=dtype)

    def build(self, g, x, prefix=""):
        S, D, T, V = self.src_steps, self.features, self.tgt_steps, self.vocab
        s = tuple(g.shape(x))
        if len(s) != 2 or s[1] != S * D + T * V:
            raise UsageError(f"{prefix}Seq2Seq expects rows of {S}×{D} source + {T}×{V} decoder "
                             f"inputs (N, {S * D + T * V}), {x} has shape {s}")
        N = s[0]
        src = g.add("slice", x, begin=(0, 0), end=(None, S * D), name=f"{prefix}src_flat")
        src = g.add("reshape", src, shape=(N, S, D), name=f"{prefix}src")
        _, hn = self.encoder.build_all(g, src, prefix=f"{prefix}encoder.")
        state = tuple(g.add("reshape", h, shape=(N, self.hidden), name=f"{h}_nh")
                      for h in (hn if isinstance(hn, tuple) else (hn,)))
        tin = g.add("slice", x, begin=(0, S * D), end=(None, None), name=f"{prefix}dec_flat")
        tin = g.add("reshape", tin, shape=(N, T, V), name=f"{prefix}dec_in")
        steps = [g.add("reshape", g.add("slice", tin, begin=(0, t, 0), end=(None, t + 1, None),
                                        name=f"{prefix}dec{t}_s"),
                       shape=(N, V), name=f"{prefix}dec{t}") for t in range(T)]
        y = _unroll(self.decoder, self.head, g, steps, state, T,
                    (f"{prefix}decoder.", f"{prefix}head."), f"{prefix}dec.", N)
        return g.add("reshape", y, shape=(N, T * V), name=f"{prefix}scores")

    def generate(self, src: np.ndarray) -> np.ndarray:
        """Free-running decoding of flat sources (N, src_steps·features): symbols (N, tgt_steps),
        each step fed the previous step's argmax (one evaluation of the model per step)."""
        src = np.asarray(src, self.head.weight.dtype)
        N, V = len(src), self.vocab
        dec = np.zeros((N, self.tgt_steps * V), src.dtype)
        out = np.zeros((N, self.tgt_steps), np.int64)
        for t in range(self.tgt_steps):
            scores = self(np.concatenate([src, dec], axis=1))
            out[:, t] = scores.reshape(N, -1, V)[:, t].argmax(axis=1)
            if t + 1 < self.tgt_steps:
                dec[np.arange(N), (t + 1) * V + out[:, t]] = 1
        return out


# ------------------------------------------------------------------ factory
def sequence_model(kind: str, n_in: int, n_out: int, hidden=(64,), layers: int = 1,
                   bidirectional: bool = False, heads: int = 4, patch: int = 4, steps=None,
                   features=None, outputs_per_step=None, rng=None, dtype: str = "float32"):
    """The model ``symdl train --model rnn|lstm|gru|transformer|vit`` trains on rows of ``n_in``.

    ``vit``: square images of ``n_in`` pixels in ``patch`` × ``patch`` patches, width
    ``hidden``, ``layers`` encoder layers.  The others read ``steps`` × ``features`` (default:
    square images one row per step); with ``outputs_per_step`` a :class:`SequenceTagger`
    (many-to-many, ``n_out = steps·outputs_per_step``), else a :class:`SequenceClassifier`.
    """
    hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    if len(hidden) != 1:
        raise UsageError(f"--model {kind} takes one width in --hidden, got "
                         f"{','.join(map(str, hidden))}")
    width = int(hidden[0])
    if steps is None:
        side = int(np.sqrt(n_in) + 0.5)
        if side * side != n_in:
            raise UsageError(f"--model {kind} reads square images (one row per step"
                             f"{'' if kind != 'vit' else ', or as patches'}): {n_in} features "
                             "are not side × side pixels")
        steps = features = side
    if kind == "vit":
        return ViT(steps, patch, n_out, dim=width, depth=layers, heads=heads, rng=rng,
                   dtype=dtype)
    if steps * features != n_in:
        raise UsageError(f"--model {kind}: {steps} steps × {features} features do not make "
                         f"rows of {n_in}")
    if outputs_per_step:
        if n_out != steps * outputs_per_step:
            raise UsageError(f"--model {kind}: {n_out} targets are not {steps} steps × "
                             f"{outputs_per_step}")
        return SequenceTagger(kind, steps, features, outputs_per_step, width, layers,
                              bidirectional, heads, rng=rng, dtype=dtype)
    return SequenceClassifier(kind, steps, features, n_out, width, layers, bidirectional, heads,
                              rng=rng, dtype=dtype)
