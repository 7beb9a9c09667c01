"""Recurrent layers: Embedding, RNN, LSTM and GRU cells and sequences, as graph builders.

Each is a graph of registry ops (``matmul``, ``add``, ``mul``, ``sigmoid``,
``tanh``, ``slice``, ``concat``, ``gather``), so its gradient is derived by
reverse mode; backpropagation through time is reverse mode over the unrolled
graph (one cell per step, the weights shared by every step: their gradients
are the sums over the steps).  The input projection of every step is one
matmul over the whole sequence; each step adds ``h W_hhᵀ`` and applies the
gates.  Parameter names, layouts, gate orders and initialization follow
PyTorch (``weight_ih_l0`` (G·H, I), ``weight_hh_l0``, ``bias_ih_l0``,
``bias_hh_l0``, ``..._reverse``; gates i, f, g, o for LSTM, r, z, n for GRU;
every weight U(−1/√H, 1/√H)), so ``load_state_dict(torch_module.state_dict())``
works after a ``.numpy()``.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError
from ..ops.shape_ops import split
from .layers import Dropout
from .module import Module
from .parameter import Parameter

__all__ = ["Embedding", "RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU", "GATES"]

#: gate count and names per cell kind, in PyTorch's row order of the stacked weights
GATES = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}


# ------------------------------------------------------------------ embedding
class Embedding(Module):
    """Rows of ``weight`` (num_embeddings, embedding_dim) at integer indices,
    as ``torch.nn.Embedding``: a ``gather``, whose transpose scatter-adds the
    gradient back to the rows used (repeats add up).  The row ``padding_idx``
    is initialized to zeros and gets no gradient (its upstream is masked)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None, rng=None,
                 dtype: str = "float32"):
        super().__init__()
        for what, v in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise UsageError(f"Embedding {what} must be a positive integer, got {v!r}")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise UsageError(f"Embedding padding_idx {padding_idx} is outside "
                                 f"[-{num_embeddings}, {num_embeddings})")
            padding_idx = int(padding_idx) % num_embeddings
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = padding_idx
        rng = rng if rng is not None else np.random.default_rng(0)
        w = rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(dtype)
        if padding_idx is not None:
            w[padding_idx] = 0
        self.weight = Parameter(w)

    def build(self, g, x, prefix=""):
        shape = tuple(g.shape(x))
        if not g.node(x)["dtype"].startswith(("int", "uint")):
            raise UsageError(f"{prefix}Embedding needs integer indices, {x} is "
                             f"{g.node(x)['dtype']}")
        W = g.param(f"{prefix}weight", self.weight.shape, str(self.weight.dtype))
        if self.padding_idx is not None:
            # W ⊙ keep, keep a constant column (0 on the padding row, computed once at compile
            # time): nothing reaches that row's gradient, and its value is the 0 torch keeps there
            W = g.add("mul", W, self._keep(g, prefix), name=f"{prefix}weight_kept")
        # np.take_along_axis semantics: W seen as (1, ..., 1, V, D), the indices as (..., 1),
        # gathered along the V axis (the other axes broadcast): (..., D)
        r = len(shape)
        if r == 0:
            raise UsageError(f"{prefix}Embedding needs indices with at least one axis, {x} is a "
                             "scalar")
        if r > 1:
            W = g.add("reshape", W, shape=(1,) * (r - 1) + tuple(self.weight.shape),
                      name=f"{prefix}table")
        idx = g.add("reshape", x, shape=(*shape, 1), name=f"{prefix}idx")
        return g.add("gather", W, idx, axis=r - 1, name=f"{prefix}emb")

    def _keep(self, g, prefix):
        dtype, V, k = str(self.weight.dtype), self.num_embeddings, self.padding_idx
        parts = [g.add("fill", value=v, shape=(n, 1), dtype=dtype, name=f"{prefix}keep{i}")
                 for i, (v, n) in enumerate(((1.0, k), (0.0, 1), (1.0, V - k - 1))) if n]
        return parts[0] if len(parts) == 1 else g.add("concat", *parts, axis=0,
                                                      name=f"{prefix}keep")

    def __repr__(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}{pad})"


