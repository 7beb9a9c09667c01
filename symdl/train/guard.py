"""The step guard: nothing non-finite or divergent is ever applied.

Every step checks the loss and the gradient norm before the update.  A NaN,
an infinity, or a loss more than ``divergence`` times the run's first batch
loss means the update is not applied; the policy then raises
(:class:`~symdl.errors.NumericalError`, exit code 3, naming the first graph
node that went bad, found by re-running the batch with every value kept) or
skips the batch, giving up after ``max_skips`` consecutive bad ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import NumericalError, UsageError


@dataclass
class Guard:
    """``policy``: ``raise``, ``skip`` or ``warn``; ``divergence``: 0 turns it off."""

    policy: str = "raise"
    max_skips: int = 10
    divergence: float = 1e4

    def __post_init__(self):
        if self.policy not in ("raise", "skip", "warn"):
            raise UsageError(f"on_nonfinite must be raise, skip or warn, not {self.policy!r}")
        if self.max_skips < 1 or self.divergence < 0:
            raise UsageError("max_skips must be >= 1 and the divergence factor >= 0")

    def check(self, trainer, prog, loss: float, state) -> float | None:
        """The squared gradient norm when the step may be applied, else None
        (a skipped batch); raises per the policy."""
        gsq = trainer.backend.sq_norm(trainer.pack.grad)
        if state.loss0 is None and math.isfinite(loss):
            state.loss0 = loss
        problem = None
        if not math.isfinite(loss):
            problem = "non-finite loss"
        elif not math.isfinite(gsq):
            problem = "non-finite gradient norm"
        elif self.divergence and state.loss0 and loss > self.divergence * state.loss0:
            problem = (f"diverging loss {loss:.3g} (over {self.divergence:g} times the first "
                       f"batch's {state.loss0:.3g})")
        if problem is None:
            state.skips = 0
            return gsq
        where = f"epoch {state.epoch + 1}, step {state.pos + 1}"
        if self.policy in ("skip", "warn"):
            state.skips += 1
            if self.policy == "warn":
                trainer.say(f"warning: {problem} at {where}; batch skipped")
            if state.skips < self.max_skips:
                return None
            raise NumericalError(f"{state.skips} consecutive batches gave a {problem} "
                                 f"(last at {where}); stopping, no update applied from them")
        if problem.startswith("diverging"):  # finite values: name the steepest gradient
            raise NumericalError(f"{problem} at {where}; update not applied; first bad node "
                                 f"{diagnose(trainer, prog, 'largest gradient')} (try a lower "
                                 "learning rate)")
        raise NumericalError(f"{problem} at {where}; update not applied; first bad value at "
                             f"node {diagnose(trainer, prog)} (try a lower learning rate)")


def diagnose(trainer, prog, fallback: str = "gradient overflows") -> str:
    """Re-run the batch with every node kept and name the first bad one; with
    every value finite, the parameter whose gradient is largest, with ``fallback``."""
    gg = trainer._grad
    outs = [trainer._L] + [gg.grads[p.name] for p in trainer.params]
    guard = trainer.backend.compile(gg.graph, outs, {p.name: p.data for p in trainer.params},
                                    {"N": prog.dims["N"]}, fuse=False)
    for k, buf in prog.inputs.items():
        guard.inputs[k][...] = buf
    with np.errstate(all="ignore"):
        guard.run()
    bad = trainer.backend.first_nonfinite(guard)
    if bad is None:
        big = max(trainer.params, key=lambda q: float(np.max(np.abs(q.grad))))
        bad = f"{big.name} ({fallback}: max |g| = {float(np.max(np.abs(big.grad))):.3g})"
    return bad


def first_nonfinite(prog) -> str | None:
    """The first node, in execution order, holding a NaN or an infinity."""
    return prog.backend.first_nonfinite(prog)
