"""symdl: deep learning whose calculus is derived by SymPy.

One graph prints the calculus step by step and trains the network::

    import symdl
    d = symdl.derive("sigmoid(z)", "z")     # a step-by-step Derivation (print(d))
    g = symdl.Graph()                       # a model graph; symdl.grad(g, L) its gradients
    model = symdl.nn.Sequential(symdl.nn.Dense(64, 10))
    symdl.save(model, "model")              # symdl.load("model").predict(X)

The names of the top-level API (:data:`__all__`) are loaded on first use, so
``import symdl`` imports neither SymPy nor NumPy.  ``symdl.derive`` is the
:mod:`symdl.derive` package, and calling it derives
(``from symdl.derive import derive`` too).
"""
import importlib as _importlib
import importlib.abc as _abc
import importlib.util as _util
import sys as _sys

__version__ = "0.1.0"

#: name -> (module, attribute or None for the module itself)
_API = {
    "derive": ("symdl.derive", None), "grad": ("symdl.derive", "grad"),
    "Graph": ("symdl.graph", "Graph"), "nn": ("symdl.nn", None), "optim": ("symdl.optim", None),
    "data": ("symdl.data", None), "Trainer": ("symdl.train", "Trainer"),
    "save": ("symdl.train.saved", "save"), "load": ("symdl.train.saved", "load"),
    "SavedModel": ("symdl.train.saved", "SavedModel"),
}
__all__ = ["__version__", *_API]


def __getattr__(name):
    """Load a name of the top-level API on first use (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module 'symdl' has no attribute {name!r}")
    module, attr = _API[name]
    value = _importlib.import_module(module)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value  # found directly from now on
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))


class _PrintersFollowDerive(_abc.MetaPathFinder):
    """Import :mod:`symdl.printing` right after :mod:`symdl.derive`.

    The printers register themselves with the derivation objects of
    ``symdl.derive``, a lower layer that must not import them; whoever gets a
    derivation has imported ``symdl.derive``, so loading the printers then (and
    not at ``import symdl``, which must stay cheap) makes every derivation printable.
    """

    def find_spec(self, name, path=None, target=None):
        if name not in ("symdl.derive", "symdl.graph"):  # a Graph draws itself in Jupyter too
            return None
        _sys.meta_path.remove(self)  # once; the ordinary finders find the package
        spec = _util.find_spec(name)
        if spec is not None and spec.loader is not None:
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                _importlib.import_module("symdl.printing")
            try:
                spec.loader.exec_module = exec_module
            except AttributeError:  # pragma: no cover - a loader that cannot be wrapped
                pass
        return spec


if "symdl.derive" not in _sys.modules:
    _sys.meta_path.insert(0, _PrintersFollowDerive())
