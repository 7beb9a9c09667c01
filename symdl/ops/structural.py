"""The closed set of structural linear ops and their transposes.

These are the only hand-declared gradient rules in symdl: each op is linear,
and its vector-Jacobian product is its transpose.  ``tests/test_structural.py``
checks every rule exactly against ``sympy.diff`` on small explicit symbolic
instances and by the adjoint identity ⟨Ax, y⟩ = ⟨x, Aᵀy⟩.

A rule receives an ``emit(op, *args, **params) -> node`` callback, the
node's argument ids and shapes, its params and the upstream gradient node,
and returns one gradient node (or ``None``) per argument.  Dimensions are
ints or strings (a symbolic batch size such as ``"N"``).  Slicing, padding,
concatenation, gather/scatter and arg-max live in :mod:`symdl.ops.shape_ops`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Callable

import numpy as np
import sympy as sp

from ..errors import UsageError
from .registry import OpBase, register

__all__ = ["StructuralOp", "structural", "broadcast_shapes", "size", "count", "sum_axes",
           "scale_factor", "norm_axes", "reduced_shape"]


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
    #: the printed local factor ``∂y/∂arg_i``: ``factor(args, params, i) ->
    #: (kind, operand)`` with kind ``"left"``/``"right"`` (multiply by the node
    #: ``operand``), ``"transpose"``, ``"reduce"`` (operand: the axes) or
    #: ``"linear"`` (operand: a sentence saying what the transpose does)
    factor: Callable | None = None
    #: argument positions holding integer indices (no gradient flows into them)
    index_args: tuple = ()
    #: the dtype of the result when it is not the arguments' (``"int64"``)
    out_dtype: str | None = None
    #: an algebraic rewrite reverse mode applies when it emits this op:
    #: ``simplify(builder, args, params) -> node | None`` (None: emit as is);
    #: the builder offers ``g`` (the graph), ``emit(op, *args, **params)`` and
    #: ``rewritable(node)`` (a fresh gradient node nothing else reads yet)
    simplify: Callable | None = None
    #: a rewrite of the sum of several fresh gradient nodes of this op that
    #: reverse mode applies before adding a node's contributions up:
    #: ``combine(builder, parts) -> parts`` (pads of disjoint slabs: one concat)
    combine: Callable | None = None

    @property
    def transpose_doc(self) -> str:
        """What the transpose does, as the declaration's doc states it after
        ``"transpose: "`` (every structural op's doc follows that convention)."""
        return self.doc.partition("transpose: ")[2]

    def local_factor(self, args, params, i) -> tuple:
        """``(kind, operand)`` of ``∂y/∂args[i]`` for printed chain rules."""
        if self.factor is not None:
            return self.factor(args, params, i)
        return "reduce", str(params.get("axes"))


def structural(name, arity, infer, impl, vjp, doc="", **kw):
    """Declare and register a structural op (``arity`` None: one or more arguments)."""
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


def norm_axes(axes, ndim):
    """Sorted non-negative axes (``None``: all); out of range is a UsageError."""
    if axes is None:
        return tuple(range(ndim))
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    if any(not isinstance(a, int) or not -ndim <= a < ndim for a in axes) \
            or len(set(a % ndim for a in axes)) != len(axes):
        raise UsageError(f"axes {axes} do not fit {ndim} dimension(s)")
    return tuple(sorted(a % ndim for a in axes))


def reduced_shape(shape, axes, keepdims):
    """``shape`` reduced over ``axes`` (kept as 1s with ``keepdims``)."""
    axes = norm_axes(axes, len(shape))
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


# ----------------------------------------------------------------- matmul
def _infer_matmul(shapes, params, names=("a", "b")):
    (a, b) = shapes
    if len(a) < 2 or len(b) < 2 or a[-1] != b[-2]:
        raise UsageError(f"matmul shapes do not match: {names[0]} {tuple(a)} @ {names[1]} {tuple(b)}"
                         " (need (..., n, k) @ (..., k, m))")
    batch = broadcast_shapes(a[:-2], b[:-2], names=(f"{names[0]} batch", f"{names[1]} batch"))
    return (*batch, a[-2], b[-1])


def _swap_last(emit, x, shape):
    """``x`` with its last two axes swapped (a plain ``transpose`` in 2-D, so
    reverse mode's ``(AB)ᵀ = BᵀAᵀ`` and ``(Aᵀ)ᵀ = A`` rewrites still apply)."""
    if len(shape) == 2:
        return emit("transpose", x)
    r = len(shape)
    return emit("permute", x, axes=(*range(r - 2), r - 1, r - 2))


def _vjp_matmul(emit, args, shapes, params, g):
    """dA = G Bᵀ, dB = Aᵀ G per batch slice; a broadcast batch operand's
    gradient is summed back with ``sum_to``."""
    a, b = args
    sa, sb = shapes
    da = emit("sum_to", emit("matmul", g, _swap_last(emit, b, sb)), shape=tuple(sa))
    if len(sb) == 2 and len(sa) > 2 and all(isinstance(d, int) for d in sa[:-1]):
        # a weight shared by every batch slice: one GEMM over the stacked rows
        # instead of a batch of products summed afterwards
        rows = prod(sa[:-1])
        a2 = emit("reshape", a, shape=(rows, sa[-1]))
        g2 = emit("reshape", g, shape=(rows, sb[-1]))
        return [da, emit("matmul", emit("transpose", a2), g2)]
    return [da, emit("sum_to", emit("matmul", _swap_last(emit, a, sa), g), shape=tuple(sb))]


def _factor_matmul(args, params, i):
    return ("right", args[1]) if i == 0 else ("left", args[0])


def _combine_matmuls(gb, parts):
    """Σ_t A_t B_t over three or more fresh 2-D products of one shape (a weight
    used at every step of an unrolled sequence) = one batched product of the
    stacked operands summed over the stack: one GEMM call, no T-input sum."""
    g, groups = gb.g, {}
    for p in parts:
        if g.op(p) == "matmul" and gb.rewritable(p):
            shapes = tuple(tuple(g.shape(a)) for a in g.args(p))
            if all(len(s) == 2 for s in shapes):
                groups.setdefault(shapes, []).append(p)
    built = {n: k for k, n in enumerate(g.nx)}
    for shapes, group in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        if len(group) < 3:
            continue
        # Σ_t X_tᵀ B_t (a weight's gradient: the transposes of the steps' inputs) stacks
        # the X_t and transposes the stack once, a view, instead of each X_t; the steps
        # are stacked in the order their X_t were built (time order), as the B_t lie in
        # the buffers the sequence's gradient is assembled in
        xs = [g.args(p)[0] for p in group]
        flip = all(g.op(x) == "transpose" and not g.node(x)["params"].get("axes") for x in xs)
        if flip:
            xs = [g.args(x)[0] for x in xs]
            order = sorted(range(len(group)), key=lambda k: built[xs[k]])
            group, xs = [group[k] for k in order], [xs[k] for k in order]
        left = [(x, tuple(reversed(shapes[0]))) for x in xs] if flip else \
            [(g.args(p)[0], shapes[0]) for p in group]
        stacks = [gb.emit("concat", *(gb.emit("reshape", x, shape=(1, *s)) for x, s in side),
                          axis=0) for side in (left, [(g.args(p)[1], shapes[1]) for p in group])]
        if flip:
            stacks[0] = gb.emit("permute", stacks[0], axes=(0, 2, 1))
        parts = [p for p in parts if p not in group] + [
            gb.emit("sum", gb.emit("matmul", *stacks), axes=(0,))]
    return parts


structural("matmul", 2, _infer_matmul, lambda a, b: np.matmul(a, b), _vjp_matmul,
           "matrix product (..., n, k) @ (..., k, m), batch dims broadcast as np.matmul; "
           "transposes: dA = G Bᵀ, dB = Aᵀ G, summed over broadcast batch dims",
           factor=_factor_matmul, combine=_combine_matmuls)


# -------------------------------------------------------- transpose, permute
def _infer_transpose(shapes, params, names=()):
    (s,) = shapes
    axes = params.get("axes") or tuple(reversed(range(len(s))))
    if sorted(axes) != list(range(len(s))):
        raise UsageError(f"transpose axes {tuple(axes)} do not fit shape {tuple(s)}")
    return tuple(s[i] for i in axes)


def _infer_permute(shapes, params, names=()):
    if params.get("axes") is None and len(shapes[0]) > 1:
        raise UsageError("permute needs axes (a permutation of the dimensions)")
    return _infer_transpose(shapes, params, names)


def _inverse(axes) -> tuple:
    return tuple(int(i) for i in np.argsort(axes))


def _vjp_transpose(emit, args, shapes, params, g):
    axes = params.get("axes")
    if axes is None:
        return [emit("transpose", g)]
    return [emit("transpose", g, axes=_inverse(axes))]


_transposed = lambda args, params, i: ("transpose", "")  # noqa: E731


def _simplify_transpose(gb, args, params):
    """(Xᵀ)ᵀ = X; a fresh (PQ)ᵀ becomes QᵀPᵀ (so dW = δᵀ x, not (xᵀ δ)ᵀ), and a
    fresh (Σ_b P_b Q_b)ᵀ becomes Σ_b Q_bᵀ P_bᵀ."""
    if params.get("axes"):
        return None
    g, (x,) = gb.g, args
    if g.op(x) == "transpose" and not g.node(x)["params"].get("axes"):
        return g.args(x)[0]
    if g.op(x) == "matmul" and gb.rewritable(x) and len(g.shape(x)) == 2:
        p, q = g.args(x)
        return gb.emit("matmul", gb.emit("transpose", q), gb.emit("transpose", p))
    m = g.args(x)[0] if g.op(x) in ("sum", "sum_to") and gb.rewritable(x) else None
    if m is not None and g.op(m) == "matmul" and m in gb.fresh and g.nx.out_degree(m) == 1 \
            and len(g.shape(x)) == 2 and all(len(g.shape(a)) == 3 for a in g.args(m)) \
            and tuple(g.shape(m))[1:] == tuple(g.shape(x)):
        # (Σ_b P_b Q_b)ᵀ = Σ_b Q_bᵀ P_bᵀ (a shared weight's gradient summed over the batch):
        # the product is made in the weight's own layout, no transposed copy of it
        p, q = g.args(m)
        return gb.emit("sum", gb.emit("matmul", _swap_last(gb.emit, q, g.shape(q)),
                                      _swap_last(gb.emit, p, g.shape(p))), axes=(0,))
    return None


def _same_shape(gb, args, params):
    """A reshape, broadcast or sum to the shape it already has is the identity."""
    return args[0] if gb.g.shape(args[0]) == tuple(params["shape"]) else None


structural("transpose", 1, _infer_transpose,
           lambda x, axes=None: np.transpose(x, axes), _vjp_transpose,
           "permutes axes (reverses them by default); transpose: the inverse permutation",
           factor=_transposed, simplify=_simplify_transpose)
structural("permute", 1, _infer_permute, lambda x, axes=(): np.transpose(x, axes or None),
           lambda emit, args, shapes, params, g: [
               emit("permute", g, axes=_inverse(params.get("axes") or ()))],
           "permutes axes (transpose with explicit axes); transpose: the inverse permutation",
           factor=_transposed)


# ---------------------------------------------------------------- reshape
def _infer_reshape(shapes, params, names=()):
    (s,) = shapes
    new = tuple(params["shape"])
    if all(isinstance(d, int) for d in (*s, *new)) and size(s) != size(new):
        raise UsageError(f"cannot reshape {tuple(s)} to {new}")
    return new


structural("reshape", 1, _infer_reshape, lambda x, shape: np.reshape(x, shape),
           lambda emit, args, shapes, params, g: [emit("reshape", g, shape=tuple(shapes[0]))],
           "reshape; transpose: reshape back", simplify=_same_shape,
           factor=lambda args, params, i: ("linear", "reshape back to the argument's shape"))


# ------------------------------------------------------- sum, mean, broadcast
def _infer_sum(shapes, params, names=()):
    return reduced_shape(shapes[0], params.get("axes"), params.get("keepdims", False))


def _keep(shape, params):
    return reduced_shape(shape, params.get("axes"), True)


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
    return prod(shape[a] for a in norm_axes(axes, len(shape)))


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
           pointwise=lambda argx, params, shapes: argx[0], simplify=_same_shape)
def _infer_sum_to(shapes, params, names=("x",)):
    (s,) = shapes
    target = tuple(params["shape"])
    try:
        fits = len(target) <= len(s) and broadcast_shapes(target, s) == tuple(s)
    except UsageError:
        fits = False
    if not fits:
        raise UsageError(f"cannot sum {names[0]} {tuple(s)} to {target}: {target} does not "
                         f"broadcast to {tuple(s)}")
    return target


structural("sum_to", 1, _infer_sum_to, _impl_sum_to,
           lambda emit, args, shapes, params, g: [emit("broadcast_to", g, shape=tuple(shapes[0]))],
           "sum a broadcast result back to a shape; transpose: broadcast", simplify=_same_shape)


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