# ---------------------------------------------------------------- one step
def _step(kind, g, xw, state, whh_t, bhh, p, nonlinearity="tanh"):
    """One cell step from ``xw`` (the input's projection ``x W_ihᵀ`` plus the
    biases that add to it) and the previous ``state`` (None: zeros); returns
    the new state, ``(h,)`` or ``(h, c)``.  Nodes are named ``<p><symbol>``."""
    H = g.shape(whh_t)[0]
    h = state[0] if state else None
    if kind == "rnn":
        z = xw if h is None else g.add("add", xw, g.add("matmul", h, whh_t), name=f"{p}z")
        return (g.add(nonlinearity, z, name=f"{p}h"),)
    if kind == "lstm":
        pre = xw if h is None else g.add("add", xw, g.add("matmul", h, whh_t), name=f"{p}gates")
        ai, af, ag, ao = split(g, pre, [H] * 4, axis=-1)
        i = g.add("sigmoid", ai, name=f"{p}i")
        o = g.add("sigmoid", ao, name=f"{p}o")
        gg = g.add("tanh", ag, name=f"{p}g")
        c = g.add("mul", i, gg, name=f"{p}ig" if h is not None else f"{p}c")
        if h is not None:
            f = g.add("sigmoid", af, name=f"{p}f")
            c = g.add("add", g.add("mul", f, state[1], name=f"{p}fc"), c, name=f"{p}c")
        return g.add("mul", o, g.add("tanh", c, name=f"{p}tanh_c"), name=f"{p}h"), c
    # GRU: b_hn sits inside r ⊙ (W_hn h + b_hn), so the hidden biases stay per step
    hw = bhh if h is None else g.add("add", g.add("matmul", h, whh_t), bhh, name=f"{p}hw")
    xr, xz, xn = split(g, xw, [H] * 3, axis=-1)
    hr, hz, hn = split(g, hw, [H] * 3, axis=-1)
    r = g.add("sigmoid", g.add("add", xr, hr), name=f"{p}r")
    zg = g.add("sigmoid", g.add("add", xz, hz), name=f"{p}zg")
    n = g.add("tanh", g.add("add", xn, g.add("mul", r, hn, name=f"{p}rhn")), name=f"{p}n")
    if h is None:  # h' = (1 − z) ⊙ n
        return (g.add("sub", n, g.add("mul", zg, n), name=f"{p}h"),)
    # h' = (1 − z) ⊙ n + z ⊙ h, written n + z ⊙ (h − n)
    return (g.add("add", n, g.add("mul", zg, g.add("sub", h, n)), name=f"{p}h"),)


def _uniform(rng, shape, H, dtype):
    k = 1.0 / math.sqrt(H)
    return rng.uniform(-k, k, size=shape).astype(dtype)


def _check_sizes(who, input_size, hidden_size):
    for what, v in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise UsageError(f"{who} {what} must be a positive integer, got {v!r}")


# -------------------------------------------------------------------- cells
class _Cell(Module):
    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", rng=None, dtype: str = "float32"):
        super().__init__()
        _check_sizes(type(self).__name__, input_size, hidden_size)
        if nonlinearity not in ("tanh", "relu"):
            raise UsageError(f"{type(self).__name__} nonlinearity must be tanh or relu, "
                             f"got {nonlinearity!r}")
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.bias, self.nonlinearity = bool(bias), nonlinearity
        rng = rng if rng is not None else np.random.default_rng(0)
        GH = len(GATES[self.kind]) * self.hidden_size
        H = self.hidden_size
        self.weight_ih = Parameter(_uniform(rng, (GH, self.input_size), H, dtype))
        self.weight_hh = Parameter(_uniform(rng, (GH, H), H, dtype))
        if bias:
            self.bias_ih = Parameter(_uniform(rng, (GH,), H, dtype))
            self.bias_hh = Parameter(_uniform(rng, (GH,), H, dtype))

    def build_state(self, g, x, hx=None, prefix=""):
        """The new state from input ``x`` (N, input_size) and ``hx`` (None: zeros;
        ``h`` for RNN and GRU cells, ``(h, c)`` for LSTM cells): ``(h,)`` or ``(h, c)``."""
        shape = tuple(g.shape(x))
        if len(shape) != 2 or shape[1] != self.input_size:
            raise UsageError(f"{prefix}{type(self).__name__} expects (N, {self.input_size}), "
                             f"{x} has shape {shape}")
        state = None if hx is None else ((hx,) if isinstance(hx, str) else tuple(hx))
        W = _params(self, g, prefix, "")
        xw = g.add("matmul", x, W["wih_t"], name=f"{prefix}xw")
        if W["bx"] is not None:
            xw = g.add("add", xw, W["bx"], name=f"{prefix}xwb")
        return _step(self.kind, g, xw, state, W["whh_t"], W["bh"], f"{prefix}step.",
                     self.nonlinearity)

    def build(self, g, x, prefix="", hx=None):
        return self.build_state(g, x, hx, prefix)[0]

    def __repr__(self):
        extra = "" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}"
        extra += "" if self.bias else ", bias=False"
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra})"


class RNNCell(_Cell):
    """``h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`` (or ReLU), as ``torch.nn.RNNCell``."""

    kind = "rnn"


