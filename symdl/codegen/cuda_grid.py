"""CUDA kernels of the loops that move entries by index: convolution's ``unfold``/``fold``
(im2col, col2im) over 2-D maps, and ``argmax``, ``gather``, ``scatter_add`` along the middle
axis of an array seen as ``(A, K, B)`` (max pooling: the first maximum of each window, NaN
winning, as ``np.argmax`` and PyTorch's max pooling; the gradient routed to it alone).

The same loops as the numba kernels of the NumPy backend (``MAP_KERNELS``,
``AXIS_KERNELS``), from the same description: the pixel a column entry reads is
:data:`PIXEL` (``i·s + p·d − pad`` per axis), and ``fold`` reads it backwards,
through the inverse SymPy solves for (a column index ``i = (r + pad − p·d)/s``,
kept where the division is exact and ``0 ≤ i < O``).  On a GPU each thread
*writes one output entry* and reads what it needs: ``fold`` gathers the columns
that land on its pixel (no atomics; it adds them in the ``(p, q)`` order in which
the numba loop adds them, so the sums are the same to the bit), ``scatter_add``
writes its entry's gradient or zero.  Out-of-range indices are counted into
``bad`` (``atomicAdd`` on the device), as the numba kernels return their count.

Each kernel is ``<name>_at`` (``__host__ __device__``, one output entry) plus the
grid-stride loop of :mod:`symdl.codegen.cuda`; the first ``long long`` argument,
``total``, is the number of output entries the loop covers.  Source text only.
"""
from __future__ import annotations

import sympy as sp

from .cuda import _loop, ctype

__all__ = ["PIXEL", "GRID_OPS", "grid_kernel", "grid_file_lines", "grid_decl"]

_i, _p, _s, _d, _pad, _r = sp.symbols("i p s d pad r", integer=True)
#: the input coordinate read by column entry ``i`` of kernel offset ``p`` (one spatial axis)
PIXEL = _i * _s + _p * _d - _pad


def _c(e) -> str:
    """An integer SymPy expression as C (``long long`` arithmetic)."""
    return sp.ccode(e)


def _pixel(i: str, p: str, s: str, d: str, pad: str) -> str:
    return _c(PIXEL.subs({_i: sp.Symbol(i, integer=True), _p: sp.Symbol(p, integer=True),
                          _s: sp.Symbol(s, integer=True), _d: sp.Symbol(d, integer=True),
                          _pad: sp.Symbol(pad, integer=True)}))


def _inverse(r: str, p: str, s: str, d: str, pad: str) -> tuple:
    """``(numerator, denominator)`` of the column index that reads pixel ``r``."""
    (sol,) = sp.solve(sp.Eq(PIXEL, _r), _i)
    num, den = sp.fraction(sp.together(sol))
    sub = {_r: r, _p: p, _s: s, _d: d, _pad: pad}
    sub = {k: sp.Symbol(v, integer=True) for k, v in sub.items()}
    return _c(num.subs(sub)), _c(den.subs(sub))


_GEOMETRY = ("sh", "sw", "ph", "pw", "dh", "dw")


def _unfold(name: str, t: str) -> list:
    params = (f"const {t} *__restrict__ img, {t} *cols, long long total, long long H, long long W, "
              "long long KH, long long KW, long long OH, long long OW, "
              + ", ".join(f"long long {g}" for g in _GEOMETRY))
    body = ["    const long long j = i % OW;", "    const long long y = (i / OW) % OH;",
            "    const long long q = (i / (OW * OH)) % KW;",
            "    const long long p = (i / (OW * OH * KW)) % KH;",
            "    const long long m = i / (OW * OH * KW * KH);",
            f"    const long long r = {_pixel('y', 'p', 'sh', 'dh', 'ph')};",
            f"    const long long c = {_pixel('j', 'q', 'sw', 'dw', 'pw')};",
            "    cols[i] = (r >= 0 && r < H && c >= 0 && c < W) ? img[(m * H + r) * W + c] "
            f": ({t})0;"]
    return _kernel(name, params, body)


def _fold(name: str, t: str) -> list:
    params = (f"const {t} *__restrict__ cols, {t} *img, long long total, long long H, long long W, "
              "long long KH, long long KW, long long OH, long long OW, "
              + ", ".join(f"long long {g}" for g in _GEOMETRY))
    ny, dy = _inverse("r", "p", "sh", "dh", "ph")
    nx, dx = _inverse("c", "q", "sw", "dw", "pw")
    body = ["    const long long c = i % W;", "    const long long r = (i / W) % H;",
            "    const long long m = i / (W * H);", f"    {t} acc = ({t})0;",
            "    for (long long p = 0; p < KH; ++p) {",
            f"        const long long ty = {ny};",
            f"        if (ty < 0 || ty % {dy} != 0 || ty / {dy} >= OH) continue;",
            f"        const long long y = ty / {dy};",
            "        for (long long q = 0; q < KW; ++q) {",
            f"            const long long tx = {nx};",
            f"            if (tx < 0 || tx % {dx} != 0 || tx / {dx} >= OW) continue;",
            f"            acc += cols[(((m * KH + p) * KW + q) * OH + y) * OW + tx / {dx}];",
            "        }", "    }", "    img[i] = acc;"]
    return _kernel(name, params, body)


