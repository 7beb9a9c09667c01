"""What ``symdl info`` reports: versions, BLAS, GPU and TeX availability."""
from __future__ import annotations

import importlib.util
import platform
import shutil
from importlib import metadata


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _blas() -> str:
    import numpy as np
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older NumPy: no dict mode
        return "unknown"


def _gpu() -> str:
    if importlib.util.find_spec("cupy") is None:
        return "no CuPy (install symdl[cuda12] or symdl[cuda13])"
    try:
        import cupy
        n = cupy.cuda.runtime.getDeviceCount()
        return f"CuPy {cupy.__version__}, {n} device(s)"
    except Exception as exc:  # noqa: BLE001 - any CUDA failure means: no usable GPU
        return f"CuPy present, no usable GPU ({type(exc).__name__})"


def collect() -> dict:
    from . import __version__
    from .backends.loader import cache_dir, numba_available
    return {
        "symdl": __version__,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "sympy": _version("sympy"),
        "networkx": _version("networkx"),
        "numba": _version("numba") + ("" if numba_available() else " (not used)"),
        "tqdm": _version("tqdm"),
        "torch": _version("torch"),
        "blas": _blas(),
        "gpu": _gpu(),
        "nvcc": shutil.which("nvcc") or "not found",
        "tex": shutil.which("latexmk") or "not found (apt-get install latexmk texlive-latex-recommended)",
        "cache": str(cache_dir()),
    }
