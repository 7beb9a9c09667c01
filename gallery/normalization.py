"""Normalization

BatchNorm, LayerNorm and InstanceNorm as symdl builds them: the axes each
one's statistics run over, found by perturbing one input entry of a compiled
layer and seeing which outputs move (drawn as a figure), the normalized
outputs' means and deviations over those axes, BatchNorm's running
statistics under PyTorch's momentum rule, and the derived gradients.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from symdl.backends.numpy_backend import compile_graph
from symdl.commands.gallery import figure, num, pyplot, save_figure, section, table
from symdl.derive.layers import layer_derivation
from symdl.graph import Graph
from symdl.nn.norm import (BatchNorm2d, InstanceNorm2d, LayerNorm, set_batchnorm_mode,
                           update_running_stats)
from symdl.printing.layers import layer_latex

ORDER = 96
SHAPE = (4, 6, 3, 3)          # N, C, H, W
AT = (1, 2, 1, 1)             # the entry that is perturbed
LAYERS = (("BatchNorm", "batchnorm", lambda: BatchNorm2d(SHAPE[1], dtype="float64")),
          ("LayerNorm", "layernorm", lambda: LayerNorm(SHAPE[1:], dtype="float64")),
          ("InstanceNorm", "instancenorm", lambda: InstanceNorm2d(SHAPE[1], dtype="float64")))


def _compiled(layer, shape=SHAPE):
    g = Graph()
    x = g.input("x", shape, "float64")
    y = layer.build(g, x)
    bind = {n: p.data for n, p in layer.named_parameters()}
    prog = compile_graph(g, [y], bind, flavor="numpy", fuse=False)
    set_batchnorm_mode(prog, layer, train=True)
    return prog, y


def _groups(seed: int) -> dict:
    """Per layer: which outputs move when x[AT] moves, and the outputs' moments."""
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 3.0, size=SHAPE)
    found = {}
    for label, key, make in LAYERS:
        layer = make()
        layer.name_parameters()
        prog, y = _compiled(layer)
        prog.inputs["x"][...] = x
        prog.run()
        base = prog.value(y).copy()
        bumped = x.copy()
        bumped[AT] += 1.0
        prog.inputs["x"][...] = bumped
        prog.run()
        moved = np.abs(prog.value(y) - base) > 1e-12
        axes = tuple(a for a in range(4) if moved.any(axis=tuple(b for b in range(4) if b != a))
                     .sum() > 1)
        found[label] = (key, moved, axes, base)
    return found


