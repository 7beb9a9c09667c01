"""Running gallery scripts: by path, in worker processes, with one BLAS thread."""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
from pathlib import Path

__all__ = ["blas_threads", "load_script", "script_order", "build_one", "run_parallel"]


@contextlib.contextmanager
def blas_threads(n: int = 1):
    """NumPy's OpenBLAS limited to ``n`` threads inside the block (restored after).  The
    gallery's matrices are small: several BLAS threads on a busy machine only wait for each
    other (the double-descent fits measured 39 s with threads, 2.6 s with one, on the
    2-core machine this was built on).  A no-op where NumPy's BLAS is not OpenBLAS."""
    get = set_ = None
    try:
        import glob
        import ctypes
        import numpy
        libs = glob.glob(str(Path(numpy.__file__).parent.parent / "numpy.libs" / "*openblas*"))
        libs += glob.glob(str(Path(numpy.__file__).parent / ".dylibs" / "*openblas*"))
        for lib in libs:
            dll = ctypes.CDLL(lib)
            for suffix in ("64_", "_64_", ""):
                if hasattr(dll, f"scipy_openblas_set_num_threads{suffix}"):
                    set_ = getattr(dll, f"scipy_openblas_set_num_threads{suffix}")
                    get = getattr(dll, f"scipy_openblas_get_num_threads{suffix}", None)
                    break
            if set_ is None and hasattr(dll, "openblas_set_num_threads"):
                set_, get = dll.openblas_set_num_threads, getattr(dll, "openblas_get_num_threads",
                                                                   None)
            if set_ is not None:
                break
    except OSError:
        set_ = None
    before = int(get()) if get is not None else None
    if set_ is not None:
        set_(int(n))
    try:
        yield
    finally:
        if set_ is not None and before is not None:
            set_(before)


def load_script(path: Path):
    """Import a gallery script by path (never by module name)."""
    name = f"symdl_gallery_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "build", None)):
        raise AttributeError(f"gallery script {path} has no build(out, seed) function")
    return module


def script_title(module) -> str:
    return (module.__doc__ or module.__name__).strip().splitlines()[0].rstrip(".")


def script_order(path: Path) -> int:
    """A script's ``ORDER = n`` (read from its source, not imported; default 100)."""
    import ast
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return 100
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ORDER"
                                                for t in node.targets):
            value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, int):
                return value.value
    return 100


def build_one(stem: str, path: str, out: str, seed: int, debug: bool = False) -> tuple:
    """Load and run one script: ``(status, metadata or message, seconds)``, status ``ok``,
    ``load``, ``missing`` (a module it needs) or ``error``.  Runs in a worker process too."""
    t0 = time.perf_counter()
    try:
        module = load_script(Path(path))
    except Exception as exc:  # noqa: BLE001 - any script failure is reported, not raised
        if debug:
            raise
        return "load", f"{type(exc).__name__}: {exc}", 0.0
    try:
        with blas_threads(1):
            meta = dict(module.build(Path(out), seed=seed) or {})
    except ModuleNotFoundError as exc:
        if debug:
            raise
        return "missing", exc.name, 0.0
    except Exception as exc:  # noqa: BLE001
        if debug:
            raise
        return "error", f"{type(exc).__name__}: {exc}", 0.0
    meta.setdefault("title", script_title(module))
    return "ok", meta, time.perf_counter() - t0


def run_parallel(scripts: list, out: Path, seed: int, jobs: int) -> list:
    """``build_one`` for each ``(stem, path)`` in ``jobs`` fresh processes; results in the
    given order.  Scripts are independent (each writes its own files), so the output is the
    same bytes as a sequential build's."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    ctx = multiprocessing.get_context("spawn")  # no forked numba/BLAS threads
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = [pool.submit(build_one, stem, path, str(out), seed) for stem, path in scripts]
        return [f.result() for f in futures]
