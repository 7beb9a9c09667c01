"""Attention and transformers

Scaled dot-product attention, multi-head attention and the transformer encoder
layer as symdl builds them: their rules (verified on explicit instances of the
layers' own graphs), the causal and padding masks computed by the graph (a
fully masked row gives zeros), the sinusoidal positional encoding, the
attention maps of a small transformer trained on the embedded digits read as
sequences of rows, and the vision transformer's patch grid.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from symdl.backends.numpy_backend import backend_for, compile_graph
from symdl.commands.explain_seq import seq_layer_derivation
from symdl.commands.gallery import figure, num, pct, pyplot, save_figure, section, table, text
from symdl.data import load_digits
from symdl.graph import Graph
from symdl.nn import SinusoidalPositionalEncoding, scaled_dot_product_attention
from symdl.nn.seqmodels import SequenceClassifier, ViT
from symdl.optim import Adam
from symdl.printing.layers import layer_latex
from symdl.train import Trainer

ORDER = 98
NUMPY = backend_for("numpy")  # the NumPy reference kernels: nothing to compile
HIDDEN, HEADS, EPOCHS, LR, BATCH = 16, 2, 8, 0.01, 32
PATCH = 2


def _pmatrix(a, digits=2) -> str:
    rows = [" & ".join("0" if v == 0 else num(float(v), digits) for v in r) for r in a]
    return "\\begin{pmatrix}" + " \\\\ ".join(rows) + "\\end{pmatrix}"


def _masks(seed: int) -> str:
    """The keep mask and weights of a causal, padded attention, from a compiled graph."""
    L = 4
    g = Graph()
    q, k, v = (g.input(n, (1, L, 2), "float64") for n in "qkv")
    pad = g.input("pad", (1, 1, L), "float64")
    o, w = scaled_dot_product_attention(g, q, k, v, mask=pad, causal=True)
    prog = compile_graph(g, [o, w, "causal"], {}, {}, flavor="numpy", fuse=False)
    rng = np.random.default_rng(seed)
    for n in "qkv":
        prog.inputs[n][...] = rng.standard_normal((1, L, 2))
    prog.inputs["pad"][...] = np.array([0.0, 1.0, 1.0, 1.0]).reshape(1, 1, L)
    prog.run()
    causal, weights, out = prog.value("causal"), prog.value(w)[0], prog.value(o)[0]
    return ("\\subsection*{Masks}\n"
            "Masks are keep masks ($> 0$: attend). The causal mask is a constant of the graph, "
            "built from \\texttt{fill}, \\texttt{concat}, \\texttt{broadcast\\_to}, "
            "\\texttt{reshape} and \\texttt{slice} and computed once at compile time; with the "
            "first key marked as padding, the first query has nothing left to attend to, and "
            "the masked softmax gives it zero weights (no division by zero), hence a zero "
            "output and no gradient. For random $Q, K, V$ ($4 \\times 2$), the compiled graph "
            "gives\n"
            f"\\[ \\text{{causal}} = {_pmatrix(causal, 1)},\\quad P = {_pmatrix(weights, 3)},"
            f"\\quad O_{{1,:}} = ({', '.join(num(float(x), 3) for x in out[0])}). \\]\n")


def _positions(out: Path) -> str:
    pe = SinusoidalPositionalEncoding(32).table(50)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 1.9))
    im = ax.imshow(pe.T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xlabel("position t", fontsize=8)
    ax.set_ylabel("dimension", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=ax).ax.tick_params(labelsize=7)
    fig.tight_layout()
    png = save_figure(fig, out / "attention_positions.png")
    return ("\\subsection*{Positional encoding}\n"
            "Attention is blind to order, so positions are added to the inputs: learned "
            "(a parameter per position) or sinusoidal, "
            "$\\mathrm{PE}_{t,2i} = \\sin(t/10000^{2i/d})$, "
            "$\\mathrm{PE}_{t,2i+1} = \\cos(t/10000^{2i/d})$, a constant input of the graph:\n"
            + figure(png, "\\texttt{SinusoidalPositionalEncoding(32).table(50)}: each dimension "
                          "pair is a sinusoid of its own wavelength."))


def _trained(out: Path, seed: int) -> str:
    train, test = load_digits("train"), load_digits("test")
    init_ss, train_ss = np.random.SeedSequence(seed).spawn(2)
    m = SequenceClassifier("transformer", 8, 8, 10, hidden=HIDDEN, heads=HEADS,
                           rng=np.random.default_rng(init_ss))
    tr = Trainer(m, lambda ps: Adam(ps, lr=LR), "softmax_cross_entropy", None, BATCH, EPOCHS,
                 seed=train_ss, progress=False, backend=NUMPY)
    h = tr.fit(train)
    _, acc = tr.evaluate(test)
    g = Graph()
    m.build(g, g.input("x", ("N", 64), "float32"))
    wnode = "layer0.self_attn.weights"
    prog = compile_graph(g, [wnode], {n: p.data for n, p in m.named_parameters()}, {"N": 1},
                         flavor="numpy", fuse=False)
    k = int(np.argmax(test.y == 7))
    prog.inputs["x"][...] = test.X[k:k + 1]
    prog.run()
    maps = prog.value(wnode)[0]
    plt = pyplot()
    fig, axes = plt.subplots(1, 1 + HEADS, figsize=(6.4, 2.3))
    axes[0].imshow(test.X[k].reshape(8, 8), cmap="gray_r")
    axes[0].set_title("input (rows = steps)", fontsize=8)
    axes[0].set_ylabel("row", fontsize=8)
    for j, ax in enumerate(axes[1:]):
        ax.imshow(maps[j], cmap="viridis", vmin=0)
        ax.set_title(f"head {j + 1}: weights", fontsize=8)
        ax.set_xlabel("key row", fontsize=8)
        ax.set_ylabel("query row", fontsize=8)
    for ax in axes:
        ax.tick_params(labelsize=7)
        ax.grid(False)
    fig.tight_layout()
    png = save_figure(fig, out / "attention_map.png")
    return ("\\subsection*{Attention maps of a trained transformer}\n"
            "A digit read as a sequence of its 8 rows of 8 pixels, embedded to width "
            f"${HIDDEN}$, learned positions, one pre-LN encoder layer with {HEADS} heads (GELU "
            "feed-forward), a final layer norm, the mean over the steps and a linear head "
            f"({num(m.num_parameters())} parameters), trained by the \\texttt{{Trainer}} for "
            f"{EPOCHS} epochs (Adam, learning rate {LR}, batch {BATCH}): training accuracy "
            f"{pct(h.train_accuracy[-1])}, test accuracy {pct(acc)}. The attention weights of "
            f"both heads for a test digit (label {int(test.y[k])}), read from the compiled graph "
            "(\\texttt{layer0.self\\_attn.weights}):\n"
            + figure(png, "Each query row's weights over the key rows (each row sums to 1)."))


def _vit(out: Path) -> str:
    test = load_digits("test")
    m = ViT(8, PATCH, 10, dim=HIDDEN, depth=1, heads=HEADS)
    g = Graph()
    p = m.patches(g, g.input("x", ("N", 64), "float32"))
    prog = compile_graph(g, [p], {}, {"N": 1}, flavor="numpy", fuse=False)
    k = int(np.argmax(test.y == 4))
    prog.inputs["x"][...] = test.X[k:k + 1]
    prog.run()
    patches = prog.value(p)[0]
    G = m.grid
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.6), gridspec_kw={"width_ratios": [1, 1.6]})
    axes[0].imshow(test.X[k].reshape(8, 8), cmap="gray_r")
    for i in range(1, G):
        axes[0].axhline(i * PATCH - 0.5, color="tab:red", lw=1)
        axes[0].axvline(i * PATCH - 0.5, color="tab:red", lw=1)
    for r in range(G):
        for c in range(G):
            axes[0].text(c * PATCH, r * PATCH - 0.1, str(r * G + c), color="tab:red", fontsize=7)
    axes[0].set_title(f"{G} x {G} grid of {PATCH} x {PATCH} patches", fontsize=8)
    axes[1].imshow(patches.T, cmap="gray_r", aspect="auto")
    axes[1].set_xlabel("token (patch index)", fontsize=8)
    axes[1].set_ylabel("pixel in patch", fontsize=8)
    axes[1].set_title("the patches node: one column per token", fontsize=8)
    axes[1].set_yticks(range(PATCH * PATCH))
    for ax in axes:
        ax.tick_params(labelsize=7)
        ax.grid(False)
    fig.tight_layout()
    png = save_figure(fig, out / "attention_vit_patches.png")
    counts = {}
    for n, prm in m.named_parameters():
        part = n.split(".")[0]
        counts[part] = counts.get(part, 0) + prm.data.size
    rows = [(f"\\texttt{{{text(part)}}}", f"${num(c)}$") for part, c in counts.items()]
    return ("\\subsection*{The vision transformer's patches}\n"
            f"\\texttt{{{text(repr(m))}}} cuts an $8 \\times 8$ digit into "
            f"${m.num_patches}$ patches of ${PATCH} \\times {PATCH}$ pixels by a "
            "\\texttt{reshape}, a \\texttt{permute} and a \\texttt{reshape} (the order of "
            "PyTorch's \\texttt{Conv2d(kernel=stride=patch)} followed by a flatten), embeds each "
            f"linearly to width ${HIDDEN}$, prepends a learned class token "
            f"(${m.num_patches + 1}$ tokens), adds learned positions, and classifies from the "
            "class token after the encoder. The patches node of its graph, for a test digit:\n"
            + figure(png, "Left: the patch grid, numbered in token order. Right: the values the "
                          "graph's patches node holds, one column per token.")
            + "Parameters by part, from the module:\n"
            + table(["part", "parameters"], rows, "lr"))


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    parts = [section("Attention and transformers", "attention"),
             "Attention lets every position read from every other: queries are compared with "
             "keys by scaled dot products, a softmax over each row turns the scores into "
             "weights, and the output is the weighted sum of the values. In symdl it is "
             "\\texttt{matmul}, \\texttt{scale}, the \\texttt{softmax} row op (the "
             "\\texttt{masked\\_softmax} row op under a mask) and \\texttt{matmul}; heads are a "
             "\\texttt{reshape} and a \\texttt{permute}; every gradient is reverse mode's. "
             "Layouts and initialization follow PyTorch. The rules below are symdl's notation, "
             "each checked against forward mode over the layer's own graph on an explicit "
             "instance with a causal mask and a padded key.\n",
             "\\subsection*{Scaled dot-product attention}\n",
             layer_latex(seq_layer_derivation("attention")),
             "\\subsection*{Multi-head attention}\n",
             layer_latex(seq_layer_derivation("mha")),
             "\\subsection*{The transformer encoder layer}\n"
             "Post-LN (PyTorch's default) normalizes after each residual sum, pre-LN before "
             "each sub-layer; both are checked:\n",
             layer_latex(seq_layer_derivation("transformer")),
             _masks(seed), _positions(out), _trained(out, seed), _vit(out)]
    (out / "attention.tex").write_text("".join(parts))
    return {"title": "Attention and transformers", "covers": ["attention"],
            "files": ["attention.tex", "attention_positions.png", "attention_map.png",
                      "attention_vit_patches.png"], "seeds": [seed]}
