"""Sums and means over the leading axes of a contiguous array (a bias gradient
summed over batch and time) run as the numba rows kernel over a 2-D view, as
the 2-D case does; other axes keep NumPy's reduction.  Values as NumPy's."""
import numpy as np

from symdl.backends.numpy_backend import compile_graph
from symdl.graph import Graph


def test_leading_axes_reduce_as_rows():
    g = Graph()
    x = g.input("x", (3, 4, 5), "float64")
    g.add("sum", x, axes=(0, 1), name="s")
    g.add("mean", x, axes=(1, 0), name="m")
    g.add("sum_to", x, shape=(1, 1, 5), name="t")
    g.add("sum", x, axes=(0,), name="s0")
    g.add("sum", x, axes=(1,), name="s1")
    g.add("sum", x, name="all")
    outs = ["s", "m", "t", "s0", "s1", "all"]
    prog = compile_graph(g, outs, dims={})
    xv = np.random.default_rng(0).standard_normal((3, 4, 5))
    prog.inputs["x"][...] = xv
    prog.run()
    for n, want in (("s", xv.sum((0, 1))), ("m", xv.mean((0, 1))),
                    ("t", xv.sum((0, 1), keepdims=True)), ("s0", xv.sum(0)), ("s1", xv.sum(1)),
                    ("all", xv.sum())):
        np.testing.assert_allclose(prog.value(n), want, rtol=1e-13, err_msg=n)
    body = prog.source.split("def step():")[1]
    if prog.flavor == "numba":
        for n, view in (("s", "b_x_12x5"), ("m", "b_x_12x5"), ("t", "b_x_12x5"),
                        ("s0", "b_x_3x20")):
            assert f"# {n} = " in body and f"({view}, b_{n}" in body, body
        assert "np.sum(b_x, axis=(1,)" in body and "np.sum(b_x, axis=(0, 1, 2)" in body, body
