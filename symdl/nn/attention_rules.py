"""Layer derivations of attention, multi-head attention and the transformer encoder
layer, verified on explicit instances of the graphs :mod:`symdl.nn.attention` builds.

Rows are positions (PyTorch's layout: ``Q = X W_qᵀ + b_q``).  The rules are
symdl's notation; each is run in float64 (:func:`attention_vjp`,
:func:`mha_vjp`, :func:`encoder_vjp`) and compared with forward mode over the
layer's own graph (:func:`symdl.derive.graph_eval.jvp`: every op's derivative
SymPy's ``diff`` of its declaration, a row op's that of its ``plain``
definition), per entry for attention, along random directions for the rest;
the forward values are compared with the graph's too.  The attention instance
has a causal mask and a padded first key, so its first row is fully masked
(zeros, and zero gradients).
"""
from __future__ import annotations

import numpy as np

from ..derive.graph_eval import jvp
from ..derive.layers import LayerDerivation, Rule
from ..graph import Graph
from .attention import MultiheadAttention, TransformerEncoderLayer, scaled_dot_product_attention

__all__ = ["ATTENTION_LAYERS", "attention_layer_derivation", "attention_vjp", "mha_vjp",
           "encoder_vjp", "check_attention"]

ATTENTION_LAYERS = ("attention", "mha", "transformer")
_EPS = 1e-5


# ------------------------------------------------------------- the stated rules
def _softmax(S, keep):
    m = np.where(keep > 0, S, -np.inf).max(-1, keepdims=True)
    e = np.where(keep > 0, np.exp(S - np.where(np.isfinite(m), m, 0)), 0)
    tot = e.sum(-1, keepdims=True)
    return np.divide(e, tot, out=np.zeros_like(e), where=tot > 0)


def attention_vjp(Q, K, V, keep, dO):
    """``(O, dQ, dK, dV)`` of ``O = softmax_keep(Q Kᵀ/√d) V`` by the stated rules."""
    s = 1 / np.sqrt(Q.shape[-1])
    P = _softmax(Q @ K.T * s, keep)
    dP = dO @ V.T
    dS = P * (dP - (dP * P).sum(-1, keepdims=True))
    return P @ V, dS @ K * s, dS.T @ Q * s, P.T @ dO


def mha_vjp(X, W, b, Wo, bo, heads, keep, dY):
    """``(Y, dX, dW, db, dWo, dbo)`` of self-attention ``X`` (L, E) by the stated rules."""
    E = X.shape[1]
    dh = E // heads
    QKV = [X @ W[i * E:(i + 1) * E].T + b[i * E:(i + 1) * E] for i in range(3)]
    outs, cat = [], []
    for h in range(heads):
        c = slice(h * dh, (h + 1) * dh)
        outs.append((c, [M[:, c] for M in QKV]))
        cat.append(attention_vjp(*[M[:, c] for M in QKV], keep, np.zeros((X.shape[0], dh)))[0])
    Cat = np.concatenate(cat, axis=1)
    Y = Cat @ Wo.T + bo
    dCat = dY @ Wo
    dQKV = [np.zeros_like(M) for M in QKV]
    for c, (q, k, v) in outs:
        _, dq, dk, dv = attention_vjp(q, k, v, keep, dCat[:, c])
        for D, d in zip(dQKV, (dq, dk, dv)):
            D[:, c] = d
    dX = sum(D @ W[i * E:(i + 1) * E] for i, D in enumerate(dQKV))
    dW = np.concatenate([D.T @ X for D in dQKV])
    db = np.concatenate([D.sum(0) for D in dQKV])
    return Y, dX, dW, db, dY.T @ Cat, dY.sum(0)


def _ln(Z, gam, bet, dY):
    mu = Z.mean(-1, keepdims=True)
    sd = np.sqrt(((Z - mu) ** 2).mean(-1, keepdims=True) + _EPS)
    xh = (Z - mu) / sd
    g = gam * dY
    dZ = (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True)) / sd
    return gam * xh + bet, dZ, (dY * xh).sum(0), dY.sum(0)


def _ff(U, W1, b1, W2, b2, dY):
    A = U @ W1.T + b1
    Hd = np.maximum(A, 0)
    dA = (dY @ W2) * (A > 0)      # relu' = 1[a > 0]
    return Hd @ W2.T + b2, dA @ W1, dA.T @ U, dA.sum(0), dY.T @ Hd, dY.sum(0)


