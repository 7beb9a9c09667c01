"""symdl: deep learning whose calculus is derived by SymPy.

One graph prints the calculus step by step and trains the network::

    from symdl.graph import Graph
    from symdl.derive import grad
"""
__version__ = "0.1.0"
