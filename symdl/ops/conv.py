"""Convolution's linear ops ``unfold`` (im2col) and ``fold`` (col2im), and their arithmetic.

``unfold`` copies every receptive field of an ``(N, C, *S)`` array (``S``
one or more spatial sizes) into a column: the result is ``(N, C·∏K, ∏O)``,
rows ordered channel-major then kernel offset (``torch.nn.functional.unfold``'s
layout), columns the output positions in row-major order.  Position ``o`` and
offset ``k`` read ``x[..., o·stride + k·dilation − padding]`` per spatial axis
(zero outside).  ``fold`` adds columns back into an image; each is the other's
transpose, the only rules declared here (``tests/test_conv.py`` checks them
exactly against ``sympy.diff`` and by the adjoint identity).  A convolution is
then ``W (O, C·∏K) @ unfold(x)``: a batched GEMM.

Output sizes follow PyTorch, ``⌊(S + 2P − D(K − 1) − 1)/stride⌋ + 1``;
:func:`conv_output_size` (and :func:`receptive_field`, for stacks of layers)
compute it on their own and refuse configurations that do not tile exactly.
"""
from __future__ import annotations

from math import prod

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import UsageError
from .structural import structural

__all__ = ["conv_output_size", "receptive_field", "conv_params", "unfold_shape", "windows",
           "fold_offsets"]


