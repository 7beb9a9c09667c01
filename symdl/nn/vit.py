"""The vision transformer: patches, a class token, learned positions, pre-LN encoder layers."""
from __future__ import annotations

import numpy as np

from ..errors import UsageError
from .attention import LearnedPositionalEncoding, Linear, TransformerEncoderLayer
from .layers import LayerNorm
from .module import Module
from .parameter import Parameter

__all__ = ["ViT"]


def _positive(who, **values):
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise UsageError(f"{who}: {k} must be a positive integer, got {v!r}")


class ViT(Module):
    """Vision transformer (Dosovitskiy et al. 2021) for square single-channel images given as
    flat rows (N, side²): ``patch`` × ``patch`` patches cut by ``reshape`` and ``permute``
    (the order of :func:`symdl.data.sequences.patchify`), a linear patch embedding (a torch ViT's
    ``Conv2d(1, dim, patch, stride=patch)``: ``weight.reshape(dim, patch²)``), a class token
    prepended, learned positions added, ``depth`` pre-LN transformer encoder layers (GELU),
    a final layer norm, and a linear head on the class token.

    >>> m = ViT(8, 4, 10, dim=16, depth=1, heads=2)
    >>> m(np.zeros((3, 64), np.float32)).shape
    (3, 10)
    """

    def __init__(self, side: int, patch: int, n_out: int, dim: int = 64, depth: int = 2,
                 heads: int = 4, mlp_dim: int | None = None, dropout: float = 0.0, rng=None,
                 dtype: str = "float32"):
        super().__init__()
        _positive("ViT", side=side, patch=patch, n_out=n_out, dim=dim, depth=depth, heads=heads)
        if side % patch:
            raise UsageError(f"ViT: the patch size {patch} must divide the image side {side}")
        if dim % heads:
            raise UsageError(f"ViT: the width {dim} must be divisible by the {heads} heads")
        rng = rng if rng is not None else np.random.default_rng(0)
        self.side, self.patch, self.n_out = int(side), int(patch), int(n_out)
        self.dim, self.depth, self.heads = int(dim), int(depth), int(heads)
        self.grid = self.side // self.patch
        self.num_patches = self.grid ** 2
        mlp = 2 * self.dim if mlp_dim is None else int(mlp_dim)
        self.patch_embed = Linear(self.patch ** 2, self.dim, rng=rng, dtype=dtype)
        self.class_token = Parameter((0.02 * rng.standard_normal((1, 1, self.dim))).astype(dtype))
        self.pos = LearnedPositionalEncoding(self.num_patches + 1, self.dim, rng=rng, dtype=dtype)
        for k in range(self.depth):
            setattr(self, f"layer{k}", TransformerEncoderLayer(
                self.dim, self.heads, mlp, dropout=dropout, activation="gelu", batch_first=True,
                norm_first=True, rng=rng, dtype=dtype))
        self.norm = LayerNorm(self.dim, dtype=dtype)
        self.head = Linear(self.dim, self.n_out, rng=rng, dtype=dtype)

    def patches(self, g, x, prefix=""):
        """(N, side²) -> (N, P, patch²): the patch grid, row-major, pixels row-major."""
        s, G, p = tuple(g.shape(x)), self.grid, self.patch
        if len(s) != 2 or s[1] != self.side ** 2:
            raise UsageError(f"{prefix}ViT expects {self.side}×{self.side} images as rows "
                             f"(N, {self.side ** 2}), {x} has shape {s}")
        y = g.add("reshape", x, shape=(s[0], G, p, G, p), name=f"{prefix}grid")
        y = g.add("permute", y, axes=(0, 1, 3, 2, 4), name=f"{prefix}grid_t")
        return g.add("reshape", y, shape=(s[0], G * G, p * p), name=f"{prefix}patches")

    def build(self, g, x, prefix=""):
        tokens = self.patch_embed.build(g, self.patches(g, x, prefix), prefix=f"{prefix}patch_embed.")
        N = g.shape(tokens)[0]
        cls = g.param(f"{prefix}class_token", self.class_token.shape, str(self.class_token.dtype))
        cls = g.add("broadcast_to", cls, shape=(N, 1, self.dim), name=f"{prefix}class_tokens")
        h = g.add("concat", cls, tokens, axis=1, name=f"{prefix}tokens")
        h = self.pos.build(g, h, prefix=f"{prefix}pos.")
        for k in range(self.depth):
            h = getattr(self, f"layer{k}").build(g, h, prefix=f"{prefix}layer{k}.")
        h = self.norm.build(g, h, prefix=f"{prefix}norm.")
        c = g.add("slice", h, begin=(0, 0, 0), end=(None, 1, None), name=f"{prefix}cls_s")
        c = g.add("reshape", c, shape=(N, self.dim), name=f"{prefix}cls")
        return self.head.build(g, c, prefix=f"{prefix}head.")

    def __repr__(self):
        return (f"ViT({self.side}×{self.side}, patch={self.patch}, dim={self.dim}, "
                f"depth={self.depth}, heads={self.heads}, n_out={self.n_out})")
