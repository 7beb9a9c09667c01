"""Structural ops that move entries: slice, pad, concat, gather, scatter_add, argmax.

Each is linear in its array argument (``argmax`` is an integer-valued leaf of
the gradient: it has none) and declares its transpose as the other op of a
pair: ``slice``/``pad`` (a strided slice's transpose is a pad with *interior*
zeros, as XLA's), ``concat``/``slice``, ``gather``/``scatter_add``
(``np.take_along_axis`` semantics: embedding lookup, arg-max routing).
``tests/test_structural.py`` checks every rule exactly against ``sympy.diff``
and by the adjoint identity.  Two graph builders compose them: :func:`split`
(one ``slice`` per piece) and :func:`reduce_max` (``gather`` at the
``argmax``, so max's gradient is routed to the first maximum, as
``np.argmax`` and ``torch.max(x, dim)``; ``torch.amax`` shares it among ties).
"""
from __future__ import annotations

from math import prod

import numpy as np

from ..errors import UsageError
from .structural import broadcast_shapes, norm_axes, reduced_shape, structural

__all__ = ["slice_shape", "slice_index", "pad_shape", "pad_index", "split", "reduce_max"]


def _ints(what, values, n, low):
    values = tuple(values)
    if len(values) != n or any(not isinstance(v, (int, np.integer)) or v < low for v in values):
        raise UsageError(f"{what} must be {n} integer(s) >= {low}, got {values}")
    return tuple(int(v) for v in values)


def _axis(params, ndim, op):
    axis = params.get("axis", 0)
    if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise UsageError(f"{op}: axis {axis!r} does not fit {ndim} dimension(s)")
    return int(axis) % ndim


# ------------------------------------------------------------------ slice
def _slice_params(shape, params):
    r = len(shape)
    begin = _ints("slice begin", params.get("begin") or (0,) * r, r, 0)
    step = _ints("slice step", params.get("step") or (1,) * r, r, 1)
    end = tuple(params.get("end") or (None,) * r)
    if len(end) != r:
        raise UsageError(f"slice end must have {r} entries (None: to the end), got {end}")
    return begin, end, step


def slice_shape(shape, params) -> tuple:
    """Shape of ``x[begin:end:step]`` per axis; a symbolic axis stays whole."""
    out = []
    for d, b, e, s in zip(shape, *_slice_params(shape, params)):
        if isinstance(d, str):
            if (b, s) != (0, 1) or e not in (None, d):
                raise UsageError(f"slice: an axis of symbolic size {d} can only be kept whole")
            out.append(d)
            continue
        e = d if e is None else e
        if not isinstance(e, (int, np.integer)) or not b <= e <= d:
            raise UsageError(f"slice {b}:{e}:{s} does not fit an axis of size {d}")
        out.append(len(range(b, int(e), s)))
    return tuple(out)


def slice_index(shape, params) -> tuple:
    """The basic index (a tuple of slices) a ``slice`` node takes of a concrete ``shape``."""
    return tuple(slice(*t) for t in zip(*_slice_params(shape, params)))


def _impl_slice(x, begin=None, end=None, step=None):
    return x[slice_index(x.shape, {"begin": begin, "end": end, "step": step})]


def _vjp_slice(emit, args, shapes, params, g):
    low, high, interior = [], [], []
    for d, b, e, s in zip(shapes[0], *_slice_params(shapes[0], params)):
        n = len(range(b, d if e is None else e, s)) if isinstance(d, int) else 0
        last = b + (n - 1) * s if n else b - 1
        low.append(b)
        high.append(d - last - 1 if isinstance(d, int) else 0)
        interior.append(s - 1)
    if not any(low + high + interior):  # the whole array: no op either way
        return [g]
    return [emit("pad", g, low=tuple(low), high=tuple(high), interior=tuple(interior))]


