"""Target-neutral kernel descriptions: what a kernel computes, not how.

A :class:`KernelSpec` names its array operands and the loop dimensions
each one spans (NumPy broadcasting, after :func:`collapse`), its scalar
arguments, the SymPy expression of each output, the dtype, and what the
loop does besides (in-place outputs, column sums).  Renderers
(:mod:`symdl.codegen.render`: numba loops and the NumPy reference; a CUDA
renderer next to them) turn one spec into source text; nothing here is
Python- or device-specific.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import sympy as sp

__all__ = ["Operand", "KernelSpec", "collapse", "hoist"]


@dataclass(frozen=True)
class Operand:
    """An array input bound to ``symbol``; ``dims[d]`` says whether it spans
    loop dimension ``d`` (else it is broadcast along it).  An operand that
    spans no dimension is a one-element array."""

    symbol: sp.Symbol
    dims: tuple

    @property
    def arg(self) -> str:
        return f"a_{self.symbol.name}"


@dataclass(frozen=True)
class KernelSpec:
    """One elementwise kernel over a loop nest of ``rank`` dimensions.

    ``outputs`` are expressions in the operands' and ``scalars``' symbols,
    each written to an array spanning every dimension (or, with ``inplace``,
    back into the operand of that symbol: an optimizer update).  ``colsums``
    holds ``(k, mean)`` pairs: output ``k`` summed (or averaged) over every
    loop dimension but the second, on the way: the first of a rank-2 serial
    loop (a bias gradient), the first and third of a rank-3 one (the
    ``(N, C, H·W)`` sums of a batch norm or a convolution's bias gradient).
    ``dropped``: outputs of a rank-3 loop that are only summed, never stored.
    """

    name: str
    inputs: tuple
    scalars: tuple
    outputs: tuple
    dtype: str
    rank: int = 1
    parallel: bool = True
    inplace: tuple = ()
    colsums: tuple = ()
    comment: tuple = ()
    dropped: tuple = ()

    def __post_init__(self):
        if self.colsums and not (self.rank == 3 or (self.rank == 2 and not self.parallel)):
            raise ValueError("column sums need a serial rank-2 kernel or a rank-3 one")
        if self.dropped and (self.rank != 3 or not set(self.dropped) <= {k for k, _ in self.colsums}):
            raise ValueError("only the column sums of a rank-3 kernel can drop their outputs")
        if self.inplace and len(self.inplace) != len(self.outputs):
            raise ValueError("inplace names one input symbol per output")

    @property
    def out_args(self) -> list:
        if self.inplace:
            return [f"a_{s.name}" for s in self.inplace]
        return [f"out{k}" for k in range(len(self.outputs)) if k not in self.dropped]

    @property
    def sum_args(self) -> list:
        return [f"sum{k}" for k, _ in self.colsums]

    @property
    def args(self) -> list:
        """The kernel's parameters, in call order."""
        return ([i.arg for i in self.inputs] + ([] if self.inplace else self.out_args)
                + self.sum_args + [s.name for s in self.scalars])


def collapse(out_shape, in_shapes, keep=()) -> tuple:
    """The loop nest of an elementwise kernel: ``(sizes, spans)``.

    Dimensions of size 1 are dropped; neighbouring dimensions are merged
    when every input spans both or neither of them (a ``(N, C, H, W)`` map
    with a ``(C, 1, 1)`` bias becomes ``(N, C, H*W)``; all-full operands a
    flat loop), except across a boundary listed in ``keep`` (an index into
    ``out_shape`` that must start a loop dimension).  ``spans[i][d]`` says
    whether input ``i`` spans loop dimension ``d``; there is always at
    least one loop dimension.

    >>> collapse((8, 3, 4, 4), [(8, 3, 4, 4), (3, 1, 1)])
    ((8, 3, 16), ((True, True, True), (False, True, False)))
    """
    r = len(out_shape)
    padded = [(1,) * (r - len(s)) + tuple(s) for s in in_shapes]
    sizes: list = []
    spans: list = [[] for _ in in_shapes]
    for d, n in enumerate(out_shape):
        if n == 1 and d not in keep:
            continue
        status = tuple(p[d] == n and n != 1 for p in padded)
        if sizes and d not in keep and all(s[-1] == st for s, st in zip(spans, status)):
            sizes[-1] *= n
            continue
        sizes.append(n)
        for s, st in zip(spans, status):
            s.append(st)
    if not sizes:
        return (1,), tuple((False,) for _ in in_shapes)
    return tuple(sizes), tuple(tuple(s) for s in spans)


def operand_shape(sizes, dims) -> tuple:
    """The shape an operand is viewed with inside the kernel."""
    shape = tuple(n for n, on in zip(sizes, dims) if on)
    return shape or (1,)


def size_of(sizes) -> int:
    return prod(sizes)


def hoist(exprs: list, scalars) -> tuple:
    """Lift the subexpressions that depend on ``scalars`` only (kernel
    arguments, the same for every element) out of the array loop.

    Returns ``([(h_k, expr), ...], new_exprs)``: ``h_k`` are computed once
    per call.  Scalar-only factors of a product and terms of a sum are
    grouped first (``lr*m/(c1*d)`` becomes ``h0*m/d`` with ``h0 = lr/c1``);
    plain numbers and lone symbols stay where they are.

    >>> lr, c1, m = sp.symbols("lr c1 m", real=True)
    >>> hoist([lr * m / c1], {lr, c1})
    ([(h0, lr/c1)], [h0*m])
    """
    scalars = set(scalars)
    found: dict = {}

    def fixed(e):
        return e.free_symbols <= scalars

    def lift(e):
        if not e.free_symbols or e.is_Atom or (-e).is_Atom:  # numbers, x and -x stay
            return e
        if e not in found:
            found[e] = sp.Symbol(f"h{len(found)}", real=True)
        return found[e]

    def visit(e):
        if e.is_Atom:
            return e
        if fixed(e):
            return lift(e)
        if isinstance(e, (sp.Add, sp.Mul)):
            const = [a for a in e.args if fixed(a)]
            rest = [visit(a) for a in e.args if not fixed(a)]
            if const:
                const = [lift(e.func(*const))]
            return e.func(*const, *rest)
        if isinstance(e, sp.Piecewise):
            return sp.Piecewise(*[(visit(x), visit(c)) for x, c in e.args])
        return e.func(*[visit(a) for a in e.args])

    new = [visit(e) for e in exprs]
    return [(h, e) for e, h in found.items()], new
