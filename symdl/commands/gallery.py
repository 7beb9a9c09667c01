"""``symdl gallery``: machine-derived deep-learning notes in LaTeX (and PDF).

Each script in a ``gallery/`` folder has a title docstring and a function
``build(out: pathlib.Path, seed: int = 0) -> dict`` that writes
``out/<topic>.tex`` (one ``\\section``) and its figures, and returns
metadata (``title``, ``files``, ``seeds``; ``new_page`` to start a page).  Every formula in it is printed
from a symdl declaration or derivation and every number is computed by the
script.  This command finds the scripts, loads each by path, runs it, and
assembles ``notes.tex``: title, contents, one section per topic, the topics
symdl does not cover yet, and a colophon (versions and seeds).  ``--pdf``
runs ``latexmk``.  The output is deterministic: the same seed gives the same
``.tex`` bytes (no dates), and figures are saved without timestamps.

The helpers below (:func:`pyplot`, :func:`save_figure`, :func:`num`,
:func:`table`, :func:`figure`, ...) are what the scripts share.
"""
from __future__ import annotations

import argparse
import math
import numbers
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .gallery_run import build_one, run_parallel, script_order

__all__ = ["add_parser", "run", "find_scripts", "assemble", "NOT_YET", "TEX_PACKAGES",
           "pyplot", "save_figure", "legend_points", "figure", "num", "pct", "text", "table",
           "section", "fit", "evaluate"]

#: LaTeX packages of notes.tex: all from Debian's texlive-latex-base and -recommended
TEX_PACKAGES = (("geometry", "a4paper,margin=2.2cm"), ("amsmath", ""), ("amssymb", ""),
                ("graphicx", ""), ("booktabs", ""), ("xcolor", ""), ("float", ""),
                ("hyperref", "colorlinks,linkcolor=blue!50!black,urlcolor=blue!50!black"))
