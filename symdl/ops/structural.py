"""The closed set of structural linear ops and their transposes.

These are the only hand-declared gradient rules in symdl: each op is linear,
and its vector-Jacobian product is its transpose.  ``tests/test_structural.py``
checks every rule exactly against ``sympy.diff`` on small explicit symbolic
instances and by the adjoint identity ⟨Ax, y⟩ = ⟨x, Aᵀy⟩.

A rule receives an ``emit(op, *args, **params) -> node`` callback, the
node's argument ids and shapes, its params and the upstream gradient node,
and returns one gradient node (or ``None``) per argument.  Dimensions are
ints or strings (a symbolic batch size such as ``"N"``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Callable

import numpy as np
import sympy as sp

from ..errors import UsageError
from .registry import OpBase, register


@dataclass(eq=False, repr=False)
class StructuralOp(OpBase):
    """A linear (or leaf) op with NumPy semantics and a declared transpose."""

    name: str
    arity: int
    infer: Callable
    impl: Callable
    vjp: Callable | None
    doc: str = ""
    params: dict = field(default_factory=dict)
    kind: str = "structural"
    derived_from: tuple | None = None
    #: for ops that are elementwise in disguise (a broadcast, a constant
    #: scale): ``pointwise(arg_exprs, params, concrete_arg_shapes) -> expr``,
    #: so the planner fuses them into elementwise kernels
    pointwise: Callable | None = None


def structural(name, arity, infer, impl, vjp, doc="", **kw):
    return register(StructuralOp(name, arity, infer, impl, vjp, doc, **kw))


# ----------------------------------------------------------------- shapes
def broadcast_shapes(*shapes, names=()):
    """NumPy broadcasting over int or symbolic dims; mismatch is a UsageError."""
    ndim = max(len(s) for s in shapes)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    out = []
    for dims in zip(*padded):
        real_dims = {d for d in dims if d != 1}
        if len(real_dims) > 1:
            what = " and ".join(f"{n} {tuple(s)}" for n, s in zip(names or shapes, shapes))
            raise UsageError(f"shapes do not broadcast: {what}")
        out.append(real_dims.pop() if real_dims else 1)
    return tuple(out)


def size(shape) -> int:
    """Number of elements of a concrete shape."""
    return prod(shape)


def _norm_axes(axes, ndim):
    if axes is None:
        return tuple(range(ndim))
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    return tuple(sorted(a % ndim for a in axes))


def _reduced(shape, axes, keepdims):
    axes = _norm_axes(axes, len(shape))
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


# ----------------------------------------------------------------- matmul
def _infer_matmul(shapes, params, names=("a", "b")):
    (a, b) = shapes
    if len(a) != 2 or len(b) != 2 or a[1] != b[0]:
        raise UsageError(f"matmul shapes do not match: {names[0]} {tuple(a)} @ {names[1]} {tuple(b)}")
    return (a[0], b[1])


def _vjp_matmul(emit, args, shapes, params, g):
    a, b = args
    return [emit("matmul", g, emit("transpose", b)), emit("matmul", emit("transpose", a), g)]


structural("matmul", 2, _infer_matmul, lambda a, b: a @ b, _vjp_matmul,
           "matrix product (n,k)@(k,m); transposes: dA = G Bᵀ, dB = Aᵀ G")


# -------------------------------------------------------------- transpose
def _infer_transpose(shapes, params, names=()):
    (s,) = shapes
    axes = params.get("axes") or tuple(reversed(range(len(s))))
    if sorted(axes) != list(range(len(s))):
        raise UsageError(f"transpose axes {axes} do not fit shape {tuple(s)}")
    return tuple(s[i] for i in axes)


def _vjp_transpose(emit, args, shapes, params, g):
    axes = params.get("axes")
    if axes is None:
        return [emit("transpose", g)]
    return [emit("transpose", g, axes=tuple(int(i) for i in np.argsort(axes)))]


structural("transpose", 1, _infer_transpose,
           lambda x, axes=None: np.transpose(x, axes), _vjp_transpose,
           "permutes axes (reverses them by default); transpose: the inverse permutation")


# ---------------------------------------------------------------- reshape
def _infer_reshape(shapes, params, names=()):
    (s,) = shapes
    new = tuple(params["shape"])
    if all(isinstance(d, int) for d in (*s, *new)) and size(s) != size(new):
        raise UsageError(f"cannot reshape {tuple(s)} to {new}")
    return new


structural("reshape", 1, _infer_reshape, lambda x, shape: np.reshape(x, shape),
           lambda emit, args, shapes, params, g: [emit("reshape", g, shape=tuple(shapes[0]))],
           "reshape; transpose: reshape back")


# ------------------------------------------------------- sum, mean, broadcast
def _infer_sum(shapes, params, names=()):
    return _reduced(shapes[0], params.get("axes"), params.get("keepdims", False))


def _keep(shape, params):
    return _reduced(shape, params.get("axes"), True)


def _vjp_sum(emit, args, shapes, params, g):
    kept = emit("reshape", g, shape=_keep(shapes[0], params))
    return [emit("broadcast_to", kept, shape=tuple(shapes[0]))]


def _vjp_mean(emit, args, shapes, params, g):
    (dx,) = _vjp_sum(emit, args, shapes, params, g)
    return [emit("scale", dx, factor=("1/count", tuple(shapes[0]), params.get("axes")))]


structural("sum", 1, _infer_sum,
           lambda x, axes=None, keepdims=False: np.sum(x, axis=axes, keepdims=keepdims),
           _vjp_sum, "sum over axes; transpose: broadcast back")
structural("mean", 1, _infer_sum,
           lambda x, axes=None, keepdims=False: np.mean(x, axis=axes, keepdims=keepdims),
           _vjp_mean, "mean over axes; transpose: broadcast back, divided by the count")


def count(shape, axes) -> int:
    """How many elements one mean averages over (concrete shape)."""
    return prod(shape[a] for a in _norm_axes(axes, len(shape)))


def _infer_broadcast(shapes, params, names=("x",)):
    (s,) = shapes
    target = tuple(params["shape"])
    if broadcast_shapes(s, target, names=(names[0], "target")) != target:
        raise UsageError(f"cannot broadcast {names[0]} {tuple(s)} to {target}")
    return target


def sum_axes(shape, target):
    """Axes of ``target`` that broadcasting ``shape`` to it expanded."""
    lead = len(target) - len(shape)
    return tuple(i for i, d in enumerate(target)
                 if i < lead or (shape[i - lead] == 1 and d != 1))


def _impl_sum_to(x, shape):
    return np.sum(x, axis=sum_axes(shape, x.shape), keepdims=False).reshape(shape)


structural("broadcast_to", 1, _infer_broadcast, lambda x, shape: np.broadcast_to(x, shape),
           lambda emit, args, shapes, params, g: [emit("sum_to", g, shape=tuple(shapes[0]))],
           "broadcast to a shape (NumPy rules); transpose: sum over the expanded axes",
           pointwise=lambda argx, params, shapes: argx[0])
structural("sum_to", 1, lambda shapes, params, names=(): tuple(params["shape"]), _impl_sum_to,
           lambda emit, args, shapes, params, g: [emit("broadcast_to", g, shape=tuple(shapes[0]))],
           "sum a broadcast result back to a shape; transpose: broadcast")


# ------------------------------------------------------------------- scale
def scale_factor(factor, shapes=None) -> float:
    """A scale factor: a number, or ``("1/count", shape, axes)`` of a mean."""
    if isinstance(factor, tuple) and factor[0] == "1/count":
        return 1.0 / count(shapes if shapes is not None else factor[1], factor[2])
    return float(factor)


def _scale_pointwise(argx, params, shapes):
    f = params["factor"]
    if isinstance(f, tuple):  # a mean's 1/count: its argument has the averaged shape
        f = 1.0 / count(shapes[0], f[2])
    return argx[0] * sp.Float(float(f), 17)


structural("scale", 1, lambda shapes, params, names=(): tuple(shapes[0]),
           lambda x, factor: x * scale_factor(factor),
           lambda emit, args, shapes, params, g: [emit("scale", g, factor=params["factor"])],
           "multiply by a constant; its own transpose", pointwise=_scale_pointwise)


# ------------------------------------------------------------ leaves
structural("fill", 0, lambda shapes, params, names=(): tuple(params.get("shape", ())),
           lambda value=1.0, shape=(): np.full(shape, value), None,
           "a constant array (the seed 1 of reverse mode)")
