"""Layer derivations for convolution, pooling and normalization: index notation and im2col form.

The same contract as :mod:`symdl.derive.layers`: the notation is symdl's own
and every rule is verified on explicit SymPy instances (arrays of symbols,
``L = Σ δ ⊙ y``, ``sympy.diff`` per entry).  The matrix (im2col) forms are
checked with symdl's own ``unfold``/``fold``/``gather``/``scatter_add``
implementations run on arrays of SymPy symbols, so the rules printed are
the ones training runs.  Instances cover stride, padding and dilation.
"""
from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from ..ops import OPS
from .layers import LayerDerivation, Rule

__all__ = ["CONV_LAYERS", "conv_layer_derivation"]

CONV_LAYERS = ("conv2d", "maxpool", "avgpool", "batchnorm", "layernorm", "instancenorm")


def _symbols(name: str, shape) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        out[idx] = sp.Symbol(name + "".join(map(str, idx)), real=True)
    return out


def _zero(a, b) -> bool:
    """Polynomial identity, entry by entry (exact: ``expand``)."""
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    return a.shape == b.shape and all(sp.expand(sp.sympify(u) - sp.sympify(v)) == 0
                                      for u, v in zip(a.flat, b.flat))


def _diff(L, X: np.ndarray) -> np.ndarray:
    out = np.empty(X.shape, dtype=object)
    for idx in np.ndindex(*X.shape):
        out[idx] = sp.diff(L, X[idx])
    return out


def _geo(k, s, p, d):
    return {"kernel": (k, k), "stride": (s, s), "padding": (p, p), "dilation": (d, d)}


def _out(h, k, s, p, d):
    return (h + 2 * p - d * (k - 1) - 1) // s + 1


def _at(x, n, c, r, q, p):
    """``x̃[n, c, r, q]`` of ``x`` zero-padded by ``p``."""
    r, q = r - p, q - p
    return x[n, c, r, q] if 0 <= r < x.shape[2] and 0 <= q < x.shape[3] else 0


# ---------------------------------------------------------------- convolution
def _conv_instance(n, c, o, h, k, s, p, d) -> bool:
    x, W, b = _symbols("x", (n, c, h, h)), _symbols("w", (o, c, k, k)), _symbols("b", (o,))
    m = _out(h, k, s, p, d)
    dl = _symbols("d", (n, o, m, m))
    y = np.empty((n, o, m, m), dtype=object)
    for a, oo, i, j in np.ndindex(*y.shape):
        y[a, oo, i, j] = b[oo] + sum(W[oo, cc, pp, qq] * _at(x, a, cc, i * s + pp * d,
                                                              j * s + qq * d, p)
                                     for cc, pp, qq in np.ndindex(c, k, k))
    cols = OPS["unfold"].impl(x, **_geo(k, s, p, d))                  # (n, c·k·k, m·m)
    Wm = W.reshape(o, c * k * k)
    ok = _zero(y.reshape(n, o, m * m), np.stack([Wm.dot(cols[a]) + b[:, None] for a in range(n)]))
    L = sp.Add(*(dl * y).flat)
    dW, dx, db = _diff(L, W), _diff(L, x), _diff(L, b)
    # index notation
    want_W = np.empty(W.shape, dtype=object)
    for oo, cc, pp, qq in np.ndindex(*W.shape):
        want_W[oo, cc, pp, qq] = sum(dl[a, oo, i, j] * _at(x, a, cc, i * s + pp * d,
                                                          j * s + qq * d, p)
                                     for a, i, j in np.ndindex(n, m, m))
    want_x = np.zeros(x.shape, dtype=object)
    for a, oo, cc, pp, qq, i, j in np.ndindex(n, o, c, k, k, m, m):
        r, q = i * s + pp * d - p, j * s + qq * d - p
        if 0 <= r < h and 0 <= q < h:
            want_x[a, cc, r, q] += dl[a, oo, i, j] * W[oo, cc, pp, qq]
    ok &= _zero(dW, want_W) and _zero(dx, want_x) and _zero(db, dl.sum(axis=(0, 2, 3)))
    # matrix form: ∂L/∂W_mat = Σ_n δ_n X_colₙᵀ, ∂L/∂x = fold(W_matᵀ δ_n)
    dm = dl.reshape(n, o, m * m)
    ok &= _zero(dW.reshape(o, -1), sum(dm[a].dot(cols[a].T) for a in range(n)))
    back = np.stack([Wm.T.dot(dm[a]) for a in range(n)])
    ok &= _zero(dx, OPS["fold"].impl(back, output_size=(h, h), **_geo(k, s, p, d)))
    return ok


