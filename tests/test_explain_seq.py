"""explain for sequence models: cell equations printed from the graph, backpropagation
through time and attention rules verified on explicit instances (checks that can fail),
the graph evaluators against torch, the two-step worked LSTM against torch."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

from symdl.cli import main
from symdl.commands.explain_seq import SEQ_LAYERS, TINY_SEQ, seq_layer_derivation, tiny_rows
from symdl.derive.graph_eval import evaluate, jvp, symbols
from symdl.graph import Graph
from symdl.nn import attention_rules, rnn_rules
from symdl.printing import latex, text
from symdl.printing.layers import layer_latex, layer_text


@pytest.mark.parametrize("name", SEQ_LAYERS)
def test_sequence_layer_derivations_are_verified_and_print(name):
    d = seq_layer_derivation(name)
    assert d.verified, name
    out, tex = layer_text(d), layer_latex(d)
    assert "verified:" in out and "NOT verified" not in out and r"\checkmark" in tex
    if name in ("rnn", "lstm", "gru"):
        assert "one step, printed from the cell's graph:" in out
        assert "through time" in out and "δh_t     = ∂ℓ/∂h_t +" in out
    assert "\\begin{align*}" in tex and "⊙" not in tex.split("%")[0]


def test_lstm_rules_read_as_the_notes_write_them():
    out = layer_text(seq_layer_derivation("lstm"))
    assert "c_t      = f_t ⊙ c_{t-1} + i_t ⊙ g_t" in out
    assert "δc_t     = δh_t ⊙ o_t ⊙ (1 − tanh²(c_t)) + δc_{t+1} ⊙ f_{t+1}" in out
    assert "δa^i_t   = δc_t ⊙ g_t ⊙ i_t ⊙ (1 − i_t)" in out   # σ' from sigmoid's declaration
    gru = layer_text(seq_layer_derivation("gru"))
    assert "h_t      = z_t ⊙ (h_{t-1} − n_t) + n_t" in gru and "call PyTorch's 1 − z their z" in gru
    att = layer_text(seq_layer_derivation("attention"))
    assert "∂L/∂S = P ⊙ (∂L/∂P − rowsum(P ⊙ ∂L/∂P))" in att
    assert "softmax_keep(S), S = Q Kᵀ/√d" in att


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_bptt_checks_can_fail(kind):
    """Rules that drop the paths from later steps (no W_hh term, no cell path) disagree."""
    assert rnn_rules.check_bptt(kind, T=2, whole=True) == (True, 9 if kind == "lstm" else 7)

    def no_time(k, val, W, dy, T):
        return rnn_rules.bptt(k, val, dict(W, weight_hh_l0=0 * W["weight_hh_l0"]), dy, T)
    assert not rnn_rules.check_bptt(kind, rules=no_time)[0]

    def one_step(k, val, W, dy, T):   # the step-t upstream only: every later path left out
        return rnn_rules.bptt(k, val, W, dy * (np.arange(T) == T - 1)[:, None], T)
    assert not rnn_rules.check_bptt(kind, rules=one_step)[0]


@pytest.mark.parametrize("kind", attention_rules.ATTENTION_LAYERS)
def test_attention_checks_can_fail(kind, monkeypatch):
    """Softmax's VJP without its row-sum term (P ⊙ ∂L/∂P) is caught in every block."""
    assert attention_rules.check_attention(kind)[0]
    real = attention_rules.attention_vjp

    def wrong(Q, K, V, keep, dO):
        O, dq, dk, dv = real(Q, K, V, keep, dO)
        s = 1 / np.sqrt(Q.shape[-1])
        P = attention_rules._softmax(Q @ K.T * s, keep)
        dS = P * (dO @ V.T)
        return O, dS @ K * s, dS.T @ Q * s, dv
    monkeypatch.setattr(attention_rules, "attention_vjp", wrong)
    assert not attention_rules.check_attention(kind)[0]


def test_fully_masked_row_is_zero_with_zero_gradient():
    rng = np.random.default_rng(0)
    Q, K, V, dO = (rng.standard_normal((3, 2)) for _ in range(4))
    keep = np.tril(np.ones((3, 3))) * np.array([0.0, 1.0, 1.0])
    O, dq, dk, dv = attention_rules.attention_vjp(Q, K, V, keep, dO)
    assert np.all(O[0] == 0) and np.all(dq[0] == 0) and np.all(np.isfinite(O))


