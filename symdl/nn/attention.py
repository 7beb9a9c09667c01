"""Attention as graph builders: scaled dot-product attention, multi-head attention,
positional encodings, transformer encoder and decoder layers.

``softmax(Q Kᵀ/√d) V`` is ``matmul``, ``scale``, the ``softmax`` row op (the
``masked_softmax`` row op under a causal or padding mask: a fully masked row
gives zeros, not NaN) and ``matmul``; heads are a ``reshape`` and a
``permute``.  Every gradient is reverse mode's.  Parameter names, layouts and
initialization follow PyTorch (``in_proj_weight`` (3E, E), ``in_proj_bias``,
``out_proj.weight``/``out_proj.bias``; ``linear1``, ``linear2``, ``norm1``…
in the transformer layers), so a torch module's ``state_dict`` loads as is.

Masks are float *keep* masks (> 0: attend), the opposite sense of torch's
boolean masks (True: ignore): ``key_keep`` is (N, S), 1 for real keys and 0
for padding.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError
from .layers import Dropout
from .layers import LayerNorm
from .module import Module
from .parameter import Parameter

__all__ = ["Linear", "causal_mask", "scaled_dot_product_attention", "MultiheadAttention",
           "SinusoidalPositionalEncoding", "LearnedPositionalEncoding",
           "TransformerEncoderLayer", "TransformerDecoderLayer", "constant_inputs"]


class Linear(Module):
    """``y = x weightᵀ + bias``, as ``torch.nn.Linear`` (names, layout and its
    U(−1/√in, 1/√in) initialization)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None,
                 dtype: str = "float32"):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.has_bias = bool(bias)
        k = 1.0 / math.sqrt(self.in_features)
        shape = (self.out_features, self.in_features)
        self.weight = Parameter(rng.uniform(-k, k, shape).astype(dtype))
        if bias:
            self.bias = Parameter(rng.uniform(-k, k, self.out_features).astype(dtype))

    def build(self, g, x, prefix=""):
        if g.shape(x)[-1] != self.in_features:
            raise UsageError(f"{prefix}Linear expects {self.in_features} input features, {x} has "
                             f"shape {g.shape(x)}")
        w = g.param(f"{prefix}weight", self.weight.shape, str(self.weight.dtype))
        y = g.add("matmul", x, g.add("transpose", w, name=f"{prefix}weight_t"), name=f"{prefix}xw")
        if self.has_bias:
            b = g.param(f"{prefix}bias", self.bias.shape, str(self.bias.dtype))
            y = g.add("add", y, b, name=f"{prefix}y")
        return y

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features})"


# --------------------------------------------------------------- attention
def causal_mask(g, tq: int, tk: int, dtype: str = "float32", name: str = "causal") -> str:
    """The constant (tq, tk) keep mask ``j <= i``, made of ``fill``, ``concat``,
    ``broadcast_to``, ``reshape`` and ``slice`` (computed once, at compile time):
    identical rows ``u = [1]*M + [0]*M`` read with a row stride of 2M − 1 start
    one entry further left each row, so row i of the (M, 2M − 1) view taken
    from flat offset M − 1 is ``u[M − 1 − i + j]``: 1 exactly when ``j <= i``."""
    M = max(tq, tk)
    u = g.add("concat", g.add("fill", value=1.0, shape=(M,), dtype=dtype, name=f"{name}_1"),
              g.add("fill", value=0.0, shape=(M,), dtype=dtype, name=f"{name}_0"),
              axis=0, name=f"{name}_u")
    rows = g.add("broadcast_to", u, shape=(M + 1, 2 * M), name=f"{name}_rows")
    flat = g.add("reshape", rows, shape=((M + 1) * 2 * M,), name=f"{name}_flat")
    skew = g.add("slice", flat, begin=(M - 1,), end=(M - 1 + M * (2 * M - 1),), name=f"{name}_s")
    skew = g.add("reshape", skew, shape=(M, 2 * M - 1), name=f"{name}_skew")
    return g.add("slice", skew, begin=(0, 0), end=(tq, tk), name=name)


