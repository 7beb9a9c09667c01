"""Checkpoints that are never torn and never trusted blindly.

A checkpoint is a directory ``<root>/ckpt-<step>`` holding ``arrays.npz``
(parameters, optimizer state, the epoch's data order; read back with
``allow_pickle=False``) and ``meta.json`` (format version, versions, graph
hash, dtype, backend, epoch, step, optimizer hyperparameters and step count,
RNG state, position in the epoch, history, SHA-256 of ``arrays.npz``).

Writing goes to a temporary sibling, every file and the directory are
fsynced, then the directory is renamed into place and the parent fsynced: a
kill at any moment leaves either the old checkpoints or the new one, never
half of one.  The newest ``keep_last`` checkpoints are kept.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

FORMAT_VERSION = 1
PREFIX = "ckpt-"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded, verified checkpoint."""

    path: Path
    meta: dict
    arrays: dict


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def npz_bytes(arrays: dict) -> bytes:
    """``arrays`` as an uncompressed ``.npz``, deterministic for equal input."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in sorted(arrays.items())})
    return buf.getvalue()


def save_checkpoint(root, name: str, arrays: dict, meta: dict, keep_last: int = 2) -> Path:
    """Write ``root/<name>`` atomically; returns its path.

    Raises :class:`CheckpointError` (previous checkpoints untouched) when the
    write fails, e.g. on a full disk.
    """
    root = Path(root)
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    payload = npz_bytes(arrays)
    meta = {**meta, "format_version": FORMAT_VERSION,
            "arrays_sha256": hashlib.sha256(payload).hexdigest()}
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        _write(tmp / "arrays.npz", payload)
        _write(tmp / "meta.json", (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        why = "disk full" if exc.errno == 28 else (exc.strerror or type(exc).__name__)
        raise CheckpointError(f"could not write checkpoint {final}: {why}; "
                              "the previous checkpoint is kept") from None
    for old in list_checkpoints(root)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root) -> list:
    """Complete checkpoints under ``root``, oldest first (temporaries ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def load_checkpoint(path) -> Checkpoint:
    """Read and verify one checkpoint directory; :class:`CheckpointError` if
    anything is missing, corrupt, newer than this symdl, or pickled."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
        payload = (path / "arrays.npz").read_bytes()
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} is incomplete: {Path(exc.filename).name} missing") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable: meta.json is corrupt ({exc})") from None
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise CheckpointError(f"checkpoint {path}: meta.json is not a symdl checkpoint")
    if int(meta["format_version"]) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {meta['format_version']}, newer than this "
                              f"symdl reads ({FORMAT_VERSION}); upgrade symdl")
    if hashlib.sha256(payload).hexdigest() != meta.get("arrays_sha256"):
        raise CheckpointError(f"checkpoint {path}: arrays.npz does not match its SHA-256 "
                              "(truncated or corrupted)")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path}: refused to load ({exc})") from None
    return Checkpoint(path, meta, arrays)


def latest_good(root, report=None) -> Checkpoint | None:
    """The newest checkpoint under ``root`` that verifies; older ones are
    tried in turn, and ``report(message)`` hears about every one skipped."""
    for path in reversed(list_checkpoints(root)):
        try:
            return load_checkpoint(path)
        except CheckpointError as exc:
            if report:
                report(f"{exc}; falling back to the previous checkpoint")
    return None


def check_writable(root, need_bytes: int) -> None:
    """Pre-flight: ``root`` can be created and written, with room for one checkpoint."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CheckpointError(f"checkpoint folder {root} is not writable ({exc.strerror})") from None
    free = shutil.disk_usage(root).free
    if free < need_bytes:
        raise CheckpointError(f"not enough free disk for a checkpoint in {root}: "
                              f"{free:,} bytes free, {need_bytes:,} needed")
