"""The ``kernels/`` listing: generated source of every registered op.

One file per op, ``<backend>/<op>.py`` (``cuda/<op>.cu``), headed by the
declaration it came from; forward and backward kernels, float32 and
float64: numba loops, the NumPy reference and CUDA C.  Deterministic to
the byte: :func:`check_listing` regenerates in memory and reports every
file that differs.
"""
from __future__ import annotations

from pathlib import Path

from ..ops import OPS, ElementwiseOp, RowOp
from .kernels import HEADER, KernelInput, elementwise_kernel, module_header
from .cuda import colsum_kernel, cuda_module, cuda_row_kernel, render_cuda
from .cuda_grid import GRID_OPS, grid_decl, grid_file_lines
from .rowops import row_kernel
from .spec import KernelSpec, Operand

__all__ = ["DTYPES", "FLAVORS", "elementwise_file", "rowop_file", "colsum_file", "op_listing",
           "check_listing", "write_listing"]

DTYPES = ("float32", "float64")
FLAVORS = ("numba", "numpy")


def _head(lines: list, flavor: str) -> list:
    return [HEADER, '"""'] + lines + ['"""'] + module_header(flavor)[1:]


def _elementwise_decl(op: ElementwiseOp) -> list:
    decl = [f"{op.name}: {op.doc}".rstrip(": "),
            f"declared: {op.name}({', '.join(map(str, op.inputs))}) = {op.expr}"]
    if op.stable is not None:
        decl.append(f"stable form (checked equal): {op.stable}")
    for i, f in sorted(op.grad_forms.items()):
        decl.append(f"stated d/d{op.inputs[i]} (checked against sympy.diff): {f}")
    if op.params:
        decl.append("params: " + ", ".join(f"{s}={d}" for s, d in op.params.items()))
    return decl


def _elementwise_variants(op: ElementwiseOp):
    """``(kernel name, op or its grad op, what, dtype)`` of each kernel of an op's file."""
    variants = [(op, "forward")] + [(op.grad_op(i), f"backward d/d{op.inputs[i]}")
                                    for i in range(op.arity)]
    for dtype in DTYPES:
        for k, (v, what) in enumerate(variants):
            yield f"{_ident(op.name)}_{'f' if k == 0 else f'b{k - 1}'}_{dtype[-2:]}", v, what, dtype


def elementwise_file(op: ElementwiseOp, flavor: str) -> str:
    """An op's forward and backward kernels, per dtype, over a flat loop."""
    if flavor == "cuda":
        lines = []
        for name, v, what, dtype in _elementwise_variants(op):
            spec = KernelSpec(name, tuple(Operand(s, (True,)) for s in v.inputs), tuple(v.params),
                              (v.kernel_expr,), dtype, 1,
                              comment=(f"{what}, {dtype}: {v.kernel_expr}",))
            lines += render_cuda(spec)
        return cuda_module(lines, _elementwise_decl(op))
    lines = _head(_elementwise_decl(op), flavor)
    for name, v, what, dtype in _elementwise_variants(op):
        lines += elementwise_kernel(
            name, [KernelInput(s) for s in v.inputs], list(v.params),
            [v.kernel_expr], dtype, flavor, True, [f"{what}, {dtype}: {v.kernel_expr}"],
            flat=True)
    return "\n".join(lines)


def _stats(stats) -> str:
    return "; ".join(f"{s} = {how}_j {e}" for s, how, e in stats)


def _rowop_decl(op: RowOp) -> list:
    decl = [f"{op.name}: {op.doc}", f"per-{op.output} output: {op.out}",
            f"statistics: {_stats(op.stats)}",
            f"stated VJP (checked against sympy.diff): {op.vjp}"]
    if op.vjp_stats:
        decl.append(f"backward statistics: {_stats(op.vjp_stats)}")
    if op.params:
        decl.append("params: " + ", ".join(f"{s}={d}" for s, d in op.params.items()))
    return decl


def rowop_file(op: RowOp, flavor: str) -> str:
    """A row op's forward and VJP kernels, per dtype (and target layout)."""
    lines = [] if flavor == "cuda" else _head(_rowop_decl(op), flavor)
    layouts = ("index", "dense") if "target" in op.operands else ("dense",)
    for dtype in DTYPES:
        for labels in layouts:
            for k, v in enumerate((op, op.grad_op(0))):
                tag = f"_{labels}" * (len(layouts) > 1)
                name = f"{op.name}_{'fb'[k]}{tag}_{dtype[-2:]}"
                what = f"{('forward', 'VJP')[k]}{f', {labels} labels' * bool(tag)}, {dtype}"
                if flavor == "cuda":
                    lines += cuda_row_kernel(name, v, dtype, labels, comment=[what])
                else:
                    lines += row_kernel(name, v, dtype, labels, flavor, comment=[what])
    return cuda_module(lines, _rowop_decl(op)) if flavor == "cuda" else "\n".join(lines)


def _ident(name: str) -> str:
    return name.replace(".", "_")


def colsum_file() -> str:
    """The column reductions (a bias gradient: the sum or mean over rows), per dtype."""
    lines = []
    for dtype in DTYPES:
        for mean in (False, True):
            how = "mean" if mean else "sum"
            lines += colsum_kernel(f"col{how}_{dtype[-2:]}", dtype, mean,
                                   [f"{how} over the rows of x (nr, nc), {dtype}"])
    return cuda_module(lines, ["column reductions: out_j = sum_i x_ij (or the mean)"])


def op_listing() -> dict:
    """``{relative path: source}`` for every declared elementwise op and row op, the
    column reductions, and the CUDA loops of unfold/fold and max pooling."""
    out = {}
    for flavor in FLAVORS + ("cuda",):
        ext = "cu" if flavor == "cuda" else "py"
        for op in OPS.declared("elementwise"):
            out[f"{flavor}/{op.name}.{ext}"] = elementwise_file(op, flavor)
        for op in OPS.declared():
            if isinstance(op, RowOp):
                out[f"{flavor}/{op.name}.{ext}"] = rowop_file(op, flavor)
    out["cuda/colsum.cu"] = colsum_file()
    for op in GRID_OPS:  # unfold/fold and the axis loops of max pooling
        out[f"cuda/{op}.cu"] = cuda_module(grid_file_lines(op), grid_decl(op))
    return out


def check_listing(listing: dict, root: Path) -> list:
    """Relative paths that are missing, differ, or should not be there."""
    root = Path(root)
    bad = [rel for rel, text in sorted(listing.items())
           if not (root / rel).exists() or (root / rel).read_text() != text + "\n"]
    stale = [str(p.relative_to(root)) for ext in ("py", "cu")
             for p in sorted(root.glob(f"*/*.{ext}"))]
    return bad + [rel for rel in stale if rel not in listing]


def write_listing(listing: dict, root: Path) -> list:
    """Write what differs, remove stale ``.py`` and ``.cu`` files; returns every listed path."""
    root = Path(root)
    for rel in check_listing(listing, root):
        path = root / rel
        if rel in listing:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(listing[rel] + "\n")
        else:
            path.unlink()
    return [root / rel for rel in sorted(listing)]
