"""Layer derivations of the recurrent cells: the step printed from the graph, and
backpropagation through time, verified on explicit SymPy instances.

The cell's rows come from :func:`symdl.nn.equations.cell_rows` (the graph the
cell builds, printed by the symdl printers).  The gradients through time are
symdl's notation (``δv = ∂L/∂v``, summed over every path from later steps);
their elementwise factors are printed from the ops' declarations (σ' and
tanh' in terms of the output).  Each rule is checked on an explicit instance:
the unrolled layer ``nn.RNN``/``LSTM``/``GRU`` (T = 3, two inputs, two hidden
units, an initial state) is evaluated on SymPy numbers with one symbol left
free (:func:`symdl.derive.graph_eval.evaluate`), ``L = Σ C ⊙ y``, and
``sympy.diff(L, s)`` must equal what the stated rules give: per entry for the
initial state (the sum over every path through time), along a random
direction for each weight, bias and the input sequence.
"""
from __future__ import annotations

import re

import numpy as np
import sympy as sp

from ..derive.graph_eval import evaluate, jvp
from ..derive.layers import LayerDerivation, Rule
from ..graph import Graph
from ..ops import OPS, Y
from .equations import GRU_NOTE, cell_rows
from .recurrent import GATES, GRU, LSTM, RNN

__all__ = ["RNN_LAYERS", "rnn_layer_derivation", "check_bptt", "bptt"]

RNN_LAYERS = ("rnn", "lstm", "gru")
_CELL = "one step, printed from the cell's graph"
_BPTT = "through time (δv = ∂L/∂v; each sums the paths from later steps; δ at T + 1 is 0)"
_PARAMS = "parameters (shared by every step: summed over t)"
_PATHS = "as a sum over paths"


def _d(op: str, y: str) -> str:
    """``∂op/∂z`` in terms of the output ``y``, from the op's declaration, printed as text
    (the ``arrays`` setting: ``o_t ⊙ (1 − o_t)``)."""
    from ..printing import text
    s = sp.Symbol(y, real=True)
    e = OPS[op].derivative(0).xreplace({Y: s})
    out = text(e, symbol_names={s: y}, arrays=True)
    return out if e.is_Mul or e.is_Symbol else f"({out})"


_TEX = (("ᵀ", r"^{\top}"), ("⊙", r"\odot"), ("δ", r"\delta "), ("Σ_{k≥t}", r"\sum_{k \ge t}"),
        ("Σ_t", r"\sum_t"), ("Σ_k", r"\sum_k"), ("−", "-"), ("²", "^2"), ("⋯", r"\cdots"),
        ("…", r"\ldots "), ("LSTM cell", r"\mathrm{LSTM}"), ("GRU cell", r"\mathrm{GRU}"),
        ("∂", r"\partial "), ("ℓ", r"\ell "), ("diag", r"\operatorname{diag}"),
        ("tanh", r"\tanh"), ("σ", r"\sigma"), ("‖", r"\|"), ("   (", r"\quad ("),
        ("  (", r"\quad ("))


def _tex(s: str) -> str:
    """The text notation of these rules as LaTeX: symbols replaced, and subscripts of two
    letters braced (``W_hk`` → ``W_{hk}``)."""
    for a, b in _TEX:
        s = s.replace(a, b)
    return re.sub(r"_([A-Za-z]{2,})", r"_{\1}", s)


def _rule(lhs, rhs, form, lhs_tex=None, rhs_tex=None, shape="H") -> Rule:
    return Rule(lhs, rhs, shape, lhs_tex or _tex(lhs), rhs_tex or _tex(rhs), form)


