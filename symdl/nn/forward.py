"""``model(X)``: a module's output for an array, in evaluation mode, through a backend.

The module is built into a graph ``x -> model`` once per example shape and
dtype and compiled once per batch size (the programs are kept on the module,
keyed also by the parameter arrays they read, so a module whose parameters
were repacked compiles afresh).  Rows are run in chunks of :data:`CHUNK`, as
:meth:`symdl.train.Trainer.evaluate` does, so the numbers are the trainer's.
Dropout masks are all ones, batch norm uses its running statistics and
constant inputs (sinusoidal encodings) are bound.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError, UsageError
from ..graph import Graph

__all__ = ["CHUNK", "forward", "output_graph"]

#: rows per compiled run (the trainer's evaluation batch)
CHUNK = 1024


def output_graph(module, example_shape: tuple, dtype: str):
    """``(graph, output node)`` of ``x -> module`` for examples of ``example_shape``."""
    g = Graph()
    x = g.input("x", ("N", *example_shape), dtype)
    return g, module.build(g, x)


def _dtype(module) -> str:
    params = module.parameters()
    return str(params[0].dtype) if params else "float32"


def _program(module, shape: tuple, n: int, dtype: str, backend):
    from .norm import set_batchnorm_mode
    params = module.parameters()
    key = (shape, n, dtype, backend.name, tuple(id(p.data) for p in params))
    cache = module.__dict__.setdefault("_forward_programs", {})
    if key in cache:
        prog, out = cache[key]
        set_batchnorm_mode(prog, module, train=False)  # running statistics may have moved
        return prog, out
    module.name_parameters()
    g, out = output_graph(module, shape, dtype)
    bind = {p.name: p.data for p in params}
    for m in _walk(module):
        bind.update(getattr(m, "constants", {}) or {})
    prog = backend.compile(g, [out], bind, {"N": n})
    for name, buf in prog.inputs.items():
        params_of = prog.graph.node(name)["params"]
        if "dropout" in params_of:
            buf.fill(1)
        elif name != "x" and "batchnorm" not in params_of:
            raise UsageError(f"model(X) fills only the input x, but {type(module).__name__} also "
                             f"needs input {name!r}; build a graph with model(g, node) instead")
    set_batchnorm_mode(prog, module, train=False)
    cache[key] = (prog, out)
    return prog, out


def _walk(module):
    yield module
    for m in module._modules.values():
        yield from _walk(m)


def forward(module, X, backend=None) -> np.ndarray:
    """The output of ``module`` for the rows of ``X`` (a new host array).

    ``X`` is converted to the parameters' dtype when it holds numbers of another
    kind (ints, float64 for a float32 model); its first axis is the batch.
    """
    from ..backends import get_backend
    backend = backend if backend is not None else get_backend("numpy")
    dtype = _dtype(module)
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise DataError(f"model input must be numeric, got dtype {X.dtype}")
    if X.ndim < 1 or len(X) == 0:
        raise DataError(f"model input must hold at least one row, got shape {X.shape}")
    X = np.ascontiguousarray(X, dtype=dtype)
    if X.ndim == 1:
        raise DataError(f"model input must be rows of examples (N, ...), got shape {X.shape}; "
                        "one example x is X = x[None]")
    outs = []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for s in range(0, len(X), CHUNK):
            chunk = X[s:s + CHUNK]
            prog, out = _program(module, tuple(X.shape[1:]), len(chunk), dtype, backend)
            prog.inputs["x"][...] = backend.asarray(chunk)
            prog.run()
            outs.append(np.array(backend.to_host(prog.value(out)), copy=True))
    return np.concatenate(outs)
