"""Convolution, pooling and reshaping layers from ``unfold``, batched ``matmul`` and reductions.

Parameter layouts and initialization follow PyTorch (``weight`` of shape
``(out, in/groups, *kernel)``, ``bias`` of ``(out,)``, both uniform in
±1/√fan_in), so state dicts carry over.  Every layer only adds graph nodes:
gradients are derived by reverse mode through the structural ops' transposes
(``fold`` for ``unfold``, ``scatter_add`` for max pooling's ``gather``).
"""
from __future__ import annotations

import math
from math import prod

import numpy as np

from ..errors import UsageError
from ..ops.conv import conv_output_size, conv_params
from ..ops.shape_ops import reduce_max
from .module import Module
from .parameter import Parameter

__all__ = ["Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "LPPool2d", "AdaptiveAvgPool2d",
           "GlobalAvgPool2d", "Upsample", "Dropout2d", "Flatten", "Residual", "window_of"]


def _spatial(g, x, d: int, who: str, channels: int | None = None) -> tuple:
    shape = g.shape(x)
    if len(shape) != d + 2 or (channels is not None and shape[1] != channels):
        axes = ("L",) if d == 1 else ("H", "W") if d == 2 else tuple(f"S{i}" for i in range(d))
        want = ", ".join(("N", str(channels) if channels is not None else "C", *axes))
        raise UsageError(f"{who} expects ({want}), {x} has shape {tuple(shape)}")
    return shape[0], shape[1], tuple(shape[2:])


def _outs(who, x, spatial, k, s, p, dl) -> tuple:
    try:
        return tuple(conv_output_size(n, *a, exact=False) for n, *a in zip(spatial, k, s, p, dl))
    except UsageError as e:
        raise UsageError(f"{who} on {x} of spatial size {spatial}: {e}") from None


def _extras(**kw) -> str:
    """``, name=value`` for the settings that differ from their defaults, as torch prints."""
    defaults = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True}
    return "".join(f", {k}={v if len(set(v)) > 1 else v[0]}" if isinstance(v, tuple)
                   else f", {k}={v}" for k, v in kw.items()
                   if (v[0] if isinstance(v, tuple) and len(set(v)) == 1 else v) != defaults[k])


def window_of(layer) -> tuple | None:
    """``(kernel, stride, dilation)`` per spatial axis of a windowed layer, else None."""
    geo = getattr(layer, "geometry", None)
    return None if geo is None else tuple(zip(geo[0], geo[1], geo[3]))


