"""Data augmentation for square images stored as rows (the 8×8 digits): shifts, rotations, noise.

Every transformation keeps the label.  Randomness comes from an explicit
``numpy.random.Generator`` (or a seed), so the same seed gives the same
augmented set, bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import UsageError
from .dataset import Dataset

__all__ = ["AugmentSpec", "parse_augment", "image_side", "shift", "rotate", "add_noise",
           "augment"]


@dataclass(frozen=True)
class AugmentSpec:
    """What :func:`augment` does: ``copies`` new copies of the training set, each example
    moved by up to ``shift`` pixels in x and y, rotated by up to ``degrees`` and given
    Gaussian noise of standard deviation ``noise`` (each 0 to switch it off)."""

    copies: int = 4
    shift: int = 1
    degrees: float = 10.0
    noise: float = 0.0

    def describe(self) -> str:
        parts = [f"{self.copies} cop{'y' if self.copies == 1 else 'ies'}"]
        if self.shift:
            parts.append(f"shifts up to {self.shift} px")
        if self.degrees:
            parts.append(f"rotations up to {self.degrees:g} degrees")
        if self.noise:
            parts.append(f"noise sigma {self.noise:g}")
        return ", ".join(parts)


def parse_augment(text: str) -> AugmentSpec:
    """``"copies=4,shift=1,degrees=10,noise=0.1"`` (any subset, any order) -> spec;
    ``"default"`` or ``""`` gives the defaults."""
    fields = {"copies": int, "shift": int, "degrees": float, "noise": float}
    kw = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item or item == "default":
            continue
        key, eq, value = item.partition("=")
        if key.strip() not in fields or not eq:
            raise UsageError(f"--augment: cannot read {item!r}; write k=v pairs from "
                             f"{', '.join(fields)} (e.g. copies=4,shift=1,degrees=10,noise=0.1)")
        try:
            kw[key.strip()] = fields[key.strip()](value)
        except ValueError:
            raise UsageError(f"--augment: {key.strip()} must be a number, got {value!r}") from None
    spec = AugmentSpec(**kw)
    if spec.copies < 1 or spec.shift < 0 or spec.degrees < 0 or spec.noise < 0 \
            or not math.isfinite(spec.degrees) or not math.isfinite(spec.noise):
        raise UsageError(f"--augment: copies must be >= 1 and shift, degrees, noise >= 0, "
                         f"got {text!r}")
    return spec


def image_side(n_features: int) -> int:
    """The side of square images of ``n_features`` pixels (64 -> 8); UsageError otherwise."""
    side = math.isqrt(int(n_features))
    if side * side != n_features or side < 2:
        raise UsageError(f"augmentation needs square images as rows; {n_features} features "
                         "are not a square number of pixels")
    return side


def shift(X: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Rows of square images moved ``dx`` pixels right and ``dy`` down, zeros shifted in."""
    X = np.asarray(X)
    side = image_side(X.shape[1])
    img = X.reshape(-1, side, side)
    out = np.zeros_like(img)
    if abs(dx) < side and abs(dy) < side:
        ys, yd = (slice(0, side - dy), slice(dy, side)) if dy >= 0 else (slice(-dy, side),
                                                                          slice(0, side + dy))
        xs, xd = (slice(0, side - dx), slice(dx, side)) if dx >= 0 else (slice(-dx, side),
                                                                          slice(0, side + dx))
        out[:, yd, xd] = img[:, ys, xs]
    return out.reshape(X.shape)


def rotate(X: np.ndarray, degrees) -> np.ndarray:
    """Rows of square images rotated about their centre (bilinear, zeros outside);
    ``degrees`` is one angle or one per row (positive: counter-clockwise)."""
    X = np.asarray(X)
    side = image_side(X.shape[1])
    n = len(X)
    theta = np.deg2rad(np.broadcast_to(np.asarray(degrees, dtype=np.float64), (n,)))
    c = (side - 1) / 2.0
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    u, v = xx - c, c - yy                       # output pixel in centred coordinates (y up)
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    sx = cos * u + sin * v + c                  # the source pixel: rotate back by -theta
    sy = c - (-sin * u + cos * v)
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = sx - x0, sy - y0
    img = X.reshape(n, side, side).astype(np.float64)
    rows = np.arange(n)[:, None, None]
    out = np.zeros((n, side, side))
    for oy, ox, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                      (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + ox, y0 + oy
        inside = (xi >= 0) & (xi < side) & (yi >= 0) & (yi < side)
        vals = img[rows, np.clip(yi, 0, side - 1), np.clip(xi, 0, side - 1)]
        out += np.where(inside, w * vals, 0.0)
    return out.reshape(X.shape).astype(X.dtype)


def add_noise(X: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``X`` plus Gaussian noise of standard deviation ``sigma`` (same dtype)."""
    X = np.asarray(X)
    return (X + sigma * rng.standard_normal(X.shape)).astype(X.dtype)


def augment(ds: Dataset, spec: AugmentSpec | str = AugmentSpec(), rng=0) -> Dataset:
    """``ds`` followed by ``spec.copies`` transformed copies (labels repeated).

    Each copy draws, per example, a shift in ``[-shift, shift]²``, an angle in
    ``[-degrees, degrees]`` and noise, from ``rng`` (a Generator or a seed).

    >>> from symdl.data import load_digits
    >>> big = augment(load_digits("train"), "copies=2,noise=0.05", rng=0)
    >>> len(big) == 3 * len(load_digits("train"))
    True
    """
    spec = parse_augment(spec) if isinstance(spec, str) else spec
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    X = np.asarray(ds.X)
    image_side(X.shape[1])
    parts = [X]
    for _ in range(spec.copies):
        A = X.copy()
        if spec.shift:
            moves = rng.integers(-spec.shift, spec.shift + 1, size=(len(X), 2))
            for dx, dy in sorted({(int(a), int(b)) for a, b in moves}):
                rows = (moves[:, 0] == dx) & (moves[:, 1] == dy)
                A[rows] = shift(A[rows], dx, dy)
        if spec.degrees:
            A = rotate(A, rng.uniform(-spec.degrees, spec.degrees, size=len(X)))
        if spec.noise:
            A = add_noise(A, spec.noise, rng)
        parts.append(A)
    y = np.concatenate([np.asarray(ds.y)] * (1 + spec.copies))
    return replace(ds, X=np.concatenate(parts).astype(X.dtype), y=y,
                   name=f"{ds.name}+augmented")
