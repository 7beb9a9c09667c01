"""Parameters: an array and its gradient, optionally packed into one flat buffer."""
from __future__ import annotations

import numpy as np

from ..errors import UsageError

__all__ = ["Parameter", "ParamPack"]


class Parameter:
    """A trainable array ``data`` with a same-shaped ``grad``.

    Assigning ``p.data = d`` or ``p.grad = g`` (PyTorch's habit) copies into the arrays the
    parameter already has, so that a :class:`ParamPack`'s flat buffers, an optimizer's kernels
    and compiled programs, all bound to those arrays, see the new values; shape and dtype must
    match (a :class:`~symdl.errors.UsageError` otherwise).
    """

    def __init__(self, data: np.ndarray, name: str = ""):
        self.name = name
        data = np.ascontiguousarray(data)
        self._bind(data, np.zeros_like(data))
        self.pack: "ParamPack | None" = None

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value) -> None:
        self._data[...] = self._checked("data", value)

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        self._grad[...] = self._checked("grad", value)

    def _bind(self, data, grad) -> None:
        """Make ``data`` and ``grad`` this parameter's arrays (a pack's views); nothing is copied."""
        self._data, self._grad = data, grad

    def _checked(self, what: str, value):
        if value is None:
            raise UsageError(f"parameter {self.name or '?'}: {what} cannot be None "
                             f"(zero it with optimizer.zero_grad() or p.{what}[...] = 0)")
        arr = value if isinstance(value, type(self._data)) else np.asarray(value)
        if tuple(arr.shape) != self._data.shape:
            raise UsageError(f"parameter {self.name or '?'}: cannot assign {what} of shape "
                             f"{tuple(arr.shape)} to a parameter of shape {self._data.shape}")
        if arr.dtype != self._data.dtype:
            raise UsageError(f"parameter {self.name or '?'}: cannot assign {what} of dtype {arr.dtype} "
                             f"to a {self._data.dtype} parameter (convert with .astype)")
        return arr

    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    def __repr__(self) -> str:
        return f"Parameter({self.name or '?'}, shape={self.shape}, dtype={self.dtype})"


class ParamPack:
    """Parameters laid out in one flat buffer (and their gradients in another),
    so an optimizer updates all of them with one fused kernel call."""

    def __init__(self, params, dtype=None, backend=None):
        from ..backends import get_backend
        self.params = list(params)
        self.backend = backend if backend is not None else get_backend("numpy")
        dtype = np.dtype(dtype or self.params[0].dtype)
        total = sum(p.data.size for p in self.params)
        self.data = self.backend.empty(total, dtype)
        self.grad = self.backend.zeros(total, dtype)
        for p, data, grad in zip(self.params, self.views(self.params, self.data),
                                 self.views(self.params, self.grad)):
            data[...] = self.backend.asarray(p.data)
            p._bind(data, grad)
            p.pack = self

    def move_grad(self, flat) -> None:
        """Keep the gradients in ``flat`` from now on (a buffer of the same size and dtype,
        such as a window of memory shared with other processes); the values are copied and
        every parameter's ``grad`` becomes a view of it.  Programs compiled before the move
        still write the old buffer: move before compiling."""
        if flat.shape != self.grad.shape or flat.dtype != self.grad.dtype:
            raise ValueError(f"a gradient buffer of {self.grad.shape} {self.grad.dtype} is "
                             f"needed, not {flat.shape} {flat.dtype}")
        flat[...] = self.grad
        self.grad = flat
        for p, grad in zip(self.params, self.views(self.params, flat)):
            p._bind(p.data, grad)

    @staticmethod
    def views(params, flat) -> list:
        """Views of the flat buffer ``flat`` laid out as the pack of ``params`` lays
        out its own (each parameter's shape, in order)."""
        out, at = [], 0
        for p in params:
            out.append(flat[at:at + p.data.size].reshape(p.shape))
            at += p.data.size
        return out

    def covers(self, params) -> bool:
        """Do ``params`` (in this order) make up exactly this pack?"""
        params = list(params)
        return len(params) == len(self.params) and all(a is b for a, b in zip(params, self.params))