def conv2d() -> LayerDerivation:
    ok = all(_conv_instance(*case) for case in ((2, 2, 2, 3, 2, 1, 0, 1), (1, 1, 2, 4, 2, 2, 1, 2)))
    x_ = "x̃[n,c,iS+pD,jS+qD]"
    tx = r"\tilde x_{n,c,iS+pD,\,jS+qD}"
    d_ = r"\frac{\partial L}{\partial "
    rules = (
        Rule("∂L/∂W[o,c,p,q]", f"Σ_{{n,i,j}} δ[n,o,i,j]·{x_}", "O×C×K×K", d_ + "W_{o,c,p,q}}",
             r"\sum_{n,i,j} \delta_{n,o,i,j}\, " + tx, "index"),
        Rule("∂L/∂x̃[n,c,h,w]", "Σ_{o,p,q,i,j: iS+pD=h, jS+qD=w} δ[n,o,i,j]·W[o,c,p,q]",
             "N×C×H×W", d_ + r"\tilde x_{n,c,h,w}}",
             r"\sum_{o,p,q,i,j:\ iS+pD=h,\ jS+qD=w} \delta_{n,o,i,j}\, W_{o,c,p,q}", "index"),
        Rule("∂L/∂b[o]", "Σ_{n,i,j} δ[n,o,i,j]", "O", d_ + "b_o}",
             r"\sum_{n,i,j} \delta_{n,o,i,j}", "index"),
        Rule("∂L/∂W_mat", "Σ_n δ_n X_colₙᵀ", "O×CKK", d_ + r"W_{\mathrm{mat}}}",
             r"\sum_n \delta_n X_{\mathrm{col},n}^{\top}", "matrix"),
        Rule("∂L/∂x_n", "fold(W_matᵀ δ_n)", "C×H×W", d_ + "x_n}",
             r"\operatorname{fold}(W_{\mathrm{mat}}^{\top} \delta_n)", "matrix"),
        Rule("∂L/∂b", "Σ_n δ_n 1", "O", d_ + "b}", r"\sum_n \delta_n \mathbf{1}", "matrix"),
    )
    steps = (("padding", "x̃ is x with P zeros on each side; S stride, D dilation"),
             ("im2col", "X_col,n = unfold(x_n): column (i,j) holds the receptive field "
                        "x̃[n,:,iS+pD,jS+qD] over (c,p,q), so Y_n = W_mat X_col,n + b 1ᵀ"),
             ("linearity", "y is linear in W and in x: each gradient is the other factor, summed "
                           "over the indices it does not keep; fold (col2im) is unfold's "
                           "transpose"))
    return LayerDerivation(
        "conv2d", "y[n,o,i,j] = b[o] + Σ_{c,p,q} W[o,c,p,q]·x̃[n,c,iS+pD,jS+qD]",
        r"y_{n,o,i,j} = b_o + \sum_{c,p,q} W_{o,c,p,q}\, " + tx, rules, steps, ok,
        "explicit instances (N,C,O,H,K,S,P,D) = (2,2,2,3,2,1,0,1) and (1,1,2,4,2,2,1,2), "
        "sympy.diff per entry, im2col form through symdl's unfold/fold")


# -------------------------------------------------------------------- pooling
def _pool_windows(h, k, s, p):
    m = _out(h, k, s, p, 1)
    for i, j in np.ndindex(m, m):
        yield (i, j), [(i * s + a - p, j * s + b - p) for a, b in np.ndindex(k, k)]


def _maxpool_instance(h, k, s, p, seed) -> bool:
    x0 = np.random.default_rng(seed).permutation(h * h).reshape(1, 1, h, h)   # distinct entries
    u = _symbols("u", (1, 1, h, h))
    x = x0 + u
    m = _out(h, k, s, p, 1)
    dl = _symbols("d", (1, 1, m, m))
    L = 0
    for (i, j), win in _pool_windows(h, k, s, p):
        inside = [x[0, 0, r, q] for r, q in win if 0 <= r < h and 0 <= q < h]
        L += dl[0, 0, i, j] * sp.Max(*inside)
    got = _diff(L, u)
    zero = {v: 0 for v in u.flat}
    got = np.vectorize(lambda e: e.xreplace(zero), otypes=[object])(got)
    # stated: fold(scatter_add(δ, argmax(windows))), windows of x padded by −∞
    big = float(x0.max() + 1)
    xp = np.pad(x0.astype(float), [(0, 0), (0, 0), (p, p), (p, p)], constant_values=-big)
    win = OPS["unfold"].impl(xp, **_geo(k, s, 0, 1)).reshape(1, 1, k * k, m * m)
    arg = OPS["argmax"].impl(win, axis=2)
    sc = OPS["scatter_add"].impl(dl.reshape(1, 1, 1, m * m), arg, axis=2,
                                 shape=(1, 1, k * k, m * m))
    img = OPS["fold"].impl(sc.reshape(1, k * k, m * m), output_size=(h + 2 * p,) * 2,
                           **_geo(k, s, 0, 1))[:, :, p:p + h, p:p + h]
    ok = _zero(got, img)
    want = np.zeros((1, 1, h, h), dtype=object)     # index form: δ to each window's arg-max
    for (i, j), win in _pool_windows(h, k, s, p):
        r, q = max((rq for rq in win if 0 <= rq[0] < h and 0 <= rq[1] < h),
                   key=lambda rq: x0[0, 0, rq[0], rq[1]])
        want[0, 0, r, q] += dl[0, 0, i, j]
    return ok and _zero(got, want)


