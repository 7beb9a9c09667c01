"""The sequence-model flags of ``symdl train`` (``--layers``, ``--bidirectional``, ``--heads``,
``--patch``, ``--seq-task``, ``--seq-len``), the defaults a model or task brings, the task's
data and the model options they give.  Which flag applies to which model is in
:data:`symdl.commands.options.APPLIES`; nothing here imports SymPy until a command runs."""
from __future__ import annotations

import argparse

from ..errors import UsageError
from .options import MODEL_DEFAULTS, SEQ_MODELS, SEQ_TASK_DEFAULTS, SEQ_TASKS

__all__ = ["add_seq_args", "apply_defaults", "load_seq_split", "seq_options"]


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def add_seq_args(p: argparse.ArgumentParser) -> None:
    """The flags of the sequence models and tasks."""
    p.add_argument("--layers", type=_positive, default=1,
                   help="rnn/lstm/gru/transformer/vit: stacked layers (default: 1; vit 2)")
    p.add_argument("--bidirectional", action="store_true",
                   help="rnn/lstm/gru: read the sequence both ways")
    p.add_argument("--heads", type=_positive, default=4,
                   help="transformer/vit: attention heads, dividing the width --hidden (default: 4)")
    p.add_argument("--patch", type=_positive, default=4,
                   help="vit: patch side in pixels, dividing the image side (default: 4)")
    p.add_argument("--seq-task", choices=SEQ_TASKS,
                   help="rnn/lstm/gru/transformer: train on a seeded synthetic sequence task "
                   "instead of --dataset (adding: sum of two marked values; copy/reverse: recall "
                   "symbols; parity: odd number of ones; sine: forecast the next sample)")
    p.add_argument("--seq-len", type=_positive, default=None, metavar="T",
                   help="with --seq-task: steps per sequence (default: the task's: adding 50, "
                   "copy/reverse 10, parity 16, sine 20)")


def apply_defaults(args, explicit) -> None:
    """The model's defaults (:data:`MODEL_DEFAULTS`), then the task's (:data:`SEQ_TASK_DEFAULTS`),
    for each option not given on the command line; ``--dataset`` and ``--augment`` (shifted and
    rotated images) are refused with ``--seq-task``."""
    task = getattr(args, "seq_task", None)
    for dest, why in (("dataset", "the task is the data"), ("augment", "it moves image pixels")):
        if task is not None and dest in explicit:
            raise UsageError(f"--{dest} does not apply with --seq-task ({why})")
    for table, key in ((MODEL_DEFAULTS, getattr(args, "model", None)), (SEQ_TASK_DEFAULTS, task)):
        for k, v in table.get(key, {}).items():
            if hasattr(args, k) and k not in explicit:
                setattr(args, k, v)


def load_seq_split(args, split: str):
    """The ``split`` of ``--seq-task`` at ``--seq-len`` and ``--seed``."""
    from ..data.sequences import load_sequence_task
    return load_sequence_task(args.seq_task, length=args.seq_len, seed=args.seed, split=split)


def seq_options(args) -> dict:
    """The options :func:`symdl.nn.make_model` takes for a sequence model or a ViT."""
    model = getattr(args, "model", None)
    if model not in (*SEQ_MODELS, "vit"):
        return {}
    out = {k: getattr(args, k) for k in ("layers", "bidirectional", "heads", "patch")
           if hasattr(args, k)}
    if getattr(args, "seq_task", None):
        from ..data.sequences import layout
        lay = layout(args.seq_task, args.seq_len)
        out.update(steps=lay.steps, features=lay.features, outputs_per_step=lay.outputs_per_step)
    return out
