"""The training loop's resumable state, and its checkpoint round trip.

Everything a run depends on goes into a checkpoint: parameters, optimizer
state and step count, the shuffling generator's state, the current epoch's
data order and position in it, the running sums of the epoch and the
history.  Restoring all of it makes a resumed run bit-identical, on the
CPU, to one that was never interrupted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy

from ..errors import CheckpointError


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
    arrays = {f"param/{p.name}": p.data for p in trainer.params}
    arrays.update({f"optim/{k}": v for k, v in trainer.optimizer.state_arrays().items()})
    if state.perm is not None:
        arrays["data/perm"] = state.perm
    opt = trainer.optimizer
    meta = {
        "reason": reason,
        "versions": {"symdl": __version__, "sympy": sympy.__version__, "numpy": np.__version__},
        "graph_hash": trainer.graph_hash(),
        "dtype": trainer.dtype,
        "backend": "numpy",
        "epoch": state.epoch,
        "global_step": state.global_step,
        "position": {"pos": state.pos, "total": state.total, "correct": state.correct,
                     "skips": state.skips, "loss0": state.loss0},
        "optimizer": {"name": type(opt).__name__, "hyper": opt.hyper, "t": opt.t},
        "rng": trainer.rng.bit_generator.state,
        "noise_rng": trainer.noise_rng.bit_generator.state,
        "batch_size": trainer.batch_size,
        "history": trainer.history.as_dict(),
    }
    return arrays, meta


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
    for p in trainer.params:
        p.data[...] = arrays[f"param/{p.name}"]
    optim = {k[6:]: v for k, v in arrays.items() if k.startswith("optim/")}
    try:
        trainer.optimizer.load_state_arrays(optim, meta["optimizer"]["t"])
    except KeyError as exc:
        raise CheckpointError(f"{where} lacks optimizer state {exc.args[0]}") from None
    trainer.rng.bit_generator.state = meta["rng"]
    trainer.noise_rng.bit_generator.state = meta["noise_rng"]
    trainer.optimizer.hyper.update(meta["optimizer"]["hyper"])  # a schedule's current rate
    pos = meta["position"]
    trainer.history.__init__(**meta["history"])
    return LoopState(epoch=int(meta["epoch"]), global_step=int(meta["global_step"]),
                     perm=arrays.get("data/perm"), pos=int(pos["pos"]), total=float(pos["total"]),
                     correct=int(pos["correct"]), skips=int(pos.get("skips", 0)),
                     loss0=pos.get("loss0"))


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