def maxpool() -> LayerDerivation:
    ok = _maxpool_instance(4, 2, 2, 0, 0) and _maxpool_instance(5, 3, 2, 1, 1)
    d_ = r"\frac{\partial L}{\partial "
    rules = (
        Rule("∂L/∂x̃[n,c,h,w]", "Σ_{i,j: (h,w) = a[n,c,i,j]} δ[n,c,i,j]", "N×C×H×W",
             d_ + r"\tilde x_{n,c,h,w}}", r"\sum_{i,j:\ (h,w) = a_{n,c,i,j}} \delta_{n,c,i,j}",
             "index"),
        Rule("∂L/∂x", "fold(scatter_add(δ, argmax(unfold(x̃))))", "N×C×H×W", d_ + "x}",
             r"\operatorname{fold}(\operatorname{scatter\_add}(\delta, "
             r"\operatorname{argmax}(\operatorname{unfold}(\tilde x))))", "matrix"),
    )
    steps = (("arg-max", "a[n,c,i,j] = the position of the first maximum of window (i,j), "
                         "row-major (torch's tie rule); padding is −∞, never a maximum"),
             ("gather", "y = gather(windows, a): linear in x for fixed a, so its transpose "
                        "scatter_add routes δ to the arg-max; overlapping windows add up"),
             ("note", "SymPy splits ties (Max' = ½); the instances have distinct entries"))
    return LayerDerivation(
        "maxpool", "y[n,c,i,j] = max_{p,q} x̃[n,c,iS+p,jS+q]",
        r"y_{n,c,i,j} = \max_{p,q} \tilde x_{n,c,iS+p,\,jS+q}", rules, steps, ok,
        "explicit instances (H,K,S,P) = (4,2,2,0) and (5,3,2,1) at distinct integers + "
        "symbols, sympy.diff of Max per entry")


def _avgpool_instance(h, k, s, p) -> bool:
    x = _symbols("x", (1, 1, h, h))
    m = _out(h, k, s, p, 1)
    dl = _symbols("d", (1, 1, m, m))
    L = sum(dl[0, 0, i, j] * sp.Rational(1, k * k) * sum(_at(x, 0, 0, r + p, q + p, p)
                                                         for r, q in win)
            for (i, j), win in _pool_windows(h, k, s, p))
    got = _diff(L, x)
    cols = np.repeat(dl.reshape(1, 1, m * m), k * k, axis=1) * sp.Rational(1, k * k)
    return _zero(got, OPS["fold"].impl(cols, output_size=(h, h), **_geo(k, s, p, 1)))


def avgpool() -> LayerDerivation:
    ok = _avgpool_instance(4, 2, 2, 0) and _avgpool_instance(4, 3, 2, 1)
    d_ = r"\frac{\partial L}{\partial "
    rules = (
        Rule("∂L/∂x̃[n,c,h,w]", "(1/K²) Σ_{i,j: window (i,j) covers (h,w)} δ[n,c,i,j]",
             "N×C×H×W", d_ + r"\tilde x_{n,c,h,w}}",
             r"\frac{1}{K^2} \sum_{i,j:\ (h,w) \in \mathrm{window}(i,j)} \delta_{n,c,i,j}",
             "index"),
        Rule("∂L/∂x", "fold(1_{K²} δ / K²)", "N×C×H×W", d_ + "x}",
             r"\operatorname{fold}\!\left(\mathbf{1}_{K^2}\, \delta / K^2\right)", "matrix"),
    )
    steps = (("mean", "y = (1/K²) 1ᵀ unfold(x̃): every pixel of a window gets δ/K²"),
             ("padding", "padding zeros count in K² (count_include_pad, torch's default)"))
    return LayerDerivation(
        "avgpool", "y[n,c,i,j] = (1/K²) Σ_{p,q} x̃[n,c,iS+p,jS+q]",
        r"y_{n,c,i,j} = \frac{1}{K^2} \sum_{p,q} \tilde x_{n,c,iS+p,\,jS+q}", rules, steps, ok,
        "explicit instances (H,K,S,P) = (4,2,2,0) and (4,3,2,1), sympy.diff per entry, "
        "fold through symdl's op")


