"""Pictures from the command line: ``graph --format``, ``derive --plot``, ``train --plot``.

Each command calls one ``add_*_args(parser)`` here and one function after its own work, so
the drawing stays out of the commands.  A figure's file type comes from its suffix (``.svg``,
``.png``, ``.pdf``), checked when the command line is read, before any training.  Nothing
here imports matplotlib or SymPy until a picture is drawn.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import CheckpointError, UsageError

__all__ = ["GRAPH_FORMATS", "FIGURE_SUFFIXES", "add_graph_format_args", "write_graph",
           "add_derive_plot_args", "save_derivative_plot", "save_schedule_plot",
           "add_train_plot_args", "save_history_plot", "figure_path"]

GRAPH_FORMATS = ("text", "dot", "svg", "png")
FIGURE_SUFFIXES = (".svg", ".png", ".pdf")


def figure_path(text: str) -> str:
    """argparse type: a file name ending in .svg, .png or .pdf."""
    if Path(text).suffix.lower() not in FIGURE_SUFFIXES:
        raise argparse.ArgumentTypeError(f"a figure file ends in {', '.join(FIGURE_SUFFIXES)}: "
                                         f"{text!r}")
    return text


def _write(path, data) -> None:
    try:
        Path(path).write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from None


def _save(fig, path) -> None:
    from ..plot import save
    try:
        save(fig, path)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------- graph
def add_graph_format_args(p: argparse.ArgumentParser) -> None:
    """``--format text|dot|svg|png`` and ``--out FILE`` for ``symdl graph``."""
    p.add_argument("--format", choices=GRAPH_FORMATS, default="text",
                   help="text listing (default), Graphviz DOT, or a drawing as SVG or PNG "
                   "(Graphviz dot when installed, else matplotlib)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout (PNG needs it "
                   "when stdout is a terminal)")


def write_graph(args, drawable, graph, outputs) -> int:
    """Print or write ``graph`` in ``args.format``; ``drawable`` is what is drawn (a gradient
    graph draws its gradient nodes in their own colour)."""
    fmt, out = getattr(args, "format", "text"), getattr(args, "out", None)
    if fmt == "text":
        from ..printing.listing import graph_listing
        data = graph_listing(graph, outputs)
    else:
        from .. import draw
        data = {"dot": draw.to_dot, "svg": draw.svg, "png": draw.png}[fmt](drawable)
    if out:
        _write(out, data)
        print(f"wrote {out}", file=sys.stderr)
    elif isinstance(data, bytes):
        if sys.stdout.isatty():
            raise UsageError("--format png writes binary data: give --out FILE.png or "
                             "redirect stdout")
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
    else:
        sys.stdout.write(data)
    return 0


# ---------------------------------------------------------------- derive
def add_derive_plot_args(p: argparse.ArgumentParser) -> None:
    """``--plot FILE`` and ``--plot-domain LO,HI`` for ``symdl derive``."""
    p.add_argument("--plot", metavar="FILE", type=figure_path,
                   help="also draw f and f' (or a --schedule's learning rate) to FILE "
                   "(.svg, .png or .pdf); points where f is undefined are left out")
    p.add_argument("--plot-domain", metavar="LO,HI", type=_domain, default=None,
                   help="x range of --plot (default: -5,5, or the part of it where f is "
                   "defined: 0,5 for log; write --plot-domain=-1,1 when LO is negative) or, for "
                   "a schedule, 0,STEPS (default: 0,100)")


def _domain(text: str) -> tuple:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), not {text!r}") from None
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"expected LO < HI, not {text!r}")
    return lo, hi


def save_derivative_plot(args, expr, derivation) -> None:
    """``derive --plot``: f and its derived f' to ``args.plot`` (nothing without ``--plot``)."""
    if not getattr(args, "plot", None):
        return
    from ..plot import activation
    _save(activation(expr, getattr(args, "plot_domain", None), derivation=derivation), args.plot)
    print(f"wrote {args.plot}", file=sys.stderr)


def save_schedule_plot(args) -> None:
    """``derive --schedule S --plot FILE``: the learning rate over ``--plot-domain`` steps."""
    if not getattr(args, "plot", None):
        return
    if not getattr(args, "schedule", None):
        raise UsageError("--plot draws an expression or a --schedule, not an optimizer's rule")
    from ..plot import schedule
    lo, hi = getattr(args, "plot_domain", None) or (0, 100)
    if lo != 0:
        raise UsageError("a schedule's --plot-domain starts at step 0 (0,STEPS)")
    _save(schedule(args.schedule, int(hi)), args.plot)
    print(f"wrote {args.plot}", file=sys.stderr)


# ---------------------------------------------------------------- train
def add_train_plot_args(p: argparse.ArgumentParser) -> None:
    """``--plot FILE`` for ``symdl train``."""
    p.add_argument("--plot", metavar="FILE", type=figure_path,
                   help="after training, draw the loss and accuracy curves to FILE "
                   "(.svg, .png or .pdf)")


def save_history_plot(args, history) -> None:
    """``train --plot``: the history's curves to ``args.plot`` (rank 0 only under MPI)."""
    if not getattr(args, "plot", None):
        return
    from .distributed import rank_comm
    if getattr(rank_comm(args), "rank", 0) != 0:
        return
    from ..plot import history as draw_history
    _save(draw_history(history), args.plot)
    if not getattr(args, "json", False):
        print(f"wrote {args.plot}", file=sys.stderr)