def _figure(found, out: Path) -> str:
    n, c, h, w = SHAPE
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(6.4, 2.1))
    for ax, (label, (_, moved, axes_, _)) in zip(axes, found.items()):
        img = np.full((n * (h + 1) - 1, c * (w + 1) - 1), np.nan)
        for a, b in np.ndindex(n, c):
            img[a * (h + 1):a * (h + 1) + h, b * (w + 1):b * (w + 1) + w] = moved[a, b]
        r, q = AT[0] * (h + 1) + AT[2], AT[1] * (w + 1) + AT[3]
        img[r, q] = 2.0
        ax.imshow(img, cmap="Blues", vmin=-0.3, vmax=2.0)
        ax.set_title(f"{label}: axes {axes_}", fontsize=9)
        ax.set_xticks([b * (w + 1) + w // 2 for b in range(c)], [str(b) for b in range(c)])
        ax.set_yticks([a * (h + 1) + h // 2 for a in range(n)], [str(a) for a in range(n)])
        ax.set_xlabel("channel C (each cell: H x W)", fontsize=8)
        ax.set_ylabel("sample N", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return save_figure(fig, out / "normalization_axes.png")


def _moments(found) -> str:
    rows = []
    for label, (_, _, axes, y) in found.items():
        mean, std = y.mean(axis=axes), y.std(axis=axes)
        others = tuple(a for a in range(4) if a not in axes)
        rows.append((label, f"$({', '.join('NCHW'[a] for a in axes)})$",
                     f"${num(int(np.prod([SHAPE[a] for a in axes])))}$",
                     f"${num(float(np.abs(mean).max()), 2)}$",
                     f"${num(float(np.abs(std - 1).max()), 2)}$",
                     f"${num(float(y.std(axis=others).mean()), 3)}$" if others else "--"))
    return table(["layer", "statistics over", "entries each", r"$\max|\mathrm{mean}|$",
                  r"$\max|\mathrm{std} - 1|$", "std over the other axes"], rows, "llrrrr")


def _running(seed: int) -> str:
    bn = BatchNorm2d(2, momentum=0.1, dtype="float64")
    bn.name_parameters()
    prog, _ = _compiled(bn, (8, 2, 4, 4))
    rng = np.random.default_rng(seed + 1)
    rows = []
    for step in range(1, 31):
        prog.inputs["x"][...] = rng.normal([[[[2.0]], [[-1.0]]]], [[[[3.0]], [[0.5]]]],
                                           size=(8, 2, 4, 4))
        set_batchnorm_mode(prog, bn, train=True)
        prog.run()
        update_running_stats(bn, prog)
        if step in (1, 2, 5, 10, 20, 30):
            rows.append((f"${step}$", *[f"${num(float(v), 3)}$" for v in
                                        (*bn.running_mean, *bn.running_var)]))
    return ("\\subsection*{Running statistics}\n"
            "In training BatchNorm uses the batch's statistics and updates "
            "$\\hat\\mu \\leftarrow (1 - m)\\hat\\mu + m\\,\\mu_B$ and "
            "$\\hat\\sigma^2 \\leftarrow (1 - m)\\hat\\sigma^2 + m\\,\\sigma_B^2\\,n/(n-1)$ "
            "(unbiased, as PyTorch; $m = 0.1$); evaluation uses $\\hat\\mu, \\hat\\sigma^2$. "
            "Batches of 8 maps of $4 \\times 4$ drawn with channel means $2$ and $-1$ and "
            "variances $9$ and $0.25$, through the compiled layer:\n"
            + table(["step", r"$\hat\mu_0$", r"$\hat\mu_1$", r"$\hat\sigma^2_0$",
                     r"$\hat\sigma^2_1$"], rows, "rrrrr"))


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    found = _groups(seed)
    png = _figure(found, out)
    dims = " \\times ".join(map(str, SHAPE))
    parts = [section("Normalization", "normalization"),
             "A normalization layer subtracts a mean and divides by a standard deviation, "
             "then applies a learned scale $\\gamma$ and shift $\\beta$, so that each layer "
             "sees inputs of a steady scale however the earlier layers drift (the internal "
             "covariate shift BatchNorm was proposed against). The three layers differ only "
             "in the axes the statistics run over. To find them, one entry of a "
             f"${dims}$ input (N, C, H, W) is moved and the "
             "outputs that move with it are those sharing its statistics:\n",
             figure(png, "Outputs that share statistics with the marked entry (dark): "
                         "BatchNorm over (N, H, W) per channel, LayerNorm over (C, H, W) per "
                         "sample, InstanceNorm over (H, W) per sample and channel."),
             "On the same normal input (mean 2, standard deviation 3), the outputs' mean and "
             "standard deviation over each layer's statistics axes, and how much they still "
             "vary across the other axes (biased deviation, $\\varepsilon = 10^{-5}$):\n",
             _moments(found), _running(seed),
             "\\subsection*{Derivatives}\n"
             "Each layer is a graph of means, differences, a square root and a quotient (or "
             "one row op), so its gradient is derived by reverse mode; the closed forms below "
             "are symdl's statement of it, verified against \\texttt{sympy.diff} on an explicit "
             "$2 \\times 2 \\times 1 \\times 2$ instance. The gradient has three paths to $x$: "
             "directly, through $\\mu$ and through $\\sigma$.\n"]
    for label, (key, _, axes, _) in found.items():
        parts.append(f"\\paragraph{{{label}}} (statistics over axes "
                     f"${', '.join('NCHW'[a] for a in axes)}$).\n"
                     + layer_latex(layer_derivation(key)))
    (out / "normalization.tex").write_text("".join(parts))
    return {"title": "Normalization", "files": ["normalization.tex", "normalization_axes.png"],
            "seeds": [seed]}