def scaled_dot_product_attention(g, q, k, v, mask=None, causal=False, scale=None, prefix="",
                                 dropout=None):
    """``softmax(q kᵀ · scale) v`` over (..., L, d), (..., S, d), (..., S, dv) nodes
    (scale 1/√d by default).  ``mask`` is a keep mask broadcastable to (..., L, S);
    ``causal`` also keeps only ``j <= i``.  Returns ``(output, weights)``."""
    sq, sk, sv = (tuple(g.shape(a)) for a in (q, k, v))
    if len(sq) < 2 or sk[-1] != sq[-1] or sk[-2] != sv[-2] or len(sk) != len(sq):
        raise UsageError(f"{prefix}attention needs q (..., L, d), k (..., S, d), v (..., S, dv): "
                         f"got {q} {sq}, {k} {sk}, {v} {sv}")
    r = len(sk)
    kt = g.add("permute", k, axes=(*range(r - 2), r - 1, r - 2), name=f"{prefix}k_t")
    s = g.add("matmul", q, kt, name=f"{prefix}qk")
    s = g.add("scale", s, factor=float(scale if scale is not None else 1 / math.sqrt(sq[-1])),
              name=f"{prefix}scores")
    keep = mask
    if causal:
        c = causal_mask(g, sq[-2], sk[-2], g.node(q)["dtype"], name=f"{prefix}causal")
        keep = c if keep is None else g.add("mul", keep, c, name=f"{prefix}keep")
    if keep is None:
        w = g.add("softmax", s, name=f"{prefix}weights")
    else:
        if tuple(g.shape(keep)) != tuple(g.shape(s)):
            keep = g.add("broadcast_to", keep, shape=tuple(g.shape(s)), name=f"{prefix}keep_full")
        w = g.add("masked_softmax", s, keep, name=f"{prefix}weights")
    wd = dropout.build(g, w, prefix=prefix) if dropout is not None else w
    return g.add("matmul", wd, v, name=f"{prefix}attn"), w