def _rules(kind: str) -> tuple:
    t = _d
    cell = [_rule(lhs, rhs, _CELL, lt, rt) for (lhs, rhs), (lt, rt)
            in zip(cell_rows(kind, "text"), cell_rows(kind, "latex"))]
    dtanh_c = _d("tanh", "tanh(c_t)").replace("tanh(c_t)²", "tanh²(c_t)")
    if kind == "rnn":
        bptt = [_rule("δa_t", f"δh_t ⊙ {t('tanh', 'h_t')}", _BPTT),
                _rule("δh_t", "∂ℓ/∂h_t + W_hhᵀ δa_{t+1}", _BPTT),
                _rule("δh_t", "Σ_{k≥t} J_{t+1}ᵀ ⋯ J_kᵀ ∂ℓ/∂h_k,  J_j = ∂h_j/∂h_{j−1} = "
                      f"diag{t('tanh', 'h_j')} W_hh", _PATHS)]
        params = [("W_ih", "δa_t x_tᵀ"), ("W_hh", "δa_t h_{t−1}ᵀ"), ("b_ih", "δa_t"),
                  ("b_hh", "δa_t")]
        dx = "W_ihᵀ δa_t"
    elif kind == "lstm":
        bptt = [_rule("δh_t", "∂ℓ/∂h_t + Σ_k W_hkᵀ δa^k_{t+1}   (k = i, f, g, o)", _BPTT),
                _rule("δc_t", f"δh_t ⊙ o_t ⊙ {dtanh_c} + δc_{{t+1}} ⊙ f_{{t+1}}", _BPTT),
                _rule("δa^o_t", f"δh_t ⊙ tanh(c_t) ⊙ {t('sigmoid', 'o_t')}", _BPTT),
                _rule("δa^i_t", f"δc_t ⊙ g_t ⊙ {t('sigmoid', 'i_t')}", _BPTT),
                _rule("δa^f_t", f"δc_t ⊙ c_{{t−1}} ⊙ {t('sigmoid', 'f_t')}", _BPTT),
                _rule("δa^g_t", f"δc_t ⊙ i_t ⊙ {t('tanh', 'g_t')}", _BPTT)]
        params = [("W_ik", "δa^k_t x_tᵀ"), ("W_hk", "δa^k_t h_{t−1}ᵀ"), ("b_ik", "δa^k_t"),
                  ("b_hk", "δa^k_t")]
        dx = "Σ_k W_ikᵀ δa^k_t"
    else:
        bptt = [_rule("δh_t", "∂ℓ/∂h_t + δh_{t+1} ⊙ z_{t+1} + W_hrᵀ δa^r_{t+1} + W_hzᵀ "
                      "δa^z_{t+1} + W_hnᵀ (r_{t+1} ⊙ δa^n_{t+1})", _BPTT),
                _rule("δa^n_t", f"δh_t ⊙ (1 − z_t) ⊙ {t('tanh', 'n_t')}", _BPTT),
                _rule("δa^z_t", f"δh_t ⊙ (h_{{t−1}} − n_t) ⊙ {t('sigmoid', 'z_t')}", _BPTT),
                _rule("δa^r_t", f"δa^n_t ⊙ (W_hn h_{{t−1}} + b_hn) ⊙ {t('sigmoid', 'r_t')}",
                      _BPTT)]
        params = [("W_ik", "δa^k_t x_tᵀ"), ("W_hk", "δa^k_t h_{t−1}ᵀ  (W_hn: r_t ⊙ δa^n_t)"),
                  ("b_ik", "δa^k_t"), ("b_hk", "δa^k_t  (b_hn: r_t ⊙ δa^n_t)")]
        dx = "Σ_k W_ikᵀ δa^k_t"
    par = [_rule(f"∂L/∂{p}", f"Σ_t {r}", _PARAMS, shape="") for p, r in params]
    par.append(_rule("δx_t", dx, _PARAMS, shape="I"))
    return tuple(cell + bptt + par)