# -------------------------------------------------------------- normalization
_NORMS = {"batchnorm": ((0, 2, 3), "(N, H, W) per channel", (1,)),
          "layernorm": ((1, 2, 3), "(C, H, W) per sample", (1, 2, 3)),
          "instancenorm": ((2, 3), "(H, W) per sample and channel", (1,))}


def _norm_instance(name) -> bool:
    axes, _, keep = _NORMS[name]
    shape = (2, 2, 1, 2)
    x, dl = _symbols("x", shape), _symbols("d", shape)
    gshape = tuple(shape[a] if a in keep else 1 for a in range(4))
    gam, bet = _symbols("g", gshape), _symbols("b", gshape)
    eps = sp.Symbol("epsilon", positive=True)
    count = int(np.prod([shape[a] for a in axes]))
    mean = lambda v: (v.sum(axis=axes, keepdims=True) / count)   # noqa: E731
    xc = x - mean(x)
    std = np.vectorize(lambda v: sp.sqrt(v + eps), otypes=[object])(mean(xc * xc))
    xh = xc / std
    L = sp.Add(*(dl * (gam * xh + bet)).flat)
    g = gam * dl
    want_x = (g - mean(g) - xh * mean(g * xh)) / std
    spread = tuple(a for a in range(4) if a not in keep)     # axes γ and β are broadcast on
    sum_to = lambda v: v.sum(axis=spread, keepdims=True)       # noqa: E731
    pairs = [(_diff(L, x), want_x), (_diff(L, gam), sum_to(dl * xh)), (_diff(L, bet), sum_to(dl))]
    rng = np.random.default_rng(3)
    syms = sorted(set().union(*(sp.sympify(e).free_symbols for e in want_x.flat)) | {eps},
                  key=lambda v: v.name)
    for _ in range(3):   # exact rational points, 50 digits (sqrt keeps it from expand)
        at = {v: sp.Rational(int(rng.integers(1, 40)), int(rng.integers(1, 9))) * (
            1 if v == eps or rng.random() < 0.5 else -1) for v in syms}
        for got, want in pairs:
            for a, b in zip(got.flat, want.flat):
                if abs(complex(sp.N(sp.sympify(a - b).xreplace(at), 50))) > 1e-40:
                    return False
    return True


def norm(name) -> LayerDerivation:
    axes, where, _ = _NORMS[name]
    ok = _norm_instance(name)
    d_ = r"\frac{\partial L}{\partial "
    rules = (
        Rule("∂L/∂x", "(1/σ)(g − mean_A(g) − x̂ ⊙ mean_A(g ⊙ x̂)),  g = γ ⊙ δ", "like x",
             d_ + "x}", r"\frac{1}{\sigma}\left(g - \overline{g}^{A} - \hat x \odot "
             r"\overline{g \odot \hat x}^{A}\right),\ g = \gamma \odot \delta"),
        Rule("∂L/∂γ", "Σ δ ⊙ x̂ over the axes γ is broadcast on", "like γ", d_ + r"\gamma}",
             r"\sum \delta \odot \hat x"),
        Rule("∂L/∂β", "Σ δ over the axes β is broadcast on", "like β", d_ + r"\beta}",
             r"\sum \delta"),
    )
    steps = (("statistics axes", f"A = axes {axes}: {where}; μ = mean_A(x), "
                                 "σ² = mean_A((x − μ)²) (biased) + ε"),
             ("normalize", "x̂ = (x − μ)/σ, y = γ ⊙ x̂ + β"),
             ("three paths", "x reaches x̂ directly, through μ and through σ; the two "
                             "means in ∂L/∂x are those paths' sums over A"))
    return LayerDerivation(
        name, "y = γ ⊙ (x − mean_A x)/√(var_A x + ε) + β",
        r"y = \gamma \odot \frac{x - \mu_A}{\sqrt{\sigma^2_A + \varepsilon}} + \beta", rules,
        steps, ok, f"explicit (2, 2, 1, 2) instance, statistics over axes {axes}, sympy.diff "
        "per entry, equal at 3 exact rational points (50 digits)")


def conv_layer_derivation(name: str) -> LayerDerivation:
    """The derivation of one of :data:`CONV_LAYERS`."""
    if name in _NORMS:
        return norm(name)
    return {"conv2d": conv2d, "maxpool": maxpool, "avgpool": avgpool}[name]()