class LSTMCell(_Cell):
    """LSTM step, as ``torch.nn.LSTMCell``: gates i, f, o = σ(·), g = tanh(·) of
    ``x W_ihᵀ + b_ih + h W_hhᵀ + b_hh``; ``c' = f ⊙ c + i ⊙ g``, ``h' = o ⊙ tanh(c')``."""

    kind = "lstm"

    def __init__(self, input_size, hidden_size, bias=True, rng=None, dtype="float32"):
        super().__init__(input_size, hidden_size, bias, "tanh", rng, dtype)


class GRUCell(_Cell):
    """GRU step, as ``torch.nn.GRUCell``: ``r, z = σ(·)``,
    ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``, ``h' = (1 − z) ⊙ n + z ⊙ h``."""

    kind = "gru"

    def __init__(self, input_size, hidden_size, bias=True, rng=None, dtype="float32"):
        super().__init__(input_size, hidden_size, bias, "tanh", rng, dtype)


def _params(m, g, prefix, sfx):
    """Graph nodes of one layer's weights: transposed weights and the biases
    that add to the input projection (``bx``) or per step (``bh``, GRU only)."""
    def param(name):
        p = getattr(m, name + sfx)
        return g.param(f"{prefix}{name}{sfx}", p.shape, str(p.dtype))

    wih_t = g.add("transpose", param("weight_ih"), name=f"{prefix}weight_ih{sfx}_t")
    whh_t = g.add("transpose", param("weight_hh"), name=f"{prefix}weight_hh{sfx}_t")
    bx = bh = None
    if m.bias:
        bi, bhh = param("bias_ih"), param("bias_hh")
        if m.kind == "gru":
            bx, bh = bi, bhh
        else:
            bx = g.add("add", bi, bhh, name=f"{prefix}bias{sfx}")
    if m.kind == "gru" and bh is None:  # no bias: the per-step "+ b_hh" is a zero constant
        bh = g.add("fill", value=0.0, shape=(3 * m.hidden_size,), dtype=g.node(wih_t)["dtype"],
                   name=f"{prefix}bias_hh{sfx}_zero")
    return {"wih_t": wih_t, "whh_t": whh_t, "bx": bx, "bh": bh}


