"""symdl: deep learning whose calculus is derived by SymPy.

One graph prints the calculus step by step and trains the network::

    from symdl.graph import Graph
    from symdl.derive import grad
"""
__version__ = "0.1.0"

# The printers register themselves with the derivation objects of
# symdl.derive (a lower layer that must not import them).
from . import printing as _printing  # noqa: E402,F401
