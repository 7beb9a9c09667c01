"""Pictures from the command line: graph --format text|dot|svg|png, derive --plot, train --plot."""
from __future__ import annotations

import pytest

from symdl.cli import main

XOR = ("--dataset", "xor", "--hidden", "2")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_graph_text_is_the_listing_and_dot_lists_every_edge(capsys):
    code, text, _ = run(capsys, "graph", *XOR)
    assert code == 0 and "d0.W" in text and "= transpose(0.W)" in text
    assert run(capsys, "graph", *XOR, "--format", "text")[1] == text
    code, dot, _ = run(capsys, "graph", *XOR, "--format", "dot", "--no-grad")
    assert code == 0 and dot.startswith('digraph "symdl" {') and dot.endswith("}\n")
    assert '  "x" -> "0.xWt";' in dot and '  "0.W" -> "0.Wt";' in dot
    assert dot.count("[label=") == 15  # every node of the forward graph


def test_graph_pictures_are_files_and_the_same_each_time(tmp_path, capsys):
    a, b, p = tmp_path / "a.svg", tmp_path / "b.svg", tmp_path / "g.png"
    assert run(capsys, "graph", *XOR, "--format", "svg", "--out", str(a))[0] == 0
    assert run(capsys, "graph", *XOR, "--format", "svg", "--out", str(b))[0] == 0
    assert a.read_bytes() == b.read_bytes() and b"<svg" in a.read_bytes()
    assert b'<path id="DejaVuSans' in a.read_bytes()  # labels drawn as glyph paths, no font needed
    code, out, err = run(capsys, "graph", *XOR, "--format", "png", "--out", str(p))
    assert code == 0 and out == "" and p.read_bytes().startswith(b"\x89PNG")
    code, out, err = run(capsys, "graph", *XOR, "--format", "svg", "--out",
                         str(tmp_path / "no" / "such" / "dir.svg"))
    assert code == 4 and err.startswith("symdl: error: cannot write")


def test_derive_plot(tmp_path, capsys):
    f = tmp_path / "log.svg"
    code, out, err = run(capsys, "derive", "log(x)", "--plot", str(f))
    assert code == 0 and "1/x" in out and f"wrote {f}" in err
    svg = f.read_text()
    assert svg.startswith("<?xml") and "<dc:date>" not in svg
    g = tmp_path / "again.svg"
    run(capsys, "derive", "log(x)", "--plot", str(g))
    assert g.read_bytes() == f.read_bytes()
    h = tmp_path / "wide.svg"
    run(capsys, "derive", "log(x)", "--plot", str(h), "--plot-domain=-1,1")
    assert h.read_bytes() != f.read_bytes()
    code, _, err = run(capsys, "derive", "x*y", "--wrt", "x", "--plot", str(tmp_path / "xy.svg"))
    assert code == 2 and "one variable" in err


def test_derive_plot_refuses_bad_files_before_deriving(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["derive", "x**2", "--plot", str(tmp_path / "f.jpg")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "a figure file ends in .svg, .png, .pdf" in err
    with pytest.raises(SystemExit):
        main(["derive", "x**2", "--plot", str(tmp_path / "f.svg"), "--plot-domain", "2,1"])
    assert "LO < HI" in capsys.readouterr().err


def test_derive_schedule_plot(tmp_path, capsys):
    f = tmp_path / "s.png"
    code, out, err = run(capsys, "derive", "--schedule", "cosine:T_max=50", "--plot", str(f),
                         "--plot-domain", "0,60")
    assert code == 0 and "cosine" in out and f.read_bytes().startswith(b"\x89PNG")
    code, _, err = run(capsys, "derive", "--optimizer", "adam", "--plot", str(tmp_path / "a.svg"))
    assert code == 2 and "--plot draws an expression or a --schedule" in err


def test_train_plot(tmp_path, capsys):
    f = tmp_path / "curves.pdf"
    code, out, err = run(capsys, "train", *XOR, "--epochs", "5", "--plot", str(f), "--json")
    assert code == 0, err
    assert f.read_bytes().startswith(b"%PDF")
    with pytest.raises(SystemExit) as exc:
        main(["train", *XOR, "--epochs", "5", "--plot", str(tmp_path / "curves.txt")])
    assert exc.value.code == 2
