"""The ``symdl`` command.

Results go to stdout, diagnostics to stderr.  Exit codes: 0 ok, 1 runtime
failure, 2 usage or data error, 3 numerical failure, 4 I/O or checkpoint
error.  No traceback unless ``--debug``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from . import __version__
from .errors import SymdlError, UsageError

EPILOG = "exit codes: 0 ok, 1 runtime failure, 2 usage/data error, 3 numerical failure, 4 I/O/checkpoint"


def _csv_ints(text: str):
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _batch_size(text: str):
    if text == "full":
        return "full"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'full', got {text!r}") from None


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Model and data flags shared by ``train``, ``graph`` and ``explain``."""
    from .data import DATASETS
    from .nn.models import MODELS
    p.add_argument("--model", choices=MODELS, default="mlp", help="model (default: mlp)")
    p.add_argument("--hidden", type=_csv_ints, default=(64, 64), metavar="N,N",
                   help="hidden layer sizes of the MLP (default: 64,64)")
    p.add_argument("--activation", default="relu", help="hidden activation, any op of the registry (default: relu)")
    p.add_argument("--dataset", choices=DATASETS, default="digits", help="data set (default: digits, embedded)")
    p.add_argument("--data-dir", help="folder with MNIST IDX files (for --dataset mnist)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``symdl: error: ...`` and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="symdl", description="Deep learning whose calculus is derived by SymPy: "
        "print the derivation, train the network.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"symdl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a model (default: an MLP on the embedded digits)",
                       description="Train a network on the CPU with SymPy-derived kernels. "
                       "Example: symdl train --dataset xor --epochs 50", epilog=EPILOG)
    add_model_args(t)
    t.add_argument("--epochs", type=int, default=30, help="passes over the training set (default: 30)")
    t.add_argument("--batch-size", type=_batch_size, default=32,
                   help="mini-batch size, or 'full' for full-batch gradient descent (default: 32)")
    t.add_argument("--optimizer", default="sgd", help="sgd (momentum 0.9), adam, adamw, rmsprop, "
                   "adagrad, adadelta, adamax, nadam (default: sgd)")
    t.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 0.05 for sgd, the torch.optim default otherwise)")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    t.add_argument("--schedule", metavar="NAME[:k=v,...]",
                   help="learning-rate schedule per epoch, e.g. cosine:T_max=30 or step:step_size=10,gamma=0.5")
    t.add_argument("--weight-decay", type=float, default=None,
                   help="weight decay (coupled in sgd/adam, decoupled in adamw)")
    t.add_argument("--l1", type=float, default=0.0, help="L1 penalty λ·Σ|W| on weight matrices")
    t.add_argument("--l2", type=float, default=0.0, help="L2 penalty (λ/2)·Σ W² on weight matrices")
    t.add_argument("--dropout", type=float, default=0.0, help="inverted dropout after each hidden layer")
    t.add_argument("--label-smoothing", type=float, default=0.0, help="ε of label smoothing")
    t.add_argument("--clip-norm", type=float, default=None, help="clip the gradient's global norm")
    t.add_argument("--clip-value", type=float, default=None, help="clip each gradient entry")
    t.add_argument("--input-noise", type=float, default=0.0, help="σ of Gaussian noise added to inputs")
    t.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without validation improvement; keep the best weights")
    t.add_argument("--divergence", type=float, default=1e4, metavar="FACTOR",
                   help="a batch loss over FACTOR times the first one counts as divergence (0: off)")
    t.add_argument("--val-fraction", type=float, default=0.1,
                   help="fraction of the training set held out for validation (default: 0.1)")
    t.add_argument("--drop-last", action="store_true", help="drop the last, partial batch of each epoch")
    t.add_argument("--checkpoint", metavar="DIR", help="write checkpoints under DIR (atomic; the "
                   "previous good one is kept)")
    t.add_argument("--every", type=int, default=1, metavar="N", help="checkpoint every N epochs (default: 1)")
    t.add_argument("--keep-last", type=int, default=2, metavar="N", help="checkpoints kept (default: 2)")
    t.add_argument("--resume", default="auto", metavar="{auto,never,PATH}",
                   help="auto: continue from the newest good checkpoint in --checkpoint (default); "
                   "never: start afresh; PATH: a checkpoint or a folder of them")
    t.add_argument("--on-nonfinite", choices=("raise", "skip", "warn"), default="raise",
                   help="a NaN/Inf loss or gradient: stop with exit 3 (raise, default), or skip the "
                   "batch (skip, warn), stopping after --max-skips consecutive bad batches")
    t.add_argument("--max-skips", type=int, default=10, metavar="N")
    t.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    t.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    t.set_defaults(run=cmd_train)

    g = sub.add_parser("graph", help="print the model graph and its gradient graph")
    add_model_args(g)
    g.add_argument("--no-grad", action="store_true", help="forward graph only")
    g.set_defaults(run=cmd_graph)

    e = sub.add_parser("explain", help="the chain rule per parameter along the model graph",
                       description="Print, for every parameter, the chain rule along the graph with "
                       "each local gradient and shape; --numeric adds a worked backprop on one example "
                       "(values from the NumPy backend). Example: symdl explain --dataset xor "
                       "--hidden 2 --activation sigmoid --numeric", epilog=EPILOG)
    add_model_args(e)
    e.add_argument("--param", help="only this parameter (e.g. 0.W)")
    e.add_argument("--layer", help="instead: one layer's rules in matrix notation (dense, softmax, "
                   "softmax_cross_entropy, l1, l2, or an activation), verified on explicit instances")
    e.add_argument("--numeric", action="store_true", help="worked backprop on one training example")
    e.add_argument("--example", type=int, default=0, help="which training example (default: 0)")
    e.add_argument("--format", choices=("text", "latex", "markdown", "json"), default="text")
    e.set_defaults(run=cmd_explain)

    k = sub.add_parser("kernels", help="write or check the generated kernel sources",
                       description="Regenerate kernels/ from the declarations; --check fails on any difference.")
    k.add_argument("--out", default="kernels", help="folder (default: kernels)")
    k.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    k.set_defaults(run=cmd_kernels)

    i = sub.add_parser("info", help="versions, BLAS, GPU and TeX availability")
    i.add_argument("--json", action="store_true")
    i.set_defaults(run=cmd_info)

    for extra in _extra_commands():
        extra(sub)
    return parser


