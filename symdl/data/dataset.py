"""The :class:`Dataset` container, its validation and a seeded train/val split.

Every loader in :mod:`symdl.data` returns a :class:`Dataset`; :func:`validate`
turns malformed data into a one-line :class:`~symdl.errors.DataError` before
it reaches a model.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from symdl.errors import DataError

__all__ = ["Dataset", "TASKS", "bad_rows", "check_pairs", "float_dtype", "integral_labels", "subset",
           "train_val_split", "validate"]

Task = Literal["classification", "regression"]
TASKS = ("classification", "regression")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features and targets of one dataset split.

    Parameters
    ----------
    X : numpy.ndarray
        Features, shape ``(n_samples, n_features)``.
    y : numpy.ndarray
        Targets: integer class labels of shape ``(n_samples,)`` for
        classification; floats of shape ``(n_samples,)`` or
        ``(n_samples, n_outputs)`` for regression.
    n_classes : int or None
        Number of classes (labels lie in ``[0, n_classes)``); ``None`` for
        regression.
    name : str
        Short name used in messages, e.g. ``"digits"``.
    task : {"classification", "regression"}
        What kind of targets ``y`` holds.
    """

    X: np.ndarray
    y: np.ndarray
    n_classes: int | None = None
    name: str = "data"
    task: Task = "classification"

    def __len__(self) -> int:
        """Number of samples (rows of ``X``)."""
        return int(np.shape(self.X)[0]) if np.ndim(self.X) else 0

    def __getitem__(self, index):
        """``ds[i]`` is the example ``(x, y)``; ``ds[a:b]``, ``ds[[i, j]]`` and ``ds[mask]`` are
        :class:`Dataset` objects with the same metadata (as ``torch.utils.data.Subset``).

        >>> ds = Dataset(np.arange(6.0).reshape(3, 2), np.array([0, 1, 0]), 2, "toy")
        >>> ds[1]
        (array([2., 3.]), np.int64(1))
        >>> len(ds[1:]), ds[1:].name
        (2, 'toy')
        """
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"index {index} is out of range for dataset '{self.name}' "
                                 f"of {n} example(s)")
            return self.X[index], self.y[index]
        if isinstance(index, slice) or (isinstance(index, (list, np.ndarray)) and np.ndim(index) == 1):
            return subset(self, index)
        raise TypeError(f"dataset '{self.name}' is indexed by an integer, a slice, a list of "
                        f"integers or a boolean mask, not {type(index).__name__}")

    def __iter__(self):
        """The examples ``(x, y)`` in order."""
        for i in range(len(self)):
            yield self.X[i], self.y[i]

    @property
    def n_features(self) -> int:
        """Number of feature columns of ``X``."""
        return int(np.shape(self.X)[1])


def _rows_with(mask: np.ndarray) -> np.ndarray:
    """Indices of rows where ``mask`` (any shape, first axis = rows) is true."""
    return np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))


