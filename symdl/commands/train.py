"""The ``symdl train`` subcommand, and the model and data flags it shares.

The main CLI calls :func:`add_parser` on its subparsers; ``graph`` and
``explain`` reuse :func:`add_model_args`, :func:`load_data` and
:func:`make_spec`.  On resume, a flag given on the command line must agree
with the checkpoint (else exit 2, listing the differences); a flag left at its
default takes the checkpoint's value, and the run says so
(:mod:`symdl.train.state`).

An option that does not apply to the chosen model, data set, optimizer or mode is
refused (exit 2, naming it): :data:`APPLIES` says which options apply to what.
Each data set may bring its own defaults (:data:`DATASET_DEFAULTS`), used for the
options not given explicitly.  Nothing here imports SymPy, numba or the data until a
command runs, so building the parser (``symdl --help``) stays fast.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

from ..errors import BackendError, UsageError
from .options import (APPLIES, DATASET_DEFAULTS, DATASETS, MODELS, REGRESSION_SETS,
                      check_applicable)
from .distributed import add_distributed_args, rank_comm
from .pictures import add_train_plot_args, save_history_plot
from .predict import add_save_args, save_trained
from .user_ops import add_ops_args, load_user_ops
from .train_extras import add_augment_ensemble_args, augmented, run_ensemble
from .train_seq import add_seq_args, apply_defaults, load_seq_split, seq_options

__all__ = ["APPLIES", "DATASETS", "DATASET_DEFAULTS", "EPILOG", "MODELS", "REGRESSION_SETS",
           "add_model_args", "add_parser", "check_applicable", "cmd_train", "explicit_flags",
           "load_data", "make_spec"]

EPILOG = ("exit codes: 0 ok, 1 runtime failure (or a missing GPU backend), 2 usage/data error, "
          "3 numerical failure, 4 I/O/checkpoint, 130 Ctrl-C, 143 SIGTERM")


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


def _number(text: str) -> float:
    """An argparse type: a finite float (``nan`` and ``inf`` are refused here, with
    exit 2, rather than ending in a numerical failure later)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


#: Flags that must not be negative (checked by ``train``, exit 2).
NON_NEGATIVE = ("lr", "momentum", "weight_decay", "l1", "l2", "dropout", "label_smoothing",
                "clip_norm", "clip_value", "input_noise", "divergence", "val_fraction")