def _extra_commands():
    """Subcommands contributed by other modules (``add_parser(subparsers)``)."""
    from .commands.derive import add_parser as derive_parser
    out = [derive_parser]
    try:
        from .commands.gallery import add_parser as gallery_parser
        out.append(gallery_parser)
    except ImportError:  # pragma: no cover - the gallery command is being written
        pass
    return out


# ------------------------------------------------------------------ train
def _load_data(args):
    import numpy as np
    from .data import load_dataset, train_val_split
    train = load_dataset(args.dataset, seed=args.seed, data_dir=args.data_dir, split="train")
    test = load_dataset(args.dataset, seed=args.seed, data_dir=args.data_dir, split="test")
    if train.X.dtype != np.dtype(args.dtype):
        from dataclasses import replace
        train = replace(train, X=train.X.astype(args.dtype))
        test = replace(test, X=test.X.astype(args.dtype))
    fraction = getattr(args, "val_fraction", 0.0)
    if not 0 <= fraction < 1:
        raise UsageError(f"--val-fraction must be in [0, 1), got {fraction}")
    ss = np.random.SeedSequence(args.seed)
    split_ss, init_ss, train_ss = ss.spawn(3)
    train, val = train_val_split(train, fraction, np.random.default_rng(split_ss))
    return train, val, test, init_ss, train_ss


def _make(args, train, init_ss):
    import numpy as np
    from .data import validate
    from .nn import make_model
    validate(train)
    n_out = train.n_classes if train.task == "classification" else train.y.reshape(len(train), -1).shape[1]
    return make_model(args.model, train.X.shape[1], n_out, args.hidden, args.activation,
                      np.random.default_rng(init_ss), args.dtype, train.task,
                      getattr(args, "dropout", 0.0), getattr(args, "label_smoothing", 0.0))


def _optimizer(args):
    from .optim import OPTIMIZERS
    name = args.optimizer.lower()
    if name not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {args.optimizer!r} (choose from: {', '.join(sorted(OPTIMIZERS))})")
    cls = OPTIMIZERS[name]
    kw = {}
    if args.lr is not None:
        kw["lr"] = args.lr
    if name == "sgd":
        kw.setdefault("lr", 0.05)
        kw["momentum"] = args.momentum
    if args.weight_decay is not None:
        kw["weight_decay"] = args.weight_decay
    return lambda params: cls(params, **kw)


def _default_lr(args) -> float:
    import inspect
    from .optim import OPTIMIZERS
    if args.optimizer.lower() == "sgd":
        return 0.05
    cls = OPTIMIZERS.get(args.optimizer.lower())
    return float(inspect.signature(cls).parameters["lr"].default) if cls else 0.05


def _device(args):
    if args.device == "cpu":
        return
    msg = ("the CuPy backend is not part of this version of symdl; "
           "install symdl[cuda12] or symdl[cuda13] once it lands, or use --device cpu")
    if args.device == "cuda":
        raise UsageError(msg)
    print("symdl: --device auto: no GPU backend, using the CPU", file=sys.stderr)


