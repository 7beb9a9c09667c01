"""``symdl predict`` and ``symdl evaluate`` on a saved model, and ``train --save``.

``symdl train --save DIR`` writes the trained model with the preprocessing of
its dataset (:data:`DATASET_PREPROCESSING`: the digits' pixels are divided by
16, MNIST's by 255) and its class names.  A checkpoint becomes a saved model
by resuming it with the same model flags and no further epochs:
``symdl train --resume CKPT --epochs N --save DIR`` (N: the epochs it holds).
``symdl predict DIR --input FILE`` reads raw inputs (``.npy``, ``.csv`` or an
IDX file such as MNIST's ``t10k-images-idx3-ubyte``), applies the saved
preprocessing and prints one prediction per line (``--json``: one document).
``symdl evaluate DIR --dataset NAME`` prints the loss and accuracy on a dataset.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import DataError, UsageError
from .user_ops import add_ops_args, load_user_ops

__all__ = ["DATASET_PREPROCESSING", "add_parser", "add_save_args", "cmd_evaluate",
           "cmd_predict", "read_inputs", "save_trained"]

#: raw input -> model rows, per dataset (as its loader scales it; other sets are used as they are)
DATASET_PREPROCESSING = {"digits": {"dtype": "float32", "divide": 16.0},
                         "mnist": {"dtype": "float32", "divide": 255.0}}


def add_save_args(p: argparse.ArgumentParser) -> None:
    """The ``--save DIR`` flag of ``train``."""
    p.add_argument("--save", metavar="DIR", help="after training, save the model (architecture, "
                   "weights, preprocessing, class names) to DIR for symdl predict / symdl.load")


def save_trained(args, spec, train, metrics: dict):
    """``train --save``: write the trained ``spec.module`` to ``args.save``; returns its path."""
    if not getattr(args, "save", None):
        return None
    from .distributed import rank_comm
    comm = rank_comm(args)
    if comm is not None and comm.rank != 0:  # rank 0 alone writes, as with checkpoints
        return None
    import sys
    from ..train.saved import save
    classes = train.n_classes if train.task == "classification" else None
    path = save(spec.module, args.save, preprocessing=DATASET_PREPROCESSING.get(args.dataset),
                class_names=None if classes is None else [str(c) for c in range(classes)],
                task=train.task, loss=spec.loss, loss_params=spec.loss_params,
                input_shape=train.X.shape[1:],
                metadata={"dataset": args.dataset, "model": args.model, "seed": args.seed,
                          **metrics})
    print(f"symdl: saved the model to {path} (symdl predict {path} --input FILE)",
          file=sys.stderr)
    return path


def add_parser(sub) -> None:
    """Register ``predict`` and ``evaluate`` on an argparse ``subparsers`` object."""
    p = sub.add_parser("predict", help="predict with a saved model (symdl train --save)",
                       description="Read raw inputs, apply the model's saved preprocessing and "
                       "print one prediction per line (the class name, or the value). Example: "
                       "symdl predict model --input t10k-images-idx3-ubyte")
    p.add_argument("model", metavar="DIR", help="a saved model folder")
    p.add_argument("--input", required=True, metavar="FILE",
                   help="inputs, one example per row: .npy, .csv (a header line is skipped) or IDX")
    p.add_argument("--no-preprocess", action="store_true",
                   help="the inputs are already scaled as the model takes them")
    p.add_argument("--proba", action="store_true",
                   help="with --json: the class probabilities too (softmax classifiers)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    add_ops_args(p)  # --ops FILE.py: the model's own activations, declared before loading
    p.set_defaults(run=cmd_predict)

    e = sub.add_parser("evaluate", help="loss and accuracy of a saved model on a dataset",
                       description="Evaluate a saved model on a dataset split. Example: "
                       "symdl evaluate model --dataset digits")
    e.add_argument("model", metavar="DIR", help="a saved model folder")
    e.add_argument("--dataset", required=True, help="data set name, as for symdl train")
    e.add_argument("--data-dir", help="folder with MNIST IDX files (for --dataset mnist)")
    e.add_argument("--split", choices=("train", "test"), default="test",
                   help="which split (default: test)")
    e.add_argument("--seed", type=int, default=0, help="seed of synthetic sets (default: 0)")
    e.add_argument("--json", action="store_true", help="print one JSON document")
    add_ops_args(e)
    e.set_defaults(run=cmd_evaluate)


def read_inputs(path):
    """The NumPy array in ``path``: ``.npy`` (no pickle), ``.csv``/``.txt`` or an IDX file."""
    import numpy as np
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"cannot read {path} as .npy ({exc})") from None
    if suffix in (".csv", ".txt", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        for skip in (0, 1):  # a header line of names is skipped
            try:
                return np.loadtxt(path, delimiter=sep, ndmin=2, skiprows=skip)
            except ValueError as exc:
                why = exc
        raise DataError(f"cannot read {path} as CSV: {why}")
    from ..data import read_idx
    try:
        return read_idx(path)
    except DataError as exc:
        raise DataError(f"{path} is neither .npy nor .csv, and not an IDX file ({exc})") from None


def cmd_predict(args) -> int:
    from ..train.saved import load
    if args.proba and not args.json:
        raise UsageError("--proba needs --json")
    load_user_ops(args)
    model = load(args.model)
    raw = read_inputs(args.input)
    X = raw if args.no_preprocess else model.preprocess(raw)
    pred = model.predict(X)
    names = model.class_names
    if args.json:
        doc = {"model": str(args.model), "input": str(args.input), "n": int(len(pred)),
               "task": model.task, "predictions": pred.tolist()}
        if model.task == "classification" and names:
            doc["labels"] = [names[i] for i in pred.tolist()]
        if args.proba:
            doc["probabilities"] = model.predict_proba(X).tolist()
        print(json.dumps(doc))
        return 0
    if model.task == "classification":
        lines = [names[i] if names else str(i) for i in pred.tolist()]
    else:
        lines = [" ".join(f"{v:.9g}" for v in (row if pred.ndim > 1 else [row]))
                 for row in pred.tolist()]
    print("\n".join(lines))
    return 0


def cmd_evaluate(args) -> int:
    import numpy as np
    from ..data import DATASETS, load_dataset
    from ..train.saved import load
    if args.dataset not in DATASETS:
        raise UsageError(f"unknown dataset {args.dataset!r} (choose from: {', '.join(DATASETS)})")
    load_user_ops(args)
    model = load(args.model)
    ds = load_dataset(args.dataset, seed=args.seed, data_dir=args.data_dir, split=args.split)
    if ds.task != model.task:
        raise DataError(f"{args.dataset} is a {ds.task} set, the model does {model.task}")
    shape = model.input_shape
    if shape is not None and int(np.prod(ds.X.shape[1:])) != int(np.prod(shape)):
        raise DataError(f"{args.dataset} has examples of shape {tuple(ds.X.shape[1:])}, the model "
                        f"takes {shape}")
    loss, acc = model.evaluate(ds.X, ds.y)
    if args.json:
        print(json.dumps({"model": str(args.model), "dataset": args.dataset, "split": args.split,
                          "n": len(ds), "loss": loss, "accuracy": acc}))
        return 0
    shown = f"  accuracy {acc:.2%}" if acc is not None else ""
    print(f"loss {loss:.4f}{shown} ({len(ds)} examples of {args.dataset} {args.split})")
    return 0
