"""Which ``symdl`` options apply to what, the data sets' own defaults, and static choices.

Written as tables, read by one check (:func:`check_applicable`): an option given on the
command line that does not apply to the chosen model, data set, optimizer or mode is an
error (exit 2, one line naming it).  The choices of ``--model`` and ``--dataset`` are
written here so that building the parser imports neither :mod:`symdl.nn` nor
:mod:`symdl.data` (``symdl --help`` imports no SymPy); a test checks them against
``symdl.nn.models.MODELS`` and ``symdl.data.DATASETS``.
"""
from __future__ import annotations

from ..errors import UsageError

__all__ = ["APPLIES", "DATASETS", "DATASET_DEFAULTS", "MODELS", "MODEL_DEFAULTS",
           "REGRESSION_SETS", "SEQ_MODELS", "SEQ_TASKS", "SEQ_TASK_DEFAULTS", "check_applicable"]

#: The choices of --model and --dataset.
SEQ_MODELS = ("rnn", "lstm", "gru", "transformer")
MODELS = ("mlp", "logreg", "perceptron", "cnn", *SEQ_MODELS, "vit")
#: The choices of --seq-task (symdl.data.sequences.SEQ_TASKS).
SEQ_TASKS = ("adding", "copy", "reverse", "parity", "sine")
DATASETS = ("digits", "mnist", "xor", "spirals", "moons", "circles", "sine")
#: The data sets whose targets are numbers (the others hold class labels).
REGRESSION_SETS = ("sine",)
_CLASSIFICATION_SETS = tuple(d for d in DATASETS if d not in REGRESSION_SETS)

#: Defaults a data set brings, used for each option not given on the command line
#: (the global defaults suit the digits; with them the sine regression diverges).
DATASET_DEFAULTS = {
    "sine": {"lr": 0.01, "epochs": 200, "hidden": (32, 32), "activation": "tanh"},
}

#: Defaults a model brings (after the data set's): with them each reaches its target on the
#: digits read as sequences (LSTM, GRU, transformer >= 95 %, ViT >= 93 % test accuracy).
_RECURRENT_DEFAULTS = {"hidden": (64,), "optimizer": "adam", "lr": 0.01, "epochs": 12,
                       "batch_size": 64}
MODEL_DEFAULTS = {
    **dict.fromkeys(("rnn", "lstm", "gru"), _RECURRENT_DEFAULTS),
    "transformer": {"hidden": (32,), "heads": 4, "layers": 1, "optimizer": "adam", "lr": 0.005,
                    "epochs": 20, "batch_size": 64},
    "vit": {"hidden": (32,), "heads": 4, "layers": 2, "patch": 4, "optimizer": "adam",
            "lr": 0.003, "epochs": 30, "batch_size": 64},
}
#: Defaults a --seq-task brings (after the model's).
SEQ_TASK_DEFAULTS = {
    "adding": {"hidden": (32,), "epochs": 14, "lr": 0.02, "clip_norm": 1.0},
}

#: Options that apply only to some choices: ``option: ((choosing option, the values it
#: applies to), ...)``.  ``None`` means "the choosing option is given"; ``"hyper"`` means
#: "the optimizers whose declaration takes this hyperparameter".  Giving an option that does
#: not apply is an error (exit 2), never silently ignored.
APPLIES = {
    "hidden": (("model", ("mlp", *SEQ_MODELS, "vit")),),
    "layers": (("model", (*SEQ_MODELS, "vit")),),
    "bidirectional": (("model", ("rnn", "lstm", "gru")),),
    "heads": (("model", ("transformer", "vit")),),
    "patch": (("model", ("vit",)),),
    "seq_task": (("model", SEQ_MODELS),),
    "seq_len": (("seq_task", None),),
    "dropout": (("model", ("mlp",)),),
    "activation": (("model", ("mlp", "cnn")),),
    **dict.fromkeys(("channels", "kernel", "pool", "norm", "residual"), (("model", ("cnn",)),)),
    "data_dir": (("dataset", ("mnist",)),),
    "label_smoothing": (("dataset", _CLASSIFICATION_SETS), ("model", ("mlp", "logreg", "cnn"))),
    "momentum": (("optimizer", "hyper"),),
    "weight_decay": (("optimizer", "hyper"),),
    "every": (("checkpoint", None),),
    "keep_last": (("checkpoint", None),),
    "max_skips": (("on_nonfinite", ("skip", "warn")),),
    "schedule_unit": (("schedule", None),),
}


def _takes(optimizer: str, hyper: str) -> bool:
    from ..optim import OPTIMIZERS
    cls = OPTIMIZERS.get(optimizer.lower())
    return cls is None or hyper in cls.declaration.defaults  # an unknown name fails later


def check_applicable(args, explicit) -> None:
    """Refuse an explicit option that does not apply to the choices made (:data:`APPLIES`)."""
    for dest in sorted(set(explicit) & set(APPLIES)):
        for chooser, values in APPLIES[dest]:
            if not hasattr(args, chooser):
                continue
            chosen = getattr(args, chooser)
            flag, by = f"--{dest.replace('_', '-')}", f"--{chooser.replace('_', '-')}"
            if values is None:
                if chosen is None:
                    raise UsageError(f"{flag} does not apply without {by}")
            elif values == "hyper":
                if not _takes(chosen, dest):
                    from ..optim import OPTIMIZERS
                    takers = [n for n, c in OPTIMIZERS.items() if dest in c.declaration.defaults]
                    raise UsageError(f"{flag} does not apply to {by} {chosen} (it applies to: "
                                     f"{', '.join(takers)})")
            elif str(chosen).lower() not in values:
                raise UsageError(f"{flag} does not apply to {by} {chosen} (it applies to "
                                 f"{by} {', '.join(values)})")
