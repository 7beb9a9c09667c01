"""Graph pictures: a layered drawing (networkx generations, matplotlib), DOT text, SVG and PNG.

Nodes are placed row by row along :func:`networkx.topological_generations` (inputs and
parameters on top, the loss and the gradients below), each row in the graph's deterministic
order; edges follow each node's ordered ``args``.  :func:`svg` uses Graphviz ``dot`` when it is
installed (``engine="auto"``) and the matplotlib drawing otherwise.  Figures are written the
same byte for byte for the same graph (:func:`save`: a constant ``svg.hashsalt``, no dates).
matplotlib is imported only when a figure is drawn.

>>> from symdl.graph import Graph
>>> g = Graph()
>>> h = g.add("tanh", g.input("x", ("N", 3)), name="h")
>>> print(to_dot(g).splitlines()[3])
  "x" [label="x\\ninput (N, 3)", shape=box, style=filled, fillcolor="#dbe9f6"];
"""
from __future__ import annotations

import functools
import io
import shutil
import subprocess
from pathlib import Path

import networkx as nx

from .errors import UsageError
from .graph import LEAVES

__all__ = ["layers", "node_kinds", "to_dot", "figure", "svg", "png", "save", "to_svg", "to_png",
           "new_figure", "FORMATS", "COLORS"]

#: file formats :func:`save` writes
FORMATS = ("svg", "png", "pdf")
#: fill colour per node kind
COLORS = {"input": "#dbe9f6", "param": "#fde3c8", "op": "#f2f2f2", "loss": "#f7c6c5",
          "grad": "#d4edd4"}
_RC = {"svg.hashsalt": "symdl", "svg.fonttype": "path", "path.simplify": True}
_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None},
             "png": {"Software": None}}


# ---------------------------------------------------------------- figures, files
@functools.lru_cache(maxsize=None)
def _figure_class() -> type:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("drawing needs matplotlib: pip install 'symdl[plot]'") from None

    class SymdlFigure(Figure):
        """A matplotlib figure that Jupyter shows (as SVG) with no ``%matplotlib`` magic."""

        def _repr_svg_(self) -> str:
            return to_svg(self)

    return SymdlFigure


def new_figure(size=(5.0, 3.2), ncols: int = 1):
    """``(figure, axes list)`` on the Agg canvas (no ``pyplot``, no global state); the figure
    displays itself in Jupyter."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = _figure_class()(figsize=(size[0] * ncols, size[1]), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _format(path, format: str | None) -> str:
    fmt = (format or Path(str(path)).suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise UsageError(f"cannot write a figure as {fmt or 'a file without suffix'!r} "
                         f"(formats: {', '.join(FORMATS)})")
    return fmt


def save(fig, path, format: str | None = None) -> None:
    """Write ``fig`` to ``path`` (or a binary file object) as SVG, PNG or PDF, deterministically."""
    import matplotlib
    fmt = _format(path, format)
    with matplotlib.rc_context(_RC):
        fig.savefig(path, format=fmt, metadata=_METADATA[fmt], dpi=100)


def to_svg(fig) -> str:
    """``fig`` as SVG text (what :func:`save` writes to ``*.svg``)."""
    buf = io.BytesIO()
    save(fig, buf, "svg")
    return buf.getvalue().decode("utf-8")


def to_png(fig) -> bytes:
    """``fig`` as PNG bytes."""
    buf = io.BytesIO()
    save(fig, buf, "png")
    return buf.getvalue()


# ---------------------------------------------------------------- layout
def _graph(obj):
    """``(Graph, gradient nodes)`` from a Graph or a gradient graph (``.graph``, ``.loss``)."""
    g = getattr(obj, "graph", obj)
    if not hasattr(g, "nx"):
        raise UsageError(f"cannot draw a {type(obj).__name__}: give a Graph or a gradient graph")
    grads = set()
    loss = getattr(obj, "loss", None)
    if loss is not None:
        forward = nx.ancestors(g.nx, loss) | {loss}
        grads = {n for n in g.nx if n not in forward}
    return g, grads, loss


def layers(graph) -> list:
    """The nodes row by row: rows are :func:`networkx.topological_generations`, except that an
    input or parameter sits in the row just above its first consumer; within a row, nodes are
    ordered by the mean place of their neighbours (down, up, down sweeps; ties in graph order)."""
    g, _, _ = _graph(graph)
    rank = {n: i for i, n in enumerate(g.order())}
    gen = {n: i for i, row in enumerate(nx.topological_generations(g.nx)) for n in row}
    for n in g.order():
        succ = list(g.nx.successors(n))
        if g.nx.in_degree(n) == 0 and succ:
            gen[n] = min(gen[c] for c in succ) - 1
    rows: dict = {}
    for n in sorted(gen, key=rank.__getitem__):
        rows.setdefault(gen[n], []).append(n)
    out = [rows[k] for k in sorted(rows)]
    slot = {n: i - (len(row) - 1) / 2 for row in out for i, n in enumerate(row)}
    for sweep in ("down", "up", "down"):
        for row in out if sweep == "down" else reversed(out):
            near = g.nx.predecessors if sweep == "down" else g.nx.successors
            keys = {}
            for n in row:
                nb = [slot[m] for m in near(n)]
                keys[n] = (sum(nb) / len(nb) if nb else slot[n], rank[n])
            row.sort(key=keys.__getitem__)
            slot.update({n: i - (len(row) - 1) / 2 for i, n in enumerate(row)})
    return out


def node_kinds(graph) -> dict:
    """``{node: kind}``, kind one of :data:`COLORS`' keys."""
    g, grads, loss = _graph(graph)
    out = {}
    for n in g.order():
        op = g.op(n)
        out[n] = ("grad" if n in grads else "loss" if n == loss else
                  op if op in LEAVES else "op")
    return out


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _label(g, n: str) -> tuple:
    op = g.op(n)
    return n, f"{op} {_shape(g.shape(n))}" if op in LEAVES else op


