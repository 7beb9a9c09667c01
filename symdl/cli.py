"""The ``symdl`` command.

Results go to stdout, diagnostics to stderr.  Exit codes: 0 ok, 1 runtime
failure (also a missing GPU backend), 2 usage or data error, 3 numerical
failure, 4 I/O or checkpoint error, 130 Ctrl-C, 143 SIGTERM (both after an
"interrupted" checkpoint).  No traceback unless ``--debug``.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import threading

from . import __version__
from .commands.train import EPILOG, add_model_args, load_data, make_spec
from .commands.pictures import add_graph_format_args
from .commands.train import add_parser as train_parser
from .errors import SymdlError, UsageError

__all__ = ["build_parser", "main", "run"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``symdl: error: ...`` and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: Every subcommand with its one-line help, in the order ``symdl --help`` lists them.  The
#: top-level help is built from this table alone, importing no command (SymPy, numba and
#: the data load only for the command that runs); tests/test_reflexes.py checks it against
#: the full parser, so a new subcommand adds its line here.
COMMANDS = {
    "train": "train a model (default: an MLP on the embedded digits)",
    "graph": "print or draw the model graph and its gradient graph",
    "explain": "the chain rule per parameter along the model graph",
    "kernels": "write or check the generated kernel sources",
    "info": "versions, BLAS, GPU and TeX availability",
    "derive": "differentiate an expression step by step",
    "summary": "per-layer output shape, parameters and receptive field",
    "predict": "predict with a saved model (symdl train --save)",
    "evaluate": "loss and accuracy of a saved model on a dataset",
    "gallery": "build the machine-derived notes (LaTeX, and PDF with --pdf)",
}


def build_parser(light: bool = False) -> argparse.ArgumentParser:
    """The ``symdl`` parser; ``light``: subcommands listed from :data:`COMMANDS` without their
    options (enough for ``symdl --help`` and ``--version``, and fast: no SymPy import)."""
    parser = _Parser(
        prog="symdl", description="Deep learning whose calculus is derived by SymPy: "
        "print the derivation, train the network.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"symdl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    if light:
        for name, text in COMMANDS.items():
            sub.add_parser(name, help=text)
        return parser

    train_parser(sub)

    g = sub.add_parser("graph", help="print or draw the model graph and its gradient graph")
    add_model_args(g)
    g.add_argument("--no-grad", action="store_true", help="forward graph only")
    add_graph_format_args(g)  # --format text|dot|svg|png, --out FILE
    g.set_defaults(run=cmd_graph)

    e = sub.add_parser("explain", help="the chain rule per parameter along the model graph",
                       description="Print, for every parameter, the chain rule along the graph with "
                       "each local gradient and shape; --numeric adds a worked backprop on one example "
                       "(values from the NumPy backend). Example: symdl explain --dataset xor "
                       "--hidden 2 --activation sigmoid --numeric", epilog=EPILOG)
    add_model_args(e)
    e.add_argument("--param", help="only this parameter (e.g. 0.W)")
    e.add_argument("--layer", help="instead: one layer's rules in matrix notation (dense, softmax, "
                   "softmax_cross_entropy, l1, l2, a loss, conv2d, maxpool, avgpool, batchnorm, layernorm, "
                   "instancenorm, rnn, lstm, gru, attention, mha, transformer, or an activation), "
                   "verified on explicit instances")
    e.add_argument("--numeric", action="store_true", help="worked backprop on one training example")
    e.add_argument("--example", type=int, default=0, help="which training example (default: 0)")
    e.add_argument("--format", choices=("text", "latex", "markdown", "json"), default="text",
                   help="output format; json prints one document (default: text)")
    e.set_defaults(run=cmd_explain)

    k = sub.add_parser("kernels", help="write or check the generated kernel sources",
                       description="Regenerate kernels/ from the declarations; --check fails on any difference.")
    k.add_argument("--out", default="kernels", help="folder (default: kernels)")
    k.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    k.set_defaults(run=cmd_kernels)

    i = sub.add_parser("info", help="versions, BLAS, GPU and TeX availability")
    i.add_argument("--json", action="store_true", help="print one JSON document")
    i.set_defaults(run=cmd_info)

    for extra in _extra_commands():
        extra(sub)
    return parser


def _extra_commands():
    """Subcommands contributed by other modules (``add_parser(subparsers)``)."""
    from .commands.derive import add_parser as derive_parser
    from .commands.summary import add_parser as summary_parser
    from .commands.predict import add_parser as predict_parser
    out = [derive_parser, summary_parser, predict_parser]
    try:
        from .commands.gallery import add_parser as gallery_parser
        out.append(gallery_parser)
    except ImportError:  # pragma: no cover - the gallery command is being written
        pass
    return out


# ------------------------------------------------------------ graph, info
def _model_graph(args):
    """``(train set, model spec, forward graph, loss node)`` from the model flags."""
    from .train import build_training_graph
    train, _, _, init_ss, _ = load_data(args)
    spec = make_spec(args, train, init_ss)
    g, _, L = build_training_graph(spec.module, train.X.shape[1], spec.loss, spec.loss_params,
                                   args.dtype)
    return train, spec, g, L


def cmd_graph(args) -> int:
    from .commands.pictures import write_graph
    from .derive import grad
    _, _, g, L = _model_graph(args)
    if args.no_grad:
        return write_graph(args, g, g, [L])
    gg = grad(g, L)
    return write_graph(args, gg, gg.graph, [L, *gg.grads.values()])


def cmd_explain(args) -> int:
    import numpy as np
    from .backends.trace import numeric_backprop
    from .derive.chains import derive_graph
    from .printing import chains as pc
    if args.layer:
        from dataclasses import asdict
        from .derive.layers import layer_derivation
        from .printing.layers import layer_latex, layer_text
        from .commands.explain_seq import SEQ_LAYERS, seq_layer_derivation
        try:
            d = (seq_layer_derivation if args.layer in SEQ_LAYERS else layer_derivation)(args.layer)
        except UsageError as exc:   # the lower table cannot know the sequence layers
            raise UsageError(f"{exc}; or a sequence layer: {', '.join(SEQ_LAYERS)}") from None
        if args.format == "json":
            print(json.dumps(asdict(d), indent=1, ensure_ascii=False))
            return 0
        print((layer_latex if args.format == "latex" else layer_text)(d), end="")
        return 0
    from .commands.explain_seq import SEQ_EXPLAIN_MODELS, explain_model
    if args.model in SEQ_EXPLAIN_MODELS:   # the cell or block, and a two-step worked example
        return explain_model(args)
    train, spec, g, L = _model_graph(args)
    params = g.params()
    if args.param is not None:
        if args.param not in params:
            raise UsageError(f"no parameter {args.param!r} (choose from: {', '.join(params)})")
        params = [args.param]
    gd = derive_graph(g, L, params)
    render = {"text": pc.derivation_text, "latex": pc.derivation_latex,
              "markdown": pc.derivation_markdown, "json": pc.derivation_json}[args.format]
    if args.format == "json":  # one document: the chains, and the worked backprop when asked
        doc = json.loads(render(gd, pc.graph_names(g)))
        if args.numeric:
            doc["backprop"] = json.loads(_numeric_json(args, train, spec, g, L))
        print(json.dumps(doc, indent=1, ensure_ascii=False))
        return 0
    print(render(gd, pc.graph_names(g)), end="")
    if args.numeric and args.model == "cnn":   # a digits CNN's arrays are too big to read
        from .commands.explain_cnn import tiny_conv_pool
        print("", tiny_conv_pool(args.format), sep="\n" if args.format == "text" else "", end="")
        return 0
    if args.numeric:
        if not 0 <= args.example < len(train):
            raise UsageError(f"--example must be in [0, {len(train)}), got {args.example}")
        k = args.example
        y = train.y[k:k + 1] if train.task == "classification" else train.y[k:k + 1].reshape(1, -1)
        feeds = {"x": train.X[k:k + 1], "y": y}
        rows = numeric_backprop(g, L, feeds, {p.name: p.data for p in spec.module.parameters()})
        table = {"json": pc.backprop_json, "latex": pc.backprop_latex}.get(args.format, pc.backprop_text)
        if args.format in ("text", "markdown"):
            print(f"\nworked backprop on training example {k} (label {np.asarray(y).ravel().tolist()}):")
        print(table(rows, pc.graph_names(g)), end="")
    return 0


def _numeric_json(args, train, spec, g, L) -> str:
    """The worked backprop of ``explain --numeric`` as a JSON list (rows of node values)."""
    from .backends.trace import numeric_backprop
    from .printing import chains as pc
    if args.model == "cnn":
        from .commands.explain_cnn import tiny_conv_pool
        return tiny_conv_pool("json")
    if not 0 <= args.example < len(train):
        raise UsageError(f"--example must be in [0, {len(train)}), got {args.example}")
    k = args.example
    y = train.y[k:k + 1] if train.task == "classification" else train.y[k:k + 1].reshape(1, -1)
    rows = numeric_backprop(g, L, {"x": train.X[k:k + 1], "y": y},
                            {p.name: p.data for p in spec.module.parameters()})
    return pc.backprop_json(rows)


def cmd_kernels(args) -> int:
    from pathlib import Path
    from .backends.listing import backend_listing
    from .codegen.listing import check_listing, op_listing, write_listing
    from .optim.listing import optim_listing
    root = Path(args.out)
    if args.check and not root.is_dir():  # e.g. an installed symdl, outside a checkout
        raise UsageError(f"no {args.out}/ folder here to check (kernels/ lives in symdl's source "
                         "checkout: run there, or pass --out DIR)")
    listing = {**op_listing(), **optim_listing(), **backend_listing()}
    if args.check:
        bad = check_listing(listing, root)
        if bad:
            print(f"symdl: {len(bad)} kernel file(s) differ from the generator: {', '.join(bad[:5])}"
                  f"{' ...' if len(bad) > 5 else ''} (run: symdl kernels --out {args.out})", file=sys.stderr)
            return 1
        print(f"{len(listing)} kernel files match the generator")
        return 0
    written = write_listing(listing, root)
    print(f"wrote {len(written)} kernel files under {root}")
    return 0


def cmd_info(args) -> int:
    from .info import collect
    info = collect()
    if args.json:
        print(json.dumps(info, indent=1, sort_keys=True))
    else:
        for k, v in info.items():
            print(f"{k:<12} {v}")
    return 0


# ------------------------------------------------------------------ main
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # no command named (symdl, symdl --help, symdl --version): the light parser will do
    parser = build_parser(light=all(a.startswith("-") for a in argv))
    args = parser.parse_args(argv)
    args.argv = argv  # which flags were explicit
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except SymdlError as exc:
        if args.debug:
            raise
        extra = getattr(exc, "cli_detail", None)
        print(f"symdl: error: {exc}", file=sys.stderr)
        if extra:
            print(extra, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C (130) or SIGTERM (143), after a checkpoint
        code = getattr(exc, "exit_code", 130)
        print(f"symdl: {'terminated (SIGTERM)' if code == 143 else 'interrupted'}", file=sys.stderr)
        return code
    except MemoryError:
        if args.debug:
            raise
        print("symdl: error: out of memory", file=sys.stderr)
        return 1


def run(argv=None) -> None:
    """The console entry (``symdl``, ``python -m symdl``): :func:`main`, then a quick exit.

    Tearing the interpreter down frees SymPy's caches and numba's LLVM objects one by one:
    about 0.4 s of a 1.9 s ``symdl train --epochs 0``, none of it work a finished command
    needs.  So the exit handlers run (``MPI_Finalize``, ``weakref.finalize`` clean-ups, tqdm),
    both streams are flushed, and the process ends with :func:`os._exit`.  Where another
    (non-daemon) thread is still alive the usual exit waits for it, as Python would; under MPI too, since
    ``mpiexec`` may drop a rank's last lines of output when the rank ends that fast.
    """
    code = main(argv)
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    if others or "mpi4py.MPI" in sys.modules:
        sys.exit(code)
    atexit._run_exitfuncs()  # what the interpreter's own exit runs first
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (symdl ... | head) or a closed stream
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