def _torch_graph():
    g = Graph()
    x = g.input("x", (2, 3), "float64")
    W = g.param("W", (4, 3), "float64")
    z = g.add("matmul", x, g.add("transpose", W))
    h = g.add("layer_norm", g.add("tanh", z), eps=1e-5)
    y = g.add("softmax", g.add("mul", h, g.add("sigmoid", z)), name="y")
    return g, y


def _torch_f(x, W):
    z = x @ W.T
    h = torch.nn.functional.layer_norm(torch.tanh(z), (4,), eps=1e-5)
    return torch.softmax(h * torch.sigmoid(z), -1)


def test_evaluators_agree_with_torch():
    """evaluate (SymPy, from each op's declaration) and jvp (float64 forward mode) give
    torch's values and torch's Jacobian-vector products."""
    g, y = _torch_graph()
    rng = np.random.default_rng(1)
    x, W, tx, tW = (rng.standard_normal(s) for s in ((2, 3), (4, 3), (2, 3), (4, 3)))
    want = _torch_f(torch.tensor(x), torch.tensor(W)).numpy()
    exact = evaluate(g, {"x": symbols("x", (2, 3)), "W": symbols("w", (4, 3))})[y]
    at = {**dict(zip(symbols("x", (2, 3)).flat, x.flat)), **dict(zip(symbols("w", (4, 3)).flat,
                                                                     W.flat))}
    got = np.array([[float(e.xreplace(at).evalf(20)) for e in row] for row in exact])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    V, D = jvp(g, {"x": x, "W": W}, {"x": tx, "W": tW})
    _, tj = torch.autograd.functional.jvp(_torch_f, (torch.tensor(x), torch.tensor(W)),
                           (torch.tensor(tx), torch.tensor(tW)))
    np.testing.assert_allclose(V[y], want, rtol=1e-12)
    np.testing.assert_allclose(D[y], tj.numpy(), rtol=1e-9, atol=1e-12)


def test_array_products_print_as_matrix_products_and_hadamard():
    W, x, f, c = sp.symbols("W x f c", real=True)
    e = W * x + f * c
    assert text(e, arrays=True, matrices=frozenset({W})) == "W x + c ⊙ f"
    assert latex(e, arrays=True, matrices=frozenset({W})) == r"W x + c \odot f"
    assert text(e) == "W·x + c·f"


def test_tiny_lstm_matches_torch():
    rows = {r.node: r for r in tiny_rows("lstm")}
    m = torch.nn.LSTM(1, 1, dtype=torch.float64)
    with torch.no_grad():
        for k, v in TINY_SEQ["lstm"].items():
            getattr(m, k).copy_(torch.tensor(v).reshape(getattr(m, k).shape))
    y, _ = m(torch.tensor(TINY_SEQ["x"]))
    L = (y * torch.tensor(TINY_SEQ["c"])).sum()
    L.backward()
    assert rows["L"].value == pytest.approx(L.item(), rel=1e-12)
    for k in TINY_SEQ["lstm"]:
        np.testing.assert_allclose(rows[k].upstream.ravel(), getattr(m, k).grad.numpy().ravel(),
                                   rtol=1e-10)


def test_explain_cli_for_sequence_layers_and_models(capsys):
    assert main(["explain", "--layer", "transformer"]) == 0
    out = capsys.readouterr().out
    assert "post-LN and pre-LN" in out and "NOT verified" not in out
    assert main(["explain", "--layer", "lstmm"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "conv2d" in err and "rnn, lstm, gru, attention" in err
    from symdl.commands.options import MODELS
    if "lstm" not in MODELS:   # the CLI's sequence models land with the training issue
        pytest.skip("--model lstm is not a choice yet")
    assert main(["explain", "--model", "lstm", "--numeric"]) == 0
    out = capsys.readouterr().out
    assert "i_t      = σ(W_ii x_t + W_hi h_{t-1} + b_ii + b_hi)" in out
    assert "worked backprop through time on a two-step LSTM" in out and "l0.t1.c" in out
    assert main(["explain", "--model", "transformer", "--numeric"]) == 2
    assert "two-step example for rnn, lstm, gru" in capsys.readouterr().err
    for flag in (["--hidden", "32"], ["--seq-task", "adding"], ["--example", "3"]):
        assert main(["explain", "--model", "lstm", *flag]) == 2   # ignored would be silent
        assert f"{flag[0]} does not apply to explain --model lstm" in capsys.readouterr().err