def nonfinite_rows(X: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``X`` holding a NaN or an infinity.

    One pass and no temporary when every value is finite (the usual case): a NaN
    or an infinity makes the sum non-finite, so a finite sum proves the data
    clean; a non-finite sum (a bad value, or finite values whose sum overflows)
    falls back to the row-by-row search.

    >>> nonfinite_rows(np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, np.inf]]))
    array([1, 2])
    """
    X = np.asarray(X)
    if X.dtype.kind != "f" and X.dtype.kind != "c":
        return np.empty(0, np.intp)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(X)):
            return np.empty(0, np.intp)
    return _rows_with(~np.isfinite(X))


def bad_rows(bad: np.ndarray, values: np.ndarray, first: int = 3) -> str:
    """``"2 bad row(s): 0 (1.5), 4 (2.9)"``: the count, then the first few bad
    rows of ``values`` with their values.

    >>> bad_rows(np.array([0, 4]), np.array([1.5, 0, 0, 0, 2.9]))
    '2 bad row(s): 0 (1.5), 4 (2.9)'
    """
    shown = ", ".join(f"{int(i)} ({_show(values[i])})" for i in bad[:first])
    return f"{bad.size} bad row(s): {shown}{', ...' if bad.size > first else ''}"


def _show(v) -> str:
    v = np.asarray(v).item()
    return str(int(v)) if isinstance(v, float) and v.is_integer() else repr(v)


def integral_labels(y: np.ndarray, where: str) -> np.ndarray:
    """``y`` as ``int64`` class labels; :class:`DataError` (never a silent
    truncation) when a label is not an integer: 1.5, NaN, a string."""
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64, copy=False)
    if not (np.issubdtype(y.dtype, np.floating) or y.dtype == np.bool_):
        raise DataError(f"{where}: class labels must be integers, got dtype {y.dtype}")
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
    if bad.size:
        raise DataError(f"{where}: class labels must be integers, row {bad[0]} has "
                        f"{_show(y[bad[0]])} ({bad_rows(bad, y)})")
    return y.astype(np.int64)


def check_pairs(X: np.ndarray, y: np.ndarray, where: str) -> None:
    """A target per row of ``X``, and numeric features: else a one-line :class:`DataError`."""
    if y.ndim == 0 or len(X) != len(y):
        raise DataError(f"{where}: X has {len(X)} rows but y has "
                        f"{len(y) if y.ndim else 'no'} entries")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
        raise DataError(f"{where}: X must be numeric, got dtype {X.dtype}")


def validate(ds: Dataset) -> Dataset:
    """Check that a dataset is well formed.

    Parameters
    ----------
    ds : Dataset
        The dataset to check.

    Returns
    -------
    Dataset
        ``ds`` itself, so that calls can be chained.

    Raises
    ------
    DataError
        With a one-line message when the task is unknown, ``X`` is not 2-D or
        not numeric, the dataset is empty, ``X`` and ``y`` differ in length,
        ``X`` (or a regression ``y``) holds NaN/Inf (naming the first bad row
        and the number of bad rows), classification labels are not integers
        or lie outside ``[0, n_classes)`` (naming the first bad row and its
        value).
    """
    name = ds.name
    if ds.task not in TASKS:
        raise DataError(f"dataset '{name}': unknown task {ds.task!r} (choose from: {', '.join(TASKS)})")
    X, y = np.asarray(ds.X), np.asarray(ds.y)
    if X.ndim != 2:
        raise DataError(f"dataset '{name}': X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"dataset '{name}' is empty (X has shape {X.shape})")
    check_pairs(X, y, f"dataset '{name}'")
    bad = nonfinite_rows(X)
    if bad.size:
        raise DataError(f"dataset '{name}': X has NaN/Inf in {bad.size} row(s), first at row {bad[0]}")
    if ds.task == "regression":
        if not np.issubdtype(y.dtype, np.number):
            raise DataError(f"dataset '{name}': regression targets must be numeric, got dtype {y.dtype}")
        bad = _rows_with(~np.isfinite(y))
        if bad.size:
            raise DataError(f"dataset '{name}': y has NaN/Inf in {bad.size} row(s), first at row {bad[0]}")
        return ds
    _validate_labels(name, y, ds.n_classes)
    return ds


def _validate_labels(name: str, y: np.ndarray, n_classes: int | None) -> None:
    """Raise :class:`DataError` unless ``y`` holds integer labels in range."""
    if y.ndim != 1:
        raise DataError(f"dataset '{name}': class labels must be 1-D, got shape {y.shape}")
    if n_classes is not None and (isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer))
                                  or n_classes < 1):
        raise DataError(f"dataset '{name}': n_classes must be a positive integer, got {n_classes!r}")
    if not np.issubdtype(y.dtype, np.integer):
        integral_labels(y, f"dataset '{name}'")
    upper = np.inf if n_classes is None else n_classes
    bad = np.flatnonzero((y < 0) | (y >= upper))
    if bad.size:
        span = "[0, n_classes)" if n_classes is None else f"[0, {n_classes})"
        raise DataError(f"dataset '{name}': label {_show(y[bad[0]])} at row {bad[0]} is outside "
                        f"{span} ({bad_rows(bad, y)})")


def float_dtype(dtype: str | np.dtype) -> np.dtype:
    """Parse ``dtype`` as a floating numpy dtype.

    Parameters
    ----------
    dtype : str or numpy.dtype
        E.g. ``"float32"`` or ``"float64"``.

    Returns
    -------
    numpy.dtype
        The parsed dtype.

    Raises
    ------
    DataError
        If ``dtype`` is not a floating dtype.
    """
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or not np.issubdtype(dt, np.floating):
        raise DataError(f"dtype must be a floating type such as 'float32' or 'float64', got {dtype!r}")
    return dt


def subset(ds: Dataset, index: np.ndarray) -> Dataset:
    """Rows ``index`` of ``ds`` as a new :class:`Dataset` with the same metadata.

    Parameters
    ----------
    ds : Dataset
        Source dataset.
    index : numpy.ndarray
        Integer row indices or a boolean mask.

    Returns
    -------
    Dataset
        A dataset holding copies of the selected rows.
    """
    return replace(ds, X=ds.X[index], y=ds.y[index])


def train_val_split(ds: Dataset, fraction: float,
                    rng: np.random.Generator | int | None = 0) -> tuple[Dataset, Dataset | None]:
    """Split off a random fraction of rows as a validation set.

    Parameters
    ----------
    ds : Dataset
        Dataset to split.
    fraction : float
        Fraction of rows, in ``[0, 1)``, that go to validation; the count is
        ``round(fraction * len(ds))``, at least 1 when ``fraction > 0``.
    rng : numpy.random.Generator or int, default 0
        Generator (or seed for :func:`numpy.random.default_rng`) that draws
        the permutation.

    Returns
    -------
    train : Dataset
        The remaining rows, in their original order.
    val : Dataset or None
        The validation rows in their original order; ``None`` when
        ``fraction`` is 0.

    Raises
    ------
    DataError
        If ``fraction`` is outside ``[0, 1)`` or leaves no training rows.
    """
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return ds, None
    n = len(ds)
    n_val = max(1, int(round(fraction * n)))
    if n_val >= n:
        raise DataError(f"validation fraction {fraction} of {n} row(s) leaves no training data")
    perm = np.random.default_rng(rng).permutation(n)
    return subset(ds, np.sort(perm[n_val:])), subset(ds, np.sort(perm[:n_val]))
