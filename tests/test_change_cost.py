"""What adding to symdl costs: each new piece is one declaration.

Each test declares something new *inside the test* (nothing else in the
package is edited), then uses it end to end: derivative, compiled kernels,
reverse mode, training.  The declarations are removed again afterwards.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from symdl.backends.numpy_backend import compile_graph
from symdl.derive import grad
from symdl.graph import Graph
from symdl.ops import OPS, elementwise, real
from symdl.ops.claims import check_op
from symdl.ops.structural import structural

torch = pytest.importorskip("torch")


@pytest.fixture
def scratch_ops():
    """Names declared by a test are taken out of the registry afterwards."""
    before = set(OPS)
    yield
    for name in set(OPS) - before:
        del OPS[name]


def test_a_new_activation_is_one_declaration(scratch_ops):
    x = real("x")
    elementwise("mish_test", x, x * sp.tanh(sp.log(1 + sp.exp(x))))  # the whole change
    check_op("mish_test")
    g = Graph()
    xin = g.param("x", (3, 4), "float64")
    L = g.add("sum", g.add("mish_test", xin, name="y"), name="L")
    gg = grad(g, L, [xin])
    v = np.linspace(-3, 3, 12).reshape(3, 4)
    prog = compile_graph(gg.graph, [L, gg.grads[xin]], {"x": v.copy()}, {})
    prog.run()
    t = torch.tensor(v, requires_grad=True)
    ref = torch.nn.functional.mish(t).sum()
    ref.backward()
    np.testing.assert_allclose(float(prog.value(L)), float(ref.detach()), rtol=1e-12)
    np.testing.assert_allclose(prog.value(gg.grads[xin]), t.grad.numpy(), rtol=1e-12)


def test_a_new_structural_op_is_one_declaration(scratch_ops):
    """``flip`` along the last axis: shape rule, NumPy impl, transpose (itself).
    The NumPy backend runs any structural op through its ``impl``."""
    structural("flip_test", 1, lambda shapes, params, names=(): tuple(shapes[0]),
               lambda a: np.flip(a, -1),
               lambda emit, args, shapes, params, g: [emit("flip_test", g)],
               "reverse the last axis; its own transpose")
    g = Graph()
    xin = g.param("x", (2, 5), "float64")
    w = g.input("w", (2, 5), "float64")
    L = g.add("sum", g.add("mul", g.add("flip_test", xin, name="f"), w, name="fw"), name="L")
    gg = grad(g, L, [xin])
    prog = compile_graph(gg.graph, [L, gg.grads[xin]], {"x": np.arange(10.0).reshape(2, 5)}, {})
    wv = np.linspace(-1, 1, 10).reshape(2, 5)
    prog.inputs["w"][...] = wv
    prog.run()
    np.testing.assert_allclose(float(prog.value(L)), float((np.flip(np.arange(10.0).reshape(2, 5), -1) * wv).sum()))
    np.testing.assert_array_equal(prog.value(gg.grads[xin]), np.flip(wv, -1))  # the transpose
