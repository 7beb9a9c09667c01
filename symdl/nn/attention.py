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
        self.in_features, self.out_features, self.has_bias = int(in_features), int(out_features), bias
        k = 1.0 / math.sqrt(self.in_features)
        self.weight = Parameter(rng.uniform(-k, k, (self.out_features, self.in_features)).astype(dtype))
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
            y = g.add("add", y, bi, name=f"{prefix}{what}")
        N, L = g.shape(y)[:2]  # (N, L, E) -> (N, heads, L, head_dim)
        y = g.add("reshape", y, shape=(N, L, self.num_heads, self.head_dim), name=f"{prefix}{what}_h")
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
        g.param(f"{prefix}in_proj_weight", self.in_proj_weight.shape, str(self.in_proj_weight.dtype))
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
        N, H, L, S = (*g.shape(q)[:3], g.shape(k)[2])
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
