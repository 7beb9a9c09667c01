"""Saved models: architecture as JSON, weights as npz, written atomically, loaded verified.

A saved model is a folder holding

* ``model.json``: the format and symdl's version, the module tree as JSON data
  (:meth:`symdl.nn.Module.config`: class names from a registry and constructor
  arguments, never a pickle), the input's per-example shape and dtype, the task,
  the loss, the input preprocessing, the class names, free-form ``metadata``, the
  SHA-256 of ``weights.npz`` and a SHA-256 of its own canonical content;
* ``weights.npz``: the parameters (``param/<name>``) and buffers such as batch
  norm's running statistics (``buffer/<name>``), read back with
  ``allow_pickle=False``.

Writing goes to a temporary sibling that is fsynced and renamed into place, as
checkpoints are (:mod:`symdl.train.checkpoint`'s helpers).  Loading checks both
digests, refuses any pickle, and rebuilds the model; every failure is a one-line
:class:`~symdl.errors.CheckpointError` (exit code 4).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, DataError, UsageError
from ..nn.config import rebuild
from ..nn.forward import forward
# the checkpoint writer's atomic helpers: one implementation of "fsync, rename, fsync"
from .checkpoint import _fsync_dir, _trash, _write, meta_digest, npz_bytes

__all__ = ["FORMAT", "FORMAT_VERSION", "SavedModel", "load", "save"]

FORMAT, FORMAT_VERSION = "symdl-saved-model", 1
MODEL, WEIGHTS = "model.json", "weights.npz"
#: preprocessing keys: raw -> ``(raw.astype(dtype) - subtract) / divide``, then the model's dtype
PREPROCESSING_KEYS = ("dtype", "subtract", "divide")


class SavedModel:
    """A model with what using it needs: preprocessing, class names, loss.

    ``model(X)`` is the network's output (logits of a classifier) for an array of
    rows already preprocessed (as :func:`symdl.data.load_dataset` returns them);
    ``model(g, node)`` builds it into a graph.  :meth:`predict` gives class
    indices (classifiers) or values (regression); :meth:`preprocess` maps raw
    inputs (pixels 0..16 of the digits, 0..255 of MNIST) to what the model takes.

    Examples
    --------
    >>> import symdl                                  # doctest: +SKIP
    >>> m = symdl.load("digits-model")                # doctest: +SKIP
    >>> m.predict(m.preprocess(raw_images))           # doctest: +SKIP
    """

    def __init__(self, module, *, task: str = "classification", loss=None, loss_params=None,
                 input_shape=None, preprocessing=None, class_names=None, metadata=None):
        if task not in ("classification", "regression"):
            raise UsageError(f"task must be classification or regression, got {task!r}")
        self.module, self.task = module, task
        self.loss = loss if loss is not None else (
            "softmax_cross_entropy" if task == "classification" else "mse")
        self.loss_params = dict(loss_params or {})
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.preprocessing = _checked_preprocessing(preprocessing)
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.metadata = dict(metadata or {})

    @property
    def dtype(self) -> str:
        """The parameters' dtype (``float32`` or ``float64``)."""
        params = self.module.parameters()
        return str(params[0].dtype) if params else "float32"

    def __call__(self, *args, prefix: str = ""):
        return self.module(*args, prefix=prefix)

    def logits(self, X) -> np.ndarray:
        """The network's output for preprocessed rows ``X``."""
        return forward(self.module, self._rows(X))

    def predict(self, X) -> np.ndarray:
        """Class indices (the first largest logit, as ``argmax``) or regression values
        (shape ``(N,)`` for one output) for preprocessed rows ``X``."""
        out = self.logits(X)
        if self.task == "classification":
            return out.argmax(axis=-1)
        return out.reshape(len(out)) if out.ndim == 2 and out.shape[1] == 1 else out

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (softmax of the logits) of a softmax classifier."""
        if self.task != "classification" or not self.loss.startswith("softmax"):
            raise UsageError(f"predict_proba needs a softmax classifier; this model is trained "
                             f"with {self.loss} ({self.task})")
        z = self.logits(X).astype(np.float64)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def preprocess(self, raw) -> np.ndarray:
        """Raw inputs (any numeric array whose rows hold one example each) as model rows."""
        raw = np.asarray(raw)
        if raw.dtype.kind not in "biuf":
            raise DataError(f"input must be numeric, got dtype {raw.dtype}")
        p = self.preprocessing
        x = raw.astype(p.get("dtype", self.dtype))
        if "subtract" in p:
            x = x - np.asarray(p["subtract"], x.dtype)
        if "divide" in p:
            x = x / np.asarray(p["divide"], x.dtype)
        return self._rows(x)

    def _rows(self, X) -> np.ndarray:
        X = np.asarray(X)
        shape = self.input_shape
        if shape is not None and X.ndim >= 1 and tuple(X.shape[1:]) != shape:
            size = int(np.prod(shape))
            if X.ndim >= 2 and int(np.prod(X.shape[1:])) == size:
                X = X.reshape(len(X), *shape)  # 8x8 images into rows of 64, and back
            elif X.ndim == 1 and X.size == size:
                X = X.reshape(1, *shape)  # one example
            else:
                raise DataError(f"input has examples of shape {tuple(X.shape[1:])}, the model "
                                f"takes {shape}")
        if X.dtype.kind != "f" or str(X.dtype) != self.dtype:
            X = X.astype(self.dtype) if X.dtype.kind in "biuf" else X
        return X

    def evaluate(self, X, y, batch: int = 1024) -> tuple:
        """``(mean loss, accuracy or None)`` over preprocessed rows ``X`` and targets ``y``,
        computed as :meth:`symdl.train.Trainer.evaluate` computes them."""
        from ..backends import get_backend
        from ..data.dataset import integral_labels
        from ..nn.norm import set_batchnorm_mode
        from .graphs import build_training_graph
        from .regularize import dropout_masks, fill_masks
        X = self._rows(X)
        y = np.asarray(y)
        if len(y) != len(X):
            raise DataError(f"{len(X)} inputs but {len(y)} targets")
        cls = self.task == "classification"
        y = integral_labels(y, "targets") if cls else y.reshape(len(y), -1).astype(self.dtype)
        self.module.name_parameters()
        g, out, L = build_training_graph(self.module, X.shape[1] if X.ndim == 2 else X.shape[1:],
                                         self.loss, self.loss_params, self.dtype,
                                         None if cls else ("N", y.shape[1]))
        n_out = g.shape(out)[-1]
        if cls and (y.min() < 0 or y.max() >= n_out):
            raise DataError(f"labels must lie in [0, {n_out}), got {y.min()}..{y.max()}")
        backend, bind = get_backend("numpy"), {p.name: p.data for p in self.module.parameters()}
        total, correct, programs = 0.0, 0, {}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for s in range(0, len(X), batch):
                n = min(batch, len(X) - s)
                if n not in programs:
                    programs[n] = backend.compile(g, [L, out], bind, {"N": n})
                    fill_masks(programs[n], dropout_masks(g), None, train=False)
                prog = programs[n]
                prog.inputs["x"][...] = X[s:s + n]
                prog.inputs["y"][...] = y[s:s + n]
                set_batchnorm_mode(prog, self.module, train=False)
                prog.run()
                total += float(prog.value(L)) * n
                if cls:
                    correct += backend.count_hits(prog.value(out), prog.inputs["y"])
        return total / len(X), (correct / len(X) if cls else None)

    def save(self, path) -> Path:
        """Write this model to the folder ``path`` (see :func:`save`)."""
        return save(self, path)

    def __repr__(self) -> str:
        classes = f", {len(self.class_names)} classes" if self.class_names else ""
        return f"SavedModel({self.module!r}, {self.task}{classes})"


def _checked_preprocessing(p) -> dict:
    p = dict(p or {})
    bad = sorted(set(p) - set(PREPROCESSING_KEYS))
    if bad:
        raise UsageError(f"unknown preprocessing key {bad[0]!r} (known: "
                         f"{', '.join(PREPROCESSING_KEYS)})")
    if "dtype" in p and p["dtype"] not in ("float32", "float64"):
        raise UsageError(f"preprocessing dtype must be float32 or float64, got {p['dtype']!r}")
    for k in ("subtract", "divide"):
        if k in p:
            v = np.asarray(p[k], np.float64)
            if not np.all(np.isfinite(v)) or (k == "divide" and np.any(v == 0)):
                raise UsageError(f"preprocessing {k} must be finite (and non-zero to divide)")
            p[k] = v.tolist()
    return p


# ------------------------------------------------------------------ writing
def save(model, path, *, preprocessing=None, class_names=None, task=None, loss=None,
         loss_params=None, input_shape=None, metadata=None) -> Path:
    """Write ``model`` (a :class:`~symdl.nn.Module`, a :class:`SavedModel`, or a
    :class:`~symdl.train.Trainer`: its model, loss and task) to the folder ``path``,
    atomically; an existing saved model there is replaced.

    ``preprocessing`` maps raw inputs to model rows: ``{"dtype": "float32", "divide": 16}``
    (the digits' pixels), optionally ``"subtract"``.  ``class_names`` label the outputs.
    ``task`` defaults to classification with softmax cross-entropy, ``input_shape`` to
    what the model's first layer takes (needed for ``model.preprocess`` and ``evaluate``).
    """
    from .. import __version__
    if hasattr(model, "loss_params") and hasattr(model, "classification"):  # a Trainer
        graph = getattr(model, "_graph", None)
        task = task or ("classification" if model.classification else "regression")
        loss, loss_params = loss or model.loss, loss_params or model.loss_params
        input_shape = input_shape or (graph.shape("x")[1:] if graph is not None else None)
        model = model.model
    if not isinstance(model, SavedModel):
        model = SavedModel(model, task=task or "classification", loss=loss,
                           loss_params=loss_params, input_shape=input_shape or _first_width(model),
                           preprocessing=preprocessing, class_names=class_names,
                           metadata=metadata)
    module = model.module
    module.name_parameters()
    config = module.config()
    _check_rebuilds(module, config)
    arrays = {f"param/{n}": _host(p.data) for n, p in module.named_parameters()}
    arrays.update({f"buffer/{n}": _host(b) for n, b in module.named_buffers()})
    payload = npz_bytes(arrays)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "symdl_version": __version__,
            "architecture": config, "dtype": model.dtype, "task": model.task,
            "loss": {"op": model.loss, "params": model.loss_params},
            "input_shape": None if model.input_shape is None else list(model.input_shape),
            "preprocessing": model.preprocessing, "class_names": model.class_names,
            "metadata": model.metadata, "weights_sha256": hashlib.sha256(payload).hexdigest()}
    try:
        meta = json.loads(json.dumps(meta, allow_nan=False))  # the digest covers what is read
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot save: metadata is not JSON data ({exc})") from None
    meta["meta_sha256"] = meta_digest(meta)
    _write_folder(Path(path), payload, (json.dumps(meta, indent=1) + "\n").encode())
    return Path(path)


def _host(array) -> np.ndarray:
    """A host copy of a parameter (CuPy arrays, trained on a GPU, have ``get``)."""
    return np.asarray(array.get() if not isinstance(array, np.ndarray) and hasattr(array, "get")
                      else array)


def _first_width(module):
    """The per-example input shape a model of Dense layers (or a CNN) takes, if evident."""
    from ..nn.cnn import Unflatten
    for m in [module, *getattr(module, "layers", [])[:1]]:
        if isinstance(m, Unflatten):  # flat image rows seen as (C, H, W)
            return (int(np.prod(m.shape)),)
        if hasattr(m, "n_in"):
            return (m.n_in,)
    return None


def _check_rebuilds(module, config) -> None:
    """The description must rebuild a model with the same parameters: a module changed
    after construction (a layer appended by hand) cannot be described by its arguments."""
    try:
        twin = rebuild(json.loads(json.dumps(config)))
    except CheckpointError as exc:
        raise UsageError(f"cannot save: {exc}") from None
    mine = [(n, p.shape) for n, p in module.named_parameters()]
    theirs = [(n, p.shape) for n, p in twin.named_parameters()]
    if mine != theirs:
        raise UsageError("cannot save: the model was changed after it was constructed (its "
                         "constructor arguments rebuild other parameters); give its class a "
                         "config() that describes it")


def _write_folder(final: Path, payload: bytes, meta: bytes) -> None:
    if final.exists() and not (final / MODEL).is_file() and (
            not final.is_dir() or any(final.iterdir())):
        raise CheckpointError(f"cannot save to {final}: it exists and is not a saved model "
                              "(choose a new folder)")
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        _write(tmp / WEIGHTS, payload)
        _write(tmp / MODEL, meta)
        _fsync_dir(tmp)
        old = _trash(final) if final.exists() else None
        os.rename(tmp, final)
        _fsync_dir(final.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        why = "disk full" if exc.errno == 28 else (exc.strerror or type(exc).__name__)
        raise CheckpointError(f"could not save the model to {final}: {why}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------ reading
def load(path) -> SavedModel:
    """Read and verify the saved model in folder ``path``; :class:`~symdl.errors.CheckpointError`
    when a file is missing, truncated, edited, holds a pickle or names an unknown layer."""
    path = Path(path)
    try:
        text = (path / MODEL).read_text()
        payload = (path / WEIGHTS).read_bytes()
    except FileNotFoundError as exc:
        what = "is not a saved model" if not path.is_dir() else \
            f"is incomplete: {Path(exc.filename).name} missing"
        raise CheckpointError(f"{path} {what}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read saved model {path}: {exc.strerror}") from None
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"saved model {path}: {MODEL} is corrupt ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: {MODEL} is not a symdl saved model")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"saved model {path} has format {meta.get('format_version')!r}; "
                              f"this symdl reads format {FORMAT_VERSION}")
    if meta.get("meta_sha256") != meta_digest(meta):
        raise CheckpointError(f"saved model {path}: {MODEL} does not match its SHA-256 "
                              "(edited or corrupted)")
    if hashlib.sha256(payload).hexdigest() != meta.get("weights_sha256"):
        raise CheckpointError(f"saved model {path}: {WEIGHTS} does not match its SHA-256 "
                              "(truncated or corrupted)")
    arrays = _arrays(payload, path)
    try:
        module = rebuild(meta["architecture"])
        loss = meta["loss"]
        model = SavedModel(module, task=meta["task"], loss=loss["op"], loss_params=loss["params"],
                           input_shape=meta["input_shape"], preprocessing=meta["preprocessing"],
                           class_names=meta["class_names"], metadata=meta["metadata"])
    except (KeyError, TypeError, ValueError, UsageError) as exc:
        raise CheckpointError(f"saved model {path}: {MODEL} is corrupt "
                              f"({type(exc).__name__}: {exc})") from None
    params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
    module.load_state_dict(params)
    buffers = dict(module.named_buffers())
    stored = {k[7:]: v for k, v in arrays.items() if k.startswith("buffer/")}
    if set(stored) != set(buffers) or any(stored[k].shape != buffers[k].shape for k in stored):
        raise CheckpointError(f"saved model {path}: the buffers in {WEIGHTS} do not fit the model")
    for k, b in buffers.items():
        b[...] = stored[k]
    if str(meta.get("dtype")) != model.dtype:
        raise CheckpointError(f"saved model {path}: weights are {model.dtype}, {MODEL} says "
                              f"{meta.get('dtype')}")
    return model


def _arrays(payload: bytes, path: Path) -> dict:
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"saved model {path}: refused to load {WEIGHTS} ({exc})") from None
    odd = sorted(k for k, v in arrays.items() if v.dtype.kind not in "biuf")
    if odd:
        raise CheckpointError(f"saved model {path}: {WEIGHTS} holds a non-numeric array {odd[0]}")
    return arrays
