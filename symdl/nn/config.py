"""Modules described as JSON data and rebuilt from it: the architecture of a saved model.

Every :class:`~symdl.nn.module.Module` remembers the arguments of its
constructor call (:meth:`Module.config`), so a model needs no pickle to be
saved: ``{"class": "layers.Dense", "args": {"n_in": 64, "n_out": 10}}`` names
a class of :data:`LAYER_CLASSES` and the arguments that rebuild it; a
sub-module given as an argument (``Sequential(*layers)``, ``Residual(block)``)
is described in turn.  Random generators (``rng``) are left out: the weights
travel separately.  Tuples and dicts are tagged so they come back as tuples
and dicts; JSON's own types (``None``, bools, numbers, strings, lists) stand
for themselves.  Rebuilding never imports anything: a class is found only in
the registry, which holds symdl's layers and every ``Module`` subclass the
running program has defined.
"""
from __future__ import annotations

import inspect
import math

import numpy as np

from ..errors import CheckpointError, UsageError
from .module import LAYER_CLASSES, Module

__all__ = ["LAYER_CLASSES", "class_key", "construct", "describe", "rebuild", "encode",
           "decode"]

#: constructor parameters never described (their values do not survive a save)
SKIPPED = ("rng",)


def class_key(cls) -> str:
    """The registry name of a module class: ``layers.Dense`` for symdl's own, else
    ``<module>.<qualname>`` (``__main__.MyNet`` for a class defined in a script)."""
    mod = cls.__module__
    mod = mod[len("symdl.nn."):] if mod.startswith("symdl.nn.") else mod
    return f"{mod}.{cls.__qualname__}"


def encode(value, where: str):
    """A constructor argument as JSON data (tagged tuples, dicts and modules)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise UsageError(f"cannot describe {where}: {value} is not a finite number")
        return float(value)
    if isinstance(value, np.dtype):
        return str(value)
    if isinstance(value, Module):
        return {"module": describe(value)}
    if isinstance(value, tuple):
        return {"tuple": [encode(v, where) for v in value]}
    if isinstance(value, list):
        return [encode(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
    raise UsageError(f"cannot describe {where}: a {type(value).__name__} is not JSON data "
                     "(give the class a config() and from_config() of its own)")


def decode(value, where: str):
    """The inverse of :func:`encode`; a malformed value is a :class:`CheckpointError`."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [decode(v, where) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        (tag, inner), = value.items()
        if tag == "tuple" and isinstance(inner, list):
            return tuple(decode(v, where) for v in inner)
        if tag == "dict" and isinstance(inner, dict):
            return {k: decode(v, where) for k, v in inner.items()}
        if tag == "module" and isinstance(inner, dict):
            return rebuild(inner)
    raise CheckpointError(f"model description is corrupt: {where} holds {value!r:.60}")


def describe(module: Module) -> dict:
    """``{"class": key, "args": {name: value}}``: the constructor call that made ``module``."""
    cls = type(module)
    key = class_key(cls)
    args, kwargs = getattr(module, "_init_args", ((), {}))
    try:
        bound = inspect.signature(cls.__init__).bind(module, *args, **kwargs)
    except TypeError as exc:  # pragma: no cover - the call succeeded once
        raise UsageError(f"cannot describe {key}: {exc}") from None
    out = {}
    for name, value in list(bound.arguments.items())[1:]:  # less self
        if name in SKIPPED or isinstance(value, np.random.Generator):
            continue
        where = f"{key}({name})"
        kind = inspect.signature(cls.__init__).parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            out[name] = [encode(v, where) for v in value]
        elif kind is inspect.Parameter.VAR_KEYWORD:
            out[name] = {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        else:
            out[name] = encode(value, where)
    return {"class": key, "args": out}


def rebuild(config: dict) -> Module:
    """The module :func:`describe` described (fresh parameters: load the weights next).

    A class the registry does not hold, arguments its constructor refuses, or a
    malformed description is a :class:`~symdl.errors.CheckpointError`.
    """
    if not (isinstance(config, dict) and isinstance(config.get("class"), str)
            and isinstance(config.get("args"), dict)):
        raise CheckpointError(f"model description is corrupt: {config!r:.80} is not "
                              '{"class": ..., "args": {...}}')
    key = config["class"]
    cls = LAYER_CLASSES.get(key)
    if cls is None:
        raise CheckpointError(f"unknown layer class {key!r} in the model description (a class "
                              "of your own must be defined, i.e. its module imported, before "
                              "symdl.load)")
    if "from_config" in vars(cls):  # a class's own rebuilder wins
        return cls.from_config(config)
    return construct(cls, config)


def construct(cls, config: dict) -> Module:
    """``cls(**arguments)`` from a description's ``args`` (what :meth:`Module.from_config`
    does unless a class gives its own)."""
    key = config["class"]
    params = inspect.signature(cls.__init__).parameters
    positional, keywords = [], {}
    star = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params.values())
    unknown = sorted(set(config["args"]) - set(params) | set(config["args"]) & {"self"})
    if unknown:
        raise CheckpointError(f"model description: {key} takes no argument {unknown[0]!r}")
    for name, p in params.items():  # signature order (a sorted JSON object has lost it)
        if name not in config["args"] or name == "self":
            continue
        value = config["args"][name]
        where = f"{key}({name})"
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            positional += [decode(v, where) for v in _of(value, list, where)]
        elif p.kind is inspect.Parameter.VAR_KEYWORD:
            keywords.update({k: decode(v, where) for k, v in _of(value, dict, where).items()})
        elif star and p.kind is not inspect.Parameter.KEYWORD_ONLY:
            positional.append(decode(value, where))  # before *args: must be positional
        else:
            keywords[name] = decode(value, where)
    try:
        return cls(*positional, **keywords)
    except (UsageError, TypeError, ValueError) as exc:
        raise CheckpointError(f"model description: {key} cannot be rebuilt ({exc})") from None


def _of(value, kind, where):
    if not isinstance(value, kind):
        raise CheckpointError(f"model description is corrupt: {where} is not a {kind.__name__}")
    return value
