"""The training loop's resumable state, and its checkpoint round trip.

Everything a run depends on goes into a checkpoint: parameters, optimizer
state and step count, the shuffling generator's state, the current epoch's
data order and position in it, the running sums of the epoch and the
history.  Restoring all of it makes a resumed run bit-identical, on the
CPU, to one that was never interrupted.

The run's settings (seed, the optimizer's initial hyperparameters, schedule,
clipping, noise, the step guard) are recorded too.  On resume a setting the
caller gave explicitly must equal the checkpoint's, or the run is refused
(:class:`~symdl.errors.UsageError` listing every difference); one left at its
default takes the checkpoint's value, and the run says so.  Nothing is
replaced silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy

from ..errors import CheckpointError, UsageError
from ..nn.norm import batchnorm_layers

__all__ = ["LoopState", "capture", "restore", "run_settings"]

#: Settings a resumed run cannot take from the checkpoint once it has started
#: (the seed also chose the data split and the initial weights).
MUST_MATCH = ("seed", "schedule")


@dataclass
class LoopState:
    """Where the loop is: ``epoch`` counts finished epochs."""

    epoch: int = 0
    global_step: int = 0
    perm: np.ndarray | None = None
    pos: int = 0
    total: float = 0.0
    correct: int = 0
    skips: int = 0
    loss0: float | None = None
    history: dict = field(default_factory=dict)


def capture(trainer, state: LoopState, reason: str) -> tuple:
    """``(arrays, meta)`` describing the trainer at a step boundary."""
    from .. import __version__
    host = trainer.backend.to_host  # checkpoints hold host arrays: they load on any backend
    arrays = {f"param/{p.name}": host(p.data) for p in trainer.params}
    arrays.update({f"optim/{k}": host(v) for k, v in trainer.optimizer.state_arrays().items()})
    if state.perm is not None:
        arrays["data/perm"] = state.perm
    for key, stat in _running_stats(trainer):  # batch norm's running statistics
        arrays[key] = host(stat)
    opt = trainer.optimizer
    meta = {
        "reason": reason,
        "versions": {"symdl": __version__, "sympy": sympy.__version__, "numpy": np.__version__},
        "graph_hash": trainer.graph_hash(),
        "dtype": trainer.dtype,
        "backend": trainer.backend.name,
        "epoch": state.epoch,
        "global_step": state.global_step,
        "position": {"pos": state.pos, "total": state.total, "correct": state.correct,
                     "skips": state.skips, "loss0": state.loss0},
        "optimizer": {"name": type(opt).__name__, "hyper": opt.hyper, "t": opt.t},
        "rng": trainer.rng.bit_generator.state,
        "noise_rng": trainer.noise_rng.bit_generator.state,
        "batch_size": trainer.batch_size,
        "history": trainer.history.as_dict(),
        "settings": trainer.settings,
    }
    return arrays, meta


def run_settings(trainer, seed) -> dict:
    """The settings a run is defined by, as JSON values (recorded in every checkpoint)."""
    g = trainer.guard
    return {"seed": seed.entropy, **trainer.optimizer.hyper,
            "schedule": None if trainer.schedule is None else repr(trainer.schedule),
            "clip_norm": trainer.clip_norm, "clip_value": trainer.clip_value,
            "input_noise": trainer.input_noise, "divergence": g.divergence,
            "on_nonfinite": g.policy, "max_skips": g.max_skips, "drop_last": trainer.drop_last,
            "early_stopping": trainer.early.patience if trainer.early else None}


def _reconcile(trainer, theirs: dict, where: str) -> None:
    """Refuse explicit settings that differ from the checkpoint's; adopt the
    checkpoint's value for the others (and say which)."""
    from .guard import Guard
    from .regularize import EarlyStopping
    mine = trainer.settings
    explicit = set(mine) if trainer.explicit is None else set(trainer.explicit) | set(MUST_MATCH)
    differ = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
    refused = [k for k in differ if k in explicit]
    if refused:
        listed = "; ".join(f"{k} {theirs.get(k)!r} in the checkpoint, {mine.get(k)!r} now"
                           for k in refused)
        raise UsageError(f"{where} was trained with other settings: {listed}; resume with the "
                         "checkpoint's values, or start afresh with --resume never (or another "
                         "--checkpoint folder)")
    if not differ:
        return
    trainer.settings = {**mine, **{k: theirs[k] for k in differ if k in theirs}}
    s = trainer.settings
    trainer.clip_norm, trainer.clip_value = s["clip_norm"], s["clip_value"]
    trainer.input_noise, trainer.drop_last = float(s["input_noise"]), bool(s["drop_last"])
    trainer.guard = Guard(s["on_nonfinite"], int(s["max_skips"]), float(s["divergence"]))
    trainer.early = EarlyStopping(int(s["early_stopping"])) if s["early_stopping"] else None
    trainer.say("settings taken from the checkpoint (not given explicitly): "
                + ", ".join(f"{k}={theirs.get(k)!r}" for k in differ))