def encoder_vjp(X, P, heads, keep, dY, norm_first):
    """``(Y, grads)`` of a TransformerEncoderLayer (ReLU) by the stated rules, ``P`` its
    parameters by torch name (one sequence: X (L, E))."""
    sa = ("self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
          "self_attn.out_proj.bias")
    ff = ("linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias")
    n1, n2 = ("norm1.weight", "norm1.bias"), ("norm2.weight", "norm2.bias")
    Z0 = np.zeros_like(X)

    def mha(x, d):
        return mha_vjp(x, *[P[k] for k in sa], heads, keep, d)

    G = {}
    if norm_first:   # U = X + MHA(LN1 X), Y = U + FF(LN2 U)
        N1 = _ln(X, *[P[k] for k in n1], Z0)[0]
        U = X + mha(N1, np.zeros_like(X))[0]
        N2 = _ln(U, *[P[k] for k in n2], Z0)[0]
        Y = U + _ff(N2, *[P[k] for k in ff], Z0)[0]
        _, dN2, *gf = _ff(N2, *[P[k] for k in ff], dY)
        _, dU2, *gn2 = _ln(U, *[P[k] for k in n2], dN2)
        dU = dY + dU2
        _, dN1, *ga = mha(N1, dU)
        _, dX1, *gn1 = _ln(X, *[P[k] for k in n1], dN1)
        dX = dU + dX1
    else:            # U = LN1(X + MHA X), Y = LN2(U + FF U)
        Z1 = X + mha(X, np.zeros_like(X))[0]
        U = _ln(Z1, *[P[k] for k in n1], Z0)[0]
        Z2 = U + _ff(U, *[P[k] for k in ff], Z0)[0]
        Y, dZ2, *gn2 = _ln(Z2, *[P[k] for k in n2], dY)
        _, dUf, *gf = _ff(U, *[P[k] for k in ff], dZ2)
        _, dZ1, *gn1 = _ln(Z1, *[P[k] for k in n1], dZ2 + dUf)
        _, dXa, *ga = mha(X, dZ1)
        dX = dZ1 + dXa
    G.update(zip(sa, ga), **dict(zip(ff, gf)), **dict(zip(n1, gn1)), **dict(zip(n2, gn2)))
    G["x"] = dX
    return Y, G


# ------------------------------------------------------------- the instances
def _graph(kind: str, norm_first=False):
    """``(graph, output, leaves, stated(point, dY) -> (Y, grads))``, batch of one."""
    g = Graph()
    L, rng = 3, np.random.default_rng(1)
    keep = np.array([0.0, 1.0, 1.0])        # the first key is padding: row 0 keeps nothing
    causal = np.tril(np.ones((L, L))) * keep
    if kind == "attention":
        q, k, v = (g.input(n, (1, L, 2), "float64") for n in "qkv")
        km = g.input("pad", (1, 1, L), "float64")
        y, _ = scaled_dot_product_attention(g, q, k, v, mask=km, causal=True)

        def stated(p, dY):
            O, dq, dk, dv = attention_vjp(p["q"][0], p["k"][0], p["v"][0], causal, dY[0])
            return O[None], {"q": dq[None], "k": dk[None], "v": dv[None]}
        return g, y, ("q", "k", "v"), {"pad": keep.reshape(1, 1, L)}, stated
    x = g.input("x", (1, L, 4), "float64")
    kk = g.input("pad", (1, L), "float64")
    if kind == "mha":
        m = MultiheadAttention(4, 2, batch_first=True, rng=rng, dtype="float64")
        y, _ = m.build_all(g, x, key_keep=kk, causal=True)

        def stated(p, dY):
            Y, dX, dW, db, dWo, dbo = mha_vjp(p["x"][0], p["in_proj_weight"], p["in_proj_bias"],
                                              p["out_proj.weight"], p["out_proj.bias"], 2,
                                              causal, dY[0])
            return Y[None], {"x": dX[None], "in_proj_weight": dW, "in_proj_bias": db,
                             "out_proj.weight": dWo, "out_proj.bias": dbo}
    else:
        m = TransformerEncoderLayer(4, 2, 6, dropout=0.0, batch_first=True,
                                    norm_first=norm_first, rng=rng, dtype="float64")
        y = m.build_all(g, x, key_keep=kk, causal=True)

        def stated(p, dY):
            Y, G = encoder_vjp(p["x"][0], p, 2, causal, dY[0], norm_first)
            return Y[None], dict(G, x=G["x"][None])
    leaves = tuple(n for n in g.order() if g.op(n) in ("input", "param") and n != "pad")
    return g, y, leaves, {"pad": keep.reshape(1, L)}, stated


