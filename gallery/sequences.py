"""Sequence models

RNN, LSTM and GRU cells as symdl builds them: the gate table printed from each
cell's graph, backpropagation through time as reverse mode over the unrolled
graph (the LSTM's rules, verified on an explicit instance), the vanishing
gradient at initialization (the norm of dL/dh_t at every step of an RNN and an
LSTM, from symdl's reverse mode), and the adding problem, which the LSTM
solves and the plain RNN does not with the same budget.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from symdl.backends.numpy_backend import backend_for
from symdl.backends.trace import numeric_backprop
from symdl.commands.explain_seq import seq_layer_derivation
from symdl.commands.gallery import figure, num, pyplot, save_figure, section, table, text
from symdl.data.sequences import load_sequence_task
from symdl.graph import Graph
from symdl.nn import GRU, LSTM, RNN
from symdl.nn.equations import cell_rows
from symdl.nn.seqmodels import SequenceClassifier
from symdl.optim import Adam
from symdl.printing.layers import layer_latex
from symdl.train import Trainer

ORDER = 97
NUMPY = backend_for("numpy")  # the NumPy reference kernels: nothing to compile
#: what each row of a cell does (prose); the equations are printed from the graphs
ROLES = {("rnn", "h"): "new hidden state",
         ("lstm", "i"): "input gate: how much of the candidate is written",
         ("lstm", "f"): "forget gate: how much of the old cell state is kept",
         ("lstm", "g"): "candidate cell values", ("lstm", "o"): "output gate",
         ("lstm", "c"): "cell state: an additive update", ("lstm", "h"): "hidden state",
         ("gru", "r"): "reset gate: how much of the old state the candidate sees",
         ("gru", "z"): "update gate: how much of the old state is kept",
         ("gru", "n"): "candidate state", ("gru", "h"): "new hidden state"}
VANISH_T, VANISH_H, VANISH_I, FORGET_BIAS = 60, 32, 8, 3
ADD_T, ADD_N, ADD_EPOCHS, ADD_HIDDEN, ADD_LR, ADD_CLIP, ADD_BATCH = 15, 1000, 16, 16, 0.01, 1.0, 32


def _gates() -> str:
    rows = []
    for kind in ("rnn", "lstm", "gru"):
        for lhs, rhs in cell_rows(kind, "latex"):
            letter = lhs.split("_")[0]
            rows.append((kind.upper(), text(ROLES[(kind, letter)]), f"${lhs} = {rhs}$"))
    return table(["cell", "row", "equation (printed from the cell's graph)"], rows, "lll",
                 size="footnotesize")


def _gradient_norms(seed: int) -> dict:
    """``‖∂L/∂h_t‖`` at every step of a freshly initialized RNN and LSTM (torch's init),
    L = Σ c ⊙ h_T: the upstream values of symdl's reverse mode, from the NumPy backend."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((VANISH_T, 4, VANISH_I))
    c = rng.standard_normal((4, VANISH_H))
    out = {}
    for name, cls, bias in (("RNN", RNN, 0), ("GRU", GRU, 0), ("LSTM", LSTM, 0),
                            (f"LSTM, forget bias {FORGET_BIAS}", LSTM, FORGET_BIAS)):
        m = cls(VANISH_I, VANISH_H, rng=np.random.default_rng(seed + 1), dtype="float64")
        if bias:   # the forget gate's rows of b_ih (gates i, f, g, o): f = σ(a + bias)
            m.bias_ih_l0.data[VANISH_H:2 * VANISH_H] += bias
        g = Graph()
        y = m.build(g, g.input("x", (VANISH_T, 4, VANISH_I), "float64"))
        last = g.add("slice", y, begin=(VANISH_T - 1, 0, 0), end=(VANISH_T, None, None))
        cn = g.input("c", g.shape(last), "float64")
        L = g.add("sum", g.add("mul", cn, last), name="L")
        rows = numeric_backprop(g, L, {"x": x, "c": c[None]}, {n: p.data for n, p in
                                                               m.named_parameters()},
                                flavor="numpy")
        up = {r.node: r.upstream for r in rows}
        out[name] = np.array([np.linalg.norm(up[f"l0.t{t}.h"]) for t in range(VANISH_T)])
    return out


def _vanishing(out: Path, seed: int) -> str:
    norms = _gradient_norms(seed)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    for name, v in norms.items():
        ax.semilogy(np.arange(1, VANISH_T + 1), v, label=name)
    ax.set_xlabel("step t", fontsize=8)
    ax.set_ylabel(r"$\|\partial L/\partial h_t\|$", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    png = save_figure(fig, out / "sequences_vanishing.png")
    span = VANISH_T - 1
    rows = [(name, f"${num(float(v[-1]), 3)}$", f"${num(float(v[0]), 3)}$",
             f"${num(float(v[0] / v[-1]), 3)}$",
             f"${num(float((v[0] / v[-1]) ** (1 / span)), 3)}$") for name, v in norms.items()]
    return ("\\subsection*{Vanishing gradients}\n"
            f"A loss on the last of ${VANISH_T}$ steps, $L = \\sum c \\odot h_T$, sends its "
            "gradient back through every Jacobian $\\partial h_j/\\partial h_{j-1}$ on the way. "
            f"For freshly initialized layers (input ${VANISH_I}$, hidden ${VANISH_H}$, PyTorch's "
            "$U(-1/\\sqrt{H}, 1/\\sqrt{H})$ weights, a batch of 4 normal sequences), the norm of "
            "$\\partial L/\\partial h_t$ at every step, read from symdl's reverse mode over the "
            "unrolled graph (the upstream values the NumPy backend computes):\n"
            + figure(png, "The gradient reaching step $t$ from a loss at the last step, at "
                          "initialization. With PyTorch's initialization every gate sits near "
                          "$\\sigma(0) = 1/2$: the LSTM's cell path is multiplied by "
                          "$f_t \\approx 1/2$ per step and its gradient vanishes about as fast "
                          "as the RNN's. With a forget-gate bias of "
                          f"${FORGET_BIAS}$ ($f_t \\approx \\sigma({FORGET_BIAS})$) the cell path "
                          "carries the gradient across the sequence: the mechanism an LSTM "
                          "learns when it has to remember.")
            + table(["layer", "$\\|\\partial L/\\partial h_T\\|$",
                     "$\\|\\partial L/\\partial h_1\\|$", "ratio", "factor per step"], rows,
                    "lrrrr")
            + "Gradient clipping (\\texttt{--clip-norm}, \\texttt{Trainer(clip\\_norm=...)}) "
              "rescales the whole gradient when its norm exceeds a threshold: it tames "
              "exploding gradients, not vanishing ones; the LSTM's additive cell update "
              "$c_t = f_t \\odot c_{t-1} + \\dots$ is the remedy for those.\n")


def _adding(seed: int) -> tuple:
    train = load_sequence_task("adding", length=ADD_T, seed=seed, split="train", n=ADD_N)
    test = load_sequence_task("adding", length=ADD_T, seed=seed, split="test", n=500)
    found = {}
    for cell in ("rnn", "lstm"):
        init_ss, train_ss = np.random.SeedSequence(seed).spawn(2)
        m = SequenceClassifier(cell, ADD_T, 2, 1, hidden=ADD_HIDDEN,
                               rng=np.random.default_rng(init_ss))
        tr = Trainer(m, lambda ps: Adam(ps, lr=ADD_LR), "mse", None, ADD_BATCH, ADD_EPOCHS,
                     seed=train_ss, progress=False, clip_norm=ADD_CLIP, backend=NUMPY)
        h = tr.fit(train)
        found[cell] = (m.num_parameters(), h.train_loss, tr.evaluate(test)[0])
    return found


def _adding_section(out: Path, seed: int) -> str:
    found = _adding(seed)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 2.4))
    for cell, (_, losses, _) in found.items():
        ax.semilogy(np.arange(1, len(losses) + 1), losses, marker="o", ms=3, label=cell.upper())
    ax.axhline(1 / 6, color="gray", lw=0.8, ls="--", label="predict the mean (1/6)")
    ax.axhline(0.01, color="gray", lw=0.8, ls=":", label="solved (0.01)")
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("training MSE", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = save_figure(fig, out / "sequences_adding.png")
    rows = [(cell.upper(), f"${num(p)}$", f"${num(float(mse), 3)}$",
             "yes" if mse < 0.01 else "no") for cell, (p, _, mse) in found.items()]
    return ("\\subsection*{The adding problem}\n"
            f"Each step carries a value drawn from $U(0, 1)$ and a marker; two steps are marked "
            "(one in each half) and the target is the sum of their values, so the model must "
            "carry a number across the sequence. Predicting the mean gives MSE $1/6$; a test MSE "
            "below $0.01$ counts as solved. Both models read the sequence with one hidden layer "
            f"of ${ADD_HIDDEN}$ units and a linear head on the final state, and get the same "
            f"budget: {ADD_EPOCHS} epochs of ${num(ADD_N)}$ sequences, Adam (learning rate "
            f"{ADD_LR}), batch {ADD_BATCH}, gradients clipped to norm {ADD_CLIP}:\n"
            + table(["model", "parameters", "test MSE", "solved"], rows, "lrrl")
            + figure(png, f"Training MSE per epoch on the adding problem with $T = {ADD_T}$ "
                          "steps. $T$ is kept this short so that the chapter trains in a few "
                          "seconds of the gallery's build (the issue's acceptance runs "
                          "$T = 50$ through \\texttt{symdl train --seq-task adding}); the "
                          "plain RNN stalls near the mean at this length while the LSTM "
                          "solves it."))


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    parts = [section("Sequence models", "sequence_models"),
             "A recurrent layer applies one cell at every step, the weights shared by all "
             "steps. In symdl the sequence is unrolled into one graph of registry ops "
             "(\\texttt{matmul}, \\texttt{slice}, \\texttt{sigmoid}, \\texttt{tanh}, "
             "\\texttt{mul}, \\texttt{add}), so backpropagation through time is reverse mode over "
             "that graph and a shared weight's gradient is the sum over the steps. Parameter "
             "layouts, gate orders and initialization follow PyTorch. Each equation below is "
             "printed by symdl's LaTeX printer from the graph the cell builds (a 1 by 1 instance "
             "evaluated node by node), with PyTorch's names for the gates' blocks:\n",
             _gates(),
             "The GRU's update reads as the graph computes it: PyTorch's $z$ keeps the old "
             "state, $h_t = (1 - z_t) \\odot n_t + z_t \\odot h_{t-1}$, so the notes' $z$ (the "
             "gate that admits the candidate) is PyTorch's $1 - z$; the section on where the "
             "notes and symdl differ has SymPy compare the two.\n",
             "\\subsection*{Backpropagation through time}\n"
             "The LSTM's rules, with $\\delta v = \\partial L/\\partial v$ (column vectors per "
             "sample). Each $\\delta h_t$ sums the direct term from the output at step $t$ and "
             "the paths through step $t + 1$; $\\delta c_t$ adds the cell path, along which only "
             "the forget gate multiplies. They are checked against forward mode over the "
             "unrolled layer's own graph on an explicit instance:\n",
             layer_latex(seq_layer_derivation("lstm")),
             _vanishing(out, seed), _adding_section(out, seed)]
    (out / "sequences.tex").write_text("".join(parts))
    return {"title": "Sequence models", "covers": ["sequence_models"],
            "files": ["sequences.tex", "sequences_vanishing.png", "sequences_adding.png"],
            "seeds": [seed]}
