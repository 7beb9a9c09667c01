"""symdl.draw: Graphviz when installed, matplotlib otherwise, chosen as asked."""
from __future__ import annotations

import os
import stat

import pytest

import symdl.printing  # noqa: F401  (registers the renderers)
from symdl import draw
from symdl.errors import UsageError
from symdl.graph import Graph


def _graph():
    g = Graph()
    g.add("tanh", g.input("x", ("N", 3)), name="h")
    return g


def _fake_dot(folder, monkeypatch):
    """A ``dot`` on PATH that records its arguments and input and answers a fixed picture."""
    exe = folder / "dot"
    exe.write_text("#!/bin/sh\necho \"$@\" > \"$0.args\"\ncat > \"$0.in\"\n"
                   "printf '<svg>fake %s</svg>' \"$1\"\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return exe


def test_graphviz_draws_when_installed(tmp_path, monkeypatch):
    exe = _fake_dot(tmp_path, monkeypatch)
    g = _graph()
    assert draw.svg(g) == "<svg>fake -Tsvg</svg>"
    assert (tmp_path / "dot.in").read_text() == draw.to_dot(g)  # it is given the DOT text
    assert draw.png(g) == b"<svg>fake -Tpng</svg>"
    assert (tmp_path / "dot.args").read_text() == "-Tpng\n"
    assert g._repr_svg_() == "<svg>fake -Tsvg</svg>"
    assert draw.svg(g, engine="matplotlib").startswith("<?xml")  # matplotlib when asked
    assert (tmp_path / "dot.args").read_text() == "-Tsvg\n" and exe.exists()


def test_without_graphviz_matplotlib_draws(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    g = _graph()
    assert draw.svg(g).startswith("<?xml") and draw.svg(g) == draw.svg(g, engine="matplotlib")
    assert draw.png(g).startswith(b"\x89PNG")
    with pytest.raises(UsageError, match="Graphviz 'dot' is not installed"):
        draw.svg(g, engine="dot")
    with pytest.raises(UsageError, match="unknown drawing engine"):
        draw.svg(g, engine="tikz")


def test_a_failing_dot_falls_back_to_matplotlib(tmp_path, monkeypatch):
    exe = tmp_path / "dot"
    exe.write_text("#!/bin/sh\nexit 3\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert draw.svg(_graph()).startswith("<?xml")


def test_an_empty_graph_is_an_empty_picture():
    g = Graph()
    assert draw.layers(g) == [] and draw.to_dot(g).count("->") == 0
    assert draw.svg(g, engine="matplotlib").startswith("<?xml")
