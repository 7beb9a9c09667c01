"""The CuPy backend's lowering table: generated CUDA kernels, cuBLAS, CuPy calls.

Fused elementwise groups and row ops become CUDA kernels rendered from the
same :class:`~symdl.codegen.spec.KernelSpec` and row-op declarations as the
NumPy backend's (:mod:`symdl.codegen.cuda`), loaded through ``RawModule``.
The rows that only emit array calls (``np.matmul(..., out=)``, ``np.copyto``,
``np.take``, reductions with ``out=``, views taken once) are shared with the
NumPy table: the CuPy step function sees ``cupy`` under the name ``np``, so
``matmul`` is cuBLAS.  ``unfold``/``fold`` and max pooling's ``argmax``,
``gather``, ``scatter_add`` are generated kernels too (:mod:`symdl.backends.cupy_conv`).
A structural op with no CuPy row (a declared ``impl``, ``unfold`` over 3-D maps)
runs its NumPy ``impl`` on host copies: correct, and slow.  Nothing here imports
CuPy; the backend object carries it (``prog.backend.xp``).
"""
from __future__ import annotations

from math import prod

import sympy as sp

from ..codegen.cuda import cuda_row_kernel, render_cuda
from ..codegen.rowops import row_signature
from ..codegen.spec import KernelSpec, Operand, collapse, operand_shape
from ..ops import OPS, RowOp, StructuralOp
from .lowering import Lowerings
from .numpy_lower import NUMPY, pointwise
from .numpy_rowops import row_argv, row_layout, row_params

__all__ = ["CUPY", "SHARED", "launch", "operand", "on_host"]

#: rows whose NumPy lines run unchanged on CuPy arrays (``np`` is ``cupy`` there)
SHARED = ("fill", "transpose", "reshape", "matmul", "sum", "mean", "sum_to", "permute", "slice",
          "pad", "concat")


class CupyLowerings(Lowerings):
    """The table, plus fused elementwise units; no reduction is absorbed into a
    kernel (a column sum is its own cheap launch on a GPU)."""

    def fused(self, prog, unit) -> list:
        return _emit_fused(prog, unit)

    def absorbable(self, prog, c: str, how: str = "rows"):
        return None


CUPY = CupyLowerings("cupy")
for _key in SHARED:
    CUPY.rows[_key] = NUMPY.rows[_key]


def launch(prog, lines: list, kinds: str, dtype: str, span: int | None = None) -> str:
    """Load the CUDA kernel ``kernel`` of ``lines`` through the backend; its name in the step
    (``span``: how many leading sizes the grid covers, as :class:`~.cupy_backend.Launch`)."""
    fn = prog.backend.kernel(lines, kinds, dtype, span)
    name = f"cuda{len(prog.kernels)}"
    prog.kernels[name] = fn
    return prog.alias(name, fn)


# ------------------------------------------------------------ host fallback
@CUPY.register(StructuralOp)
def on_host(prog, n) -> list:
    """The op's NumPy ``impl`` on host copies of its arguments, copied back."""
    d = prog.graph.node(n)
    xp, impl = prog.backend.xp, OPS[d["op"]].impl

    def run(*args, **params):
        return xp.asarray(impl(*[xp.asnumpy(a) for a in args], **params))

    fn = prog.alias(f"{d['op']}@host", run)
    params = prog.alias(f"{n}@params", dict(d["params"]))
    args = ", ".join(prog.var(a) for a in d["args"])
    return [prog.comment(n), f"    np.copyto({prog.var(n)}, {fn}({args}, **{params}))"]


# ------------------------------------------------------------ fused units
def operand(prog, n: str, shape, copies: list) -> str:
    """Buffer ``n`` viewed with ``shape``; a contiguous copy, refreshed every
    step, where a view would not do (a transposed operand)."""
    arr = prog.buffers[n]
    if arr.flags.c_contiguous:
        return prog.alias(f"{n}@{'x'.join(map(str, shape))}", arr.reshape(shape))
    key = f"{n}@contiguous"
    if key not in prog.buffers:
        prog.alias(key, prog.backend.empty(arr.shape, arr.dtype))
        copies.append(f"    np.copyto({prog.var(key)}, {prog.var(n)})")
    return prog.alias(f"{key}@{'x'.join(map(str, shape))}", prog.buffers[key].reshape(shape))


def _emit_fused(prog, unit) -> list:
    g = prog.graph
    copies: list = []  # contiguous copies of transposed operands, made before the launch
    inside = set(unit.nodes)
    out_shape = prog.shapes[unit.outputs[0]]
    ext: dict = {}
    params: list = []
    expr: dict = {}
    for n in unit.nodes:
        argx = [expr[a] if a in inside else ext.setdefault(a, sp.Symbol(f"v{len(ext)}", real=True))
                for a in g.args(n)]
        expr[n] = pointwise(prog, n, argx, params)
    sizes, spans = collapse(out_shape, [prog.shapes[a] for a in ext])
    argv = [operand(prog, a, operand_shape(sizes, dims), copies) for a, dims in zip(ext, spans)]
    argv += [operand(prog, o, sizes, copies) for o in unit.outputs]
    comment = [f"{n} = {g.op(n)}({', '.join(g.args(n))})" for n in unit.nodes]
    spec = KernelSpec("kernel", tuple(Operand(s, d) for s, d in zip(ext.values(), spans)),
                      tuple(s for s, _ in params), tuple(expr[o] for o in unit.outputs),
                      prog.dtype(unit.outputs[0]), len(sizes), comment=tuple(comment))
    kinds = "a" * (len(ext) + len(unit.outputs)) + "s" * len(params) + "n" * len(sizes)
    k = launch(prog, render_cuda(spec), kinds, spec.dtype)
    argv += [repr(float(v)) for _, v in params] + [str(s) for s in sizes]
    return [f"    # {c}" for c in comment] + copies + [f"    {k}({', '.join(argv)})"]


# ------------------------------------------------------------ row ops
@CUPY.register(RowOp)
def _rowop(prog, n) -> list:
    """One thread per row; the label layout and dtype as the NumPy row's."""
    g = prog.graph
    opdef = OPS[g.op(n)]
    labels, dtype, _ = row_layout(prog, n, opdef)
    what = f"{opdef.name}, {labels} labels" if "target" in opdef.operands else opdef.name
    lines = cuda_row_kernel("kernel", opdef, dtype, labels, comment=[what])
    kinds = "".join("a" if a.startswith("a_") else "s" for a in row_signature(opdef)) + "nn"
    k = launch(prog, lines, kinds, dtype, span=1)
    z = prog.shapes[g.args(n)[0]]
    argv = ", ".join(row_argv(prog, opdef, g.args(n), [n]))
    return [prog.comment(n),
            f"    {k}({argv}{row_params(opdef, g.node(n)['params'])}, {prod(z[:-1])}, {z[-1]})"]