def check_attention(kind: str, norm_first=False, seed: int = 0, stated=None) -> tuple:
    """``(ok, checks)``: the stated rules (and forward values) against forward mode over
    the graph; ``stated`` replaces the rules (tests pass a wrong one)."""
    g, y, leaves, const, rules = _graph(kind, norm_first)
    rng = np.random.default_rng(seed)
    point = {n: rng.integers(-8, 9, size=g.shape(n)) / 8 for n in leaves}
    point.update(const)
    C = rng.integers(-8, 9, size=g.shape(y)) / 8
    V, _ = jvp(g, point, {}, outputs=[y])
    Y, grads = (stated or rules)(point, C)
    ok, checks = bool(np.allclose(Y, V[y], rtol=1e-10, atol=1e-12)), 1
    for n in leaves:
        size = int(np.prod(g.shape(n)))
        dirs = ([np.eye(size)[k].reshape(g.shape(n)) for k in range(size)] if kind == "attention"
                else [rng.integers(-2, 3, size=g.shape(n))])
        for v in dirs:
            want = float((C * jvp(g, point, {n: v}, outputs=[y])[1][y]).sum())
            got = float((np.asarray(grads[n]).reshape(g.shape(n)) * v).sum())
            ok &= abs(want - got) <= 1e-9 * (1 + abs(want))
            checks += 1
    return bool(ok), checks


# ------------------------------------------------------------- the derivations
def _r(lhs, rhs, shape, lt, rt, form=""):
    return Rule(lhs, rhs, shape, lt, rt, form)


