"""Mini-batches of a :class:`~symdl.data.Dataset`: :func:`batches` and a ``DataLoader``.

As ``torch.utils.data.DataLoader``: each pass over a shuffling loader draws a new
permutation, here from one seeded generator (no global random state), so two
loaders made with the same seed give the same batches.
"""
from __future__ import annotations

import math

import numpy as np

from symdl.errors import UsageError

from .dataset import Dataset

__all__ = ["DataLoader", "batches"]


class DataLoader:
    """Iterate over ``(X_batch, y_batch)`` pairs of a data set, pass after pass.

    Parameters
    ----------
    dataset : Dataset or tuple ``(X, y)``
        The examples.
    batch_size : int, default 32
        Rows per batch; the last batch is smaller unless ``drop_last``.
    shuffle : bool, default False
        Draw a new order for every pass.
    seed : int or numpy.random.SeedSequence, optional
        Seed of the shuffling generator.
    drop_last : bool, default False
        Drop the last, partial batch.

    Examples
    --------
    >>> ds = Dataset(np.arange(10.0).reshape(5, 2), np.arange(5), 5, "toy")
    >>> [len(xb) for xb, yb in DataLoader(ds, batch_size=2)]
    [2, 2, 1]
    >>> len(DataLoader(ds, batch_size=2, drop_last=True))
    2
    """

    def __init__(self, dataset, batch_size: int = 32, shuffle: bool = False, seed=None,
                 drop_last: bool = False):
        if isinstance(dataset, tuple) and len(dataset) == 2:
            X, y = (np.asarray(a) for a in dataset)
            if np.ndim(X) == 0 or np.ndim(y) == 0 or len(X) != len(y):
                raise UsageError(f"a DataLoader needs X and y with one row per example, got shapes "
                                 f"{np.shape(X)} and {np.shape(y)}")
            dataset = Dataset(X, y)
        if not isinstance(dataset, Dataset):
            raise UsageError(f"a DataLoader takes a Dataset or a pair (X, y), not "
                             f"{type(dataset).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def __iter__(self):
        ds = self.dataset
        order = self.rng.permutation(len(ds)) if self.shuffle else None
        for k in range(len(self)):
            rows = slice(k * self.batch_size, (k + 1) * self.batch_size)
            idx = rows if order is None else order[rows]
            yield ds.X[idx], ds.y[idx]


def batches(dataset, batch_size: int = 32, shuffle: bool = False, seed=None,
            drop_last: bool = False):
    """One pass of ``(X_batch, y_batch)`` pairs (see :class:`DataLoader` for the arguments).

    >>> ds = Dataset(np.arange(8.0).reshape(4, 2), np.arange(4), 4, "toy")
    >>> [yb.tolist() for _, yb in batches(ds, 3, shuffle=True, seed=0)]
    [[2, 0, 1], [3]]
    """
    return iter(DataLoader(dataset, batch_size, shuffle, seed, drop_last))
