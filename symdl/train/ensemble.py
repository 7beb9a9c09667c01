"""Ensembles by bagging: each member trained on a bootstrap resample, predictions averaged."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.dataset import subset
from ..errors import UsageError

__all__ = ["bootstrap", "Ensemble", "bagging"]


def bootstrap(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices drawn from ``range(n)`` with replacement (a bootstrap resample;
    about 1 − 1/e ≈ 63 % of the rows appear in it)."""
    if int(n) < 1:
        raise UsageError(f"bootstrap of an empty data set (n = {n})")
    return np.sort(rng.integers(0, int(n), int(n)))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Ensemble:
    """Trained members (:class:`~symdl.train.Trainer` objects) whose predictions are averaged:
    class probabilities (softmax of each member's logits) for classification, outputs for
    regression.  ``samples`` holds each member's bootstrap indices."""

    members: list
    classification: bool = True
    samples: list = field(default_factory=list)

    def member_outputs(self, X) -> np.ndarray:
        """``(members, N, outputs)``: probabilities (classification) or outputs."""
        outs = [np.asarray(m.predict(X), dtype=np.float64) for m in self.members]
        return np.stack([_softmax(o) if self.classification else o for o in outs])

    def predict(self, X) -> np.ndarray:
        """The averaged probabilities or outputs, ``(N, outputs)``."""
        return self.member_outputs(X).mean(axis=0)

    def accuracy(self, ds) -> float:
        """Accuracy of the averaged probabilities on ``ds`` (classification only)."""
        if not self.classification:
            raise UsageError("accuracy of a regression ensemble: use predict() and a loss")
        return float(np.mean(self.predict(ds.X).argmax(axis=1) == np.asarray(ds.y)))

    def member_accuracies(self, ds) -> list:
        """Each member's own accuracy on ``ds``."""
        probs = self.member_outputs(ds.X)
        return [float(np.mean(p.argmax(axis=1) == np.asarray(ds.y))) for p in probs]


def bagging(make_trainer, train, k: int = 5, seed=0, val=None) -> Ensemble:
    """Train ``k`` members by bagging and return the :class:`Ensemble`.

    ``make_trainer(i, seed_sequence)`` returns a fresh, untrained
    :class:`~symdl.train.Trainer` for member ``i`` (its own initialisation from
    the given ``SeedSequence``); each is fitted on a bootstrap resample of
    ``train`` (and validated on ``val``).  One ``SeedSequence(seed)`` is spawned
    into the resamples and the members, so the ensemble is reproducible.
    """
    if int(k) < 1:
        raise UsageError(f"an ensemble needs at least one member, got {k}")
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    members, samples = [], []
    for i, child in enumerate(ss.spawn(int(k))):
        sample_ss, member_ss = child.spawn(2)
        idx = bootstrap(len(train), np.random.default_rng(sample_ss))
        trainer = make_trainer(i, member_ss)
        trainer.fit(subset(train, idx), val)
        members.append(trainer)
        samples.append(idx)
    return Ensemble(members, getattr(train, "task", "classification") == "classification", samples)
