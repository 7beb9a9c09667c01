"""Small synthetic datasets for demos and tests.

Every generator takes ``n`` (number of samples), ``seed`` (an int, a
:class:`numpy.random.SeedSequence` or a :class:`numpy.random.Generator`; the
same int always gives the same data) and ``noise`` (standard deviation of
Gaussian noise), and returns a :class:`~symdl.data.dataset.Dataset` with
``float32`` features.  Classification sets have ``int64`` labels with
balanced classes (sizes differ by at most one).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from symdl.errors import DataError

from .dataset import Dataset

Seed = int | np.random.SeedSequence | np.random.Generator


def _setup(name: str, n: int, noise: float, seed: Seed, min_n: int) -> np.random.Generator:
    """Check the common arguments and return the generator to draw from."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < min_n:
        raise DataError(f"{name}: n must be an integer >= {min_n}, got {n!r}")
    if not isinstance(noise, (int, float, np.number)) or not np.isfinite(noise) or noise < 0:
        raise DataError(f"{name}: noise must be a finite number >= 0, got {noise!r}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: invalid seed {seed!r} ({exc})") from None


def _balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` labels in ``[0, n_classes)`` with equal counts (±1), shuffled."""
    return rng.permutation(np.arange(n) % n_classes).astype(np.int64)


def _classification(name: str, X: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                    shuffle: bool) -> Dataset:
    """Wrap arrays as a 2-class dataset, optionally shuffling the rows."""
    if shuffle:
        order = rng.permutation(len(y))
        X, y = X[order], y[order]
    return Dataset(X=np.ascontiguousarray(X, dtype=np.float32), y=y.astype(np.int64),
                   n_classes=2, name=name, task="classification")


def xor(n: int = 200, seed: Seed = 0, noise: float = 0.1) -> Dataset:
    """Noisy points around the four corners of ``[-1, 1]^2``.

    Parameters
    ----------
    n : int, default 200
        Number of points; the corners get equal shares (±1).
    seed : int, SeedSequence or Generator, default 0
        Source of randomness.
    noise : float, default 0.1
        Standard deviation of the Gaussian jitter around each corner.

    Returns
    -------
    Dataset
        ``X`` of shape ``(n, 2)``; label 1 where the corner's coordinates
        have different signs (XOR of ``x1 > 0`` and ``x2 > 0``), else 0.
    """
    rng = _setup("xor", n, noise, seed, 4)
    corner = _balanced_labels(n, 4, rng)
    signs = np.stack([corner // 2, corner % 2], axis=1) * 2.0 - 1.0
    X = signs + noise * rng.standard_normal((n, 2))
    y = (signs[:, 0] != signs[:, 1]).astype(np.int64)
    return _classification("xor", X, y, rng, shuffle=False)


def xor_table() -> Dataset:
    """The exact XOR truth table: inputs ``{0, 1}^2``, labels ``[0, 1, 1, 0]``.

    Returns
    -------
    Dataset
        Four rows ``(0,0), (0,1), (1,0), (1,1)`` with labels ``0, 1, 1, 0``.
    """
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    return Dataset(X=X, y=np.array([0, 1, 1, 0], dtype=np.int64), n_classes=2,
                   name="xor_table", task="classification")


def spirals(n: int = 400, seed: Seed = 0, noise: float = 0.05) -> Dataset:
    """Two interleaved spirals (1.5 turns each) inside the unit disc.

    Parameters
    ----------
    n : int, default 400
        Number of points, split evenly (±1) between the spirals.
    seed : int, SeedSequence or Generator, default 0
        Source of randomness.
    noise : float, default 0.05
        Standard deviation of the Gaussian jitter.

    Returns
    -------
    Dataset
        ``X`` of shape ``(n, 2)``; label ``k`` for spiral ``k``, which is the
        other spiral rotated by 180 degrees.
    """
    rng = _setup("spirals", n, noise, seed, 2)
    y = _balanced_labels(n, 2, rng)
    turns = 3.0 * np.pi
    theta = np.sqrt(rng.uniform(0.0, 1.0, n)) * turns  # sqrt: even density along the arc
    r = theta / turns
    angle = theta + np.pi * y
    X = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    X += noise * rng.standard_normal((n, 2))
    return _classification("spirals", X, y, rng, shuffle=False)


def moons(n: int = 400, seed: Seed = 0, noise: float = 0.1) -> Dataset:
    """Two interleaving half circles, as :func:`sklearn.datasets.make_moons`.

    Parameters
    ----------
    n : int, default 400
        Number of points; the upper moon gets ``n // 2``.
    seed : int, SeedSequence or Generator, default 0
        Source of randomness.
    noise : float, default 0.1
        Standard deviation of the Gaussian jitter.

    Returns
    -------
    Dataset
        ``X`` of shape ``(n, 2)`` in shuffled order; label 0 for the upper
        moon ``(cos t, sin t)``, 1 for the lower ``(1 - cos t, 0.5 - sin t)``,
        ``t`` evenly spaced on ``[0, pi]``.
    """
    rng = _setup("moons", n, noise, seed, 2)
    n_out = n // 2
    t_out = np.linspace(0.0, np.pi, n_out)
    t_in = np.linspace(0.0, np.pi, n - n_out)
    X = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
                        np.stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1)])
    y = np.repeat([0, 1], [n_out, n - n_out])
    X = X + noise * rng.standard_normal((n, 2))
    return _classification("moons", X, y, rng, shuffle=True)


def circles(n: int = 400, seed: Seed = 0, noise: float = 0.05, factor: float = 0.5) -> Dataset:
    """Two concentric circles, as :func:`sklearn.datasets.make_circles`.

    Parameters
    ----------
    n : int, default 400
        Number of points; the outer circle gets ``n // 2``.
    seed : int, SeedSequence or Generator, default 0
        Source of randomness.
    noise : float, default 0.05
        Standard deviation of the Gaussian jitter.
    factor : float, default 0.5
        Radius of the inner circle relative to the outer (unit) circle.

    Returns
    -------
    Dataset
        ``X`` of shape ``(n, 2)`` in shuffled order; label 0 on the outer
        circle, 1 on the inner one.
    """
    rng = _setup("circles", n, noise, seed, 2)
    if not 0.0 < factor < 1.0:
        raise DataError(f"circles: factor must be in (0, 1), got {factor!r}")
    n_out = n // 2
    t_out = np.linspace(0.0, 2.0 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0.0, 2.0 * np.pi, n - n_out, endpoint=False)
    X = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
                        factor * np.stack([np.cos(t_in), np.sin(t_in)], axis=1)])
    y = np.repeat([0, 1], [n_out, n - n_out])
    X = X + noise * rng.standard_normal((n, 2))
    return _classification("circles", X, y, rng, shuffle=True)


def sine(n: int = 200, seed: Seed = 0, noise: float = 0.1) -> Dataset:
    """Regression on a noisy sine: ``y = sin(x) + noise``, ``x ~ U[-pi, pi]``.

    Parameters
    ----------
    n : int, default 200
        Number of points.
    seed : int, SeedSequence or Generator, default 0
        Source of randomness.
    noise : float, default 0.1
        Standard deviation of the Gaussian noise added to ``y``.

    Returns
    -------
    Dataset
        ``X`` and ``y`` both ``float32`` of shape ``(n, 1)``; ``n_classes``
        is ``None`` and ``task`` is ``"regression"``.
    """
    rng = _setup("sine", n, noise, seed, 1)
    x = rng.uniform(-np.pi, np.pi, (n, 1))
    y = np.sin(x) + noise * rng.standard_normal((n, 1))
    return Dataset(X=x.astype(np.float32), y=y.astype(np.float32), n_classes=None,
                   name="sine", task="regression")


#: Synthetic generators by name, as accepted by :func:`symdl.data.load_dataset`.
SYNTHETIC: dict[str, Callable[..., Dataset]] = {
    "xor": xor, "spirals": spirals, "moons": moons, "circles": circles, "sine": sine,
}