# ------------------------------------------------------------- the stated rules
def bptt(kind: str, val, W: dict, dy: np.ndarray, T: int) -> dict:
    """The stated rules, run in float64 for one sample: ``val(name, t)`` reads the forward
    value of the cell's node ``name`` at step ``t`` (``h`` at ``t = −1`` is the initial
    state), ``W`` the weights by torch name, ``dy[t]`` = ∂ℓ/∂h_t.  Returns ∂L/∂ of the
    inputs ``x`` (T, I), ``h0``, ``c0`` and of every parameter."""
    G = len(GATES[kind])
    H = W["weight_hh_l0"].shape[1]
    blk = lambda a, k: a[k * H:(k + 1) * H]                                  # noqa: E731
    dsig = lambda y: y * (1 - y)                                             # σ' = y(1 − y)
    dtanh = lambda y: 1 - y ** 2                                             # tanh' = 1 − y²
    Wh, Wi = W["weight_hh_l0"], W["weight_ih_l0"]
    da = np.zeros((T + 1, G * H))            # pre-activations' δ, stacked in torch's gate order
    dr = np.zeros((T + 1, H))                # GRU: δ of W_hn h + b_hn
    dh_next, dc_next, out = np.zeros(H), np.zeros(H), {}
    for t in range(T - 1, -2, -1):
        nxt = da[t + 1]
        if kind == "rnn":
            dh = (dy[t] if t >= 0 else 0) + Wh.T @ nxt
        elif kind == "lstm":
            dh = (dy[t] if t >= 0 else 0) + sum(blk(Wh, k).T @ blk(nxt, k) for k in range(4))
        else:
            z1 = val("zg", t + 1) if t + 1 < T else 0
            dh = (dy[t] if t >= 0 else 0) + dh_next * z1 + blk(Wh, 0).T @ blk(nxt, 0) + \
                blk(Wh, 1).T @ blk(nxt, 1) + blk(Wh, 2).T @ dr[t + 1]
        if t < 0:
            out["h0"] = dh
            if kind == "lstm":
                out["c0"] = dc_next * (val("f", 0))
            break
        hp = val("h", t - 1)
        if kind == "rnn":
            da[t] = dh * dtanh(val("h", t))
        elif kind == "lstm":
            f1 = val("f", t + 1) if t + 1 < T else 0
            c, o = val("c", t), val("o", t)
            dc = dh * o * dtanh(np.tanh(c)) + dc_next * f1
            cp = val("c", t - 1)
            da[t] = np.concatenate([dc * val("g", t) * dsig(val("i", t)),
                                    dc * cp * dsig(val("f", t)),
                                    dc * val("i", t) * dtanh(val("g", t)),
                                    dh * np.tanh(c) * dsig(o)])
            dc_next = dc
        else:
            n, z, r = val("n", t), val("zg", t), val("r", t)
            dan = dh * (1 - z) * dtanh(n)
            u = blk(Wh, 2) @ hp + blk(W["bias_hh_l0"], 2)
            da[t] = np.concatenate([dan * u * dsig(r), dh * (hp - n) * dsig(z), dan])
            dr[t] = r * dan
        dh_next = dh
    xs = np.stack([val("x", t) for t in range(T)])
    hs = np.stack([val("h", t - 1) for t in range(T)])
    dah = da[:T].copy()
    if kind == "gru":
        dah[:, 2 * H:] = dr[:T]
    out["x"] = da[:T] @ Wi
    out["weight_ih_l0"] = da[:T].T @ xs
    out["weight_hh_l0"] = dah.T @ hs
    out["bias_ih_l0"] = da[:T].sum(0)
    out["bias_hh_l0"] = dah.sum(0)
    return out