class MultiheadAttention(Module):
    """Multi-head attention, as ``torch.nn.MultiheadAttention`` (same ``kdim = vdim =
    embed_dim``): ``Q = query W_qᵀ + b_q`` (rows of ``in_proj_weight``), likewise K and V,
    split into heads, attention per head, heads joined, ``out_proj``.  Inputs are
    (L, N, E), or (N, L, E) with ``batch_first``."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, rng=None, dtype: str = "float32"):
        super().__init__()
        if not isinstance(embed_dim, (int, np.integer)) or embed_dim < 1 or \
                not isinstance(num_heads, (int, np.integer)) or num_heads < 1 or \
                embed_dim % num_heads:
            raise UsageError(f"MultiheadAttention needs embed_dim divisible by num_heads, got "
                             f"{embed_dim!r} and {num_heads!r}")
        rng = rng if rng is not None else np.random.default_rng(0)
        E = self.embed_dim = int(embed_dim)
        self.num_heads, self.head_dim = int(num_heads), E // num_heads
        self.batch_first, self.has_bias = bool(batch_first), bool(bias)
        a = math.sqrt(6.0 / (E + 3 * E))  # torch: xavier_uniform_ on the (3E, E) matrix
        self.in_proj_weight = Parameter(rng.uniform(-a, a, (3 * E, E)).astype(dtype))
        if bias:
            self.in_proj_bias = Parameter(np.zeros(3 * E, dtype))
        self.out_proj = Linear(E, E, bias, rng, dtype)
        if bias:
            self.out_proj.bias.data[...] = 0
        self.drop = Dropout(dropout)
        self.dropout = self.drop.p

    def _project(self, g, x, i, prefix, what):
        E = self.embed_dim
        w = f"{prefix}in_proj_weight"
        wi = g.add("slice", w, begin=(i * E, 0), end=((i + 1) * E, None), name=f"{prefix}w_{what}")
        y = g.add("matmul", x, g.add("transpose", wi, name=f"{prefix}w_{what}_t"),
                  name=f"{prefix}{what}_xw")
        if self.has_bias:
            bi = g.add("slice", f"{prefix}in_proj_bias", begin=(i * E,), end=((i + 1) * E,),
                       name=f"{prefix}b_{what}")
            y = g.add("add", y, bi, name=f"{prefix}{what}_proj")
        N, L = g.shape(y)[:2]  # (N, L, E) -> (N, heads, L, head_dim)
        y = g.add("reshape", y, shape=(N, L, self.num_heads, self.head_dim),
                  name=f"{prefix}{what}_h")
        return g.add("permute", y, axes=(0, 2, 1, 3), name=f"{prefix}{what}_heads")

    def build_all(self, g, query, key=None, value=None, key_keep=None, attn_keep=None,
                  causal=False, prefix=""):
        """``(output, weights)``: the output as ``query`` (L, N, E) (batch first as set) and
        the attention weights averaged over heads (N, L, S), as torch's defaults.
        ``key`` and ``value`` default to ``query`` (self-attention); ``key_keep`` (N, S)
        and ``attn_keep`` (L, S) are keep masks (> 0: attend); ``causal`` keeps ``j <= i``."""
        key = query if key is None else key
        value = key if value is None else value
        E = self.embed_dim
        for a in (query, key, value):
            if len(g.shape(a)) != 3 or g.shape(a)[-1] != E:
                raise UsageError(f"{prefix}MultiheadAttention expects (L, N, {E}) inputs "
                                 f"((N, L, {E}) with batch_first), {a} has shape {g.shape(a)}")
        w = self.in_proj_weight
        g.param(f"{prefix}in_proj_weight", w.shape, str(w.dtype))
        if self.has_bias:
            g.param(f"{prefix}in_proj_bias", self.in_proj_bias.shape, str(self.in_proj_bias.dtype))
        seen = {}

        def batch_major(a, what):
            if self.batch_first:
                return a
            if a not in seen:
                seen[a] = g.add("permute", a, axes=(1, 0, 2), name=f"{prefix}{what}_nle")
            return seen[a]

        q = self._project(g, batch_major(query, "q"), 0, prefix, "q")
        k = self._project(g, batch_major(key, "k"), 1, prefix, "k")
        v = self._project(g, batch_major(value, "v"), 2, prefix, "v")
        N, L, S = g.shape(q)[0], g.shape(q)[2], g.shape(k)[2]
        keep = None
        if key_keep is not None:
            if tuple(g.shape(key_keep)) != (N, S):
                raise UsageError(f"{prefix}key_keep must be (N, S) = {(N, S)}, {key_keep} has "
                                 f"shape {g.shape(key_keep)}")
            keep = g.add("reshape", key_keep, shape=(N, 1, 1, S), name=f"{prefix}key_keep4")
        if attn_keep is not None:
            if tuple(g.shape(attn_keep)) != (L, S):
                raise UsageError(f"{prefix}attn_keep must be (L, S) = {(L, S)}, {attn_keep} has "
                                 f"shape {g.shape(attn_keep)}")
            keep = attn_keep if keep is None else g.add("mul", keep, attn_keep,
                                                        name=f"{prefix}keep_ls")
        o, w = scaled_dot_product_attention(g, q, k, v, keep, causal, prefix=prefix,
                                            dropout=self.drop if self.dropout else None)
        o = g.add("permute", o, axes=(0, 2, 1, 3), name=f"{prefix}heads_joined")
        o = g.add("reshape", o, shape=(N, L, E), name=f"{prefix}concat_heads")
        o = self.out_proj.build(g, o, prefix=f"{prefix}out_proj.")
        if not self.batch_first:
            o = g.add("permute", o, axes=(1, 0, 2), name=f"{prefix}out")
        w = g.add("mean", w, axes=(1,), name=f"{prefix}avg_weights")
        return o, w

    def build(self, g, x, prefix=""):
        return self.build_all(g, x, prefix=prefix)[0]

    def __repr__(self):
        return f"MultiheadAttention({self.embed_dim}, {self.num_heads})"


# ---------------------------------------------------------- positions
class SinusoidalPositionalEncoding(Module):
    """``x + PE`` with ``PE[t, 2i] = sin(t / 10000^(2i/d))``, ``PE[t, 2i+1] = cos(·)``
    (Vaswani et al.).  PE is a constant graph input (``<prefix>pe``, marked
    ``{"constant": True}``) whose value :func:`constant_inputs` gives, to bind at
    compile time.  ``x`` is (N, T, d) with ``batch_first`` (default), else (T, N, d)."""

    def __init__(self, d_model: int, max_len: int = 5000, batch_first: bool = True):
        super().__init__()
        self.d_model, self.max_len, self.batch_first = int(d_model), int(max_len), batch_first
        self.constants: dict = {}

    def table(self, T: int, dtype="float64") -> np.ndarray:
        """The (T, d) encoding."""
        pos = np.arange(T, dtype=np.float64)[:, None]
        div = np.exp(np.arange(0, self.d_model, 2) * (-math.log(10000.0) / self.d_model))
        pe = np.zeros((T, self.d_model))
        pe[:, 0::2] = np.sin(pos * div)
        pe[:, 1::2] = np.cos(pos * div)[:, : self.d_model // 2]
        return pe.astype(dtype)

    def build(self, g, x, prefix=""):
        T, shape = _positions(self, g, x, prefix)
        dtype = g.node(x)["dtype"]
        pe = g.input(f"{prefix}pe", (T, self.d_model) if self.batch_first else (T, 1, self.d_model),
                      dtype)
        g.node(pe)["params"]["constant"] = True
        self.constants = {pe: self.table(T, dtype).reshape(g.shape(pe))}
        return g.add("add", x, pe, name=f"{prefix}x_pe")

    def __repr__(self):
        return f"SinusoidalPositionalEncoding({self.d_model})"


class LearnedPositionalEncoding(Module):
    """``x + weight[:T]`` with a trained ``weight`` (max_len, d) ~ N(0, 0.02²)."""

    def __init__(self, max_len: int, d_model: int, batch_first: bool = True, rng=None,
                 dtype: str = "float32"):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.d_model, self.max_len, self.batch_first = int(d_model), int(max_len), batch_first
        self.weight = Parameter((0.02 * rng.standard_normal((self.max_len, self.d_model)))
                                .astype(dtype))

    def build(self, g, x, prefix=""):
        T, _ = _positions(self, g, x, prefix)
        w = g.param(f"{prefix}weight", self.weight.shape, str(self.weight.dtype))
        pe = g.add("slice", w, begin=(0, 0), end=(T, None), name=f"{prefix}positions")
        if not self.batch_first:
            pe = g.add("reshape", pe, shape=(T, 1, self.d_model), name=f"{prefix}positions_t1")
        return g.add("add", x, pe, name=f"{prefix}x_pe")

    def __repr__(self):
        return f"LearnedPositionalEncoding({self.max_len}, {self.d_model})"


def _positions(m, g, x, prefix):
    shape = tuple(g.shape(x))
    T = shape[1] if m.batch_first else shape[0] if len(shape) == 3 else None
    if len(shape) != 3 or shape[2] != m.d_model or not isinstance(T, int) or T > m.max_len:
        want = "(N, T, {})" if m.batch_first else "(T, N, {})"
        raise UsageError(f"{prefix}{type(m).__name__} expects {want.format(m.d_model)} with a "
                         f"concrete T <= {m.max_len}, {x} has shape {shape}")
    return T, shape


def constant_inputs(model) -> dict:
    """``{input node: array}`` of the constant inputs the last ``build`` of ``model``
    (and its sub-modules) made (sinusoidal encodings), for ``compile_graph(bind=...)``."""
    out = dict(getattr(model, "constants", {}))
    for m in model._modules.values():
        out.update(constant_inputs(m))
    return out


# ---------------------------------------------------------- transformer
class _Block(Module):
    def _common(self, d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                batch_first, norm_first, bias, rng, dtype, n_norms):
        if activation not in ("relu", "gelu"):
            raise UsageError(f"{type(self).__name__} activation must be relu or gelu, "
                             f"got {activation!r}")
        rng = rng if rng is not None else np.random.default_rng(0)
        self.d_model, self.nhead, self.activation = int(d_model), int(nhead), activation
        self.batch_first, self.norm_first = bool(batch_first), bool(norm_first)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias, batch_first, rng, dtype)
        if n_norms == 3:
            self.multihead_attn = MultiheadAttention(d_model, nhead, dropout, bias, batch_first,
                                                     rng, dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias, rng, dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias, rng, dtype)
        for i in range(1, n_norms + 1):
            setattr(self, f"norm{i}", LayerNorm(d_model, layer_norm_eps, dtype=dtype))
            setattr(self, f"dropout{i}", Dropout(dropout))

    def _ff(self, g, x, p):
        h = self.linear1.build(g, x, prefix=f"{p}linear1.")
        h = g.add(self.activation, h, name=f"{p}ff_{self.activation}")
        h = self.dropout.build(g, h, prefix=f"{p}dropout.")
        return self.linear2.build(g, h, prefix=f"{p}linear2.")

    def _sublayer(self, g, x, k, fn, p):
        """Residual around ``fn`` with norm ``k``: pre-LN ``x + fn(LN(x))`` or post-LN
        ``LN(x + fn(x))``; the sub-layer's output goes through ``dropout<k>``."""
        norm, drop = getattr(self, f"norm{k}"), getattr(self, f"dropout{k}")
        if self.norm_first:
            y = drop.build(g, fn(norm.build(g, x, prefix=f"{p}norm{k}.")), prefix=f"{p}dropout{k}.")
            return g.add("add", x, y, name=f"{p}res{k}")
        y = drop.build(g, fn(x), prefix=f"{p}dropout{k}.")
        return norm.build(g, g.add("add", x, y, name=f"{p}res{k}"), prefix=f"{p}norm{k}.")

    def __repr__(self):
        extra = (", norm_first=True" if self.norm_first else "") + (
            ", activation='gelu'" if self.activation == "gelu" else "")
        return f"{type(self).__name__}({self.d_model}, {self.nhead}{extra})"