def restore(trainer, ckpt) -> LoopState:
    """Load a verified checkpoint into ``trainer``; refuses a foreign one."""
    meta, arrays = ckpt.meta, ckpt.arrays
    where = f"checkpoint {ckpt.path}"
    if meta.get("graph_hash") != trainer.graph_hash():
        own = {p.name: p.shape for p in trainer.params}
        theirs = {k[6:]: v.shape for k, v in arrays.items() if k.startswith("param/")}
        detail = _param_diff(own, theirs) or "same parameters, different graph"
        raise CheckpointError(f"{where} is from a different graph: {detail}")
    if meta.get("dtype") != trainer.dtype:
        raise CheckpointError(f"{where} holds {meta.get('dtype')} parameters, this run uses {trainer.dtype}")
    name = type(trainer.optimizer).__name__
    if meta["optimizer"]["name"] != name:
        raise CheckpointError(f"{where} was trained with {meta['optimizer']['name']}, this run uses {name}")
    if int(meta.get("batch_size", trainer.batch_size)) != trainer.batch_size:
        raise CheckpointError(f"{where} used batch size {meta['batch_size']}, this run {trainer.batch_size}")
    try:
        _reconcile(trainer, meta["settings"], where)
    except (TypeError, ValueError) as exc:  # a forged settings value (UsageError passes through)
        raise CheckpointError(f"{where} is corrupt (settings: {exc})") from None
    try:
        for p in trainer.params:
            p.data[...] = arrays[f"param/{p.name}"]
        for key, stat in _running_stats(trainer):
            stat[...] = arrays[key]
        trainer.history.__init__(**meta["history"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where} is corrupt ({type(exc).__name__}: {exc})") from None
    optim = {k[6:]: v for k, v in arrays.items() if k.startswith("optim/")}
    try:
        trainer.optimizer.load_state_arrays(optim, meta["optimizer"]["t"])
    except KeyError as exc:
        raise CheckpointError(f"{where} lacks optimizer state {exc.args[0]}") from None
    trainer.rng.bit_generator.state = meta["rng"]
    trainer.noise_rng.bit_generator.state = meta["noise_rng"]
    trainer.optimizer.hyper.update(meta["optimizer"]["hyper"])  # a schedule's current rate
    pos = meta["position"]
    return LoopState(epoch=int(meta["epoch"]), global_step=int(meta["global_step"]),
                     perm=arrays.get("data/perm"), pos=int(pos["pos"]), total=float(pos["total"]),
                     correct=int(pos["correct"]), skips=int(pos.get("skips", 0)),
                     loss0=pos.get("loss0"))


def _running_stats(trainer) -> list:
    """``(array key, array)`` of each batch-norm running statistic, keyed by its graph input."""
    return [(f"buffer/{bn.nodes[k]}", getattr(bn, k)) for bn in batchnorm_layers(trainer.model)
            if bn.nodes for k in ("running_mean", "running_var")]


def _param_diff(own: dict, theirs: dict) -> str:
    parts = []
    missing = sorted(set(own) - set(theirs))
    unexpected = sorted(set(theirs) - set(own))
    reshaped = sorted(n for n in set(own) & set(theirs) if tuple(own[n]) != tuple(theirs[n]))
    if missing:
        parts.append("missing " + ", ".join(missing))
    if unexpected:
        parts.append("unexpected " + ", ".join(unexpected))
    if reshaped:
        parts.append("reshaped " + ", ".join(f"{n} {tuple(theirs[n])} -> {tuple(own[n])}" for n in reshaped))
    return "; ".join(parts)
