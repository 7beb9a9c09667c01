"""A training run

A small MLP trained by symdl's Trainer on the embedded handwritten digits:
the architecture with its parameter counts and output shapes read off the
model and its graph, the loss and accuracy per epoch, the test accuracy and
the confusion matrix.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from symdl.backends.numpy_backend import backend_for
from symdl.commands.gallery import figure, num, pct, pyplot, save_figure, section, table, text
from symdl.data import DIGITS_CITATION, load_digits, train_val_split
from symdl.nn import Dense, make_model
from symdl.optim import SGD
from symdl.train import Trainer, build_training_graph

ORDER = 90
NUMPY = backend_for("numpy")  # the NumPy reference kernels: nothing to compile
HIDDEN, EPOCHS, BATCH, LR, MOMENTUM = (64, 64), 10, 32, 0.05, 0.9


def _architecture(spec, n_features: int) -> str:
    g, out, L = build_training_graph(spec.module, n_features, spec.loss, spec.loss_params, "float32")
    rows, total = [], 0
    for i, layer in enumerate(spec.module.layers):
        node = [n for n in g.order() if n.startswith(f"{i}.") and g.op(n) != "param"
                and g.op(n) != "transpose"][-1]
        shape = "(" + ", ".join(str(d) for d in g.shape(node)) + ")"
        if isinstance(layer, Dense):
            count = layer.W.data.size + layer.b.data.size
            what = f"Dense {layer.n_in} $\\to$ {layer.n_out}"
            formula = f"${layer.n_in} \\cdot {layer.n_out} + {layer.n_out}$"
        else:
            count, what, formula = 0, f"activation \\texttt{{{text(layer.name)}}}", ""
        total += count
        rows.append((what, f"\\texttt{{{text(node)}}}", f"${text(shape)}$", formula, f"${num(count)}$"))
    rows.append(("total", "", "", "", f"${num(total)}$"))
    assert total == spec.module.num_parameters()
    return table(["layer", "graph node", "output shape", "in $\\cdot$ out + out", "parameters"],
                 rows, "lllrr")


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    train, test = load_digits("train"), load_digits("test")
    ss = np.random.SeedSequence(seed)
    split_ss, init_ss, train_ss = ss.spawn(3)
    fit, val = train_val_split(train, 0.1, np.random.default_rng(split_ss))
    spec = make_model("mlp", train.n_features, train.n_classes, HIDDEN, "relu",
                      np.random.default_rng(init_ss))
    arch = _architecture(spec, train.n_features)
    tr = Trainer(spec.module, lambda ps: SGD(ps, lr=LR, momentum=MOMENTUM), spec.loss,
                 spec.loss_params, BATCH, EPOCHS, seed=train_ss, progress=False,
                 backend=NUMPY)
    h = tr.fit(fit, val)
    test_loss, test_acc = tr.evaluate(test)
    pred = tr.predict(test.X).argmax(1)
    conf = np.zeros((10, 10), dtype=int)
    np.add.at(conf, (test.y, pred), 1)
    plt = pyplot()
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(6.4, 2.3), gridspec_kw={"width_ratios": [1, 1, 0.9]})
    ep = np.arange(1, h.epochs + 1)
    a.plot(ep, h.train_loss, "o-", ms=3, label="training")
    a.plot(ep, h.val_loss, "s-", ms=3, label="validation")
    a.set_yscale("log")
    a.set_title("loss")
    a.set_xlabel("epoch")
    a.legend()
    b.plot(ep, 100 * np.array(h.train_accuracy), "o-", ms=3, label="training")
    b.plot(ep, 100 * np.array(h.val_accuracy), "s-", ms=3, label="validation")
    b.set_title("accuracy (%)")
    b.set_xlabel("epoch")
    b.legend()
    c.imshow(conf, cmap="Blues")
    for i in range(10):
        for j in range(10):
            if conf[i, j]:
                c.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=5.5,
                       color="white" if conf[i, j] > conf.max() / 2 else "black")
    c.set_xticks(range(10))
    c.set_yticks(range(10))
    c.set_xlabel("predicted")
    c.set_ylabel("true")
    c.set_title("test confusion matrix")
    c.grid(False)
    fig.tight_layout()
    png = save_figure(fig, out / "training.png")
    off = conf - np.diag(np.diag(conf))
    i, j = np.unravel_index(int(np.argmax(off)), off.shape)
    per_epoch = [(f"${e + 1}$", f"${num(h.train_loss[e])}$", pct(h.train_accuracy[e]),
                  f"${num(h.val_loss[e])}$", pct(h.val_accuracy[e])) for e in range(h.epochs)]
    hidden = ",".join(str(k) for k in HIDDEN)
    parts = [section("A training run", "training"),
             f"symdl's default model, an MLP {train.n_features}-{'-'.join(map(str, HIDDEN))}-"
             f"{train.n_classes} with ReLU, trained on the embedded digits ({text(DIGITS_CITATION)}) "
             f"with the settings of \\texttt{{symdl train}} but {num(EPOCHS)} epochs "
             f"(\\texttt{{symdl train --hidden {hidden} --epochs {EPOCHS}}}): SGD with "
             f"$\\alpha = {num(LR)}$ and momentum ${num(MOMENTUM)}$, batches of {num(BATCH)}, "
             f"{num(len(fit))} training and {num(len(val))} validation examples, seed {seed}. "
             "The architecture, read off the model and its training graph ($N$ is the batch):\n",
             arch,
             table(["epoch", "training loss", "training accuracy", "validation loss",
                    "validation accuracy"], per_epoch, "rrrrr", "small"),
             f"On the {num(len(test))} test digits the trained network reaches {pct(test_acc)} "
             f"(loss ${num(test_loss)}$); its most frequent confusion is a true {i} read as {j} "
             f"({num(int(off[i, j]))} times).\n",
             figure(png, "Loss and accuracy per epoch (training accuracy is measured during the "
                    "epoch, while the weights move) and the test confusion matrix.", 1.0)]
    (out / "training.tex").write_text("\n".join(parts))
    return {"title": "A training run", "files": ["training.tex", png], "seeds": [seed]}


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