_D = r"\frac{\partial L}{\partial "
_ATT = (
    _r("P", "softmax_keep(S), S = Q Kᵀ/√d", "L×S", "P",
       r"\operatorname{softmax}_{\text{keep}}(S),\ S = Q K^{\top}/\sqrt{d}", "forward"),
    _r("∂L/∂V", "Pᵀ δ", "S×d_v", _D + "V}", r"P^{\top} \delta", "gradients"),
    _r("∂L/∂P", "δ Vᵀ", "L×S", _D + "P}", r"\delta V^{\top}", "gradients"),
    _r("∂L/∂S", "P ⊙ (∂L/∂P − rowsum(P ⊙ ∂L/∂P))", "L×S", _D + "S}",
       r"P \odot \left(\frac{\partial L}{\partial P} - \operatorname{rowsum}\left(P \odot "
       r"\frac{\partial L}{\partial P}\right)\right)", "gradients"),
    _r("∂L/∂Q", "(∂L/∂S) K/√d", "L×d", _D + "Q}", r"\frac{\partial L}{\partial S} K/\sqrt{d}",
       "gradients"),
    _r("∂L/∂K", "(∂L/∂S)ᵀ Q/√d", "S×d", _D + "K}",
       r"\left(\frac{\partial L}{\partial S}\right)^{\top} Q/\sqrt{d}", "gradients"),
)
_MHA = (
    _r("∂L/∂W_o", "δᵀ C,  C = [head_1 … head_h]", "E×E", _D + "W_o}",
       r"\delta^{\top} C,\ C = [\mathrm{head}_1 \ldots \mathrm{head}_h]"),
    _r("∂L/∂C", "δ W_o  (split by columns into the heads' δ)", "L×E", _D + "C}",
       r"\delta W_o"),
    _r("∂L/∂Q_j, ∂L/∂K_j, ∂L/∂V_j", "attention's rules per head j", "L×E/h",
       _D + "Q_j}", r"\text{attention's rules per head } j"),
    _r("∂L/∂W_q", "(∂L/∂Q)ᵀ X  (likewise W_k, W_v: the rows of in_proj)", "E×E", _D + "W_q}",
       r"\left(\frac{\partial L}{\partial Q}\right)^{\top} X"),
    _r("∂L/∂X", "(∂L/∂Q) W_q + (∂L/∂K) W_k + (∂L/∂V) W_v", "L×E", _D + "X}",
       r"\frac{\partial L}{\partial Q} W_q + \frac{\partial L}{\partial K} W_k + "
       r"\frac{\partial L}{\partial V} W_v"),
)
_ENC = (
    _r("∂L/∂Z (LayerNorm)", "(1/σ)(g − mean(g) − x̂ ⊙ mean(g ⊙ x̂)),  g = γ ⊙ δ", "L×E",
       _D + "Z}", r"\frac{1}{\sigma}\left(g - \overline{g} - \hat x \odot \overline{g \odot "
       r"\hat x}\right),\ g = \gamma \odot \delta"),
    _r("∂L/∂γ, ∂L/∂β", "Σ_rows δ ⊙ x̂,  Σ_rows δ", "E", _D + r"\gamma}, " + _D + r"\beta}",
       r"\textstyle\sum_{\mathrm{rows}} \delta \odot \hat x,\ \sum_{\mathrm{rows}} \delta"),
    _r("∂L/∂X (residual X + F(X))", "δ + F's VJP(δ): the identity path carries δ past the "
       "sub-layer", "L×E", _D + "X}", r"\delta + J_F^{\top} \delta"),
    _r("∂L/∂A (feed-forward)", "(δ W₂) ⊙ 𝟙[A > 0],  A = U W₁ᵀ + b₁", "L×F", _D + "A}",
       r"(\delta W_2) \odot \mathbf{1}[A > 0]"),
    _r("∂L/∂W₁, ∂L/∂W₂", "(∂L/∂A)ᵀ U,  δᵀ relu(A)", "F×E, E×F", _D + "W_1}, " + _D + "W_2}",
       r"\left(\frac{\partial L}{\partial A}\right)^{\top} U,\ \delta^{\top}"
       r" \operatorname{relu}(A)"),
)
_FORWARD = {
    "attention": ("O = softmax_keep(Q Kᵀ/√d) V (entries with keep ≤ 0 left out: weight 0; a "
                  "fully masked row gives 0)", r"O = \operatorname{softmax}_{\text{keep}}"
                  r"\left(\frac{Q K^{\top}}{\sqrt{d}}\right) V"),
    "mha": ("Y = [head_1 … head_h] W_oᵀ + b_o,  head_j = Attention(X W_q,jᵀ + b_q,j, X W_k,jᵀ "
            "+ b_k,j, X W_v,jᵀ + b_v,j)", r"Y = [\mathrm{head}_1 \ldots \mathrm{head}_h] "
            r"W_o^{\top} + b_o"),
    "transformer": ("post-LN: U = LN₁(X + MHA(X)), Y = LN₂(U + FF(U)); pre-LN: U = X + "
                    "MHA(LN₁ X), Y = U + FF(LN₂ U); FF(u) = relu(u W₁ᵀ + b₁) W₂ᵀ + b₂",
                    r"Y = \mathrm{LN}_2(U + \mathrm{FF}(U)),\ U = \mathrm{LN}_1(X + "
                    r"\mathrm{MHA}(X))"),
}


def attention_layer_derivation(kind: str) -> LayerDerivation:
    """The derivation of ``"attention"``, ``"mha"`` or ``"transformer"`` (encoder layer)."""
    if kind == "transformer":
        (a, n1), (b, n2) = check_attention(kind, False), check_attention(kind, True)
        ok, checks, what = a and b, n1 + n2, "TransformerEncoderLayer(4, 2, 6), post-LN and pre-LN"
        rules = _ENC
    elif kind == "mha":
        (ok, checks), what = check_attention(kind), "MultiheadAttention(4, 2)"
        rules = _MHA
    else:
        (ok, checks), what = check_attention(kind), "scaled_dot_product_attention (d = 2)"
        rules = _ATT
    steps = [("layout", "rows are positions (torch's layout): Q = X W_qᵀ + b_q; δ = ∂L/∂output"),
             ("masks", "keep masks (> 0: attend): causal keeps j ≤ i, padding drops keys; a "
                       "masked entry has P = 0, so it passes no gradient")]
    if kind == "transformer":
        steps.append(("residuals", "each sub-layer is added to its input: the sum passes δ "
                                   "on unchanged, which is why deep stacks still train"))
    fwd, fwd_tex = _FORWARD[kind]
    grads = checks - (2 if kind == "transformer" else 1)   # one forward check per instance
    return LayerDerivation(kind, fwd, fwd_tex, rules, tuple(steps), ok,
                           f"{what} built by symdl.nn on one sequence of 3 with a causal mask and "
                           f"a padded first key: forward values and {grads} "
                           "gradient checks against forward mode over its graph (each op's "
                           "derivative SymPy's diff of its declaration), to 1e-9")
