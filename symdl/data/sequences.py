"""Sequence data that needs no download: the digits as rows or patches, and seeded synthetic tasks.

Shape convention: every set here is a plain :class:`~symdl.data.dataset.Dataset` whose ``X`` is
stored *flat*, ``(N, T·D)``, time-major within a row (the D features of step 0, then those of
step 1, ...), so that the trainer's row gather works unchanged; a sequence model reshapes its
input to ``(N, T, D)`` (a ``reshape`` node).  :func:`layout` says what ``T`` and ``D`` are
(and, for many-to-many tasks, how many outputs each step has).

==========  ======================  ================================  ===========================
task        X (N, T·D)              y                                 kind
==========  ======================  ================================  ===========================
digits      8 rows of 8 pixels      digit 0-9                         classification, many-to-one
patches     P patches of p·p px     digit 0-9                         classification, many-to-one
adding      (value, marker) pairs   sum of the two marked values      regression, many-to-one
parity      bits 0/1                1 if an odd number of ones        classification, many-to-one
sine        T samples of a sine     the next sample                   regression, many-to-one
copy        one-hot symbols         the first half again, one-hot     regression, many-to-many
reverse     one-hot symbols         the first half reversed, one-hot  regression, many-to-many
==========  ======================  ================================  ===========================

Copy and reverse: steps ``0 … T/2 − 1`` hold symbols from ``1 … V − 1``, the last ``T/2`` steps
the blank symbol 0 (the "recall" phase); the targets are blank for the first half and the
symbols (reversed for ``reverse``) for the second, one-hot, flat ``(N, T·V)``: a many-to-many
model gives ``V`` outputs per step.  Synthetic sets draw their ``train`` and ``test`` splits
from the two children of ``numpy.random.SeedSequence(seed).spawn(2)``, like
:func:`symdl.data.load_dataset`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from symdl.errors import DataError

from .dataset import Dataset
from .digits import load_digits

__all__ = ["SEQ_TASKS", "SequenceLayout", "adding", "copy", "digit_patches", "digit_rows",
           "image_layout", "layout", "load_sequence_task", "parity", "patchify", "reverse",
           "sine_forecast", "symbols"]


@dataclass(frozen=True)
class SequenceLayout:
    """How a flat row ``(T·D,)`` reads as a sequence.

    ``steps`` T, ``features`` D per step; ``outputs_per_step`` is the number of targets per
    step of a many-to-many task (``y`` is then ``(N, T·outputs_per_step)``), ``None`` for
    many-to-one tasks.
    """

    steps: int
    features: int
    outputs_per_step: int | None = None


def _rng(name, n, seed, min_n=1):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < min_n:
        raise DataError(f"{name}: n must be an integer >= {min_n}, got {n!r}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: invalid seed {seed!r} ({exc})") from None


def _length(name, length, least=1, even=False):
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < least \
            or (even and length % 2):
        need = f"an even integer >= {least}" if even else f"an integer >= {least}"
        raise DataError(f"{name}: the sequence length must be {need}, got {length!r}")
    return int(length)


# ------------------------------------------------------------------ digits
def digit_rows(split: str = "train", dtype: str = "float32") -> Dataset:
    """The embedded digits read as 8 steps of 8 pixels (one image row per step).

    The rows of ``load_digits`` already hold the image row after row, so ``X`` is the same
    ``(n, 64)`` array; :func:`layout` gives ``SequenceLayout(8, 8)``.

    >>> ds = digit_rows("test")
    >>> ds.X.shape[1], layout("digits")
    (64, SequenceLayout(steps=8, features=8, outputs_per_step=None))
    """
    return load_digits(split, dtype)


def patchify(X: np.ndarray, side: int, patch: int) -> np.ndarray:
    """Square single-channel images given as flat rows ``(N, side²)`` cut into ``patch × patch``
    patches: ``(N, P·patch²)`` with ``P = (side/patch)²`` patches in row-major grid order, each
    patch's pixels row-major (the order of ``Conv2d(kernel=stride=patch)`` then
    ``flatten(2).transpose(1, 2)`` in a torch ViT).

    >>> patchify(np.arange(16.0).reshape(1, 16), 4, 2)[0, :8]
    array([0., 1., 4., 5., 2., 3., 6., 7.])
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != side * side:
        raise DataError(f"patchify needs rows of {side}×{side} = {side * side} pixels, got "
                        f"shape {X.shape}")
    if patch < 1 or side % patch:
        raise DataError(f"patch size {patch} does not divide the image side {side}")
    g = side // patch
    x = X.reshape(len(X), g, patch, g, patch).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(x.reshape(len(X), g * g * patch * patch))