# ---------------------------------------------------------------- convolution
class _ConvNd(Module):
    dims = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, rng=None,
                 dtype: str = "float32"):
        super().__init__()
        d = self.dims
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise UsageError(f"{type(self).__name__} {what} must be a positive integer, "
                                 f"got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise UsageError(f"groups {groups} must divide in_channels {in_channels} and "
                             f"out_channels {out_channels}")
        self.geometry = conv_params({"kernel": kernel_size, "stride": stride, "padding": padding,
                                     "dilation": dilation}, d)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.groups = int(groups)
        k = self.geometry[0]
        fan_in = in_channels // groups * prod(k)
        bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=√5), as torch.nn.Conv*d
        rng = rng if rng is not None else np.random.default_rng(0)
        shape = (out_channels, in_channels // groups, *k)
        self.weight = Parameter(rng.uniform(-bound, bound, size=shape).astype(dtype))
        self.has_bias = bool(bias)
        if bias:
            self.bias = Parameter(rng.uniform(-bound, bound, size=out_channels).astype(dtype))

    def build(self, g, x, prefix=""):
        who = f"{prefix}{type(self).__name__}"
        n, c, spatial = _spatial(g, x, self.dims, who, self.in_channels)
        k, s, p, dl = self.geometry
        out = _outs(who, x, spatial, k, s, p, dl)
        cols = g.add("unfold", x, kernel=k, stride=s, padding=p, dilation=dl, name=f"{prefix}cols")
        W = g.param(f"{prefix}weight", self.weight.shape, str(self.weight.dtype))
        o, grp, rows = self.out_channels, self.groups, c // self.groups * prod(k)
        if grp == 1:   # (O, C·∏K) @ (N, C·∏K, L): one GEMM per sample
            Wm = g.add("reshape", W, shape=(o, rows), name=f"{prefix}Wmat")
            y = g.add("matmul", Wm, cols, name=f"{prefix}WX")
        else:          # (G, O/G, C/G·∏K) @ (N, G, C/G·∏K, L): rows of a group are contiguous
            Wm = g.add("reshape", W, shape=(grp, o // grp, rows), name=f"{prefix}Wmat")
            cg = g.add("reshape", cols, shape=(n, grp, rows, prod(out)), name=f"{prefix}gcols")
            y = g.add("matmul", Wm, cg, name=f"{prefix}WX")
        y = g.add("reshape", y, shape=(n, o, *out), name=f"{prefix}conv")
        if self.has_bias:
            b = g.param(f"{prefix}bias", self.bias.shape, str(self.bias.dtype))
            bb = g.add("reshape", b, shape=(o,) + (1,) * self.dims, name=f"{prefix}bcol")
            y = g.add("add", y, bb, name=f"{prefix}z")
        return y

    def __repr__(self):
        k, s, p, dl = self.geometry
        kk = k[0] if len(set(k)) == 1 else k
        extras = _extras(stride=s, padding=p, dilation=dl, groups=self.groups, bias=self.has_bias)
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={kk}{extras})")


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation) of (N, C, H, W), as ``torch.nn.Conv2d``."""

    dims = 2


class Conv1d(_ConvNd):
    """1-D convolution of (N, C, L), as ``torch.nn.Conv1d``."""

    dims = 1


# -------------------------------------------------------------------- pooling
class _Pool2d(Module):
    dims = 2

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        self.geometry = conv_params({"kernel": kernel_size, "padding": padding,
                                     "stride": kernel_size if stride is None else stride,
                                     "dilation": dilation}, self.dims)
        k, _, p, _ = self.geometry
        if any(2 * q > kk for q, kk in zip(p, k)):
            raise UsageError(f"{type(self).__name__}: padding {p} must be at most half the "
                             f"kernel {k}")
        self.ceil_mode = bool(ceil_mode)

    def extra(self, g, x, prefix) -> tuple:
        """Per spatial axis, how far past the padded input the last window reaches
        with ``ceil_mode`` (PyTorch's rule: a last window must start inside the
        input or its left padding), else zeros."""
        who = f"{prefix}{type(self).__name__}"
        _, _, spatial = _spatial(g, x, self.dims, who)
        k, s, p, dl = self.geometry
        floor = _outs(who, x, spatial, k, s, p, dl)
        if not self.ceil_mode:
            return (0,) * self.dims
        out = []
        for a, o, kk, st, q, d in zip(spatial, floor, k, s, p, dl):
            room = a + 2 * q - d * (kk - 1) - 1
            o = -(-room // st) + 1
            out.append(o - 1 if (o - 1) * st >= a + q else o)
        return tuple(max(0, (o - 1) * st + d * (kk - 1) + 1 - (a + 2 * q))
                     for o, a, kk, st, q, d in zip(out, spatial, k, s, p, dl))

    def windows(self, g, x, prefix, padding=None):
        """``(N, C, ∏K, ∏O)`` windows of ``x`` and the output shape ``(N, C, *O)``."""
        who = f"{prefix}{type(self).__name__}"
        n, c, spatial = _spatial(g, x, self.dims, who)
        k, s, p, dl = self.geometry
        p = p if padding is None else padding
        out = _outs(who, x, spatial, k, s, p, dl)
        cols = g.add("unfold", x, kernel=k, stride=s, padding=p, dilation=dl, name=f"{prefix}cols")
        win = g.add("reshape", cols, shape=(n, c, prod(k), prod(out)), name=f"{prefix}windows")
        return win, (n, c, *out)

    def __repr__(self):
        k, s, p, dl = self.geometry
        kk = k[0] if len(set(k)) == 1 else k
        ss = s[0] if len(set(s)) == 1 else s   # always shown: a pool's default is its kernel
        return (f"{type(self).__name__}(kernel_size={kk}, stride={ss}"
                f"{_extras(padding=p, dilation=dl)}{', ceil_mode=True' * self.ceil_mode})")


class MaxPool2d(_Pool2d):
    """Max over each window (padding counts as −∞), as ``torch.nn.MaxPool2d``; the
    gradient goes to the first maximum of each window (row-major), as torch's."""

    def build(self, g, x, prefix=""):
        k, s, p, dl = self.geometry
        e = self.extra(g, x, prefix)
        hi = tuple(q + a for q, a in zip(p, e))
        if any(p) or any(e):   # border of −(largest float): never a window's maximum
            dtype = g.node(x)["dtype"]
            big = float(np.finfo(dtype).max)
            hw = tuple(g.shape(x)[2:])
            ones = g.add("fill", value=1.0, shape=hw, dtype=dtype, name=f"{prefix}ones")
            inner = g.add("pad", ones, low=p, high=hi, name=f"{prefix}inner")
            low = g.add("fill", value=-big, shape=g.shape(inner), dtype=dtype, name=f"{prefix}low")
            border = g.add("add", g.add("scale", inner, factor=big, name=f"{prefix}big"), low,
                           name=f"{prefix}border")
            xp = g.add("pad", x, low=(0, 0, *p), high=(0, 0, *hi), name=f"{prefix}xpad")
            x = g.add("add", xp, border, name=f"{prefix}xneg")
        win, out = self.windows(g, x, prefix, padding=(0,) * self.dims)
        m = reduce_max(g, win, axes=2, keepdims=True)
        return g.add("reshape", m, shape=out, name=f"{prefix}maxpool")


class AvgPool2d(_Pool2d):
    """Mean over each window, as ``torch.nn.AvgPool2d``: padding zeros counted
    (``count_include_pad=True``, torch's default) or not; with ``ceil_mode`` a
    last partial window divides by what it covers of the padded input (or of the
    input alone, not counting padding).  The divisors are a constant of the graph
    (the window sums of an indicator), so the gradient is derived as for the mean."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                 count_include_pad=True):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def build(self, g, x, prefix=""):
        k, s, p, dl = self.geometry
        e = self.extra(g, x, prefix)
        if not any(e) and (self.count_include_pad or not any(p)):
            win, out = self.windows(g, x, prefix)
            m = g.add("mean", win, axes=(2,), keepdims=True, name=f"{prefix}winmean")
            return g.add("reshape", m, shape=out, name=f"{prefix}avgpool")
        hi = tuple(q + a for q, a in zip(p, e))
        xp = g.add("pad", x, low=(0, 0, *p), high=(0, 0, *hi), name=f"{prefix}xpad")
        zero = (0,) * self.dims
        win, out = self.windows(g, xp, prefix, padding=zero)
        total = g.add("sum", win, axes=(2,), keepdims=True, name=f"{prefix}winsum")
        # divisors: window sums of 1 over what counts (the padded input, or the input)
        dtype, hw = g.node(x)["dtype"], tuple(g.shape(x)[2:])
        counted = tuple(a + 2 * q for a, q in zip(hw, p)) if self.count_include_pad else hw
        ones = g.add("fill", value=1.0, shape=(1, 1, *counted), dtype=dtype, name=f"{prefix}ones")
        lo = zero if self.count_include_pad else p
        mask = g.add("pad", ones, low=(0, 0, *lo), high=(0, 0, *(e if self.count_include_pad
                                                                  else hi)),
                     name=f"{prefix}counted")
        cwin, _ = self.windows(g, mask, f"{prefix}count.", padding=zero)
        count = g.add("sum", cwin, axes=(2,), keepdims=True, name=f"{prefix}divisor")
        m = g.add("div", total, count, name=f"{prefix}winmean")
        return g.add("reshape", m, shape=out, name=f"{prefix}avgpool")

    def __repr__(self):
        r = super().__repr__()
        return r[:-1] + ", count_include_pad=False)" if not self.count_include_pad else r


class LPPool2d(_Pool2d):
    """Power-average pooling ``(Σ_window x^p)^{1/p}``, as ``torch.nn.LPPool2d``
    (no padding); ``norm_type=2`` is L2 pooling, √(Σ x²).  A window of zeros
    gives √(tiny) ≈ 1e-19 (float32) and gradient 0, where torch gives 0 and 0."""

    def __init__(self, norm_type, kernel_size, stride=None):
        super().__init__(kernel_size, stride)
        if not isinstance(norm_type, (int, float)) or not norm_type > 0 \
                or not math.isfinite(norm_type):
            raise UsageError(f"LPPool2d norm_type must be a positive number, got {norm_type!r}")
        self.norm_type = float(norm_type)

    def build(self, g, x, prefix=""):
        dtype = g.node(x)["dtype"]
        if self.norm_type == 2:
            xp = g.add("square", x, name=f"{prefix}sq")
        else:
            pw = g.add("fill", value=self.norm_type, shape=(), dtype=dtype, name=f"{prefix}p")
            xp = g.add("pow", x, pw, name=f"{prefix}xp")
        win, out = self.windows(g, xp, prefix)
        s = g.add("sum", win, axes=(2,), keepdims=True, name=f"{prefix}winsum")
        # plus the smallest normal float: an all-zero window (ReLU before the pool) then has
        # gradient 0 as in torch, not (1/2√0)·0 = ∞·0 = NaN; any other sum is unchanged
        tiny = g.add("fill", value=float(np.finfo(dtype).tiny), shape=(), dtype=dtype,
                     name=f"{prefix}tiny")
        s = g.add("add", s, tiny, name=f"{prefix}winsum_")
        if self.norm_type == 2:
            y = g.add("sqrt", s, name=f"{prefix}root")
        else:
            inv = g.add("fill", value=1.0 / self.norm_type, shape=(), dtype=dtype,
                        name=f"{prefix}invp")
            y = g.add("pow", s, inv, name=f"{prefix}root")
        return g.add("reshape", y, shape=out, name=f"{prefix}lppool")

    def __repr__(self):
        k, s, _, _ = self.geometry
        return f"LPPool2d({self.norm_type:g}, kernel_size={k}, stride={s})"


class AdaptiveAvgPool2d(Module):
    """``torch.nn.AdaptiveAvgPool2d`` for output sizes that divide the input
    (1: global average pooling, kept as (N, C, 1, 1))."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = conv_params({"kernel": output_size}, 2)[0]

    def build(self, g, x, prefix=""):
        n, c, spatial = _spatial(g, x, 2, f"{prefix}AdaptiveAvgPool2d")
        if self.output_size == (1, 1):
            return g.add("mean", x, axes=(2, 3), keepdims=True, name=f"{prefix}gap")
        if any(a % o for a, o in zip(spatial, self.output_size)):
            raise UsageError(f"{prefix}AdaptiveAvgPool2d: output size {self.output_size} must "
                             f"divide the input's spatial size {spatial} here")
        k = tuple(a // o for a, o in zip(spatial, self.output_size))
        return AvgPool2d(k).build(g, x, prefix)

    def __repr__(self):
        return f"AdaptiveAvgPool2d({self.output_size})"


class GlobalAvgPool2d(Module):
    """Mean over the spatial axes: (N, C, H, W) -> (N, C)."""

    def build(self, g, x, prefix=""):
        _spatial(g, x, 2, f"{prefix}GlobalAvgPool2d")
        return g.add("mean", x, axes=(2, 3), name=f"{prefix}gap")

    def __repr__(self):
        return "GlobalAvgPool2d()"


class Upsample(Module):
    """Nearest-neighbour upsampling by an integer factor, as
    ``torch.nn.Upsample(scale_factor=s, mode="nearest")``: a broadcast, so its
    gradient sums each s×s block (the transpose of a broadcast)."""

    def __init__(self, scale_factor, mode: str = "nearest"):
        super().__init__()
        if mode != "nearest":
            raise UsageError(f"Upsample supports mode 'nearest' only, not {mode!r}")
        self.scale = conv_params({"kernel": scale_factor}, 2)[0]

    def build(self, g, x, prefix=""):
        n, c, (h, w) = _spatial(g, x, 2, f"{prefix}Upsample")
        sh, sw = self.scale
        y = g.add("reshape", x, shape=(n, c, h, 1, w, 1), name=f"{prefix}cells")
        y = g.add("broadcast_to", y, shape=(n, c, h, sh, w, sw), name=f"{prefix}repeat")
        return g.add("reshape", y, shape=(n, c, h * sh, w * sw), name=f"{prefix}upsample")

    def __repr__(self):
        return f"Upsample(scale_factor={self.scale}, mode='nearest')"


class Dropout2d(Module):
    """Dropout of whole feature maps, as ``torch.nn.Dropout2d``: each (sample,
    channel) map is kept with probability 1 − p and scaled by 1/(1 − p).  The
    mask, of shape (N, C, 1, 1), is a graph input the trainer fills like
    :class:`~symdl.nn.layers.Dropout`'s (ones in evaluation)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise UsageError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)

    def build(self, g, x, prefix=""):
        n, c, spatial = _spatial(g, x, len(g.shape(x)) - 2, f"{prefix}Dropout2d")
        if self.p == 0:
            return x
        mask = g.input(f"{prefix}mask", (n, c) + (1,) * len(spatial), g.node(x)["dtype"])
        g.node(mask)["params"]["dropout"] = self.p
        return g.add("mul", x, mask, name=f"{prefix}dropout")

    def __repr__(self):
        return f"Dropout2d({self.p})"


# ------------------------------------------------------------- shape, residual
class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1·d2·...), as ``torch.nn.Flatten()``."""

    def build(self, g, x, prefix=""):
        shape = g.shape(x)
        if len(shape) < 2 or not all(isinstance(d, int) for d in shape[1:]):
            raise UsageError(f"{prefix}Flatten needs (N, ...) with concrete trailing sizes, "
                             f"{x} has shape {tuple(shape)}")
        if len(shape) == 2:
            return x
        return g.add("reshape", x, shape=(shape[0], prod(shape[1:])), name=f"{prefix}flat")

    def __repr__(self):
        return "Flatten()"


class Residual(Module):
    """``y = F(x) + x``: the gradient reaching ``x`` is the sum over both paths."""

    def __init__(self, block: Module):
        super().__init__()
        self.block = block

    def build(self, g, x, prefix=""):
        fx = self.block.build(g, x, prefix=f"{prefix}block.")
        if g.shape(fx) != g.shape(x):
            raise UsageError(f"{prefix}Residual: the block maps {tuple(g.shape(x))} to "
                             f"{tuple(g.shape(fx))}; y = F(x) + x needs the same shape")
        return g.add("add", fx, x, name=f"{prefix}residual")

    def __repr__(self):
        return f"Residual({self.block!r})"