_BAD = ["#ifdef __CUDA_ARCH__", "        atomicAdd(bad, 1ULL);", "#else", "        *bad += 1ULL;",
        "#endif"]


def _argmax(name: str, t: str) -> list:
    params = f"const {t} *__restrict__ x, long long *out, long long total, long long K, long long B"
    body = ["    const long long a = i / B, b = i % B;", f"    {t} best = x[a * K * B + b];",
            "    long long at = 0;", "    for (long long k = 1; k < K; ++k) {",
            f"        const {t} v = x[(a * K + k) * B + b];",
            "        if (v > best || (v != v && best == best)) { best = v; at = k; }", "    }",
            "    out[i] = at;"]
    return _kernel(name, params, body)


def _gather(name: str, t: str) -> list:
    params = (f"const {t} *__restrict__ x, const long long *__restrict__ idx, {t} *out, "
              "unsigned long long *bad, long long total, long long K, long long B")
    body = ["    const long long a = i / B, b = i % B;", "    long long k = idx[i];",
            "    if (k < 0) k += K;", "    if (k >= 0 && k < K) {",
            "        out[i] = x[(a * K + k) * B + b];", "    } else {", *_BAD, "    }"]
    return _kernel(name, params, body)


def _scatter_add(name: str, t: str) -> list:
    params = (f"const {t} *__restrict__ g, const long long *__restrict__ idx, {t} *out, "
              "unsigned long long *bad, long long total, long long K, long long B")
    body = ["    const long long b = i % B, k = (i / B) % K, a = i / (B * K);",
            "    long long at = idx[a * B + b];", "    if (at < 0) at += K;",
            f"    out[i] = at == k ? g[a * B + b] : ({t})0;",
            "    if (k == 0 && !(at >= 0 && at < K)) {", *_BAD, "    }"]
    return _kernel(name, params, body)


def _kernel(name: str, params: str, body: list) -> list:
    names = ", ".join(p.rsplit(" ", 1)[1].lstrip("*") for p in params.split(", "))
    lines = [f"__host__ __device__ inline void {name}_at(long long i, {params})", "{",
             *body, "}", ""]
    return lines + _loop(f"{name}({params})", "total", f"{name}_at(i, {names})")


#: op -> (renderer, what its file says it computes)
GRID_OPS = {
    "unfold": (_unfold, "unfold (im2col) of 2-D maps: img (M, H, W) -> cols (M, KH, KW, OH, OW); "
                        "entry (m, p, q, y, x) reads pixel (r, c), zero outside the image"),
    "fold": (_fold, "fold (col2im), unfold's transpose: each pixel (m, r, c) adds the columns "
                    "that read it, in (p, q) order; the column index y solves r = PIXEL"),
    "argmax": (_argmax, "argmax along the middle axis of x (A, K, B) into out (A, 1, B): the "
                        "first maximum (NaN wins), as np.argmax and torch's max pooling"),
    "gather": (_gather, "gather along the middle axis: out[a, 0, b] = x[a, idx[a, 0, b], b]; "
                        "negative indices count from the end; out-of-range ones counted in bad"),
    "scatter_add": (_scatter_add, "scatter_add with one index per column (gather's transpose): "
                                  "out[a, k, b] = g[a, 0, b] where k = idx[a, 0, b], else 0"),
}


def grid_kernel(op: str, name: str, dtype: str) -> list:
    """``.cu`` lines of ``op``'s kernel ``name`` for ``dtype`` (see :data:`GRID_OPS`)."""
    return GRID_OPS[op][0](name, ctype(dtype))


def grid_decl(op: str) -> list:
    """The comment lines heading ``op``'s file: what it computes and the index map."""
    return [f"{op}: {GRID_OPS[op][1]}",
            f"pixel read by column entry i of kernel offset p (per axis): {PIXEL}"]


def grid_file_lines(op: str, dtypes=("float32", "float64")) -> list:
    """Every dtype's kernel ``<op>_<32|64>`` of ``op``, for ``kernels/cuda/<op>.cu``."""
    lines = []
    for dtype in dtypes:
        lines += [f"// {op}, {dtype}"] + grid_kernel(op, f"{op}_{dtype[-2:]}", dtype)
    return lines
