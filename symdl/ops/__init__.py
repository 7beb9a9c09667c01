"""Every op symdl knows, declared once (see :mod:`symdl.ops.registry`)."""
from .registry import OPS, ElementwiseOp, G, OpBase, Y, activation, elementwise, real, register
from . import elementwise as _elementwise  # noqa: F401  (declares the activations)
from . import losses as _losses  # noqa: F401  (declares the losses)
from .rowops import RowGradOp, RowLossOp, RowOp, RowVJPOp
from .structural import StructuralOp, broadcast_shapes, sum_axes
from . import shape_ops as _shape_ops  # noqa: F401  (slice, pad, concat, gather...)
from . import conv as _conv  # noqa: F401  (unfold, fold: im2col and col2im)
# importing the submodule ``elementwise`` set the package attribute of that
# name to the module: the public name is the declaring function
from .registry import elementwise  # noqa: E402,F811

__all__ = ["OPS", "OpBase", "ElementwiseOp", "RowOp", "RowLossOp", "RowVJPOp", "RowGradOp",
           "StructuralOp", "G", "Y", "activation", "elementwise", "real", "register",
           "broadcast_shapes", "sum_axes"]