structural("slice", 1, lambda shapes, params, names=(): slice_shape(shapes[0], params),
           _impl_slice, _vjp_slice,
           "x[begin:end:step] per axis (end None: to the end); transpose: pad with zeros "
           "(step - 1 interior zeros between entries)",
           factor=lambda args, params, i: ("linear", "pad back with zeros to the full shape"))


# -------------------------------------------------------------------- pad
def _pad_params(shape, params):
    r = len(shape)
    low = _ints("pad low", params.get("low") or (0,) * r, r, 0)
    high = _ints("pad high", params.get("high") or (0,) * r, r, 0)
    interior = _ints("pad interior", params.get("interior") or (0,) * r, r, 0)
    return low, high, interior


def pad_shape(shape, params) -> tuple:
    """``low`` zeros, the entries with ``interior`` zeros between each two, ``high`` zeros."""
    out = []
    for d, lo, hi, it in zip(shape, *_pad_params(shape, params)):
        if isinstance(d, str):
            if (lo, hi, it) != (0, 0, 0):
                raise UsageError(f"pad: an axis of symbolic size {d} cannot be padded")
            out.append(d)
        else:
            out.append(lo + hi + d + max(d - 1, 0) * it)
    return tuple(out)


def pad_index(shape, params) -> tuple:
    """The basic index of the entries of a padded array that hold the argument."""
    return tuple(slice(0, None, 1) if isinstance(d, str)
                 else slice(lo, lo + (d - 1) * (it + 1) + 1 if d else lo, it + 1)
                 for d, lo, hi, it in zip(shape, *_pad_params(shape, params)))


def _impl_pad(x, low=None, high=None, interior=None):
    p = {"low": low, "high": high, "interior": interior}
    out = np.zeros(pad_shape(x.shape, p), dtype=x.dtype)
    out[pad_index(x.shape, p)] = x
    return out


def _vjp_pad(emit, args, shapes, params, g):
    where = [(s.start, None if isinstance(d, str) else s.stop, s.step)
             for d, s in zip(shapes[0], pad_index(shapes[0], params))]
    begin, end, step = zip(*where) if where else ((), (), ())
    if not any(sum(_pad_params(shapes[0], params), ())):  # no padding: no op either way
        return [g]
    return [emit("slice", g, begin=tuple(begin), end=tuple(end), step=tuple(step))]


def _slab(g, p):
    """``(axis, low, size)`` of a pad that places its argument as one slab along
    one axis (no interior zeros, no padding elsewhere); None otherwise."""
    low, high, interior = _pad_params(g.shape(g.args(p)[0]), g.node(p)["params"])
    axes = [i for i, (lo, hi) in enumerate(zip(low, high)) if lo or hi]
    if any(interior) or len(axes) != 1:
        return None
    return axes[0], low[axes[0]], g.shape(g.args(p)[0])[axes[0]]


def _combine_pads(gb, parts):
    """Σ of fresh pads that place disjoint slabs along one axis = one concat
    of the slabs (each padded up to the next): the gradient of the T slices
    ``x[t]`` of an unrolled sequence costs O(T), not T full-size sums."""
    g, groups = gb.g, {}
    for p in parts:
        slab = _slab(g, p) if g.op(p) == "pad" and gb.rewritable(p) else None
        if slab is not None:
            groups.setdefault((slab[0], g.shape(p)), []).append((slab[1], slab[2], p))
    for (axis, shape), group in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        group.sort()
        if len(group) < 2 or any(a[0] + a[1] > b[0] for a, b in zip(group, group[1:])):
            continue
        pieces = []
        for k, (lo, n, p) in enumerate(group):
            start = lo if k == 0 else 0
            stop = group[k + 1][0] if k + 1 < len(group) else shape[axis]
            gap = stop - lo - n
            x = g.args(p)[0]
            if start or gap:
                r = len(shape)
                x = gb.emit("pad", x, low=tuple(start if i == axis else 0 for i in range(r)),
                            high=tuple(gap if i == axis else 0 for i in range(r)))
            pieces.append(x)
        done = {p for _, _, p in group}
        parts = [p for p in parts if p not in done] + [gb.emit("concat", *pieces, axis=axis)]
    return parts