class TransformerEncoderLayer(_Block):
    """Self-attention and feed-forward sub-layers with residuals and layer norms, as
    ``torch.nn.TransformerEncoderLayer`` (post-LN by default, pre-LN with ``norm_first``)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 rng=None, dtype: str = "float32"):
        super().__init__()
        self._common(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                     batch_first, norm_first, bias, rng, dtype, 2)

    def build_all(self, g, src, key_keep=None, causal=False, prefix=""):
        def sa(x):
            return self.self_attn.build_all(g, x, key_keep=key_keep, causal=causal,
                                            prefix=f"{prefix}self_attn.")[0]
        x = self._sublayer(g, src, 1, sa, prefix)
        return self._sublayer(g, x, 2, lambda h: self._ff(g, h, prefix), prefix)

    def build(self, g, x, prefix=""):
        return self.build_all(g, x, prefix=prefix)


class TransformerDecoderLayer(_Block):
    """Masked self-attention, cross-attention over ``memory`` and feed-forward, as
    ``torch.nn.TransformerDecoderLayer`` (post-LN by default, pre-LN with ``norm_first``)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 rng=None, dtype: str = "float32"):
        super().__init__()
        self._common(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                     batch_first, norm_first, bias, rng, dtype, 3)

    def build_all(self, g, tgt, memory, tgt_key_keep=None, memory_key_keep=None,
                  tgt_causal=True, prefix=""):
        """``tgt`` attends to itself (causally by default) and then to ``memory``."""
        def sa(x):
            return self.self_attn.build_all(g, x, key_keep=tgt_key_keep, causal=tgt_causal,
                                            prefix=f"{prefix}self_attn.")[0]

        def ca(x):
            return self.multihead_attn.build_all(g, x, memory, memory, key_keep=memory_key_keep,
                                                 prefix=f"{prefix}multihead_attn.")[0]
        x = self._sublayer(g, tgt, 1, sa, prefix)
        x = self._sublayer(g, x, 2, ca, prefix)
        return self._sublayer(g, x, 3, lambda h: self._ff(g, h, prefix), prefix)

    def build(self, g, x, prefix=""):
        raise UsageError(f"{prefix}TransformerDecoderLayer needs the encoder's memory: call "
                         "build_all(g, tgt, memory)")