def cmd_train(args) -> int:
    from .train import Trainer
    _device(args)
    if args.epochs < 0 or (args.batch_size != "full" and args.batch_size < 1):
        raise UsageError("--epochs must be >= 0 and --batch-size >= 1")
    schedule = None
    if args.schedule:
        from .optim.schedules import make_schedule
        schedule = make_schedule(args.schedule, args.lr if args.lr is not None else _default_lr(args))
    t0 = time.perf_counter()
    train, val, test, init_ss, train_ss = _load_data(args)
    spec = _make(args, train, init_ss)
    trainer = Trainer(spec.module, _optimizer(args), spec.loss, spec.loss_params,
                      args.batch_size, args.epochs, train_ss, args.progress, args.dtype,
                      checkpoint=args.checkpoint, every=args.every, keep_last=args.keep_last,
                      resume=args.resume, on_nonfinite=args.on_nonfinite, max_skips=args.max_skips,
                      divergence=args.divergence, drop_last=args.drop_last, schedule=schedule,
                      l1=args.l1, l2=args.l2, clip_norm=args.clip_norm, clip_value=args.clip_value,
                      input_noise=args.input_noise, early_stopping=args.early_stopping)
    if not args.json:
        arch = "-".join(str(w) for w in [train.X.shape[1], *(args.hidden if args.model == "mlp" else ()),
                                          spec.module.layers[-1].n_out])
        act = f" ({args.activation})" if args.model == "mlp" else ""
        print(f"{args.model} {arch}{act}, {spec.module.num_parameters():,} parameters; "
              f"{args.dataset}: {len(train)} train, {0 if val is None else len(val)} validation, "
              f"{len(test)} test; {trainer.optimizer!r}")
    hist = trainer.fit(train, val)
    test_loss, test_acc = trainer.evaluate(test)
    seconds = time.perf_counter() - t0
    if args.json:
        print(json.dumps({
            "model": args.model, "dataset": args.dataset, "epochs": hist.epochs,
            "parameters": spec.module.num_parameters(), "seed": args.seed,
            "train_loss": hist.train_loss, "train_accuracy": hist.train_accuracy,
            "val_loss": hist.val_loss, "val_accuracy": hist.val_accuracy,
            "test_loss": test_loss, "test_accuracy": test_acc, "seconds": seconds}, indent=1))
        return 0
    for e in range(hist.epochs):
        if e == hist.epochs - 1 or (e + 1) % max(1, hist.epochs // 6) == 0:
            line = f"epoch {e + 1:>3}  loss {hist.train_loss[e]:.4f}"
            if hist.train_accuracy[e] is not None:
                line += f"  accuracy {hist.train_accuracy[e]:.2%}"
            if hist.val_accuracy[e] is not None:
                line += f"  validation {hist.val_accuracy[e]:.2%}"
            print(line)
    result = f"test accuracy {test_acc:.2%}" if test_acc is not None else "test"
    print(f"{result} (loss {test_loss:.4f}) in {seconds:.1f} s")
    return 0


# ------------------------------------------------------------ graph, info
def _model_graph(args):
    """``(train set, model spec, forward graph, loss node)`` from the model flags."""
    from .train import build_training_graph
    train, _, _, init_ss, _ = _load_data(args)
    spec = _make(args, train, init_ss)
    g, _, L = build_training_graph(spec.module, train.X.shape[1], spec.loss, spec.loss_params,
                                   args.dtype)
    return train, spec, g, L


def cmd_graph(args) -> int:
    from .derive import grad
    from .printing.listing import graph_listing
    _, _, g, L = _model_graph(args)
    if args.no_grad:
        print(graph_listing(g, [L]), end="")
        return 0
    gg = grad(g, L)
    print(graph_listing(gg.graph, [L, *gg.grads.values()]), end="")
    return 0


def cmd_explain(args) -> int:
    import numpy as np
    from .backends.trace import numeric_backprop
    from .derive.chains import derive_graph
    from .printing import chains as pc
    if args.layer:
        from .derive.layers import layer_derivation
        from .printing.layers import layer_latex, layer_text
        d = layer_derivation(args.layer)
        print((layer_latex if args.format == "latex" else layer_text)(d), end="")
        return 0
    train, spec, g, L = _model_graph(args)
    params = g.params()
    if args.param is not None:
        if args.param not in params:
            raise UsageError(f"no parameter {args.param!r} (choose from: {', '.join(params)})")
        params = [args.param]
    gd = derive_graph(g, L, params)
    render = {"text": pc.derivation_text, "latex": pc.derivation_latex,
              "markdown": pc.derivation_markdown, "json": pc.derivation_json}[args.format]
    print(render(gd), end="")
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
        print(table(rows), end="")
    return 0


def cmd_kernels(args) -> int:
    from pathlib import Path
    from .codegen.listing import check_listing, op_listing, write_listing
    from .optim.listing import optim_listing
    listing = {**op_listing(), **optim_listing()}
    root = Path(args.out)
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
    parser = build_parser()
    args = parser.parse_args(argv)
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
    except KeyboardInterrupt:
        print("symdl: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        if args.debug:
            raise
        print("symdl: error: out of memory", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
