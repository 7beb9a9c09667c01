"""Loading generated source: files in the user cache folder, so numba's
on-disk cache works across runs, and tracebacks show the real lines."""
from __future__ import annotations

import hashlib
import importlib.util
import linecache
import os
import sys
from functools import lru_cache
from pathlib import Path

# numba's OpenMP threads and OpenBLAS's threads share the cores: OpenMP's
# default spin-wait after each parallel loop starves the next GEMM (measured:
# 25x slower steps on 2 cores).  Waiting passively costs nothing measurable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cache_dir() -> Path:
    """``$SYMDL_CACHE_DIR``, else ``$XDG_CACHE_HOME/symdl``, else ``~/.cache/symdl``."""
    if os.environ.get("SYMDL_CACHE_DIR"):
        return Path(os.environ["SYMDL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "symdl"


@lru_cache(maxsize=None)
def numba_available() -> bool:
    """numba is importable and not switched off with ``SYMDL_NO_NUMBA=1``."""
    if os.environ.get("SYMDL_NO_NUMBA") == "1":
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


_LOADED: dict = {}


def load_function(source: str, name: str = "kernel"):
    """Write ``source`` to ``<cache>/kernels/k_<sha>.py`` (once), import it, and
    return its function ``name`` with the source kept on ``__source__``."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    key = (digest, name)
    if key in _LOADED:
        return _LOADED[key]
    folder = cache_dir() / "kernels"
    path = folder / f"k_{digest}.py"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != source:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(source)
            os.replace(tmp, path)
        module = _import(f"symdl_k_{digest}", path)
    except OSError:  # read-only home: compile from memory, without numba's disk cache
        module = _exec(f"symdl_k_{digest}", source.replace("cache=True", "cache=False"))
    fn = getattr(module, name)
    try:
        fn.__source__ = source
    except AttributeError:
        pass
    _LOADED[key] = fn
    return fn


def _import(modname: str, path: Path):
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)
    return module


def _exec(modname: str, source: str):
    import types
    filename = f"<symdl {modname}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(modname)
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def exec_source(source: str, namespace: dict, tag: str):
    """Run generated Python (a step function) with its lines in ``linecache``."""
    filename = f"<symdl {tag} {hashlib.sha256(source.encode()).hexdigest()[:12]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace
