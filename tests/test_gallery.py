"""The gallery: every script runs, its LaTeX comes from symdl, the notes assemble and build.

One module-scoped build runs every script of ``gallery/`` through ``symdl
gallery`` (with ``--pdf`` when latexmk is on PATH); the tests read what it
wrote.  A second build checks that the same seed gives the same bytes.
"""
from __future__ import annotations

import argparse
import ast
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from symdl.cli import main  # noqa: E402
from symdl.commands import gallery as cmd  # noqa: E402
from symdl.commands.explain_seq import seq_layer_derivation  # noqa: E402
from symdl.derive.layers import layer_derivation  # noqa: E402
from symdl.derive.steps import derive  # noqa: E402
from symdl.nn import Parameter  # noqa: E402
from symdl.nn.equations import cell_rows  # noqa: E402
from symdl.nn.init import variance  # noqa: E402
from symdl.optim import Adam  # noqa: E402
from symdl.optim.derivation import derivation, schedule_latex  # noqa: E402
from symdl.optim.schedules import make_schedule  # noqa: E402
from symdl.printing import latex  # noqa: E402
from symdl.printing.layers import layer_latex  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "gallery"
SCRIPTS = sorted(p for p in GALLERY.glob("*.py") if not p.name.startswith("_"))
TEX = shutil.which("latexmk") is not None and shutil.which("pdflatex") is not None
#: headings of the course notes' topic list (TOPICS.md) the library covers -> the gallery
#: topic whose section holds them
COVERED = {"Foundations": "foundations", "Activations": "activations", "Losses": "losses",
           "Backpropagation": "backprop", "Optimization": "optimization",
           "Regularization and generalization": "regularization",
           "Initialization": "initialization", "Normalization": "normalization",
           "Convolutional networks": "convolution", "Sequence models": "sequences",
           "Attention and transformers": "attention"}
#: the capabilities symdl does not have yet: must be listed as not covered
NOT_YET = ("generative",)
ALLOWED_IMPORTS = {"symdl", "numpy", "sympy", "matplotlib", "__future__", "sys", "pathlib", "re",
                   "math", "dataclasses"}


def _args(out, **kw) -> argparse.Namespace:
    base = dict(out=str(out), pdf=False, only=None, scripts=None, seed=0, debug=False)
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # a failure, not a skip: the gallery is part of what CI checks
        pytest.fail("the gallery needs matplotlib: install symdl's [plot] extra (add matplotlib "
                    "to the [test] extra in pyproject.toml)")
    out = tmp_path_factory.mktemp("gallery")
    argv = ["gallery", "--out", str(out), "--scripts", str(GALLERY)] + (["--pdf"] if TEX else [])
    assert main(argv) == 0
    return out


def _body(path: Path) -> str:
    """The LaTeX without comment lines (comments may hold anything)."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("%"))


# ------------------------------------------------------------------ the scripts
def test_there_is_a_script_per_covered_topic():
    stems = {p.stem for p in SCRIPTS}
    assert set(COVERED.values()) <= stems
    assert len(SCRIPTS) >= 10


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script_conventions(path):
    tree = ast.parse(path.read_text())
    doc = ast.get_docstring(tree)
    assert doc and doc.splitlines()[0].strip(), f"{path.name} needs a title docstring"
    build = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build"), None)
    assert build is not None, f"{path.name} has no build()"
    args = [a.arg for a in build.args.args]
    assert args == ["out", "seed"] and ast.literal_eval(build.args.defaults[0]) == 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: no relative imports in gallery scripts"
            mods = [node.module]
            if node.module.startswith("symdl"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports private names {private}"
        else:
            continue
        for m in mods:
            assert m.split(".")[0] in ALLOWED_IMPORTS, f"{path.name} imports {m}"


def test_symdl_never_imports_gallery_scripts_by_name():
    for path in (ROOT / "symdl").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "gallery" for n in names), path


# ------------------------------------------------------------------ their LaTeX
@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_each_script_writes_a_clean_section(built, path):
    tex = built / f"{path.stem}.tex"
    assert tex.is_file()
    body = _body(tex)
    title = path.read_text().split('"""')[1].strip().splitlines()[0]
    assert body.startswith(r"\section{" + title + "}"), body[:120]
    for bad in ("??", "TODO", "XXX", "{}}", "$$$"):
        assert bad not in body, f"{tex.name} holds {bad!r}"
    assert not re.search(r"\b(nan|NaN|None)\b", body), f"{tex.name} prints a missing value"
    assert not re.search(r"(?<![\\\w])inf\b", body), f"{tex.name} prints an infinity"
    assert not re.search(r"(?<![\\a-zA-Z])\{\}", body), f"{tex.name} has an empty template {{}}"
    assert all(ord(c) < 128 for c in body), f"{tex.name} has non-ASCII text outside comments"
    assert body.count(r"\begin{") == body.count(r"\end{")
    for name in re.findall(r"\\includegraphics(?:\[[^\]]*\])?\{([^}]+)\}", body):
        png = built / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert b"tIME" not in png.read_bytes()[:4096], f"{name} carries a timestamp"


def test_formulas_are_the_library_s_own(built):
    act = _body(built / "activations.tex")
    sig = derive("sigmoid(z)")
    assert latex(sig.result) in act  # σ(z)(1 − σ(z)), as symdl's printer gives it
    assert derive("1/(1+exp(-z))").render("latex").strip() in act
    assert layer_latex(layer_derivation("softmax")).split("%")[0].strip() in act
    losses = _body(built / "losses.tex")
    assert layer_latex(layer_derivation("softmax_cross_entropy")).split("%")[0].strip() in losses
    back = _body(built / "backprop.tex")
    assert layer_latex(layer_derivation("dense")).split("%")[0].strip() in back
    opt = _body(built / "optimization.tex")
    adam = derivation(Adam([Parameter(np.zeros(1), "theta")])).latex.split("\n", 1)[1]
    assert adam.strip() in opt  # bias correction and the defaults, from the declaration
    assert r"\hat{m}_{t} &= \frac{m_{t}}{1 - \beta_{1}^{t}}" in opt
    sched = _body(built / "schedules.tex")
    step = schedule_latex(make_schedule("step:step_size=20,gamma=0.5", 0.1)).split("\n", 1)[1]
    assert step.strip() in sched
    init = _body(built / "initialization.tex")
    n_in, n_out = sp.symbols("n_in n_out", positive=True, integer=True)
    assert latex(sp.nsimplify(variance("xavier", (n_out, n_in)))) in init
    assert latex(sp.nsimplify(variance("he", (n_out, n_in)))) in init
    reg = _body(built / "regularization.tex")
    assert layer_latex(layer_derivation("l1")).split("%")[0].strip() in reg
    conv = _body(built / "convolution.tex")
    for name in ("conv2d", "maxpool", "avgpool"):
        assert layer_latex(layer_derivation(name)).split("%")[0].strip() in conv, name
    norm = _body(built / "normalization.tex")
    for name in ("batchnorm", "layernorm", "instancenorm"):
        assert layer_latex(layer_derivation(name)).split("%")[0].strip() in norm, name
    seq = _body(built / "sequences.tex")
    assert layer_latex(seq_layer_derivation("lstm")).split("%")[0].strip() in seq
    for lhs, rhs in cell_rows("gru", "latex"):   # the gate table, printed from the graphs
        assert f"${lhs} = {rhs}$" in seq
    att = _body(built / "attention.tex")
    for name in ("attention", "mha", "transformer"):
        assert layer_latex(seq_layer_derivation(name)).split("%")[0].strip() in att, name


def test_numbers_are_computed(built):
    found = _body(built / "foundations.tex")
    assert r"4\,294\,967\,296" in found  # 2^(2^5)
    assert "it learns 14 of them exactly" in found and "XOR" in found and "XNOR" in found
    back = _body(built / "backprop.tex")
    assert "0.298371" in back  # the worked example's loss, from the backend
    act = _body(built / "activations.tex")
    assert "sigmoid & $0.5$ & $0.25$ & $0.25$ & $0$" in act
    conv = _body(built / "convolution.tex")
    assert r"$27\,C^2$ & $7 \times 7$" in conv and r"$49\,C^2$ & $7 \times 7$" in conv
    assert r"\max: \begin{pmatrix}6 & 5 \\ 3 & 8\end{pmatrix}" in conv
    norm = _body(built / "normalization.tex")
    assert r"BatchNorm & $(N, H, W)$ & $36$" in norm and r"InstanceNorm & $(H, W)$ & $9$" in norm
    seq = _body(built / "sequences.tex")   # the LSTM solves the adding problem, the RNN does not
    assert re.search(r"RNN & \$337\$ & \$[0-9.]+\$ & no", seq)
    assert re.search(r"LSTM & \$1\\,297\$ & \$0\.00[0-9]+\$ & yes", seq)
    att = _body(built / "attention.tex")
    assert r"\text{causal} = \begin{pmatrix}1 & 0 & 0 & 0 \\ 1 & 1 & 0 & 0" in att
    assert r"O_{1,:} = (0, 0)" in att and r"\texttt{patch\_embed} & $80$" in att


# ------------------------------------------------------------------ the notes
def test_notes_assemble(built):
    notes = (built / "notes.tex").read_text()
    assert notes.startswith(r"\documentclass") and r"\tableofcontents" in notes
    assert notes.rstrip().endswith(r"\end{document}")
    for path in SCRIPTS:
        assert rf"\input{{{path.stem}}}" in notes
    for heading, stem in COVERED.items():
        assert rf"\input{{{stem}}}" in notes, heading
    later = notes.split(r"\section{Not yet covered}")[1].split(r"\section*{Colophon}")[0].lower()
    for topic in NOT_YET:
        assert topic in later, topic
    colophon = notes.split(r"\section*{Colophon}")[1]
    assert "SymPy " + sp.__version__ in colophon and "NumPy " + np.__version__ in colophon
    assert "seed 0" in colophon
    assert not re.search(r"20\d\d-\d\d-\d\d|\\today", notes)


def test_notes_use_only_base_and_recommended_packages(built):
    notes = (built / "notes.tex").read_text()
    used = re.findall(r"\\usepackage(?:\[[^\]]*\])?\{([^}]+)\}", notes)
    assert set(used) <= {"amsmath", "amssymb", "graphicx", "geometry", "hyperref", "booktabs",
                         "xcolor", "float"}, used
    if shutil.which("kpsewhich"):
        for name in used:
            assert subprocess.run(["kpsewhich", f"{name}.sty"], capture_output=True,
                                  text=True).stdout.strip(), name


@pytest.mark.slow
def test_same_seed_same_bytes(built, tmp_path):
    assert cmd.run(_args(tmp_path, scripts=str(GALLERY))) == 0
    for tex in sorted(built.glob("*.tex")):
        assert (tmp_path / tex.name).read_bytes() == tex.read_bytes(), tex.name
    for png in sorted(built.glob("*.png")):
        assert (tmp_path / png.name).read_bytes() == png.read_bytes(), png.name


def test_pdf(built):
    if not TEX:
        pytest.skip("latexmk/pdflatex not on PATH: install the Debian packages texlive-latex-base "
                    "texlive-latex-recommended latexmk to build and check notes.pdf")
    pdf = built / "notes.pdf"
    assert pdf.is_file() and pdf.stat().st_size > 200_000
    assert pdf.read_bytes()[:5] == b"%PDF-"
    log = (built / "notes.log").read_text(errors="replace")
    assert "LaTeX Warning: There were undefined references" not in log
    assert "Overfull \\hbox" not in log or all(
        float(w) < 5 for w in re.findall(r"Overfull \\hbox \((\d+\.\d+)pt too wide\)", log))
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "30", "-f", "1", "-l", "1", str(pdf),
                        str(built / "page")], check=True)
        page = next(built.glob("page*.png"))
        assert page.stat().st_size > 1000


# ------------------------------------------------------------------ the command
def test_unknown_topic_exits_2_listing_the_topics(tmp_path, capsys):
    assert cmd.run(_args(tmp_path, only="activations,convolutions", scripts=str(GALLERY))) == 2
    err = capsys.readouterr().err
    assert "convolutions" in err and "activations" in err and "foundations" in err


def test_no_scripts_exits_2_naming_where_it_looked(tmp_path, capsys):
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert cmd.run(_args(tmp_path / "out", scripts=str(empty))) == 2
    assert str(empty) in capsys.readouterr().err


def test_without_tex_it_writes_the_tex_and_names_the_packages(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cmd.shutil, "which", lambda name: None)
    assert cmd.run(_args(tmp_path, only="dimensionality", pdf=True, scripts=str(GALLERY))) == 0
    out = capsys.readouterr().out
    assert "texlive-latex-base texlive-latex-recommended latexmk" in out
    assert (tmp_path / "notes.tex").is_file() and (tmp_path / "dimensionality.tex").is_file()
    assert not (tmp_path / "notes.pdf").exists()


