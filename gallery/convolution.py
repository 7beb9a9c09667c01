"""Convolutional networks

Convolution arithmetic computed from symdl's layers: output sizes for mixed
strides, paddings and dilations, parameter counts, three stacked 3x3
convolutions against one 7x7 (from ``summary``), receptive-field growth, max
and average pooling of a small integer matrix with the gradient each routes
back (compiled symdl graphs), the derived VJPs of convolution and pooling,
and the feature maps of a small CNN trained on the embedded digits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from symdl.backends.numpy_backend import backend_for, compile_graph
from symdl.commands.gallery import figure, num, pct, pyplot, save_figure, section, table, text
from symdl.data import load_digits
from symdl.derive import grad
from symdl.derive.layers import layer_derivation
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.nn import AvgPool2d, Conv2d, Dense, MaxPool2d, Sequential, make_model
from symdl.nn.layers import Activation
from symdl.nn.summary import conv_output_size, summary
from symdl.optim import SGD
from symdl.printing.layers import layer_latex
from symdl.train import Trainer, build_training_graph

ORDER = 95
NUMPY = backend_for("numpy")  # the NumPy reference kernels: nothing to compile
SIZES = ((32, 5, 1, 2, 1), (32, 3, 2, 1, 1), (28, 5, 1, 0, 1), (7, 3, 2, 0, 1), (10, 3, 1, 0, 2),
         (227, 11, 4, 0, 1), (8, 3, 2, 0, 1))
POOL_X = np.array([[1, 3, 2, 1], [4, 6, 5, 0], [3, 1, 2, 8], [0, 2, 7, 4]], dtype=float)
CHANNELS, EPOCHS, BATCH, LR, MOMENTUM = (8, 16), 6, 32, 0.05, 0.9


def _sizes() -> str:
    rows = []
    for w, f, s, p, d in SIZES:
        try:
            size = f"${num(conv_output_size(w, f, s, p, d))}$"
        except UsageError:   # the windows do not tile the input: torch floors the quotient
            size = (f"does not tile; floored: ${num(conv_output_size(w, f, s, p, d, exact=False))}$")
        rows.append((f"${w}$", f"${f}$", f"${s}$", f"${p}$", f"${d}$", size))
    return ("Along one axis a window of size $F$ with stride $S$, padding $P$ and dilation $D$ "
            "fits $\\lfloor (W + 2P - D(F-1) - 1)/S \\rfloor + 1$ times into an input of length "
            "$W$ (with $D = 1$ the notes' $(W - F + 2P)/S + 1$). From "
            "\\texttt{conv\\_output\\_size}, which refuses a configuration whose windows do not "
            "tile the input exactly unless asked to floor, as PyTorch does:\n"
            + table(["$W$", "$F$", "$S$", "$P$", "$D$", "output size"], rows, "rrrrrl"))


def _params() -> str:
    rows = []
    for c_in, c_out, k in ((1, 6, 5), (3, 64, 3), (64, 64, 3), (64, 128, 3), (256, 256, 1)):
        conv = Conv2d(c_in, c_out, k)
        count = sum(p.data.size for p in conv.parameters())
        rows.append((f"\\texttt{{{text(repr(conv))}}}",
                     f"${k} \\cdot {k} \\cdot {c_in} \\cdot {c_out} + {c_out}$", f"${num(count)}$"))
    dense = Dense(3136, 10)
    rows.append((f"Dense $3136 \\to 10$", "$3136 \\cdot 10 + 10$",
                 f"${num(dense.W.data.size + dense.b.data.size)}$"))
    return ("A convolution shares one $K \\times K \\times C_{\\mathrm{in}}$ filter per output "
            "channel across all positions, so its parameter count does not depend on the image "
            "size; a dense layer pays for every input. Counted from the layers' parameters:\n"
            + table(["layer", "$K \\cdot K \\cdot C_{\\mathrm{in}} \\cdot C_{\\mathrm{out}} + "
                     "C_{\\mathrm{out}}$", "parameters"], rows, "llr"))


def _stack() -> str:
    c = 64
    three = Sequential(*[Conv2d(c, c, 3, padding=1, bias=False) for _ in range(3)])
    one = Conv2d(c, c, 7, padding=3, bias=False)
    s3, s1 = summary(three, ("N", c, 32, 32)), summary(one, ("N", c, 32, 32))
    rows = [(f"three $3 \\times 3$, $C = {c}$", f"${num(s3.total_params)}$",
             f"${num(s3.total_params // c ** 2)}\\,C^2$",
             f"${s3.receptive_field[0]} \\times {s3.receptive_field[1]}$"),
            (f"one $7 \\times 7$, $C = {c}$", f"${num(s1.total_params)}$",
             f"${num(s1.total_params // c ** 2)}\\,C^2$",
             f"${s1.receptive_field[0]} \\times {s1.receptive_field[1]}$")]
    return ("\\subsection*{Three $3 \\times 3$ convolutions against one $7 \\times 7$}\n"
            "\\texttt{summary} builds the graph and follows each window "
            "($r \\leftarrow r + D(K-1)\\,j$, $j \\leftarrow jS$):\n"
            + table(["stack", "weights", "per $C^2$", "receptive field"], rows, "lrrr")
            + f"The stack sees the same $7 \\times 7$ patch with "
            f"${num(s3.total_params / s1.total_params, 3)}$ of the weights, and puts two more "
            "nonlinearities in between.\n")


def _growth(out: Path) -> str:
    plans = {"3x3, stride 1": lambda: [Conv2d(4, 4, 3, padding=1)],
             "3x3 + 2x2 max pool": lambda: [Conv2d(4, 4, 3, padding=1), MaxPool2d(2)],
             "3x3, dilation 2": lambda: [Conv2d(4, 4, 3, padding=2, dilation=2)]}
    depth = range(1, 6)
    fields = {}
    for name, block in plans.items():
        fields[name] = [summary(Sequential(*[m for _ in range(L) for m in block()]),
                                ("N", 4, 64, 64)).receptive_field[0] for L in depth]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.0, 2.4))
    for name, f in fields.items():
        ax.plot(list(depth), f, "o-", ms=4, label=name)
    ax.set_xlabel("layers (blocks)")
    ax.set_ylabel("receptive field (pixels)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = save_figure(fig, out / "convolution_field.png")
    rows = [(text(name), *[f"${v}$" for v in f]) for name, f in fields.items()]
    return ("\\subsection*{Receptive-field growth}\n"
            "With stride 1 each $3 \\times 3$ layer adds 2 pixels ($1 + L(K-1)$); a stride-2 "
            "pooling doubles what every later layer adds; dilation 2 doubles the kernel's "
            "reach at the same cost. From \\texttt{summary} on blocks repeated $L$ times:\n"
            + table(["block", *[f"$L={L}$" for L in depth]], rows, "lrrrrr")
            + figure(png, "Receptive field against depth, from \\texttt{summary}.", 0.6))


def _pmatrix(a) -> str:
    rows = [" & ".join(num(float(v), 3) for v in row) for row in np.asarray(a)]
    return "\\begin{pmatrix}" + " \\\\ ".join(rows) + "\\end{pmatrix}"


def _pool(layer, x):
    g = Graph()
    xn = g.input("x", (1, 1, *x.shape), "float64")
    y = layer.build(g, xn)
    L = g.add("sum", y, name="L")
    gg = grad(g, L, [xn])
    prog = compile_graph(gg.graph, [y, gg[xn]], flavor="numpy")
    prog.inputs["x"][...] = x.reshape(1, 1, *x.shape)
    prog.run()
    return prog.value(y)[0, 0].copy(), prog.value(gg[xn])[0, 0].copy()


def _pooling() -> str:
    mx, dmx = _pool(MaxPool2d(2), POOL_X)
    av, dav = _pool(AvgPool2d(2), POOL_X)
    return ("\\subsection*{Pooling by hand}\n"
            "$2 \\times 2$ windows with stride 2 over $X$; max pooling keeps each window's "
            "largest entry, average pooling its mean. With $L = \\sum y$ the gradient goes "
            "to each window's maximum (the first one on a tie, as PyTorch), or is shared "
            "equally. Computed by compiled symdl graphs:\n"
            f"\\[ X = {_pmatrix(POOL_X)}, \\quad \\max: {_pmatrix(mx)}, \\quad "
            f"\\mathrm{{avg}}: {_pmatrix(av)} \\]\n"
            f"\\[ \\frac{{\\partial L}}{{\\partial X}}\\Big|_{{\\max}} = {_pmatrix(dmx)}, \\qquad "
            f"\\frac{{\\partial L}}{{\\partial X}}\\Big|_{{\\mathrm{{avg}}}} = {_pmatrix(dav)} \\]\n")


def _derivations() -> str:
    parts = ["\\subsection*{Derivatives}\n"
             "Reverse mode differentiates the graph of \\texttt{unfold} (im2col), a batched "
             "matrix product and the bias; the rules below are symdl's statement of what that "
             "computes, each verified with \\texttt{sympy.diff} on explicit instances "
             "($\\tilde x$ is $x$ zero-padded, $S$ the stride, $D$ the dilation).\n"]
    for name, what in (("conv2d", "Convolution"), ("maxpool", "Max pooling"),
                       ("avgpool", "Average pooling")):
        parts.append(f"\\paragraph{{{what}.}}\n" + layer_latex(layer_derivation(name)))
    return "".join(parts)


def _feature_maps(out: Path, seed: int) -> str:
    train, test = load_digits("train"), load_digits("test")
    init_ss, train_ss = np.random.SeedSequence(seed).spawn(2)
    spec = make_model("cnn", train.n_features, train.n_classes, channels=CHANNELS, kernel=3,
                      pool="max", norm="none", residual=False, rng=np.random.default_rng(init_ss))
    tr = Trainer(spec.module, lambda ps: SGD(ps, lr=LR, momentum=MOMENTUM), spec.loss,
                 spec.loss_params, BATCH, EPOCHS, seed=train_ss, progress=False,
                 backend=NUMPY)
    h = tr.fit(train)
    _, acc = tr.evaluate(test)
    g, _, L = build_training_graph(spec.module, train.n_features, spec.loss, spec.loss_params,
                                   "float32")
    relu = [n for n in g.order() if g.op(n) == "relu"][0]
    prog = compile_graph(g, [relu], {n: p.data for n, p in spec.module.named_parameters()},
                         {"N": 1}, flavor="numpy", fuse=False)
    k = int(np.argmax(test.y == 3))
    prog.inputs["x"][...] = test.X[k:k + 1]
    prog.run()
    maps = prog.value(relu)[0]
    plt = pyplot()
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(6.3, 1.05))
    axes[0].imshow(test.X[k].reshape(8, 8), cmap="gray_r")
    axes[0].set_title("input", fontsize=8)
    for i, (ax, m) in enumerate(zip(axes[1:], maps)):
        ax.imshow(m, cmap="viridis")
        ax.set_title(f"map {i}", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    png = save_figure(fig, out / "convolution_maps.png")
    arch = " $\\to$ ".join(text(repr(m)) for m in spec.module.layers[1:])
    return ("\\subsection*{Feature maps of a trained digits CNN}\n"
            f"\\texttt{{make\\_model(\"cnn\")}} with channels {CHANNELS[0]} and {CHANNELS[1]} "
            f"({num(spec.module.num_parameters())} parameters: {arch}), trained by the "
            f"\\texttt{{Trainer}} for {EPOCHS} epochs (SGD, learning rate {LR}, momentum "
            f"{MOMENTUM}, batch {BATCH}): training accuracy {pct(h.train_accuracy[-1])}, test "
            f"accuracy {pct(acc)}. The first layer's {len(maps)} ReLU maps for a test digit "
            f"(label {int(test.y[k])}), values from the compiled graph:\n"
            + figure(png, "Input and first-layer feature maps of the trained CNN."))


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    parts = [section("Convolutional networks", "convolution"),
             "A convolution slides one small filter over the image: local receptive fields, "
             "parameters shared across positions, and outputs that shift with the input "
             "(equivariance). Every number below is computed by symdl from its layers.\n",
             "\\subsection*{Output sizes}\n", _sizes(), "\\subsection*{Parameters}\n", _params(),
             _stack(), _growth(out), _pooling(), _derivations(), _feature_maps(out, seed)]
    (out / "convolution.tex").write_text("".join(parts))
    return {"title": "Convolutional networks",
            "files": ["convolution.tex", "convolution_field.png", "convolution_maps.png"],
            "seeds": [seed]}