# ---------------------------------------------------------------- DOT
def _esc(s: str) -> str:
    return str(s).replace("\\", "\\\\").replace('"', '\\"')


def _q(s: str) -> str:
    return f'"{_esc(s)}"'


def to_dot(graph, name: str = "symdl") -> str:
    """Graphviz DOT text: one box per node (name, op, leaf shapes), edges in argument order."""
    g, _, _ = _graph(graph)
    kinds = node_kinds(graph)
    lines = [f"digraph {_q(name)} {{", "  rankdir=TB;",
             '  node [fontname="DejaVu Sans", fontsize=10];']
    for n in g.order():
        top, sub = _label(g, n)
        shape = "box" if kinds[n] in LEAVES else "ellipse"
        label = f'"{_esc(top)}\\n{_esc(sub)}"'  # DOT's \n: a line break in the label
        lines.append(f"  {_q(n)} [label={label}, shape={shape}, "
                     f"style=filled, fillcolor={_q(COLORS[kinds[n]])}];")
    for n in g.order():
        seen = []
        for a in g.args(n):
            if a not in seen:
                seen.append(a)
                lines.append(f"  {_q(a)} -> {_q(n)};")
    return "\n".join(lines + ["}"]) + "\n"


# ---------------------------------------------------------------- matplotlib
def figure(graph, ax=None):
    """The layered drawing of a graph (or a gradient graph, its gradient nodes in green).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import FancyArrowPatch
    g, _, _ = _graph(graph)
    rows = layers(graph)
    kinds = node_kinds(graph)
    width = max((len(r) for r in rows), default=1)  # an empty graph: an empty picture
    if ax is None:
        fig, (ax,) = new_figure((max(3.0, 1.5 * width), max(2.0, 0.75 * len(rows) + 0.4)))
    else:
        fig = ax.figure
    pos = {}
    for y, row in enumerate(rows):
        for i, n in enumerate(row):
            pos[n] = (i - (len(row) - 1) / 2, -y)
    for n in g.order():
        for a in dict.fromkeys(g.args(n)):
            ax.add_patch(FancyArrowPatch(pos[a], pos[n], arrowstyle="-|>", mutation_scale=9,
                                         shrinkA=11, shrinkB=11, color="0.45", lw=0.8, zorder=1))
    for n, (x, y) in pos.items():
        top, sub = _label(g, n)
        style = "square,pad=0.3" if kinds[n] in LEAVES else "round,pad=0.3"
        ax.text(x, y, f"{top}\n{sub}", ha="center", va="center", fontsize=7, zorder=2,
                parse_math=False, bbox={"boxstyle": style, "fc": COLORS[kinds[n]], "ec": "0.4",
                                        "lw": 0.6})
    ax.set_xlim(-width / 2 - 0.1, width / 2 + 0.1)
    ax.set_ylim(-max(len(rows), 1) + 0.5, 0.5)
    ax.set_axis_off()
    return fig


def _dot(text: str, fmt: str) -> bytes | None:
    exe = shutil.which("dot")
    if exe is None:
        return None
    done = subprocess.run([exe, f"-T{fmt}"], input=text.encode(), capture_output=True,
                          timeout=60, check=False)
    return done.stdout if done.returncode == 0 else None


def _engine(engine: str) -> str:
    if engine not in ("auto", "dot", "matplotlib"):
        raise UsageError(f"unknown drawing engine {engine!r} (auto, dot or matplotlib)")
    if engine == "dot" and shutil.which("dot") is None:
        raise UsageError("Graphviz 'dot' is not installed (apt install graphviz), "
                         "or draw with engine='matplotlib'")
    return engine


def svg(graph, engine: str = "auto") -> str:
    """The graph as SVG text: Graphviz ``dot`` when installed (``auto``), else matplotlib."""
    if _engine(engine) != "matplotlib":
        out = _dot(to_dot(graph), "svg")
        if out is not None:
            return out.decode("utf-8")
    return to_svg(figure(graph))


def png(graph, engine: str = "auto") -> bytes:
    """The graph as PNG bytes: Graphviz ``dot`` when installed (``auto``), else matplotlib."""
    if _engine(engine) != "matplotlib":
        out = _dot(to_dot(graph), "png")
        if out is not None:
            return out
    return to_png(figure(graph))