structural("pad", 1, lambda shapes, params, names=(): pad_shape(shapes[0], params),
           _impl_pad, _vjp_pad,
           "zeros around (low, high) and between (interior) entries, per axis; "
           "transpose: slice the entries back out",
           factor=lambda args, params, i: ("linear", "slice the argument's entries back out"),
           combine=_combine_pads)


# ----------------------------------------------------------------- concat
def _infer_concat(shapes, params, names=()):
    first = tuple(shapes[0])
    if not first:
        raise UsageError("concat needs arrays of at least one dimension")
    axis = _axis(params, len(first), "concat")
    for n, s in zip(names or [f"arg{i}" for i in range(len(shapes))], shapes):
        if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != axis):
            raise UsageError(f"concat along axis {axis}: {names[0] if names else 'arg0'} "
                             f"{first} and {n} {tuple(s)} differ on another axis")
        if not isinstance(s[axis], int):
            raise UsageError(f"concat along axis {axis}: {n} has symbolic size {s[axis]} there")
    return (*first[:axis], sum(s[axis] for s in shapes), *first[axis + 1:])


def _vjp_concat(emit, args, shapes, params, g):
    axis = _axis(params, len(shapes[0]), "concat")
    out, at = [], 0
    for s in shapes:
        begin = tuple(at if i == axis else 0 for i in range(len(s)))
        end = tuple(at + s[axis] if i == axis else None for i in range(len(s)))
        out.append(emit("slice", g, begin=begin, end=end))
        at += s[axis]
    return out


structural("concat", None, _infer_concat,
           lambda *xs, axis=0: np.concatenate(xs, axis=axis), _vjp_concat,
           "joins arrays along an axis (np.concatenate); transpose: slice each part back out",
           factor=lambda args, params, i: ("linear", f"slice out the part of {args[i]}"))


def split(g, x: str, sizes, axis: int = 0, names=None) -> list:
    """Pieces of ``x`` along ``axis`` of the given ``sizes`` (concat's inverse),
    one ``slice`` node each; returns their ids."""
    shape = g.shape(x)
    axis = _axis({"axis": axis}, len(shape), "split")
    if not isinstance(shape[axis], int) or sum(sizes) != shape[axis] or min(sizes) < 0:
        raise UsageError(f"split sizes {tuple(sizes)} do not add up to axis {axis} of "
                         f"{x} {tuple(shape)}")
    out, at = [], 0
    for k, n in enumerate(sizes):
        begin = tuple(at if i == axis else 0 for i in range(len(shape)))
        end = tuple(at + n if i == axis else None for i in range(len(shape)))
        out.append(g.add("slice", x, begin=begin, end=end, name=names[k] if names else None))
        at += n
    return out


# --------------------------------------------------- gather, scatter_add
def _gather_shape(xs, idx, axis, names=("x", "idx")):
    if len(xs) != len(idx):
        raise UsageError(f"gather: {names[0]} {tuple(xs)} and indices {names[1]} {tuple(idx)} "
                         "need the same number of dimensions")
    other = lambda s: tuple(1 if i == axis else d for i, d in enumerate(s))  # noqa: E731
    out = broadcast_shapes(other(xs), other(idx), names=names)
    return tuple(idx[axis] if i == axis else d for i, d in enumerate(out))


def _infer_gather(shapes, params, names=("x", "idx")):
    return _gather_shape(shapes[0], shapes[1], _axis(params, len(shapes[0]), "gather"), names)


def _infer_scatter(shapes, params, names=("g", "idx")):
    g, idx = shapes
    target = tuple(params["shape"])
    axis = _axis(params, len(target), "scatter_add")
    if _gather_shape(target, idx, axis, ("shape", names[1])) != tuple(g):
        raise UsageError(f"scatter_add: {names[0]} {tuple(g)} is not the shape gathered from "
                         f"{target} by {names[1]} {tuple(idx)} along axis {axis}")
    return target


