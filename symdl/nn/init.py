"""Initializers: the variance rules of Glorot/Xavier and He/Kaiming.

For a weight of shape (fan_out, fan_in): Xavier keeps Var = 2/(fan_in + fan_out)
(for tanh and sigmoid), He keeps Var = 2/fan_in (for ReLU), so signals keep
their variance forward and backward.  Xavier's paper starts from Var = 1/n
(n = fan_in keeps the forward signal, n = fan_out the backward one); 2/(fan_in +
fan_out) is their harmonic compromise; :func:`xavier_variances` computes all three.
Every function takes an explicit ``numpy.random.Generator``.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError

__all__ = ["variance", "xavier_variances", "xavier_uniform", "xavier_normal", "he_uniform",
           "he_normal", "lecun_normal", "zeros", "INITIALIZERS", "initializer"]


def _fans(shape) -> tuple:
    if len(shape) < 2:
        return shape[0], shape[0]
    return shape[1], shape[0]


def variance(kind: str, shape) -> float:
    """The target variance of ``kind`` for a weight of ``shape``."""
    fan_in, fan_out = _fans(shape)
    if kind.startswith("xavier"):
        return 2.0 / (fan_in + fan_out)
    if kind.startswith("he"):
        return 2.0 / fan_in
    if kind.startswith("lecun"):  # Xavier's 1/n with n = fan_in (also SELU's choice)
        return 1.0 / fan_in
    raise UsageError(f"unknown initializer {kind!r} (choose from: {', '.join(INITIALIZERS)})")


def xavier_variances(shape) -> dict:
    """Xavier's three variances for a weight of ``shape`` (numbers or SymPy symbols):
    ``1/n_in`` (forward signal kept), ``1/n_out`` (backward signal kept) and their
    compromise ``2/(n_in + n_out)``, the one :func:`xavier_uniform` uses.

    >>> xavier_variances((10, 30))
    {'1/n_in': 0.03333333333333333, '1/n_out': 0.1, '2/(n_in+n_out)': 0.05}
    """
    fan_in, fan_out = _fans(shape)
    return {"1/n_in": 1 / fan_in, "1/n_out": 1 / fan_out,
            "2/(n_in+n_out)": variance("xavier", shape)}


def xavier_uniform(shape, rng, dtype="float32"):
    a = math.sqrt(3.0 * variance("xavier", shape))
    return rng.uniform(-a, a, size=shape).astype(dtype)


def xavier_normal(shape, rng, dtype="float32"):
    return (rng.standard_normal(shape) * math.sqrt(variance("xavier", shape))).astype(dtype)


def he_uniform(shape, rng, dtype="float32"):
    a = math.sqrt(3.0 * variance("he", shape))
    return rng.uniform(-a, a, size=shape).astype(dtype)


def he_normal(shape, rng, dtype="float32"):
    return (rng.standard_normal(shape) * math.sqrt(variance("he", shape))).astype(dtype)


def lecun_normal(shape, rng, dtype="float32"):
    return (rng.standard_normal(shape) * math.sqrt(variance("lecun", shape))).astype(dtype)


def zeros(shape, rng=None, dtype="float32"):
    return np.zeros(shape, dtype)


INITIALIZERS = {"xavier_uniform": xavier_uniform, "xavier_normal": xavier_normal,
                "he_uniform": he_uniform, "he_normal": he_normal,
                "kaiming_uniform": he_uniform, "kaiming_normal": he_normal,
                "lecun_normal": lecun_normal, "zeros": zeros}


def initializer(name: str):
    """The initializer function named ``name`` (a UsageError names the known ones)."""
    if name not in INITIALIZERS:
        raise UsageError(f"unknown initializer {name!r} (choose from: {', '.join(INITIALIZERS)})")
    return INITIALIZERS[name]