# ---------------------------------------------------------------- sequences
class _Recurrent(Module):
    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 nonlinearity: str = "tanh", rng=None, dtype: str = "float32"):
        super().__init__()
        who = type(self).__name__
        _check_sizes(who, input_size, hidden_size)
        if not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
            raise UsageError(f"{who} num_layers must be a positive integer, got {num_layers!r}")
        if nonlinearity not in ("tanh", "relu"):
            raise UsageError(f"{who} nonlinearity must be tanh or relu, got {nonlinearity!r}")
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.num_layers, self.bias = int(num_layers), bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional, self.nonlinearity = bool(bidirectional), nonlinearity
        self.drop = Dropout(dropout)  # between layers, as torch (validates p)
        self.dropout = self.drop.p
        rng = rng if rng is not None else np.random.default_rng(0)
        H, GH = self.hidden_size, len(GATES[self.kind]) * self.hidden_size
        for k in range(self.num_layers):
            n_in = self.input_size if k == 0 else H * self.directions
            for sfx in self._suffixes(k):
                setattr(self, f"weight_ih{sfx}", Parameter(_uniform(rng, (GH, n_in), H, dtype)))
                setattr(self, f"weight_hh{sfx}", Parameter(_uniform(rng, (GH, H), H, dtype)))
                if bias:
                    setattr(self, f"bias_ih{sfx}", Parameter(_uniform(rng, (GH,), H, dtype)))
                    setattr(self, f"bias_hh{sfx}", Parameter(_uniform(rng, (GH,), H, dtype)))

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self, k):
        return [f"_l{k}"] + ([f"_l{k}_reverse"] if self.bidirectional else [])

    def build_all(self, g, x, hx=None, prefix=""):
        """Output and final state, as torch's ``output, h_n`` (``output, (h_n, c_n)``
        for LSTM).  ``x`` is (T, N, input_size), or (N, T, input_size) with
        ``batch_first``; ``hx`` (None: zeros) is a node (L·D, N, H), a pair of
        them for LSTM.  The output is (T, N, D·H) (batch first as ``x``)."""
        shape, who = tuple(g.shape(x)), f"{prefix}{type(self).__name__}"
        want = "(N, T, {})" if self.batch_first else "(T, N, {})"
        if len(shape) != 3 or shape[2] != self.input_size:
            raise UsageError(f"{who} expects {want.format(self.input_size)}, {x} has shape {shape}")
        if self.batch_first:
            x = g.add("permute", x, axes=(1, 0, 2), name=f"{prefix}time_major")
        T, N = g.shape(x)[:2]
        if not isinstance(T, int):
            raise UsageError(f"{who} unrolls the sequence: its length must be concrete, got {T!r}")
        n_state = 2 if self.kind == "lstm" else 1
        if hx is not None:
            hx = (hx,) if isinstance(hx, str) else tuple(hx)
            full = (self.num_layers * self.directions, N, self.hidden_size)
            if len(hx) != n_state or any(tuple(g.shape(s)) != full for s in hx):
                got = ", ".join(f"{s} {tuple(g.shape(s))}" for s in hx)
                raise UsageError(f"{who} initial state must be {n_state} node(s) of shape {full}, "
                                 f"got {got}")
        finals = [[] for _ in range(n_state)]
        for k in range(self.num_layers):
            if k > 0:
                x = self.drop.build(g, x, prefix=f"{prefix}l{k}.")
            outs = []
            for d, sfx in enumerate(self._suffixes(k)):
                j = k * self.directions + d
                state = None if hx is None else tuple(
                    _row(g, s, j, f"{prefix}{s}{j}") for s in hx)
                seq, last = self._direction(g, x, state, sfx, prefix, reverse=d == 1)
                outs.append(seq)
                for f, s in zip(finals, last):
                    f.append(g.add("reshape", s, shape=(1, *g.shape(s)), name=f"{s}_1"))
            x = outs[0] if len(outs) == 1 else g.add("concat", *outs, axis=2,
                                                      name=f"{prefix}l{k}.out")
        out = g.add("permute", x, axes=(1, 0, 2), name=f"{prefix}out") if self.batch_first else x
        names = ("h_n", "c_n")
        state = tuple(g.add("concat", *f, axis=0, name=f"{prefix}{nm}") if len(f) > 1
                      else g.add("reshape", f[0], shape=g.shape(f[0]), name=f"{prefix}{nm}")
                      for f, nm in zip(finals, names))
        return out, (state if self.kind == "lstm" else state[0])

    def _direction(self, g, x, state, sfx, prefix, reverse):
        """Unroll one direction of one layer over ``x`` (T, N, I): returns the
        outputs (T, N, H) in time order and the final state."""
        T, N = g.shape(x)[:2]
        p = f"{prefix}{sfx[1:]}."
        W = _params(self, g, prefix, sfx)
        xw = g.add("matmul", x, W["wih_t"], name=f"{p}xw")
        if W["bx"] is not None:
            xw = g.add("add", xw, W["bx"], name=f"{p}xwb")
        hs = [None] * T
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            xt = _row(g, xw, t, f"{p}t{t}.xw")
            state = _step(self.kind, g, xt, state, W["whh_t"], W["bh"], f"{p}t{t}.",
                          self.nonlinearity)
            hs[t] = g.add("reshape", state[0], shape=(1, N, self.hidden_size), name=f"{p}t{t}.out")
        seq = hs[0] if T == 1 else g.add("concat", *hs, axis=0, name=f"{p}seq")
        return seq, state

    def build(self, g, x, prefix="", hx=None):
        return self.build_all(g, x, hx, prefix)[0]

    def __repr__(self):
        settings = (("num_layers", self.num_layers, 1), ("bias", self.bias, True),
                    ("batch_first", self.batch_first, False), ("dropout", self.dropout, 0.0),
                    ("bidirectional", self.bidirectional, False),
                    ("nonlinearity", self.nonlinearity, "tanh"))
        extras = "".join(f", {k}={v!r}" for k, v, d in settings if v != d)
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extras})"


def _row(g, x, t, name):
    """``x[t]`` of a (T, ...) node, as a (...) node (a slice, then a reshape)."""
    shape = g.shape(x)
    begin = (t,) + (0,) * (len(shape) - 1)
    end = (t + 1,) + (None,) * (len(shape) - 1)
    s = g.add("slice", x, begin=begin, end=end, name=f"{name}_s")
    return g.add("reshape", s, shape=tuple(shape[1:]), name=name)


class RNN(_Recurrent):
    """Elman RNN, ``h_t = tanh(x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh)`` (or ReLU), as
    ``torch.nn.RNN`` (num_layers, bidirectional, batch_first, dropout between layers)."""

    kind = "rnn"


class LSTM(_Recurrent):
    """LSTM over a sequence, as ``torch.nn.LSTM`` (see :class:`LSTMCell`)."""

    kind = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, rng=None, dtype="float32"):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, "tanh", rng, dtype)


class GRU(_Recurrent):
    """GRU over a sequence, as ``torch.nn.GRU`` (see :class:`GRUCell`)."""

    kind = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, rng=None, dtype="float32"):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, "tanh", rng, dtype)
