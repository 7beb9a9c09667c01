"""Checkpoints that are never torn, never trusted blindly and never lost.

A checkpoint is a directory ``<root>/ckpt-<step>`` holding ``arrays.npz``
(parameters, optimizer state, the epoch's data order; read back with
``allow_pickle=False``) and ``meta.json`` (format version, versions, graph
hash, dtype, backend, epoch, step, optimizer hyperparameters and step count,
RNG state, position in the epoch, history, the run's settings, SHA-256 of
``arrays.npz``, and a SHA-256 of its own canonical content).  Reading checks
both digests and then every field's type (:data:`META_FIELDS`).

Writing goes to a temporary sibling, every file and the directory are
fsynced, then the directory is renamed into place and the parent fsynced: a
kill at any moment leaves either the old checkpoints or the new one, never
half of one.  Pruning (only the newest ``keep_last`` are kept) and replacing
first rename a checkpoint to a ``.trash-`` name, then delete it; the next
start clears whatever a kill left (:func:`clean_stale`).  A corrupt checkpoint
is moved aside (``corrupt-ckpt-...``), never deleted or overwritten.  One
process writes a folder at a time (:class:`FolderLock`).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

try:  # POSIX; elsewhere the folder lock is a no-op
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["Checkpoint", "FORMAT_VERSION", "FolderLock", "META_FIELDS", "check_meta",
           "check_writable", "clean_stale", "latest_good", "list_checkpoints", "load_checkpoint",
           "meta_digest", "move_aside", "npz_bytes", "save_checkpoint"]

FORMAT_VERSION = 2
PREFIX = "ckpt-"
TMP, TRASH, CORRUPT, LOCK = ".tmp-", ".trash-", "corrupt-", ".lock"

_INT, _NUM, _OPT_NUM = ("int",), ("int", "float"), ("int", "float", "null")
#: Every field of ``meta.json`` and its JSON type(s); nested dicts are checked in turn.
META_FIELDS = {
    "format_version": _INT, "arrays_sha256": ("str",), "meta_sha256": ("str",),
    "reason": ("str",), "versions": ("dict",), "graph_hash": ("str",), "dtype": ("str",),
    "backend": ("str",), "epoch": _INT, "global_step": _INT, "batch_size": _INT,
    "position": {"pos": _INT, "total": _NUM, "correct": _INT, "skips": _INT, "loss0": _OPT_NUM},
    "optimizer": {"name": ("str",), "hyper": ("dict",), "t": _INT},
    "rng": ("dict",), "noise_rng": ("dict",), "history": ("dict",), "settings": ("dict",),
}
_TYPES = {"int": int, "float": float, "str": str, "dict": dict, "list": list}


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


def meta_digest(meta: dict) -> str:
    """SHA-256 of ``meta`` (less its own ``meta_sha256``) as canonical JSON:
    sorted keys, no spaces, so formatting never matters, content always does."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def save_checkpoint(root, name: str, arrays: dict, meta: dict, keep_last: int = 2) -> Path:
    """Write ``root/<name>`` atomically; returns its path.

    Raises :class:`CheckpointError` (previous checkpoints untouched) when the
    write fails, e.g. on a full disk.
    """
    root = Path(root)
    final = root / name
    tmp = root / f"{TMP}{name}-{os.getpid()}"
    payload = npz_bytes(arrays)
    meta = {**meta, "format_version": FORMAT_VERSION,
            "arrays_sha256": hashlib.sha256(payload).hexdigest()}
    meta = json.loads(json.dumps(meta))  # the digest covers the form that is read back
    meta["meta_sha256"] = meta_digest(meta)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        _write(tmp / "arrays.npz", payload)
        _write(tmp / "meta.json", (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
        _fsync_dir(tmp)
        old = None
        if final.exists():
            try:
                load_checkpoint(final)
                old = _trash(final)
            except CheckpointError:
                move_aside(final)
        os.rename(tmp, final)
        _fsync_dir(root)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        why = "disk full" if exc.errno == 28 else (exc.strerror or type(exc).__name__)
        raise CheckpointError(f"could not write checkpoint {final}: {why}; "
                              "the previous checkpoint is kept") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for stale in list_checkpoints(root)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(_trash(stale), ignore_errors=True)
    return final


def _trash(path: Path) -> Path:
    """Rename ``path`` to a ``.trash-`` name (atomic) before it is deleted, so
    that a kill mid-delete never leaves a half-deleted ``ckpt-`` folder."""
    dest = path.parent / f"{TRASH}{path.name}-{os.getpid()}"
    if dest.exists():
        shutil.rmtree(dest)
    os.rename(path, dest)
    _fsync_dir(path.parent)
    return dest


def move_aside(path) -> Path:
    """Rename a corrupt checkpoint to ``corrupt-<name>[.k]`` (never deleted)."""
    path = Path(path)
    dest, k = path.parent / f"{CORRUPT}{path.name}", 0
    while dest.exists():
        k += 1
        dest = path.parent / f"{CORRUPT}{path.name}.{k}"
    os.rename(path, dest)
    _fsync_dir(path.parent)
    return dest


def clean_stale(root) -> list:
    """Clear what a killed writer left in ``root`` (call with the folder locked).

    Temporary folders are deleted.  A ``.trash-`` folder whose checkpoint
    name is free again and which still verifies (a kill between the two
    renames of a replacement) is put back; every other one is deleted.
    Returns the names removed or restored.
    """
    root = Path(root)
    done = []
    if not root.is_dir():
        return done
    for p in sorted(root.iterdir()):
        if p.name.startswith((TMP, ".probe-")):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            done.append(p.name)
        elif p.name.startswith(TRASH) and p.is_dir():
            name = p.name[len(TRASH):].rsplit("-", 1)[0]
            target = root / name
            if name.startswith(PREFIX) and not target.exists() and _verifies(p):
                os.rename(p, target)
            else:
                shutil.rmtree(p, ignore_errors=True)
            done.append(p.name)
    if done:
        _fsync_dir(root)
    return done


def _verifies(path: Path) -> bool:
    try:
        load_checkpoint(path)
        return True
    except CheckpointError:
        return False


def list_checkpoints(root) -> list:
    """Complete checkpoints under ``root``, oldest first (temporaries ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def load_checkpoint(path) -> Checkpoint:
    """Read and verify one checkpoint directory; :class:`CheckpointError` if
    anything is missing, corrupt, edited, newer than this symdl, or pickled."""
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
    version = meta["format_version"]
    if type(version) is int and version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {version}, newer than this "
                              f"symdl reads ({FORMAT_VERSION}); upgrade symdl")
    if meta.get("meta_sha256") != meta_digest(meta):
        raise CheckpointError(f"checkpoint {path}: meta.json does not match its SHA-256 "
                              "(edited or corrupted)")
    check_meta(meta, f"checkpoint {path}")
    if hashlib.sha256(payload).hexdigest() != meta["arrays_sha256"]:
        raise CheckpointError(f"checkpoint {path}: arrays.npz does not match its SHA-256 "
                              "(truncated or corrupted)")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"checkpoint {path}: refused to load ({exc})") from None
    return Checkpoint(path, meta, arrays)


def check_meta(meta: dict, where: str, fields: dict = META_FIELDS, prefix: str = "") -> None:
    """Every field of :data:`META_FIELDS` present with its type, counts
    non-negative, and the RNG states loadable; else :class:`CheckpointError`."""
    for key, kind in fields.items():
        if key not in meta:
            raise CheckpointError(f"{where}: meta.json is corrupt (field {prefix}{key} missing)")
        v = meta[key]
        if isinstance(kind, dict):
            if not isinstance(v, dict):
                raise CheckpointError(f"{where}: meta.json is corrupt ({prefix}{key} is not an object)")
            check_meta(v, where, kind, f"{prefix}{key}.")
            continue
        ok = (v is None and "null" in kind) or (type(v) is not bool and any(
            isinstance(v, _TYPES[k]) for k in kind if k != "null"))
        if not ok or (isinstance(v, int) and not isinstance(v, bool) and v < 0):
            want = " or ".join("a non-negative int" if k == "int" else k for k in kind)
            raise CheckpointError(f"{where}: meta.json is corrupt ({prefix}{key} = {v!r:.40}, "
                                  f"expected {want})")
    if prefix:
        return
    if meta["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{where} has format {meta['format_version']}; this symdl reads "
                              f"format {FORMAT_VERSION} only")
    if not all(type(v) in (int, float) for v in meta["optimizer"]["hyper"].values()):
        raise CheckpointError(f"{where}: meta.json is corrupt (optimizer.hyper holds a non-number)")
    for key in ("rng", "noise_rng"):
        try:
            np.random.PCG64().state = meta[key]
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{where}: meta.json is corrupt ({key} is not a generator "
                                  f"state: {exc})") from None


def latest_good(root, report=None, aside: bool = False) -> Checkpoint | None:
    """The newest checkpoint under ``root`` that verifies; older ones are
    tried in turn, and ``report(message)`` hears about every one skipped.

    With ``aside`` (the caller holds the folder's lock) each corrupt one is
    moved aside, and when none verifies but some exist (or were moved aside
    before) :class:`CheckpointError` refuses rather than start over.
    """
    root = Path(root)
    for path in reversed(list_checkpoints(root)):
        try:
            return load_checkpoint(path)
        except CheckpointError as exc:
            msg = str(exc)
            if aside:
                msg += f"; moved aside to {move_aside(path).name}"
            if report:
                report(f"{msg}; falling back to the previous checkpoint")
    corrupt = sorted(p.name for p in root.iterdir() if p.name.startswith(CORRUPT)) \
        if aside and root.is_dir() else []
    if corrupt:
        raise CheckpointError(f"no checkpoint in {root} verifies (moved aside, not deleted: "
                              f"{', '.join(corrupt[:4])}{' ...' if len(corrupt) > 4 else ''}); "
                              "not starting over silently: pass --resume never to start afresh")
    return None


class FolderLock:
    """One writer per checkpoint folder: an exclusive ``flock`` on
    ``<root>/.lock``, which holds the writer's PID.  The kernel drops the lock
    when its process dies, so a lock left by a killed run is simply taken over.
    """

    def __init__(self, root):
        self.root, self._fd = Path(root), None

    def __enter__(self):
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise CheckpointError(f"checkpoint folder {self.root} is in use by another symdl "
                                      f"process (PID {holder}); one writer per folder: wait for "
                                      "it to finish or use another --checkpoint folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def check_writable(root, need_bytes: int) -> None:
    """Pre-flight: ``root`` can be created and written, with room for one checkpoint."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink(missing_ok=True)  # a concurrent start may have cleared it
    except OSError as exc:
        raise CheckpointError(f"checkpoint folder {root} is not writable ({exc.strerror})") from None
    free = shutil.disk_usage(root).free
    if free < need_bytes:
        raise CheckpointError(f"not enough free disk for a checkpoint in {root}: "
                              f"{free:,} bytes free, {need_bytes:,} needed")
