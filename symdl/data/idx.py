"""Reader and writer for the IDX format of MNIST (and Fashion-MNIST) files.

An IDX file is a 4-byte magic number -- two zero bytes, a data-type code and
the number of dimensions -- then one big-endian ``uint32`` per dimension, then
the array in C order, big-endian.  MNIST images have magic 2051 (``uint8``,
3 dims: count, rows, cols), labels 2049 (``uint8``, 1 dim).  Files may be
gzip-compressed; compression is detected by the gzip magic bytes ``1f 8b``,
not by the file name.  symdl never downloads anything: point
:func:`load_mnist` at a directory that already holds the four files.
"""
from __future__ import annotations

import gzip as _gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from symdl.errors import DataError

from .dataset import Dataset, float_dtype, validate

#: IDX data-type code -> big-endian numpy dtype.
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
#: Magic number of MNIST image files (uint8, 3 dims).
MAGIC_IMAGES = 2051
#: Magic number of MNIST label files (uint8, 1 dim).
MAGIC_LABELS = 2049
_GZIP_MAGIC = b"\x1f\x8b"
_MAGIC_NAMES = {MAGIC_IMAGES: " (uint8 images, 3 dims)", MAGIC_LABELS: " (uint8 labels, 1 dim)"}


def _magic(dtype: np.dtype, ndim: int) -> int:
    """The IDX magic number for arrays of ``dtype`` with ``ndim`` dimensions."""
    for code, dt in IDX_TYPES.items():
        if dt.kind == dtype.kind and dt.itemsize == dtype.itemsize:
            return (code << 8) | ndim
    raise DataError(f"IDX cannot store dtype {dtype} "
                    f"(supported: uint8, int8, int16, int32, float32, float64)")


def read_idx(path: str | os.PathLike, *, magic: int | None = None) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    magic : int, optional
        Magic number the file must have, e.g. :data:`MAGIC_IMAGES` (2051) or
        :data:`MAGIC_LABELS` (2049).  By default any valid IDX header is
        accepted.

    Returns
    -------
    numpy.ndarray
        The array, in native byte order, with the shape the header gives.

    Raises
    ------
    DataError
        With a one-line message naming the file when it cannot be read, is
        corrupt gzip, has a wrong magic number, or its length does not match
        its header (truncated data or trailing bytes).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc.strerror or exc})") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = _gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, need at least 4)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    found = struct.unpack(">I", raw[:4])[0]
    if zero != 0 or code not in IDX_TYPES or ndim == 0:
        raise DataError(f"{path}: wrong magic number {found} (0x{found:08x}); not an IDX file")
    if magic is not None and found != magic:
        raise DataError(f"{path}: wrong magic number {found}, expected {magic}"
                        f"{_MAGIC_NAMES.get(magic, '')}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header} for {ndim} dims)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_TYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a forged header cannot overflow
    found_bytes = len(raw) - header
    if found_bytes < expected:
        raise DataError(f"{path}: truncated data: shape {shape} needs {expected} bytes, "
                        f"file has {found_bytes}")
    if found_bytes > expected:
        raise DataError(f"{path}: {found_bytes - expected} trailing bytes after the data "
                        f"for shape {shape}")
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="))



def write_idx(path: str | os.PathLike, array: np.ndarray, gzip: bool = False) -> Path:
    """Write an array as an IDX file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    array : numpy.ndarray
        Array of dtype uint8, int8, int16, int32, float32 or float64 with 1 to
        255 dimensions.
    gzip : bool, default False
        Compress the file with gzip (with a fixed timestamp, so the output is
        deterministic).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    array = np.asarray(array)
    if not 1 <= array.ndim <= 255:
        raise DataError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    magic = _magic(array.dtype, array.ndim)
    dtype = IDX_TYPES[magic >> 8]
    payload = (struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
               + np.ascontiguousarray(array, dtype=dtype).tobytes())
    if gzip:
        payload = _gzip.compress(payload, mtime=0)
    path = Path(path)
    path.write_bytes(payload)
    return path


def _find(data_dir: Path, stem: str) -> Path:
    """The raw or ``.gz`` file named ``stem`` in ``data_dir``."""
    for name in (stem, stem + ".gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    raise DataError(f"MNIST file not found: expected {stem} or {stem}.gz in {data_dir}")


def load_mnist(data_dir: str | os.PathLike, split: str = "train", dtype: str = "float32") -> Dataset:
    """Load MNIST (or any dataset in its IDX layout) from local files.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Directory holding ``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
        ``t10k-labels-idx1-ubyte``, each optionally with a ``.gz`` suffix.
    split : {"train", "test"}, default "train"
        ``"train"`` reads the ``train-*`` files, ``"test"`` the ``t10k-*``.
    dtype : str, default "float32"
        Floating dtype of ``X``.

    Returns
    -------
    Dataset
        ``X`` of shape ``(n, rows * cols)`` (``(n, 784)`` for MNIST) scaled
        to ``[0, 1]``, ``y`` ``int64`` labels, ``n_classes`` 10.

    Raises
    ------
    DataError
        If the split is unknown, the directory or a file is missing, a file
        is malformed (see :func:`read_idx`), or the image and label counts
        differ.
    """
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DataError(f"unknown MNIST split {split!r} (choose from: train, test)")
    dt = float_dtype(dtype)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"MNIST data directory {data_dir} does not exist; it must hold "
                        f"{prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz]")
    img_path = _find(data_dir, f"{prefix}-images-idx3-ubyte")
    lbl_path = _find(data_dir, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(img_path, magic=MAGIC_IMAGES)
    labels = read_idx(lbl_path, magic=MAGIC_LABELS)
    if images.size == 0:
        raise DataError(f"{img_path}: holds no images (header shape {images.shape})")
    if len(images) != len(labels):
        raise DataError(f"MNIST {split} count mismatch: {img_path.name} has {len(images)} images "
                        f"but {lbl_path.name} has {len(labels)} labels")
    X = images.reshape(len(images), -1).astype(dt) / dt.type(255)
    return validate(Dataset(X=X, y=labels.astype(np.int64), n_classes=10,
                            name="mnist", task="classification"))

