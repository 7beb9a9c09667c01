"""The embedded 8x8 handwritten digits (UCI optdigits, as in scikit-learn).

1,797 images of 8x8 pixels with values 0..16 and labels 0..9, stored in
``digits.npz`` next to this module (``images`` ``uint8`` (1797, 64),
``labels`` ``uint8`` (1797,), in the original row order).  See
:data:`DIGITS_CITATION` for the source and licence.

Fixed train/test split
----------------------
Deterministic and stratified: for each class, take the rows of that class in
file order and send every fifth one (position within the class
``% 5 == 4``) to test.  That gives 355 test rows (19.8 %, 34 to 36 per
class) and 1,442 train rows; no randomness is involved.

Build recipe
------------
``digits.npz`` was built from scikit-learn's ``sklearn/datasets/data/
digits.csv.gz`` (65 integer columns per row: 64 pixels then the label)::

    a = numpy.loadtxt("digits.csv.gz", delimiter=",", dtype=numpy.uint8)
    write_npz("symdl/data/digits.npz", images=a[:, :64], labels=a[:, 64])

:func:`write_npz` is :func:`numpy.savez_compressed` with fixed zip
timestamps, so rebuilding gives byte-identical output.
"""
from __future__ import annotations

import io
import zipfile
from functools import lru_cache
from importlib import resources

import numpy as np

from symdl.errors import DataError

from .dataset import Dataset, float_dtype

#: Source and licence of the embedded digits.
DIGITS_CITATION = ("UCI ML Optical Recognition of Handwritten Digits "
                   "(E. Alpaydin, C. Kaynak, 1998), CC BY 4.0")
#: Number of digit images in the embedded file.
N_DIGITS = 1797
SPLITS = ("train", "test", "all")


def write_npz(path, **arrays: np.ndarray) -> None:
    """Write arrays like :func:`numpy.savez_compressed`, byte-for-byte reproducibly.

    Parameters
    ----------
    path : str or os.PathLike or file-like
        Destination.
    **arrays : numpy.ndarray
        Arrays stored as ``<name>.npy`` members, in sorted name order, with a
        fixed 1980-01-01 timestamp.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    """The embedded ``(images, labels)`` arrays, read-only."""
    try:
        blob = resources.files("symdl.data").joinpath("digits.npz").read_bytes()
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"embedded digits.npz is missing or corrupt ({exc})") from None
    if images.shape != (N_DIGITS, 64) or labels.shape != (N_DIGITS,):
        raise DataError(f"embedded digits.npz has unexpected shapes {images.shape}, {labels.shape}")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def digits_split_mask(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the fixed test rows (see the module docstring).

    Parameters
    ----------
    labels : numpy.ndarray
        Integer class labels in file order.

    Returns
    -------
    numpy.ndarray
        ``True`` for rows whose position among the rows of their class is
        ``% 5 == 4``.
    """
    labels = np.asarray(labels)
    test = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        test[rows[4::5]] = True
    return test


def load_digits(split: str = "train", dtype: str = "float32") -> Dataset:
    """Load the embedded 8x8 digits.

    Parameters
    ----------
    split : {"train", "test", "all"}, default "train"
        Which rows: the fixed stratified split described in the module
        docstring, or all 1,797 rows.
    dtype : str, default "float32"
        Floating dtype of ``X``.

    Returns
    -------
    Dataset
        ``X`` of shape ``(n, 64)`` scaled to ``[0, 1]`` (pixel / 16), ``y``
        ``int64`` labels, ``n_classes`` 10, name ``"digits"``.  Rows keep
        the file order.

    Raises
    ------
    DataError
        For an unknown split or a non-floating dtype.
    """
    if split not in SPLITS:
        raise DataError(f"unknown digits split {split!r} (choose from: {', '.join(SPLITS)})")
    dt = float_dtype(dtype)
    images, labels = _raw()
    if split == "all":
        rows = slice(None)
    else:
        test = digits_split_mask(labels)
        rows = test if split == "test" else ~test
    X = images[rows].astype(dt) / dt.type(16)
    return Dataset(X=X, y=labels[rows].astype(np.int64), n_classes=10,
                   name="digits", task="classification")