def _check_non_negative(args) -> None:
    for name in NON_NEGATIVE:
        v = getattr(args, name, None)
        if v is not None and v < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a non-negative number, got {v:g}")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Model and data flags shared by ``train``, ``graph`` and ``explain``."""
    p.add_argument("--model", choices=MODELS, default="mlp", help="model (default: mlp)")
    p.add_argument("--hidden", type=_csv_ints, default=(64, 64), metavar="N,N",
                   help="hidden layer sizes of the MLP (default: 64,64); the one width of "
                   "rnn/lstm/gru (64), transformer/vit (32)")
    p.add_argument("--activation", default="relu",
                   help="hidden activation: relu (default), tanh, sigmoid, gelu, ... any op declared "
                   "as an activation, yours included (--ops FILE.py); an unknown name lists them")
    add_ops_args(p)  # --ops FILE.py: the user's declarations, run before --activation is checked
    p.add_argument("--channels", type=_csv_ints, default=(16, 32), metavar="N,N",
                   help="cnn: output channels of each conv stage (default: 16,32)")
    p.add_argument("--kernel", type=int, default=3, help="cnn: conv kernel size, odd (default: 3)")
    p.add_argument("--pool", choices=("max", "avg", "l2"), default="max",
                   help="cnn: 2x2 pooling after each stage (default: max)")
    p.add_argument("--norm", choices=("none", "batch", "layer", "instance"), default="none",
                   help="cnn: normalization after each conv (default: none)")
    p.add_argument("--residual", action="store_true",
                   help="cnn: add a residual block y = F(x) + x to each stage")
    add_seq_args(p)  # --layers, --bidirectional, --heads, --patch, --seq-task, --seq-len
    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="data set (default: digits, embedded; sine brings its own defaults: "
                   + "; ".join(f"{k.replace('_', '-')} {_show(v)}"
                               for k, v in DATASET_DEFAULTS["sine"].items()) + ")")
    p.add_argument("--data-dir", help="folder with MNIST IDX files (for --dataset mnist)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="floating-point type of parameters, data and kernels (default: float32)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")


def _train_args(t: argparse.ArgumentParser) -> None:
    add_model_args(t)
    num = _number
    t.add_argument("--epochs", type=int, default=30, help="passes over the training set (default: 30)")
    t.add_argument("--batch-size", type=_batch_size, default=32,
                   help="mini-batch size, or 'full' for full-batch gradient descent (default: 32)")
    t.add_argument("--optimizer", default="sgd", help="sgd (momentum 0.9) or any optimizer of "
                   "symdl.optim.OPTIMIZERS, e.g. adam (an unknown name lists them; default: sgd)")
    t.add_argument("--lr", type=num, default=None,
                   help="learning rate (default: 0.05 for sgd, the torch.optim default otherwise)")
    t.add_argument("--momentum", type=num, default=0.9,
                   help="momentum of sgd (default: 0.9) or rmsprop (default: 0)")
    t.add_argument("--schedule", metavar="NAME[:k=v,...]",
                   help="learning-rate schedule, e.g. cosine:T_max=30 or step:step_size=10,gamma=0.5")
    t.add_argument("--schedule-unit", choices=("epoch", "batch"), default="epoch",
                   help="what the schedule's t counts: epochs (default) or batches (steps)")
    t.add_argument("--weight-decay", type=num, default=None,
                   help="weight decay (coupled in sgd/adam, decoupled in adamw)")
    t.add_argument("--l1", type=num, default=0.0, help="L1 penalty λ·Σ|W| on weight matrices")
    t.add_argument("--l2", type=num, default=0.0, help="L2 penalty (λ/2)·Σ W² on weight matrices")
    t.add_argument("--dropout", type=num, default=0.0, help="inverted dropout after each hidden layer")
    t.add_argument("--label-smoothing", type=num, default=0.0, help="ε of label smoothing")
    t.add_argument("--clip-norm", type=num, default=None, help="clip the gradient's global norm")
    t.add_argument("--clip-value", type=num, default=None, help="clip each gradient entry")
    t.add_argument("--input-noise", type=num, default=0.0, help="σ of Gaussian noise added to inputs")
    t.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without validation improvement; keep the best weights")
    t.add_argument("--divergence", type=num, default=1e4, metavar="FACTOR",
                   help="a batch loss over FACTOR times the first one counts as divergence (0: off)")
    t.add_argument("--val-fraction", type=num, default=0.1,
                   help="fraction of the training set held out for validation (default: 0.1)")
    t.add_argument("--drop-last", action="store_true", help="drop the last, partial batch of each epoch")
    t.add_argument("--checkpoint", metavar="DIR", help="write checkpoints under DIR (atomic; the "
                   "previous good one is kept; one writer per DIR)")
    t.add_argument("--every", type=int, default=1, metavar="N", help="checkpoint every N epochs (default: 1)")
    t.add_argument("--keep-last", type=int, default=2, metavar="N", help="checkpoints kept (default: 2)")
    t.add_argument("--resume", default="auto", metavar="{auto,never,PATH}",
                   help="auto: continue from the newest good checkpoint in --checkpoint (default; "
                   "refuses when every one is corrupt); never: start afresh; PATH: a checkpoint "
                   "or a folder of them")
    t.add_argument("--on-nonfinite", choices=("raise", "skip", "warn"), default="raise",
                   help="a NaN/Inf loss or gradient: stop with exit 3 (raise, default), or skip the "
                   "batch (skip, warn), stopping after --max-skips consecutive bad batches")
    t.add_argument("--max-skips", type=int, default=10, metavar="N",
                   help="with --on-nonfinite skip or warn: stop after N consecutive bad batches "
                   "(default: 10)")
    t.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                   help="cpu (default), cuda (CuPy; exit 1 without it) or auto (cuda if present)")
    t.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout: settings, symdl version, history, test")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    add_save_args(t)
    add_train_plot_args(t)  # --plot FILE: loss and accuracy curves
    add_augment_ensemble_args(t)


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``train`` on an argparse ``subparsers`` object; return its parser."""
    t = sub.add_parser("train", help="train a model (default: an MLP on the embedded digits)",
                       description="Train a network on the CPU with SymPy-derived kernels. "
                       "Example: symdl train --dataset xor --epochs 50", epilog=EPILOG)
    _train_args(t)
    t.set_defaults(run=cmd_train)
    add_distributed_args(t)  # --distributed, --ranks N (wraps cmd_train)
    return t


def explicit_flags(argv) -> set:
    """The ``train`` options given on the command line ``argv`` (as ``dest`` names)."""
    p = argparse.ArgumentParser(add_help=False)
    _train_args(p)
    for action in p._actions:
        action.default = argparse.SUPPRESS
    argv = list(argv)
    ns, _ = p.parse_known_args(argv[argv.index("train") + 1:] if "train" in argv else argv)
    return set(vars(ns))


# ------------------------------------------------------------------ data, model
def _show(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _prepare_args(args) -> None:
    """Once per command: refuse options that do not apply, then fill in the data set's own
    defaults for the options not given explicitly."""
    if getattr(args, "_prepared", False):
        return
    explicit = explicit_flags(getattr(args, "argv", None) or sys.argv[1:])
    check_applicable(args, explicit)
    for k, v in DATASET_DEFAULTS.get(getattr(args, "dataset", None), {}).items():
        if hasattr(args, k) and k not in explicit:
            setattr(args, k, v)
    apply_defaults(args, explicit)  # the model's and the --seq-task's own defaults
    args._prepared = True


def load_data(args):
    """``(train, val, test, init seed, training seed)`` from the data flags."""
    import numpy as np
    from ..data import load_dataset, train_val_split
    _prepare_args(args)
    load_user_ops(args)  # --ops files, then --activation checked
    if getattr(args, "seq_task", None):
        train, test = load_seq_split(args, "train"), load_seq_split(args, "test")
    else:
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


def make_spec(args, train, init_ss):
    """The model spec (module, loss) the model flags describe."""
    import numpy as np
    from ..data import validate
    from ..nn import make_model
    validate(train)
    n_out = train.n_classes if train.task == "classification" else train.y.reshape(len(train), -1).shape[1]
    return make_model(args.model, train.X.shape[1], n_out, args.hidden, args.activation,
                      np.random.default_rng(init_ss), args.dtype, train.task,
                      getattr(args, "dropout", 0.0), getattr(args, "label_smoothing", 0.0),
                      **_cnn_options(args), **seq_options(args))


def _cnn_options(args) -> dict:
    if getattr(args, "model", None) != "cnn":
        return {}
    return {k: getattr(args, k) for k in ("channels", "kernel", "pool", "norm", "residual")}


def _optimizer(args):
    from ..optim import OPTIMIZERS
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
    elif "momentum" in explicit_flags(getattr(args, "argv", None) or sys.argv[1:]):
        kw["momentum"] = args.momentum  # rmsprop's (APPLIES refused it for the others)
    if args.weight_decay is not None:
        kw["weight_decay"] = args.weight_decay
    return lambda params: cls(params, **kw)


def _default_lr(args) -> float:
    import inspect
    from ..optim import OPTIMIZERS
    if args.optimizer.lower() == "sgd":
        return 0.05
    cls = OPTIMIZERS.get(args.optimizer.lower())
    return float(inspect.signature(cls).parameters["lr"].default) if cls else 0.05


def _device(args):
    """The backend for ``--device``; a missing one is a runtime failure (exit 1),
    not a usage error; ``auto`` falls back to the CPU with a notice."""
    from ..backends import get_backend
    if args.device == "cpu":
        return get_backend("numpy")
    try:
        return get_backend("cuda")
    except BackendError as e:
        if args.device == "cuda":
            raise BackendError(f"--device cuda: {e}") from None
    print("symdl: --device auto: no GPU backend, using the CPU", file=sys.stderr)
    return get_backend("numpy")


# ------------------------------------------------------------------ train
def _settings(args, trainer) -> dict:
    """Every ``train`` option as the run used it (data set defaults filled in, the optimizer's
    hyperparameters as it started), for ``--json``."""
    skip = {"run", "argv", "command", "debug", "json", "progress", "_prepared"}
    plain = (str, int, float, bool, type(None))
    out = {k: list(v) if isinstance(v, (tuple, list)) else v if isinstance(v, plain) else str(v)
           for k, v in sorted(vars(args).items()) if k not in skip and not callable(v)}
    out["optimizer_hyper"] = {k: trainer.settings.get(k, v) for k, v in trainer.optimizer.hyper.items()}
    return out


def _version() -> str:
    from .. import __version__
    return __version__


def cmd_train(args) -> int:
    from ..train import Trainer
    from ..train.progress import EpochLines
    _prepare_args(args)
    backend = _device(args)
    _check_non_negative(args)
    if args.epochs < 0 or (args.batch_size != "full" and args.batch_size < 1):
        raise UsageError("--epochs must be >= 0 and --batch-size >= 1")
    schedule = None
    if args.schedule:
        from ..optim.schedules import make_schedule
        schedule = make_schedule(args.schedule, args.lr if args.lr is not None else _default_lr(args),
                                 args.schedule_unit)
    t0 = time.perf_counter()
    train, val, test, init_ss, train_ss = load_data(args)
    train = augmented(args, train)
    if getattr(args, "ensemble", 1) > 1:
        return run_ensemble(args, train, val, test, init_ss, make_spec, _optimizer)
    spec = make_spec(args, train, init_ss)
    explicit = explicit_flags(getattr(args, "argv", None) or sys.argv[1:])

    def banner(_state):  # after resuming: the optimizer as it will really run
        if args.json:
            return
        arch = "-".join(str(w) for w in [train.X.shape[1], *(args.hidden if args.model == "mlp" else ()),
                                          *(f"c{c}" for c in (args.channels if args.model == "cnn"
                                                              else ())),
                                          getattr(spec.module, "n_out", None)
                                          or spec.module.layers[-1].n_out])
        act = f" ({args.activation})" if args.model == "mlp" else ""
        print(f"{args.model} {arch}{act}, {spec.module.num_parameters():,} parameters; "
              f"{getattr(args, 'seq_task', None) or args.dataset}: {len(train)} train, {0 if val is None else len(val)} validation, "
              f"{len(test)} test; {trainer.optimizer!r}", flush=True)

    trainer = Trainer(spec.module, _optimizer(args), spec.loss, spec.loss_params,
                      args.batch_size, args.epochs, train_ss, args.progress, args.dtype,
                      checkpoint=args.checkpoint, every=args.every, keep_last=args.keep_last,
                      resume=args.resume, on_nonfinite=args.on_nonfinite, max_skips=args.max_skips,
                      divergence=args.divergence, drop_last=args.drop_last, schedule=schedule,
                      l1=args.l1, l2=args.l2, clip_norm=args.clip_norm, clip_value=args.clip_value,
                      input_noise=args.input_noise, early_stopping=args.early_stopping,
                      explicit=explicit, on_start=banner, backend=backend,
                      comm=rank_comm(args),  # --distributed: this MPI rank's communicator
                      # about six epoch lines, each printed (flushed) when its epoch ends
                      callbacks=[] if args.json else [EpochLines(max(1, args.epochs // 6))])
    hist = trainer.fit(train, val)
    test_loss, test_acc = trainer.evaluate(test)
    save_trained(args, spec, train, {"test_loss": test_loss, "test_accuracy": test_acc})
    save_history_plot(args, hist)
    seconds = time.perf_counter() - t0
    if args.json:
        print(json.dumps({
            "model": args.model, "dataset": args.dataset, "epochs": hist.epochs,
            "parameters": spec.module.num_parameters(), "seed": args.seed,
            "train_loss": hist.train_loss, "train_accuracy": hist.train_accuracy,
            "val_loss": hist.val_loss, "val_accuracy": hist.val_accuracy,
            "test_loss": test_loss, "test_accuracy": test_acc, "seconds": seconds,
            "settings": _settings(args, trainer), "symdl_version": _version()}, indent=1))
        return 0
    result = f"test accuracy {test_acc:.2%}" if test_acc is not None else "test"
    print(f"{result} (loss {test_loss:.4f}) in {seconds:.1f} s")
    return 0