def _impl_scatter_add(g, idx, axis=0, shape=()):
    axis %= g.ndim
    # a symbolic size off the axis is g's (it is not a broadcast 1 there)
    shape = tuple(g.shape[i] if isinstance(d, str) and i != axis else d for i, d in enumerate(shape))
    out = np.zeros(shape, dtype=g.dtype)
    where = []
    for i, d in enumerate(shape):
        if i == axis:
            where.append(np.broadcast_to(idx, g.shape))
        else:  # an axis where x was broadcast (size 1) sums into its one entry
            at = np.arange(g.shape[i]) if d == g.shape[i] else np.zeros(g.shape[i], np.intp)
            where.append(at.reshape([-1 if k == i else 1 for k in range(g.ndim)]))
    np.add.at(out, tuple(where), g)
    return out


structural("gather", 2, _infer_gather,
           lambda x, idx, axis=0: np.take_along_axis(x, idx, axis=axis),
           lambda emit, args, shapes, params, g: [
               emit("scatter_add", g, args[1], axis=params.get("axis", 0), shape=tuple(shapes[0])),
               None],
           "entries of x at integer indices along an axis (np.take_along_axis, other axes "
           "broadcast); transpose: scatter_add", index_args=(1,),
           factor=lambda args, params, i: ("linear", f"scatter-add back to the entries {args[1]} "
                                                     "picked"))
structural("scatter_add", 2, _infer_scatter, _impl_scatter_add,
           lambda emit, args, shapes, params, g: [
               emit("gather", g, args[1], axis=params.get("axis", 0)), None],
           "zeros of a shape with g added at integer indices along an axis (repeats add up); "
           "transpose: gather", index_args=(1,),
           factor=lambda args, params, i: ("linear", f"gather at {args[1]}"))


# ----------------------------------------------------------------- argmax
def _infer_argmax(shapes, params, names=()):
    (s,) = shapes
    if not s:
        raise UsageError("argmax needs an array of at least one dimension")
    axis = _axis(params, len(s), "argmax")
    if s[axis] == 0:
        raise UsageError(f"argmax over an empty axis {axis} of {tuple(s)}")
    return reduced_shape(s, axis, True)


structural("argmax", 1, _infer_argmax,
           lambda x, axis=0: np.argmax(x, axis=axis, keepdims=True), None,
           "index of the first maximum along an axis (kept as size 1, int64): integer-valued, "
           "no gradient", out_dtype="int64")


def reduce_max(g, x: str, axes=None, keepdims: bool = False, name=None) -> str:
    """``max`` of ``x`` over ``axes`` as ``gather(x, argmax(x))``: its gradient
    goes to the first maximum (``torch.max(x, dim)``), not shared among ties
    (``torch.amax``).  Several axes are permuted last and merged into one."""
    shape = g.shape(x)
    axes = norm_axes(axes, len(shape))
    y, axis = x, axes[0] if axes else 0
    if len(axes) != 1:
        if not all(isinstance(shape[a], int) for a in axes):
            raise UsageError(f"max over several axes of {x} {tuple(shape)}: they must be concrete")
        rest = [i for i in range(len(shape)) if i not in axes]
        if rest + list(axes) != list(range(len(shape))):
            y = g.add("permute", y, axes=tuple(rest + list(axes)))
        merged = (*(shape[i] for i in rest), prod(shape[a] for a in axes))
        y, axis = g.add("reshape", y, shape=merged), len(rest)
    m = g.add("gather", y, g.add("argmax", y, axis=axis), axis=axis)
    out = reduced_shape(shape, axes, keepdims)
    if out == g.shape(m) and name is None:
        return m
    return g.add("reshape", m, shape=out, name=name)
