"""Parameters: an array and its gradient, optionally packed into one flat buffer."""
from __future__ import annotations

import numpy as np


class Parameter:
    """A trainable array ``data`` with a same-shaped ``grad``."""

    def __init__(self, data: np.ndarray, name: str = ""):
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)
        self.name = name
        self.pack: "ParamPack | None" = None

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self) -> str:
        return f"Parameter({self.name or '?'}, shape={self.shape}, dtype={self.dtype})"


class ParamPack:
    """Parameters laid out in one flat buffer (and their gradients in another),
    so an optimizer updates all of them with one fused kernel call."""

    def __init__(self, params, dtype=None):
        self.params = list(params)
        dtype = np.dtype(dtype or self.params[0].dtype)
        total = sum(p.data.size for p in self.params)
        self.data = np.empty(total, dtype)
        self.grad = np.zeros(total, dtype)
        at = 0
        for p in self.params:
            n = p.data.size
            self.data[at:at + n] = p.data.reshape(-1)
            p.data = self.data[at:at + n].reshape(p.shape)
            p.grad = self.grad[at:at + n].reshape(p.shape)
            p.pack = self
            at += n

    def covers(self, params) -> bool:
        """Do ``params`` (in this order) make up exactly this pack?"""
        params = list(params)
        return len(params) == len(self.params) and all(a is b for a, b in zip(params, self.params))
