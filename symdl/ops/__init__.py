"""Every op symdl knows, declared once (see :mod:`symdl.ops.registry`)."""
from .registry import OPS, ElementwiseOp, G, OpBase, Y, elementwise, real, register
from . import elementwise as _elementwise  # noqa: F401  (declares the activations)
from .losses import RowGradOp, RowLossOp
from .structural import StructuralOp, broadcast_shapes, sum_axes

__all__ = ["OPS", "OpBase", "ElementwiseOp", "RowLossOp", "RowGradOp", "StructuralOp", "G", "Y",
           "elementwise", "real", "register", "broadcast_shapes", "sum_axes"]