# ----------------------------------------------------------------- arithmetic
def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1, exact: bool = True) -> int:
    """Output length of a convolution or pooling window along one axis.

    ``(size + 2·padding − dilation·(kernel − 1) − 1)/stride + 1``.  With
    ``exact`` (default) a configuration whose windows do not tile the padded
    input exactly is a :class:`~symdl.errors.UsageError`; with ``exact=False``
    the quotient is floored, as PyTorch does.  An empty output is always an error.

    >>> conv_output_size(32, 5, stride=1, padding=2)
    32
    >>> conv_output_size(7, 3, stride=2)
    3
    >>> conv_output_size(28, 3, stride=2, padding=1, exact=False)
    14
    """
    for what, v, low in (("size", size, 1), ("kernel", kernel, 1), ("stride", stride, 1),
                         ("padding", padding, 0), ("dilation", dilation, 1)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < low:
            raise UsageError(f"{what} must be an integer >= {low}, got {v!r}")
    span = dilation * (kernel - 1) + 1
    room = size + 2 * padding - span
    if room < 0:
        raise UsageError(f"empty output: a window spanning {span} (kernel {kernel}, dilation "
                         f"{dilation}) does not fit size {size} with padding {padding}")
    if exact and room % stride:
        raise UsageError(f"non-integer output size: (size {size} + 2·padding {padding} − "
                         f"window {span})/stride {stride} + 1 = {room / stride + 1:g}; "
                         "change the padding or stride (PyTorch would floor it to "
                         f"{room // stride + 1})")
    return int(room // stride + 1)


def receptive_field(layers) -> int:
    """Receptive field of a stack of windows ``[(kernel, stride, dilation), ...]``
    (first layer first) along one axis: ``1 + Σ_l D_l(K_l − 1)·∏_{m<l} S_m``.

    >>> receptive_field([(3, 1, 1)] * 3)   # three stacked 3×3 convolutions see 7×7
    7
    >>> receptive_field([(5, 1, 1), (2, 2, 1), (5, 1, 1), (2, 2, 1)])   # LeNet
    16
    """
    rf, jump = 1, 1
    for layer in layers:
        k, s, d = (tuple(layer) + (1, 1))[:3]
        for what, v in (("kernel", k), ("stride", s), ("dilation", d)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise UsageError(f"receptive field: {what} must be an integer >= 1, got {v!r}")
        rf += d * (k - 1) * jump
        jump *= s
    return int(rf)


# ----------------------------------------------------------------- params
def _tuple(what, v, d, low):
    t = (v,) * d if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else tuple(v)
    if len(t) != d or any(not isinstance(x, (int, np.integer)) or isinstance(x, bool) or x < low
                          for x in t):
        raise UsageError(f"{what} must be {d} integer(s) >= {low}, got {v!r}")
    return tuple(int(x) for x in t)


def conv_params(params, d: int) -> tuple:
    """``(kernel, stride, padding, dilation)`` of a node's params, each a ``d``-tuple."""
    if "kernel" not in params:
        raise UsageError("unfold/fold need a kernel size")
    return (_tuple("kernel", params["kernel"], d, 1),
            _tuple("stride", params.get("stride", 1), d, 1),
            _tuple("padding", params.get("padding", 0), d, 0),
            _tuple("dilation", params.get("dilation", 1), d, 1))


def _out_sizes(spatial, params):
    k, s, p, dl = conv_params(params, len(spatial))
    return tuple(conv_output_size(n, *a, exact=False) for n, *a in zip(spatial, k, s, p, dl))


def unfold_shape(shape, params, names=("x",)) -> tuple:
    """``(N, C, *S) -> (N, C·∏K, ∏O)``."""
    if len(shape) < 3:
        raise UsageError(f"unfold needs (N, C, *spatial), {names[0]} has shape {tuple(shape)}")
    n, c, *spatial = shape
    if not all(isinstance(v, int) for v in (c, *spatial)):
        raise UsageError(f"unfold: channels and spatial sizes must be concrete, {names[0]} "
                         f"has shape {tuple(shape)}")
    k = conv_params(params, len(spatial))[0]
    try:
        out = _out_sizes(spatial, params)
    except UsageError as e:
        raise UsageError(f"unfold of {names[0]} {tuple(shape)}: {e}") from None
    return (n, c * prod(k), prod(out))


def _infer_fold(shapes, params, names=("g",)):
    (shape,) = shapes
    size = tuple(params.get("output_size") or ())
    if len(shape) != 3 or not size:
        raise UsageError(f"fold needs (N, C·∏K, L) and an output_size, {names[0]} has shape "
                         f"{tuple(shape)}")
    k = conv_params(params, len(size))[0]
    n, rows, cols = shape
    try:
        out = _out_sizes(size, params)
    except UsageError as e:
        raise UsageError(f"fold to {size}: {e}") from None
    if not isinstance(rows, int) or rows % prod(k) or cols != prod(out):
        raise UsageError(f"fold: {names[0]} {tuple(shape)} is not (N, C·{prod(k)}, {prod(out)}) "
                         f"for kernel {k} and output size {size}")
    return (n, rows // prod(k), *size)


# ----------------------------------------------------------------- impls
def windows(xp, kernel, stride, dilation) -> np.ndarray:
    """Strided view ``(N, C, *K, *O)`` of the padded array ``xp``: entry
    ``[n, c, k, o]`` is ``xp[n, c, o·stride + k·dilation]`` (no copy)."""
    d = len(kernel)
    span = [dl * (k - 1) + 1 for k, dl in zip(kernel, dilation)]
    w = sliding_window_view(xp, span, axis=tuple(range(2, 2 + d)))      # (N, C, *O', *span)
    w = w[(slice(None),) * 2 + tuple(slice(None, None, s) for s in stride)
          + tuple(slice(None, None, dl) for dl in dilation)]          # (N, C, *O, *K)
    return w.transpose(0, 1, *range(2 + d, 2 + 2 * d), *range(2, 2 + d))


def _impl_unfold(x, kernel, stride=1, padding=0, dilation=1):
    d = x.ndim - 2
    k, s, p, dl = conv_params({"kernel": kernel, "stride": stride, "padding": padding,
                               "dilation": dilation}, d)
    xp = np.pad(x, [(0, 0), (0, 0)] + [(q, q) for q in p]) if any(p) else x
    w = windows(xp, k, s, dl)
    return np.ascontiguousarray(w).reshape(x.shape[0], x.shape[1] * prod(k), -1)


def fold_offsets(kernel, stride, dilation, out):
    """``(k, slices)`` per kernel offset: the padded image's entries that
    offset ``k`` of every output position reads (basic slices, no copy)."""
    for k in np.ndindex(*kernel):
        yield k, tuple(slice(kk * dl, kk * dl + s * (o - 1) + 1, s)
                       for kk, dl, s, o in zip(k, dilation, stride, out))


def _impl_fold(g, output_size, kernel, stride=1, padding=0, dilation=1):
    size = tuple(output_size)
    k, s, p, dl = conv_params({"kernel": kernel, "stride": stride, "padding": padding,
                               "dilation": dilation}, len(size))
    out = _out_sizes(size, {"kernel": k, "stride": s, "padding": p, "dilation": dl})
    n, c = g.shape[0], g.shape[1] // prod(k)
    cols = g.reshape(n, c, *k, *out)
    img = np.zeros((n, c, *(a + 2 * q for a, q in zip(size, p))), dtype=g.dtype)
    for off, where in fold_offsets(k, s, dl, out):
        img[(slice(None), slice(None)) + where] += cols[(slice(None), slice(None)) + off]
    return img[(slice(None), slice(None)) + tuple(slice(q, q + a) for q, a in zip(p, size))]


def _geometry(params) -> dict:
    return {k: params[k] for k in ("kernel", "stride", "padding", "dilation") if k in params}


structural("unfold", 1, lambda shapes, params, names=("x",): unfold_shape(shapes[0], params, names),
           _impl_unfold,
           lambda emit, args, shapes, params, g: [
               emit("fold", g, output_size=tuple(shapes[0][2:]), **_geometry(params))],
           "im2col: every receptive field of (N, C, *S) as a column of (N, C·∏K, ∏O) (zero "
           "padding, stride, dilation); transpose: fold (col2im)",
           factor=lambda args, params, i: ("linear", "fold (col2im): add each column back onto "
                                                     "the pixels it was copied from"))
structural("fold", 1, _infer_fold, _impl_fold,
           lambda emit, args, shapes, params, g: [emit("unfold", g, **_geometry(params))],
           "col2im: add the columns of (N, C·∏K, ∏O) back into an image (N, C, *output_size), "
           "overlaps summed; transpose: unfold (im2col)",
           factor=lambda args, params, i: ("linear", "unfold (im2col): copy each receptive "
                                                     "field of the gradient into a column"))