DEBIAN_PACKAGES = "texlive-latex-base texlive-latex-recommended latexmk"
#: topics of the notes that symdl cannot derive yet: (key, title, what it will hold);
#: a gallery script named ``key`` (or listing it in ``covers``) removes the entry
NOT_YET = (
    ("normalization", "Normalization",
     "internal covariate shift; BatchNorm, LayerNorm and InstanceNorm statistics; learnable scale and shift"),
    ("convolution", "Convolutional networks (convolution)",
     "receptive fields, parameter sharing, stride, padding, dilation, output sizes, pooling, "
     "residual connections"),
    ("sequence_models", "Sequence models",
     "RNNs and backpropagation through time, gradient clipping, LSTM and GRU gates, encoder-decoder models"),
    ("attention", "Attention and transformers",
     "queries, keys and values, multi-head and masked attention, positional encoding, transformer blocks"),
    ("generative", "Generative models",
     "autoencoders, GANs, normalizing flows, diffusion models"),
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``gallery`` on an argparse ``subparsers`` object; return its parser."""
    p = subparsers.add_parser(
        "gallery", help="build the machine-derived notes (LaTeX, and PDF with --pdf)",
        description="Run every gallery script (a gallery/ folder in the current directory or "
        "next to symdl's source checkout), assemble notes.tex and, with --pdf, build notes.pdf "
        "with latexmk. Every formula is printed from a symdl declaration, every number computed.",
        epilog="example: symdl gallery --out notes --pdf --only activations,losses")
    p.add_argument("--out", default="gallery-out", metavar="DIR",
                   help="output folder (default: gallery-out)")
    p.add_argument("--pdf", action="store_true",
                   help=f"also build notes.pdf with latexmk (Debian: {DEBIAN_PACKAGES})")
    p.add_argument("--only", metavar="TOPIC,...", help="only these topics (script names)")
    p.add_argument("--scripts", metavar="DIR", help="folder of gallery scripts (default: ./gallery, "
                   "else the gallery/ folder of symdl's source checkout)")
    p.add_argument("--seed", type=int, default=0, help="seed passed to every script (default: 0)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), metavar="N",
                   help="run the scripts in N processes (default: 2 where there are 2 cores; "
                   "the output is the same bytes)")
    p.set_defaults(run=run)
    return p


def _fail(code: int, message: str) -> int:
    print(f"symdl: error: {message}", file=sys.stderr)
    return code


def find_scripts(folder: str | Path | None = None) -> tuple:
    """``(scripts folder, [script paths])``; ``folder`` None: ./gallery, else the checkout's,
    else the copy an installed symdl ships (``symdl/_gallery``, mapped from ``gallery/``).
    Raises ``FileNotFoundError`` naming every place looked at."""
    if folder is not None:
        candidates = [Path(folder)]
    else:
        here = Path(__file__).resolve().parents[2] / "gallery"
        shipped = Path(__file__).resolve().parents[1] / "_gallery"
        candidates = list(dict.fromkeys([Path.cwd() / "gallery", here, shipped]))
    for c in candidates:
        scripts = sorted(p for p in c.glob("*.py") if not p.name.startswith("_")) if c.is_dir() else []
        if scripts:
            return c, scripts
    looked = " or ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"no gallery scripts (*.py) found in {looked}; "
                            "pass --scripts DIR or run from symdl's source checkout")


def run(args: argparse.Namespace) -> int:
    """Build the notes; 0 ok, 1 a script or LaTeX failed, 2 usage (no scripts, unknown topic)."""
    debug = getattr(args, "debug", False)
    try:
        folder, paths = find_scripts(getattr(args, "scripts", None))
    except FileNotFoundError as exc:
        return _fail(2, str(exc))
    topics = {p.stem: p for p in paths}
    only = list(dict.fromkeys(t.strip() for t in (getattr(args, "only", None) or "").split(",")
                              if t.strip()))
    unknown = [t for t in only if t not in topics]
    if unknown:
        return _fail(2, f"unknown gallery topic {unknown[0]!r} (topics: {', '.join(topics)})")
    out = Path(getattr(args, "out", None) or "gallery-out")
    seed = int(getattr(args, "seed", 0) or 0)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(4, f"cannot create the output folder {out}: {exc}")
    stems = sorted(only or topics, key=lambda st: (script_order(topics[st]), st))
    jobs = max(1, int(getattr(args, "jobs", None) or 1))
    built, t_all = [], time.perf_counter()
    if jobs > 1 and len(stems) > 1 and not debug:
        results = run_parallel([(st, str(topics[st])) for st in stems], out, seed, jobs)
    else:
        results = (build_one(st, str(topics[st]), str(out), seed, debug) for st in stems)
    for stem, (status, meta, seconds) in zip(stems, results):
        name = topics[stem].name
        if status == "load":
            return _fail(1, f"gallery script {topics[stem]} failed to load: {meta}")
        if status == "missing":
            return _fail(1, f"gallery script {name} needs {meta} "
                         "(matplotlib: pip install 'symdl[plot]')")
        if status == "error":
            return _fail(1, f"gallery script {name} failed: {meta}")
        if not (out / f"{stem}.tex").is_file():
            return _fail(1, f"gallery script {name} did not write {out / (stem + '.tex')}")
        meta.setdefault("seeds", [seed])
        built.append((stem, meta))
        print(f"{stem:<16} {seconds:5.1f} s  {meta['title']}")
    notes = out / "notes.tex"
    notes.write_text(assemble(built, seed))
    print(f"wrote {notes} ({len(built)} sections) in {time.perf_counter() - t_all:.1f} s")
    if not getattr(args, "pdf", False):
        print(f"for the PDF: symdl gallery --pdf, or latexmk -pdf {notes.name} in {out}")
        return 0
    return _pdf(out, notes)


def _pdf(out: Path, notes: Path) -> int:
    latexmk = shutil.which("latexmk")
    if latexmk is None or shutil.which("pdflatex") is None:
        print(f"no TeX found (latexmk and pdflatex): wrote {notes} and its figures; for notes.pdf "
              f"install the Debian packages {DEBIAN_PACKAGES} "
              f"(apt-get install {DEBIAN_PACKAGES}) and run again with --pdf")
        return 0
    cmd = [latexmk, "-pdf", "-interaction=nonstopmode", "-halt-on-error", notes.name]
    try:
        res = subprocess.run(cmd, cwd=out, capture_output=True, text=True, errors="replace",
                             timeout=600)
    except subprocess.TimeoutExpired:
        return _fail(1, f"latexmk timed out; the log is {out / 'notes.log'}")
    pdf = out / "notes.pdf"
    if res.returncode != 0 or not pdf.is_file():
        log = out / "notes.log"
        first = _first_error(log)
        return _fail(1, f"LaTeX failed (latexmk exit {res.returncode}){': ' + first if first else ''}; "
                     f"{notes} is kept, the log is {log}")
    print(f"wrote {pdf}")
    return 0


def _first_error(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for i, line in enumerate(lines):
        if line.startswith("!"):
            return " ".join(s.strip() for s in lines[i:i + 2])
    return ""


def assemble(built: list, seed: int = 0) -> str:
    """``notes.tex``: preamble, title, contents, ``\\input`` per topic, not-yet list, colophon."""
    import matplotlib
    import numpy
    import sympy

    from .. import __version__
    covered = {stem for stem, _ in built} | {c for _, m in built for c in m.get("covers", ())}
    lines = [r"\documentclass[10pt]{article}"]
    lines += [rf"\usepackage[{opt}]{{{name}}}" if opt else rf"\usepackage{{{name}}}"
              for name, opt in TEX_PACKAGES]
    lines += [r"\setcounter{tocdepth}{1}", r"\emergencystretch=2em", r"\setlength{\parindent}{0pt}",
              r"\setlength{\parskip}{4pt plus 2pt}",
              r"\renewcommand{\floatpagefraction}{0.75}",
              # a float barrier (as placeins', which is not in -base/-recommended): figures
              # still waiting are put out before the next section starts
              r"\makeatletter", r"\newcommand{\floatbarrier}{\par\begingroup\let\@elt\relax"
              r"\edef\@tempa{\@deferlist\@dbldeferlist}\ifx\@tempa\@empty\else\clearpage\fi"
              r"\endgroup}", r"\makeatother",
              r"\title{Deep learning, derived\\[4pt]\large machine-derived notes from symdl "
              + __version__ + "}", r"\author{}", r"\date{}", r"\begin{document}", r"\maketitle",
              r"\noindent Every formula in these notes is printed by symdl's LaTeX printers from "
              r"the SymPy declaration of an op, a loss, an optimizer or a schedule, or from a "
              r"derivation symdl made and checked; every number, table and figure is computed by "
              r"a gallery script with symdl (NumPy only where symdl has no such model yet). "
              r"Nothing is typed by hand but the prose.", r"\tableofcontents", ""]
    # a script may ask for its section to start a page (``"new_page": True`` in its metadata)
    lines += [(r"\clearpage" if m.get("new_page") else r"\floatbarrier") + rf"\input{{{stem}}}"
              for stem, m in built]
    later = [(t, what) for key, t, what in NOT_YET if key not in covered]
    if later:
        lines += ["", r"\floatbarrier", r"\section{Not yet covered}\label{sec:not-yet}",
                  "These topics of the course notes need capabilities symdl does not have yet; "
                  "they will get sections when symdl can derive and train them:",
                  r"\begin{itemize}"]
        lines += [rf"\item \textbf{{{text(t)}}}: {text(what)}." for t, what in later]
        lines += [r"\end{itemize}"]
    rows = [(text(m["title"]), r"\texttt{" + text(f"gallery/{stem}.py") + "}",
             ", ".join(str(s) for s in m.get("seeds", [seed]))) for stem, m in built]
    lines += ["", r"\section*{Colophon}", r"\addcontentsline{toc}{section}{Colophon}",
              f"Built by \\texttt{{symdl gallery}} with seed {seed}: symdl {__version__}, "
              f"SymPy {sympy.__version__}, NumPy {numpy.__version__}, "
              f"Matplotlib {matplotlib.__version__}. The same seed and versions give the same "
              r"\texttt{.tex} files, byte for byte.",
              table(["section", "script", "seeds"], rows, "lll"), r"\end{document}", ""]
    return "\n".join(lines)


# ------------------------------------------------------------ script helpers
def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, mathtext (no usetex), stable settings."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    plt.rcParams.update({"text.usetex": False, "svg.hashsalt": "symdl-gallery", "font.size": 9,
                         "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
                         "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True,
                         "grid.alpha": 0.3, "lines.linewidth": 1.5, "figure.dpi": 100})
    return plt


def legend_points(fig) -> float:
    """The smallest legend font size of ``fig`` in points (0 when it has no legend)."""
    legends = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend()]
    sizes = [t.get_fontsize() for lg in legends for t in lg.get_texts()]
    return float(min(sizes)) if sizes else 0.0


def save_figure(fig, path: Path, dpi: int = 150) -> str:
    """Save ``fig`` as a byte-stable PNG (no software/date metadata), close it; return the name.
    The PNG records its smallest legend font size (``symdl-legend-pt``), so a test can check
    the size it prints at in the notes."""
    import matplotlib.pyplot as plt
    fig.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.04,
                metadata={"Software": None, "symdl-legend-pt": f"{legend_points(fig):g}"})
    plt.close(fig)
    return Path(path).name


def figure(name: str, caption: str, width: float = 0.95) -> str:
    """A LaTeX figure including ``name`` (a file in the output folder), placed exactly here
    (``[H]``): a figure never drifts to a page of its own.  Draw it ``width`` × 6.5 inches
    wide so its 8 pt legends print at 8 pt."""
    return "\n".join(["", r"\begin{figure}[H]", r"\centering",
                      rf"\includegraphics[width={width:g}\linewidth]{{{name}}}",
                      rf"\caption{{{caption}}}", r"\end{figure}", "", ""])


def num(x, digits: int = 4) -> str:
    """A number for math mode: ``1\\,442``, ``0.2500``-style significant digits, ``10^{k}``.
    Raises ValueError for NaN or infinity, so none can reach the notes."""
    if isinstance(x, bool):
        raise ValueError(f"not a number: {x!r}")
    if isinstance(x, numbers.Integral):
        return f"{int(x):,}".replace(",", r"\,")
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite number {x!r} would reach the notes")
    s = f"{x:.{digits}g}"
    mant, e, ex = s.partition("e")
    if e:
        return rf"{mant} \times 10^{{{int(ex)}}}" if mant != "1" else rf"10^{{{int(ex)}}}"
    return s


def pct(x, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage for text mode (``97.2\\,\\%``)."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite fraction {x!r}")
    return f"{100 * x:.{digits}f}\\,\\%"


def text(s: str) -> str:
    """``s`` escaped for LaTeX text mode."""
    from ..printing.latex import latex_text
    return latex_text(str(s))


def table(header, rows, align: str | None = None, size: str = "") -> str:
    """A booktabs table (not floating): cells are LaTeX already."""
    align = align or "l" * len(header)
    body = [" & ".join(str(c) for c in r) + r" \\" for r in rows]
    out = ["", r"\begin{center}" + (f"\\{size}" if size else ""), rf"\begin{{tabular}}{{{align}}}",
           r"\toprule", " & ".join(header) + r" \\", r"\midrule", *body, r"\bottomrule",
           r"\end{tabular}", r"\end{center}", "", ""]
    return "\n".join(out)


def section(title: str, label: str) -> str:
    """``\\section{title}\\label{sec:label}``."""
    return rf"\section{{{title}}}\label{{sec:{label}}}" + "\n"


def fit(math_tex: str) -> str:
    """A centred display of ``math_tex``, scaled down only when wider than the line."""
    return ("\\begin{center}\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}"
            f"{{$\\displaystyle {math_tex}$}}\\end{{center}}\n")


def evaluate(op: str, *arrays, wrt: int = 0, **params) -> tuple:
    """``(values, derivative)`` of registry op ``op`` on float64 ``arrays`` (same shape),
    computed by a compiled symdl graph: the forward node and the reverse-mode
    gradient of its sum with respect to argument ``wrt`` (``op.grad<wrt>``)."""
    import numpy as np

    from ..backends.numpy_backend import compile_graph
    from ..derive import grad
    from ..graph import Graph
    arrays = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    g = Graph()
    names = [g.input(f"x{i}", ("N",), "float64") for i in range(len(arrays))]
    node = g.add(op, *names, name="f", **params)
    loss = g.add("sum", node, name="L")
    gg = grad(g, loss, wrt=[names[wrt]], unused="ignore")
    prog = compile_graph(gg.graph, [node, gg.grads[names[wrt]]], dims={"N": arrays[0].size},
                         flavor="numpy")
    for n, a in zip(names, arrays):
        prog.inputs[n][...] = a
    prog.run()
    return prog.value(node).copy(), prog.value(gg.grads[names[wrt]]).copy()
