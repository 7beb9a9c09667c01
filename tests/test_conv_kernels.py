"""The numba loops of ``unfold``/``fold`` (backends/numpy_conv.py MAP_KERNELS) against a NumPy
reference, to the bit, on geometries that reach every path: the unit-stride row copy and the
strided one, padding wider than a tap reaches (empty rows and columns), stride and dilation 2,
more than one chunk of maps, a one-row map, and images that are strided views."""
from __future__ import annotations

import numpy as np
import pytest

from symdl.backends.loader import load_function
from symdl.backends.numpy_conv import MAP_KERNELS

# (N, C, H, W, KH, KW, sh, sw, ph, pw, dh, dw)
GEOMETRIES = [
    (3, 2, 7, 9, 3, 3, 1, 1, 0, 0, 1, 1),      # the CNN's case: unit stride, no padding
    (3, 2, 7, 9, 3, 2, 1, 1, 1, 2, 1, 1),      # padding: zero borders, partial rows
    (3, 2, 7, 9, 3, 3, 2, 2, 1, 1, 1, 1),      # stride 2: the strided row path
    (2, 3, 8, 8, 2, 3, 1, 2, 0, 3, 2, 2),      # dilation 2, sh != sw
    (70, 2, 5, 6, 3, 3, 3, 1, 2, 2, 1, 2),     # more than 64 maps: two chunks
    (2, 2, 4, 4, 3, 3, 1, 1, 4, 4, 1, 1),      # padding beyond every tap's reach
    (5, 1, 1, 9, 1, 3, 1, 1, 0, 1, 1, 1),      # a 1-D map as 2-D of height 1
]