def _script(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(f'"""A {name} section"""\nfrom pathlib import Path\n\n\n'
                                       f"def build(out, seed=0):\n{body}\n")


def test_a_failing_script_exits_1(tmp_path, capsys):
    _script(tmp_path / "g", "broken", "    raise ValueError('no good')")
    assert cmd.run(_args(tmp_path / "out", scripts=str(tmp_path / "g"))) == 1
    err = capsys.readouterr().err
    assert "broken.py" in err and "no good" in err


def test_a_latex_error_keeps_the_tex_and_names_the_log(tmp_path, capsys):
    if not TEX:
        pytest.skip("latexmk/pdflatex not on PATH")
    _script(tmp_path / "g", "bad", "    Path(out, 'bad.tex').write_text("
            "'\\\\section{A bad section}\\n\\\\undefinedmacro\\n')\n    return {}")
    assert cmd.run(_args(tmp_path / "out", scripts=str(tmp_path / "g"), pdf=True)) == 1
    err = capsys.readouterr().err
    assert "notes.log" in err and (tmp_path / "out" / "notes.tex").is_file()
    assert "Undefined control sequence" in err


# ------------------------------------------------------------------ no Python in the notes
#: LaTeX's own stars (\section*, {align*}, \hspace*) are not multiplication
STARRED = re.compile(r"\\[A-Za-z]+\*|\{[A-Za-z]+\*\}")
#: Python's reprs: ('a', ...), (64,), ..., None), [1, 2] of quoted strings
RAW_TUPLE = re.compile(r"\(\s*'[^']*'\s*,|\(\s*-?\d+(?:\.\d+)?\s*,\s*\)|,\s*None\s*\)|\[\s*'[^']*'\s*,")
#: graph node ids of the worked examples (hW2t, xW1t, W1t), never mathematical symbols
NODE_ID = re.compile(r"(?<![A-Za-z])[a-z]?W\d+t(?![A-Za-z])")


def leaks(body: str) -> list:
    """What of Python's printing reached ``body``: ``*``, ``**``, SymPy class names, raw
    tuples, node ids used as mathematics (outside ``\\texttt``)."""
    found = []
    plain = STARRED.sub("", body)
    for m in re.finditer(r"\*\*?", plain):
        found.append(f"{m.group(0)!r} in ...{plain[max(0, m.start() - 40):m.end() + 40]}...")
    for name in ("Piecewise", "Heaviside", "DiracDelta"):
        if name in body:
            found.append(name)
    found += [f"raw tuple {m.group(0)!r}" for m in RAW_TUPLE.finditer(body)]
    code = re.sub(r"\\texttt\{(?:[^{}]|\{[^{}]*\})*\}", "", body)
    found += [f"node id {m.group(0)!r} as maths" for m in NODE_ID.finditer(code)]
    if r"\mathtt{" in body:
        found.append(r"\mathtt (a node id typeset as a symbol)")
    return found


def test_leaks_finds_what_it_should():
    assert leaks(r"\section*{A}\begin{align*}x\end{align*}") == []
    assert leaks("$2*x$") and leaks("$x**2$") and leaks("Piecewise((x, x > 0))")
    assert leaks("factor=('1/count', ('N',), None)") and leaks("shape (64,)")
    assert leaks(r"$\frac{\partial z_2}{\partial hW2t}$") and leaks(r"$\mathtt{h}$")
    assert leaks(r"node \texttt{hW2t} holds $h W_2^{\top}$") == []


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_no_python_leaks_into_the_latex(built, path):
    found = leaks(_body(built / f"{path.stem}.tex"))
    assert not found, f"{path.stem}.tex: " + "; ".join(found[:5])


def test_no_python_leaks_into_the_command_output(tmp_path, capsys):
    assert cmd.run(_args(tmp_path, only="reconciliation,dimensionality",
                         scripts=str(GALLERY))) == 0
    out = capsys.readouterr()
    assert not leaks(out.out) and not leaks(out.err)
    assert not leaks((tmp_path / "notes.tex").read_text())


# ------------------------------------------------------------------ the notes against symdl
def test_reconciliation_pages_hold_sympy_s_verdicts(built):
    from symdl.optim.reconcile import reconciliations
    body = _body(built / "reconciliation.tex")
    found = reconciliations()
    assert len(found) == 8
    for r in found:  # each entry, with the verdict SymPy computes now (not a typed one)
        assert rf"\subsection{{{r.title}}}" in body, r.title
        after = body.split(rf"\subsection{{{r.title}}}")[1]
        assert f"SymPy's verdict: {r.verdict}" in after.split(r"\subsection")[0], r.key
        assert "torch" in after.split(r"\subsection")[0].lower(), r.key
    verdicts = {r.key: r.verdict for r in found}
    assert verdicts["label_smoothing"] == verdicts["nadam"] == verdicts["adam"] == "different"
    assert verdicts["nesterov"] != "different" and verdicts["l2"] == "equal after renaming"
    if TEX and shutil.which("pdftotext"):
        text_ = subprocess.run(["pdftotext", str(built / "notes.pdf"), "-"], capture_output=True,
                               text=True).stdout
        assert text_.count("SymPy’s verdict:") + text_.count("SymPy's verdict:") == 8


# ------------------------------------------------------------------ layout
def _png_text(path: Path) -> dict:
    """The tEXt chunks of a PNG."""
    data, out, i = path.read_bytes(), {}, 8
    while i < len(data):
        (n,), kind = struct.unpack(">I", data[i:i + 4]), data[i + 4:i + 8]
        if kind == b"tEXt":
            key, _, value = data[i + 8:i + 8 + n].partition(b"\x00")
            out[key.decode("latin-1")] = value.decode("latin-1")
        i += 12 + n
    return out


def test_legends_are_readable_at_print_size(built):
    """Every legend prints at 6.5 pt or more: its font size times the figure's scale in the
    notes (width in the LaTeX over the PNG's width in inches; the text width is 6.54 in)."""
    small = []
    for tex in sorted(built.glob("*.tex")):
        for frac, name in re.findall(r"\\includegraphics\[width=([\d.]+)\\linewidth\]\{([^}]+)\}",
                                     _body(tex)):
            png = built / name
            w = struct.unpack(">I", png.read_bytes()[16:20])[0]
            dpi = 150.0
            meta = _png_text(png)
            pt = float(meta.get("symdl-legend-pt", "nan"))
            assert pt == pt, f"{name} was not saved by save_figure"
            printed = pt * float(frac) * 6.54 / (w / dpi)
            if pt and printed < 6.5:
                small.append(f"{name}: legend {pt:g} pt prints at {printed:.1f} pt")
    assert not small, "; ".join(small)


def page_fill(pdf: Path, dpi: int = 30) -> list:
    """How far down its text area each page is used (0 to 1), from a grey rendering."""
    raw = subprocess.run(["pdftoppm", "-gray", "-r", str(dpi), str(pdf)], capture_output=True,
                         check=True).stdout
    out, i = [], 0
    top, bottom, per_px = 62.4, 842 - 62.4, 72.0 / dpi  # a4, 2.2 cm margins, in points
    while i < len(raw):
        m = re.match(rb"P5\s+(\d+)\s+(\d+)\s+\d+\s", raw[i:])
        w, h = int(m.group(1)), int(m.group(2))
        img = np.frombuffer(raw[i + m.end():i + m.end() + w * h], dtype=np.uint8).reshape(h, w)
        i += m.end() + w * h
        ys = np.flatnonzero((img < 200).any(axis=1)) * per_px
        ys = ys[(ys >= top - 2) & (ys <= bottom + 2)]
        out.append(0.0 if ys.size == 0 else float((ys.max() - top) / (bottom - top)))
    return out


def test_no_page_is_less_than_a_third_full_but_a_chapter_s_last(built):
    if not TEX or not (shutil.which("pdftoppm") and shutil.which("pdftotext")):
        pytest.skip("needs latexmk, pdftoppm and pdftotext (Debian: poppler-utils)")
    pdf = built / "notes.pdf"
    fills = page_fill(pdf)
    short = []
    for k, f in enumerate(fills, 1):
        if f >= 1 / 3 or k == len(fills):
            continue
        nxt = subprocess.run(["pdftotext", "-f", str(k + 1), "-l", str(k + 1), str(pdf), "-"],
                             capture_output=True, text=True).stdout.strip()
        if re.match(r"(\d+\s+[A-Z]|Colophon)", nxt):  # the next page starts a chapter
            continue
        short.append(f"page {k}: {f:.0%} full")
    assert not short, "; ".join(short)