def digit_patches(split: str = "train", patch: int = 4, dtype: str = "float32") -> Dataset:
    """The embedded digits as ``(8/patch)²`` patches of ``patch²`` pixels (:func:`patchify`).

    ``symdl.nn.ViT`` cuts patches itself from the plain image rows (reshape and permute nodes);
    this is the same cut in NumPy, for looking at the data and for checking the graph's.
    """
    ds = load_digits(split, dtype)
    return replace(ds, X=patchify(ds.X, 8, patch), name=f"digits-patches{patch}")


def image_layout(n_features: int) -> SequenceLayout:
    """Square single-channel images of ``n_features`` pixels read one row per step
    (64: the 8×8 digits, 784: MNIST)."""
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise DataError(f"a sequence model reads square images one row per step: "
                        f"{n_features} features are not side × side pixels")
    return SequenceLayout(side, side)


# --------------------------------------------------------------- synthetic
def adding(n: int = 4000, length: int = 50, seed=0) -> Dataset:
    """The adding problem (Hochreiter & Schmidhuber 1997): each step is a pair (value ~ U(0, 1),
    marker); exactly two markers are 1, one in each half; the target is the sum of the two marked
    values.  Predicting the mean (1.0) scores MSE 1/6; solving it needs memory over ``length``
    steps.  ``X`` is ``(n, 2·length)``."""
    T = _length("adding", length, 2)
    rng = _rng("adding", n, seed)
    values = rng.uniform(0.0, 1.0, (n, T))
    first = rng.integers(0, T // 2, n)
    second = rng.integers(T // 2, T, n)
    markers = np.zeros((n, T))
    rows = np.arange(n)
    markers[rows, first] = markers[rows, second] = 1.0
    X = np.stack([values, markers], axis=2).reshape(n, 2 * T)
    y = values[rows, first] + values[rows, second]
    return Dataset(X.astype(np.float32), y.astype(np.float32), None, "adding", "regression")


def parity(n: int = 4000, length: int = 16, seed=0) -> Dataset:
    """Bits 0/1 (one per step); label 1 when the number of ones is odd.  Classes are balanced
    exactly (±1) by flipping the last bit where needed.  ``X`` is ``(n, length)``."""
    T = _length("parity", length, 1)
    rng = _rng("parity", n, seed)
    bits = rng.integers(0, 2, (n, T))
    y = rng.permutation(np.arange(n) % 2)
    wrong = bits.sum(axis=1) % 2 != y
    bits[wrong, -1] ^= 1
    return Dataset(bits.astype(np.float32), y.astype(np.int64), 2, "parity", "classification")


def sine_forecast(n: int = 4000, length: int = 20, seed=0, noise: float = 0.0) -> Dataset:
    """Forecasting: ``length`` samples ``sin(ω t + φ)`` (t = 0, 1, …; ω ~ U(0.1, 0.5),
    φ ~ U(0, 2π)) plus Gaussian noise of σ ``noise``; the target is the noiseless next sample
    ``sin(ω·length + φ)``.  ``X`` is ``(n, length)``."""
    T = _length("sine", length, 2)
    rng = _rng("sine", n, seed)
    if not np.isfinite(noise) or noise < 0:
        raise DataError(f"sine: noise must be a finite number >= 0, got {noise!r}")
    w = rng.uniform(0.1, 0.5, (n, 1))
    phi = rng.uniform(0.0, 2 * np.pi, (n, 1))
    t = np.arange(T + 1)
    s = np.sin(w * t + phi)
    X = s[:, :T] + noise * rng.standard_normal((n, T))
    return Dataset(X.astype(np.float32), s[:, T].astype(np.float32), None, "sine", "regression")


def _recall(name, n, length, vocab, seed, flip):
    T = _length(name, length, 2, even=True)
    if isinstance(vocab, bool) or not isinstance(vocab, (int, np.integer)) or vocab < 2:
        raise DataError(f"{name}: vocab must be an integer >= 2 (0 is the blank), got {vocab!r}")
    rng = _rng(name, n, seed)
    half = T // 2
    s = rng.integers(1, vocab, (n, half))
    inp = np.concatenate([s, np.zeros((n, half), np.int64)], axis=1)
    out = np.concatenate([np.zeros((n, half), np.int64), s[:, ::-1] if flip else s], axis=1)
    eye = np.eye(vocab, dtype=np.float32)
    return Dataset(eye[inp].reshape(n, T * vocab), eye[out].reshape(n, T * vocab), None, name,
                   "regression")


def copy(n: int = 4000, length: int = 10, vocab: int = 6, seed=0) -> Dataset:
    """Copy: recall the first ``length/2`` symbols during the last ``length/2`` (blank) steps.
    ``X`` and ``y`` are one-hot, ``(n, length·vocab)``; :func:`symbols` decodes them."""
    return _recall("copy", n, length, vocab, seed, False)


def reverse(n: int = 4000, length: int = 10, vocab: int = 6, seed=0) -> Dataset:
    """As :func:`copy`, recalling the symbols in reverse order."""
    return _recall("reverse", n, length, vocab, seed, True)


def symbols(flat: np.ndarray, vocab: int) -> np.ndarray:
    """One-hot (or scores) ``(N, T·vocab)`` back to symbols ``(N, T)`` by argmax per step."""
    flat = np.asarray(flat)
    return flat.reshape(len(flat), -1, vocab).argmax(axis=2)


# ------------------------------------------------------------------ registry
#: ``name: (generator, default length, default train size, test size)``
SEQ_TASKS = {
    "adding": (adding, 50, 4000, 1000),
    "copy": (copy, 10, 4000, 1000),
    "reverse": (reverse, 10, 4000, 1000),
    "parity": (parity, 16, 4000, 1000),
    "sine": (sine_forecast, 20, 4000, 1000),
}
_VOCAB = 6  # copy and reverse in load_sequence_task


def layout(name: str, length: int | None = None, patch: int | None = None) -> SequenceLayout:
    """The :class:`SequenceLayout` of a task of :data:`SEQ_TASKS` at ``length`` (default: the
    task's), of ``"digits"`` (rows) or of ``"patches"`` (``patch``, default 4)."""
    if name == "digits":
        return SequenceLayout(8, 8)
    if name == "patches":
        p = 4 if patch is None else patch
        return SequenceLayout((8 // p) ** 2, p * p)
    if name not in SEQ_TASKS:
        raise DataError(f"unknown sequence task {name!r} (choose from: {', '.join(SEQ_TASKS)})")
    T = SEQ_TASKS[name][1] if length is None else int(length)
    if name in ("copy", "reverse"):
        return SequenceLayout(T, _VOCAB, _VOCAB)
    return SequenceLayout(T, 2 if name == "adding" else 1)


def load_sequence_task(name: str, *, length: int | None = None, seed: int = 0,
                       split: str = "train", n: int | None = None) -> Dataset:
    """One split of a synthetic task of :data:`SEQ_TASKS`, by name.

    Parameters
    ----------
    name : str
        ``"adding"``, ``"copy"``, ``"reverse"``, ``"parity"`` or ``"sine"``.
    length : int, optional
        Steps T (default: the task's, e.g. 50 for adding).
    seed : int, default 0
        ``train`` and ``test`` are drawn from the two children of ``SeedSequence(seed)``.
    split : {"train", "test"}
    n : int, optional
        Rows (default: 4000 for train, 1000 for test).

    Raises
    ------
    DataError
        Unknown task or split, a bad length, size or seed.

    >>> ds = load_sequence_task("adding", length=10, n=5)
    >>> ds.X.shape, ds.y.shape, ds.task
    ((5, 20), (5,), 'regression')
    """
    if name not in SEQ_TASKS:
        raise DataError(f"unknown sequence task {name!r} (choose from: {', '.join(SEQ_TASKS)})")
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r} for sequence task {name!r} (choose from: "
                        "train, test)")
    make, T, n_train, n_test = SEQ_TASKS[name]
    try:
        train_ss, test_ss = np.random.SeedSequence(seed).spawn(2)
    except (TypeError, ValueError) as exc:
        raise DataError(f"invalid seed {seed!r} ({exc})") from None
    kw = {"n": (n_train if split == "train" else n_test) if n is None else n,
          "length": T if length is None else length,
          "seed": train_ss if split == "train" else test_ss}
    if name in ("copy", "reverse"):
        kw["vocab"] = _VOCAB
    return make(**kw)
