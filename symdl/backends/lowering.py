"""Lowering tables: one emit function per op (or op class), per backend.

As PyTensor's ``numba_funcify`` dispatches on the op's type, a backend
registers, for each op name or op *class* (``ElementwiseOp``,
``StructuralOp``...), a :class:`Lowering`: the lines of the step function
that compute a node, and optionally a *view* (a buffer that aliases an
argument's, taken once at compile time: transposes, reshapes).  Lookup
tries the op's name first, then its definition's class and the classes it
derives from, so one row covers a whole family.  Nothing else in symdl
branches on op names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import UsageError
from ..ops import OPS

__all__ = ["Lowering", "Lowerings"]


@dataclass(frozen=True)
class Lowering:
    """``emit(prog, node) -> [source lines]``; ``view(prog, node) -> array | None``;
    ``strided``: the emitted code reads its arguments' buffers as they are, strided or not;
    ``layout(prog, node, arg, depth) -> bool``: the node would read ``arg`` best stored
    batch-second (:mod:`symdl.backends.numpy_layout`)."""

    emit: Callable
    view: Callable | None = None
    strided: bool = False
    layout: Callable | None = None


class Lowerings:
    """``{op name or op class: Lowering}`` for one backend."""

    def __init__(self, backend: str):
        self.backend = backend
        self.rows: dict = {}

    def register(self, *keys, view: Callable | None = None, strided: bool = False,
                 layout: Callable | None = None):
        """Decorator: ``@table.register("matmul")`` or ``@table.register(ElementwiseOp)``."""
        def deco(emit):
            for k in keys:
                if k in self.rows:
                    raise ValueError(f"{self.backend}: lowering for {k!r} registered twice")
                self.rows[k] = Lowering(emit, view, strided, layout)
            return emit
        return deco

    def find(self, op: str) -> Lowering | None:
        if op in self.rows:
            return self.rows[op]
        for cls in type(OPS[op]).__mro__:
            if cls in self.rows:
                return self.rows[cls]
        return None

    def __getitem__(self, op: str) -> Lowering:
        row = self.find(op)
        if row is None:
            raise UsageError(f"the {self.backend} backend cannot run op {op} (no lowering)")
        return row

    def __contains__(self, op: str) -> bool:
        return self.find(op) is not None
