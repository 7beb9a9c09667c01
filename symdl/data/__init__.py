"""Datasets: embedded digits, synthetic sets and local MNIST IDX files.

:func:`load_dataset` picks a dataset by name; every loader returns a
:class:`Dataset`.  Nothing is ever downloaded.
"""
from __future__ import annotations

import os

import numpy as np

from symdl.errors import DataError

from .dataset import Dataset, float_dtype, subset, train_val_split, validate
from .digits import DIGITS_CITATION, digits_split_mask, load_digits
from .idx import load_mnist, read_idx, write_idx
from .batching import DataLoader, batches
from .synthetic import SYNTHETIC, circles, moons, sine, spirals, xor, xor_table
from .sequences import SEQ_TASKS, SequenceLayout, load_sequence_task, patchify

#: Every name :func:`load_dataset` accepts.
DATASETS = ("digits", "mnist", *SYNTHETIC)

__all__ = [
    "DATASETS", "DIGITS_CITATION", "DataLoader", "Dataset", "SYNTHETIC", "batches", "circles", "digits_split_mask",
    "float_dtype", "load_dataset", "load_digits", "load_mnist", "moons", "read_idx", "sine",
    "spirals", "subset", "train_val_split", "validate", "write_idx", "xor", "xor_table",
    "SEQ_TASKS", "SequenceLayout", "load_sequence_task", "patchify",
]


def load_dataset(name: str, *, seed: int = 0, data_dir: str | os.PathLike | None = None,
                 split: str = "train") -> Dataset:
    """Load a dataset by name.

    Parameters
    ----------
    name : str
        ``"digits"``, ``"mnist"`` or a key of :data:`SYNTHETIC`
        (``"xor"``, ``"spirals"``, ``"moons"``, ``"circles"``, ``"sine"``).
    seed : int, default 0
        Seed for synthetic sets.  Their ``"train"`` and ``"test"`` splits use
        the two children of ``numpy.random.SeedSequence(seed).spawn(2)``, so
        they are independent draws.  Ignored by digits and MNIST.
    data_dir : str or os.PathLike, optional
        Directory with the MNIST IDX files; required for ``"mnist"``.
    split : str, default "train"
        ``"train"`` or ``"test"``; digits also accepts ``"all"``.

    Returns
    -------
    Dataset
        The requested split, with default sizes for synthetic sets.

    Raises
    ------
    DataError
        For an unknown name or split, a bad seed, or missing/malformed files.
    """
    if name == "digits":
        return load_digits(split)
    if name == "mnist":
        if data_dir is None:
            raise DataError("dataset 'mnist' needs a data directory holding the IDX files "
                            "(train-images-idx3-ubyte[.gz] etc.); nothing is downloaded")
        return load_mnist(data_dir, split)
    if name not in SYNTHETIC:
        raise DataError(f"unknown dataset {name!r} (choose from: {', '.join(DATASETS)})")
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r} for synthetic dataset {name!r} (choose from: train, test)")
    try:
        train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    except (TypeError, ValueError) as exc:
        raise DataError(f"invalid seed {seed!r} ({exc})") from None
    return SYNTHETIC[name](seed=train_seq if split == "train" else test_seq)