def _sizes(H, W, KH, KW, sh, sw, ph, pw, dh, dw):
    return (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1, (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1


def _taps(geo):
    """Per tap (p, q): the image slice and the (i, j) column slice it pairs with."""
    N, C, H, W, KH, KW, sh, sw, ph, pw, dh, dw = geo
    OH, OW = _sizes(H, W, KH, KW, sh, sw, ph, pw, dh, dw)
    for p in range(KH):
        for q in range(KW):
            i = [t for t in range(OH) if 0 <= t * sh + p * dh - ph < H]
            j = [t for t in range(OW) if 0 <= t * sw + q * dw - pw < W]
            if not i or not j:
                yield p, q, None, None
                continue
            r = slice(i[0] * sh + p * dh - ph, i[-1] * sh + p * dh - ph + 1, sh)
            x = slice(j[0] * sw + q * dw - pw, j[-1] * sw + q * dw - pw + 1, sw)
            yield p, q, (r, x), (slice(i[0], i[-1] + 1), slice(j[0], j[-1] + 1))


def _unfold_ref(img, geo):
    N, C, H, W, KH, KW, *_ = geo
    cols = np.zeros((N, C, KH, KW, *_sizes(H, W, *geo[4:])), img.dtype)
    for p, q, pix, at in _taps(geo):
        if pix is not None:
            cols[:, :, p, q][(..., *at)] = img[(..., *pix)]
    return cols


def _fold_ref(cols, geo):
    """Zeros, then each tap's columns added in (p, q) order, as the kernel promises."""
    N, C, H, W, *_ = geo
    img = np.zeros((N, C, H, W), cols.dtype)
    for p, q, pix, at in _taps(geo):
        if pix is not None:
            img[(..., *pix)] += cols[:, :, p, q][(..., *at)]
    return img


def _strided_image(rng, N, C, H, W, dtype):
    """A (N, C, H, W) view of (C, N, H, W + 3) memory: no axis contiguous but the last."""
    return rng.standard_normal((C, N, H, W + 3)).astype(dtype).transpose(1, 0, 2, 3)[..., 1:W + 1]


@pytest.mark.parametrize("order", ["", "_batch_second"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("geo", GEOMETRIES)
def test_unfold_kernel_matches_numpy(geo, dtype, order):
    rng = np.random.default_rng(1)
    N, C, H, W, KH, KW, *g = geo
    img = _strided_image(rng, N, C, H, W, dtype)
    want = _unfold_ref(img, geo)
    perm = (1, 2, 3, 0, 4, 5) if order else (0, 1, 2, 3, 4, 5)
    cols = np.full(want.transpose(perm).shape, 7, dtype)   # stale entries must be overwritten
    load_function(MAP_KERNELS[f"unfold{order}"])(img, cols, *g)
    np.testing.assert_array_equal(cols, want.transpose(perm))


@pytest.mark.parametrize("order", ["", "_batch_second"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("geo", GEOMETRIES)
def test_fold_kernel_matches_numpy_to_the_bit(geo, dtype, order):
    rng = np.random.default_rng(2)
    N, C, H, W, KH, KW, *g = geo
    shape = (N, C, KH, KW, *_sizes(H, W, KH, KW, *g))
    cols = rng.standard_normal(shape).astype(dtype)
    want = _fold_ref(cols, geo)
    perm = (1, 2, 3, 0, 4, 5) if order else (0, 1, 2, 3, 4, 5)
    img = _strided_image(rng, N, C, H, W, dtype)           # stale entries must be cleared
    load_function(MAP_KERNELS[f"fold{order}"])(np.ascontiguousarray(cols.transpose(perm)),
                                               img, *g)
    assert np.array_equal(img, want)                       # the same sums in the same order


def test_fold_is_unfolds_transpose():
    """<unfold(x), y> = <x, fold(y)> in float64 on a padded, strided, dilated geometry."""
    rng = np.random.default_rng(3)
    geo = (4, 3, 9, 8, 3, 2, 2, 1, 1, 2, 2, 1)
    N, C, H, W, KH, KW, *g = geo
    x = rng.standard_normal((N, C, H, W))
    y = rng.standard_normal((C, KH, KW, N, *_sizes(H, W, KH, KW, *g)))
    ux = np.empty_like(y)
    load_function(MAP_KERNELS["unfold_batch_second"])(x, ux, *g)
    fy = np.empty_like(x)
    load_function(MAP_KERNELS["fold_batch_second"])(y, fy, *g)
    assert abs(np.vdot(ux, y) - np.vdot(x, fy)) < 1e-9 * np.abs(ux * y).sum()


# ------------------------------------------------------------------ max pooling's scatter
def _scatter_ref(g, idx, shape, KH, KW, sh, sw, dh, dw, back):
    """Zeros, then each window's entry added at its tap's pixel, windows in order (back:
    reversed); negative taps from the end; out-of-range taps skipped and counted."""
    img = np.zeros(shape, g.dtype)
    N, C, OH, OW = g.shape
    K = KH * KW
    bad = 0
    order = [(i, j) for i in range(OH) for j in range(OW)]
    for n in range(N):
        for c in range(C):
            for i, j in (order[::-1] if back else order):
                k = int(idx[n, c, i, j])
                k = k + K if k < 0 else k
                if not 0 <= k < K:
                    bad += 1
                    continue
                img[n, c, i * sh + k // KW * dh, j * sw + k % KW * dw] += g[n, c, i, j]
    return img, bad


@pytest.mark.parametrize("back", [0, 1])
@pytest.mark.parametrize("geo", [(2, 2, 2, 2, 1, 1), (3, 3, 1, 1, 1, 1), (2, 3, 1, 2, 2, 1)])
def test_window_scatter_matches_numpy_to_the_bit(geo, back):
    """Both loop orders, negative taps and taps out of range (counted, not written)."""
    KH, KW, sh, sw, dh, dw = geo
    rng = np.random.default_rng(4)
    N, C, OH, OW = 3, 2, 4, 5
    H, W = (OH - 1) * sh + (KH - 1) * dh + 2, (OW - 1) * sw + (KW - 1) * dw + 1
    g = rng.standard_normal((N, C, OH, OW)).astype(np.float32)
    idx = rng.integers(-KH * KW, KH * KW, (N, C, OH, OW))
    idx[0, 0, 0, :2] = KH * KW, -KH * KW - 1                # out of range both ways
    want, bad = _scatter_ref(g, idx, (N, C, H, W), *geo, back)
    img = np.full((N, C, H, W), 5, np.float32)
    got = load_function(MAP_KERNELS["window_scatter"])(g, idx, img, *geo, back)
    assert got == bad == 2
    assert np.array_equal(img, want)