# ------------------------------------------------------------- the instance
def check_bptt(kind: str, T: int = 3, I: int = 2, H: int = 2, seed: int = 0,
               rules=bptt, whole: bool = False) -> tuple:
    """``(ok, checks)``: ``rules`` against the unrolled layer's derivatives along probes
    (:func:`symdl.derive.graph_eval.jvp`: each op's derivative SymPy's ``diff`` of its
    declaration); ``whole``: also ``sympy.diff`` of the whole ``L`` with one entry of the
    initial state free (seconds for an LSTM at T = 2)."""
    rng = np.random.default_rng(seed)
    m = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind](I, H, dtype="float64", rng=rng)
    g = Graph()
    x = g.input("x", (T, 1, I), "float64")
    states = [g.input("h0", (1, 1, H), "float64")]
    if kind == "lstm":
        states.append(g.input("c0", (1, 1, H), "float64"))
    y, _ = m.build_all(g, x, tuple(states) if kind == "lstm" else states[0])
    leaves = [n for n in g.order() if g.op(n) in ("input", "param")]
    F = lambda a: np.vectorize(lambda v: sp.Float(v, 30), otypes=[object])(a)  # noqa: E731
    point = {n: F(rng.integers(-8, 9, size=g.shape(n)) / 8) for n in leaves}
    C = rng.integers(-8, 9, size=(T, 1, H)) / 8
    floats = {k: np.asarray(a, dtype=float) for k, a in point.items()}
    num = jvp(g, floats, {}, outputs=[y])[0]

    def val(name, t):
        if name == "x":
            return num["x"][t, 0]
        if t < 0:
            return num[{"h": "h0", "c": "c0"}[name]].reshape(-1)
        return num[f"l0.t{t}.{name}"].reshape(-1)
    W = {n: num[n] for n in leaves if n not in ("x", "h0", "c0")}
    stated = rules(kind, val, W, C[:, 0], T)
    stated = {n: np.asarray(v).reshape(g.shape(n)) for n, v in stated.items()}
    probes = []   # (symbol, leaf, direction): one symbol per check, all in one pass
    for n in leaves:
        size = int(np.prod(g.shape(n)))
        dirs = ([np.eye(size)[k].reshape(g.shape(n)) for k in range(size)]
                if n in ("h0", "c0") else [rng.integers(-2, 3, size=g.shape(n))])
        probes += [(sp.Symbol(f"s{len(probes) + k}", real=True), n, v)
                   for k, v in enumerate(dirs)]
    ok = True
    for s, n, v in probes:   # forward mode along each probe, SymPy's diff per op
        _, D = jvp(g, floats, {n: v}, outputs=[y])
        want = float((C * D[y]).sum())
        got = float((stated[n] * v).sum())
        ok &= abs(want - got) <= 1e-9 * (1 + abs(want))
    if not whole:
        return bool(ok), len(probes)
    # once as a whole expression: L with one entry of h0 free, sympy.diff of it
    s, n, v = probes[[p[1] for p in probes].index("h0")]
    Ls = sp.Add(*(C * evaluate(g, dict(point, h0=point["h0"] + F(v) * s), outputs=[y],
                               digits=30)[y]).flat)
    ok &= abs(float(sp.diff(Ls, s).xreplace({s: 0}).evalf(30)) - float((stated["h0"] * v).sum())) \
        <= 1e-9
    checks = len(probes)
    return bool(ok), checks


def rnn_layer_derivation(kind: str) -> LayerDerivation:
    """The derivation of an ``"rnn"``, ``"lstm"`` or ``"gru"`` layer."""
    ok, checks = check_bptt(kind)
    steps = [("notation", "column vectors per sample: W x is x Wᵀ of the row-major graph; "
                          "a^k_t is gate k's pre-activation, ∂ℓ/∂h_t what the output at step t "
                          "sends back"),
             ("unrolled", "one cell per step, the weights shared: reverse mode over the unrolled "
                          "graph is backpropagation through time")]
    if kind == "gru":
        steps.append(("letters", GRU_NOTE))
    if kind == "rnn":
        steps.append(("vanishing", "‖δh_t‖ shrinks or grows like the product of the Jacobians "
                                   "J_j: factors of norm < 1 vanish over long spans"))
    forward = {"rnn": "h_t = tanh(W_ih x_t + W_hh h_{t−1} + b_ih + b_hh), t = 1…T",
               "lstm": "(h_t, c_t) = LSTM cell(x_t, h_{t−1}, c_{t−1}), t = 1…T",
               "gru": "h_t = GRU cell(x_t, h_{t−1}), t = 1…T"}[kind]
    return LayerDerivation(kind, forward, _tex(forward), _rules(kind),
                           tuple(steps), ok,
                           f"unrolled nn.{kind.upper()} on an explicit instance (T = 3, I = 2, "
                           f"H = 2, initial state), L = Σ C ⊙ y: {checks} checks (δh_0 entry by "
                           "entry, every weight, bias and x_t along a random direction) against "
                           "forward mode with each op's derivative SymPy's diff of its "
                           "declaration, to 1e-9")
