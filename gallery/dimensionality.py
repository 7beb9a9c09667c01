"""The curse of dimensionality

High-dimensional space, measured: random Gaussian vectors are nearly
orthogonal, their lengths concentrate, the nearest and farthest neighbours
of a point become equally far, and the ball inscribed in the unit cube has a
vanishing share of its volume (a SymPy expression, checked by Monte Carlo).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import sympy as sp

from symdl.commands.gallery import figure, num, pyplot, save_figure, section, table
from symdl.printing import latex

ORDER = 30
DIMS = (2, 10, 100, 1000, 10000)


def _ball(seed: int) -> tuple:
    """Volume of the ball of diameter 1 (inscribed in the unit cube), exact and by Monte Carlo."""
    d = sp.Symbol("d", positive=True, integer=True)
    r = sp.Rational(1, 2)
    volume = sp.pi ** (d / 2) * r**d / sp.gamma(d / 2 + 1)
    rng = np.random.default_rng(seed)
    rows = []
    for k in (1, 2, 3, 5, 10, 20):
        exact = float(volume.subs(d, k))
        pts = rng.random((200_000, k)) - 0.5
        mc = float(np.mean((pts**2).sum(1) <= 0.25))
        rows.append((f"${k}$", f"${num(exact, 4)}$",
                     f"${num(mc, 4)}$" if mc else "none of the points"))
    return volume, rows


def _measure(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    res = {}
    for d in DIMS:
        X = rng.standard_normal((200, d))
        U = X / np.linalg.norm(X, axis=1, keepdims=True)
        C = U @ U.T
        cos = C[np.triu_indices(len(U), 1)]
        norms = np.linalg.norm(X, axis=1)
        P = rng.random((500, d))
        Q = rng.random((20, d))
        dist = np.sqrt(np.maximum((Q**2).sum(1)[:, None] + (P**2).sum(1)[None] - 2 * Q @ P.T, 0))
        ratio = float(np.mean(dist.min(1) / dist.max(1)))
        res[d] = dict(cos=cos, mean_abs_cos=float(np.mean(np.abs(cos))),
                      cos_sd_sqrt_d=float(np.std(cos) * np.sqrt(d)),
                      norm=float(np.mean(norms / np.sqrt(d))),
                      rel_sd=float(np.std(norms) / np.mean(norms)), ratio=ratio)
    return res


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    res = _measure(seed)
    volume, ball_rows = _ball(seed)
    rows = [(f"${num(d)}$", f"${num(m['mean_abs_cos'], 3)}$", f"${num(m['cos_sd_sqrt_d'], 3)}$",
             f"${num(m['norm'], 4)}$", f"${num(m['rel_sd'], 3)}$", f"${num(m['ratio'], 3)}$")
            for d, m in res.items()]
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(7.6, 2.8))
    for d in DIMS[1:]:
        a.hist(res[d]["cos"], bins=np.linspace(-1, 1, 81), histtype="step", density=True,
               label=f"d = {d}")
    a.set_xlabel("cosine of the angle between two random vectors")
    a.set_yscale("log")
    a.legend()
    ds = np.array(DIMS)
    b.semilogx(ds, [res[d]["ratio"] for d in DIMS], "o-", ms=3, label="nearest / farthest distance")
    b.semilogx(ds, [res[d]["rel_sd"] for d in DIMS], "s-", ms=3, label="std / mean of the length")
    b.set_xlabel("dimension $d$")
    b.set_ylim(0, 1.05)
    b.legend()
    png = save_figure(fig, out / "dimensionality.png")
    parts = [section("The curse of dimensionality", "dimensionality"),
             "Intuition from two and three dimensions fails in many. For each dimension $d$: 200 "
             "Gaussian vectors (angles between all pairs, lengths) and, for neighbours, 500 points "
             "uniform in the unit cube seen from 20 other random points:\n",
             table(["$d$", r"mean $|\cos|$", r"std$(\cos)\sqrt{d}$", r"mean length$/\sqrt{d}$",
                    "std/mean length", "nearest/farthest"], rows, "rrrrrr"),
             "Random directions are nearly orthogonal: the cosine of the angle between two of them "
             "shrinks like $1/\\sqrt{d}$ (the second column stays near 1). Lengths concentrate "
             "around $\\sqrt{d}$, so all points lie near a thin shell; and the nearest and the "
             "farthest neighbour become almost equally far, which is what makes nearest-neighbour "
             "methods and distance-based intuition weak in high dimensions.\n",
             figure(png, "Left: distribution of the cosine between random Gaussian vectors. Right: "
                    "nearest-to-farthest distance ratio and relative spread of the lengths, "
                    "against the dimension.", 0.95),
             "\\subsection*{Volume of the inscribed ball}\n"
             "The ball of diameter 1 inside the unit cube has volume (SymPy)\n"
             f"\\[ V_d = {latex(volume)}, \\]\n"
             "checked against the fraction of $2 \\times 10^5$ uniform points of the cube that "
             "fall inside it; almost all of a high-dimensional cube's volume is in its corners:\n",
             table(["$d$", "$V_d$", "Monte Carlo"], ball_rows, "rrr")]
    (out / "dimensionality.tex").write_text("\n".join(parts))
    return {"title": "The curse of dimensionality", "files": ["dimensionality.tex", png],
            "seeds": [seed]}


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
