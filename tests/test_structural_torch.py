"""Structural ops end to end: value and gradient of compiled graphs against torch (float64).

Each case builds ``L = sum(c * tanh(op(x...)))`` (``c`` a fixed random
input, so every output entry gets its own weight), differentiates it with
:func:`symdl.derive.grad`, compiles value and gradients together with fusion
on (and off), and compares with ``torch.autograd`` on the same numbers.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from symdl.backends.numpy_backend import compile_graph
from symdl.derive import grad
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.ops.shape_ops import reduce_max, split

F64 = "float64"
IDX = np.array([[2], [0], [2], [1]])
REP = np.array([[1, 0, 1], [2, 2, 0]])


def _t_pad(x, low, high, interior=None):
    interior = interior or (0,) * x.dim()
    shape = [lo + hi + d + max(d - 1, 0) * it
             for d, lo, hi, it in zip(x.shape, low, high, interior)]
    out = torch.zeros(shape, dtype=x.dtype)
    out[tuple(slice(lo, lo + (d - 1) * (it + 1) + 1, it + 1)
              for d, lo, it in zip(x.shape, low, interior))] = x
    return out


def _t_scatter_add(g, idx, axis, shape):
    where = []
    for i, d in enumerate(shape):
        if i == axis:
            where.append(torch.as_tensor(np.broadcast_to(idx, g.shape).copy()))
        else:
            at = torch.arange(g.shape[i]) if d == g.shape[i] else torch.zeros(g.shape[i], dtype=int)
            where.append(at.reshape([-1 if k == i else 1 for k in range(g.dim())]))
    return torch.zeros(shape, dtype=g.dtype).index_put(tuple(where), g, accumulate=True)


# (name, argument shapes (an int array: fixed indices), graph builder, torch function, dims)
CASES = [
    ("matmul 2-D", [(3, 4), (4, 2)], lambda g, a, b: g.add("matmul", a, b), torch.matmul),
    ("matmul batched", [(2, 3, 4), (2, 4, 5)], lambda g, a, b: g.add("matmul", a, b), torch.matmul),
    ("matmul shared weight", [(2, 3, 4), (4, 5)], lambda g, a, b: g.add("matmul", a, b),
     torch.matmul),
    ("matmul shared left", [(3, 4), (2, 4, 5)], lambda g, a, b: g.add("matmul", a, b), torch.matmul),
    ("matmul broadcast batch", [(2, 1, 3, 4), (3, 4, 2)], lambda g, a, b: g.add("matmul", a, b),
     torch.matmul),
    ("permute", [(2, 3, 4)], lambda g, x: g.add("permute", x, axes=(2, 0, 1)),
     lambda x: x.permute(2, 0, 1)),
    ("transpose axes", [(2, 3, 4)], lambda g, x: g.add("transpose", x, axes=(1, 0, 2)),
     lambda x: x.permute(1, 0, 2)),
    ("slice", [(5, 4)], lambda g, x: g.add("slice", x, begin=(1, 0), end=(4, None)),
     lambda x: x[1:4]),
    ("slice strided", [(5, 6, 2)], lambda g, x: g.add("slice", x, begin=(0, 1, 0), end=(5, 6, 2),
                                                       step=(2, 3, 1)),
     lambda x: x[0:5:2, 1:6:3]),
    ("pad", [(2, 3)], lambda g, x: g.add("pad", x, low=(1, 0), high=(0, 2)),
     lambda x: F.pad(x, (0, 2, 1, 0))),
    ("pad interior", [(2, 3)], lambda g, x: g.add("pad", x, low=(0, 1), high=(1, 1),
                                                  interior=(1, 2)),
     lambda x: _t_pad(x, (0, 1), (1, 1), (1, 2))),
    ("concat", [(2, 3), (2, 1), (2, 2)], lambda g, *xs: g.add("concat", *xs, axis=1),
     lambda *xs: torch.cat(xs, 1)),
    ("split", [(5, 3)], lambda g, x: (lambda p: g.add("mul", p[1], p[1]))(split(g, x, (2, 3))),
     lambda x: torch.split(x, (2, 3))[1] ** 2),
    ("split pieces", [(2, 6)],
     lambda g, x: g.add("concat", *split(g, x, (1, 3, 2), axis=1)[::-1], axis=1),
     lambda x: torch.cat(torch.split(x, (1, 3, 2), 1)[::-1], 1)),
    ("gather embedding", [(3, 5), IDX], lambda g, x, i: g.add("gather", x, i, axis=0),
     lambda x, i: F.embedding(i[:, 0], x)),
    ("gather axis 1", [(2, 4), REP], lambda g, x, i: g.add("gather", x, i, axis=1),
     lambda x, i: torch.take_along_dim(x, i, 1)),
    ("gather broadcast", [(1, 4), REP], lambda g, x, i: g.add("gather", x, i, axis=-1),
     lambda x, i: torch.take_along_dim(x, i, -1)),
    ("scatter_add", [(4, 5), IDX], lambda g, x, i: g.add("scatter_add", x, i, axis=0, shape=(3, 5)),
     lambda x, i: torch.zeros(3, 5, dtype=x.dtype).scatter_add(0, i.expand(4, 5), x)),
    ("scatter_add broadcast", [(2, 3), REP],
     lambda g, x, i: g.add("scatter_add", x, i, axis=1, shape=(1, 4)),
     lambda x, i: _t_scatter_add(x, REP, 1, (1, 4))),
    ("max axis", [(3, 5)], lambda g, x: reduce_max(g, x, axes=1), lambda x: x.max(1).values),
    ("max axes keepdims", [(2, 3, 4)], lambda g, x: reduce_max(g, x, axes=(0, 2), keepdims=True),
     lambda x: x.permute(1, 0, 2).reshape(3, 8).max(1).values.reshape(1, 3, 1)),
    ("max all", [(2, 3)], lambda g, x: reduce_max(g, x), lambda x: x.max()),
    ("sum axes", [(2, 3, 4)], lambda g, x: g.add("sum", x, axes=(0, 2)), lambda x: x.sum((0, 2))),
    ("sum axis int", [(2, 3, 4)], lambda g, x: g.add("sum", x, axes=-1, keepdims=True),
     lambda x: x.sum(-1, keepdim=True)),
    ("sum negative axes keepdims", [(2, 3, 4)],
     lambda g, x: g.add("sum", x, axes=(-1, 0), keepdims=True),
     lambda x: x.sum((-1, 0), keepdim=True)),
    ("mean axes", [(2, 3, 4)], lambda g, x: g.add("mean", x, axes=(1, 2)), lambda x: x.mean((1, 2))),
    ("broadcast_to rank 4", [(3, 1, 2)], lambda g, x: g.add("broadcast_to", x, shape=(2, 3, 4, 2)),
     lambda x: x.expand(2, 3, 4, 2)),
    ("sum_to rank 4", [(2, 3, 4, 2)], lambda g, x: g.add("sum_to", x, shape=(3, 1, 2)),
     lambda x: x.sum((0, 2), keepdim=True)[0]),
]


def _run(case, fuse, dims=None):
    name, shapes, build, tfn = case
    rng = np.random.default_rng(len(name))
    g = Graph()
    vals, nodes = [], []
    for k, s in enumerate(shapes):
        if isinstance(s, np.ndarray):
            nodes.append(g.input(f"i{k}", s.shape, "int64"))
            vals.append(s)
        else:
            nodes.append(g.input(f"x{k}", s, F64))
            vals.append(rng.normal(size=s))
    y = build(g, *nodes)
    c = g.input("c", g.shape(y), F64)
    cv = rng.normal(size=g.shape(y))
    loss = g.add("sum", g.add("mul", c, g.add("tanh", y)), name="L")
    wrt = [n for n, s in zip(nodes, shapes) if not isinstance(s, np.ndarray)]
    gg = grad(g, loss, wrt)
    prog = compile_graph(gg.graph, [y, loss] + [gg[w] for w in wrt], dims=dims, fuse=fuse)
    for n, v in zip(nodes + [c], vals + [cv]):
        prog.inputs[n][...] = v
    prog.run()
    got = [prog.value(y)] + [prog.value(gg[w]) for w in wrt]

    tx = [torch.tensor(v) if isinstance(s, np.ndarray) else torch.tensor(v, requires_grad=True)
          for v, s in zip(vals, shapes)]
    ty = tfn(*tx)
    (torch.tanh(ty) * torch.tensor(cv)).sum().backward()
    want = [ty.detach().numpy()] + [t.grad.numpy() for t, s in zip(tx, shapes)
                                    if not isinstance(s, np.ndarray)]
    return got, want


# numpy_lower.reduced_axes passes an int ``axes`` on unnormalised (``tuple(axes)`` fails)
@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_value_and_gradient_match_torch(case, fuse):
    got, want = _run(case, fuse)
    for k, (a, b) in enumerate(zip(got, want)):
        assert np.shape(a) == np.shape(b), f"output {k}: shape {np.shape(a)} != torch {np.shape(b)}"
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13, err_msg=f"output {k}")


def test_symbolic_batch_dims():
    """A batch of ``N`` sequences through a shared weight and an embedding."""
    g = Graph()
    ids = g.input("ids", ("N", 1), "int64")
    E = g.input("E", (6, 4), F64)
    W = g.input("W", (3, 4, 2), F64)
    e = g.add("gather", E, ids, axis=0)                       # (N, 4)
    h = g.add("matmul", g.add("broadcast_to", e, shape=(3, "N", 4)), W)   # (3, N, 2)
    L = g.add("sum", g.add("tanh", g.add("slice", h, begin=(1, 0, 0), end=(3, None, 2))), name="L")
    gg = grad(g, L, [E, W])
    prog = compile_graph(gg.graph, [L, gg[E], gg[W]], dims={"N": 5})
    rng = np.random.default_rng(0)
    iv, Ev, Wv = rng.integers(0, 6, (5, 1)), rng.normal(size=(6, 4)), rng.normal(size=(3, 4, 2))
    for n, v in (("ids", iv), ("E", Ev), ("W", Wv)):
        prog.inputs[n][...] = v
    prog.run()
    tE, tW = torch.tensor(Ev, requires_grad=True), torch.tensor(Wv, requires_grad=True)
    tL = torch.tanh(torch.matmul(F.embedding(torch.tensor(iv[:, 0]), tE), tW)[1:]).sum()
    tL.backward()
    np.testing.assert_allclose(prog.value(L), tL.item(), rtol=1e-12)
    np.testing.assert_allclose(prog.value(gg[E]), tE.grad.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(prog.value(gg[W]), tW.grad.numpy(), rtol=1e-12, atol=1e-13)


def test_max_gradient_goes_to_the_first_tie_as_torch_max_dim():
    g = Graph()
    x = g.input("x", (2, 3), F64)
    L = g.add("sum", reduce_max(g, x, axes=1), name="L")
    gg = grad(g, L, [x])
    prog = compile_graph(gg.graph, [L, gg[x]])
    xv = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    prog.inputs["x"][...] = xv
    prog.run()
    np.testing.assert_array_equal(prog.value(gg[x]), [[0, 1, 0], [1, 0, 0]])
    tx = torch.tensor(xv, requires_grad=True)
    tx.max(1).values.sum().backward()
    np.testing.assert_array_equal(prog.value(gg[x]), tx.grad.numpy())
    ta = torch.tensor(xv, requires_grad=True)
    ta.amax(1).sum().backward()  # amax shares the gradient among ties: different on purpose
    assert not np.array_equal(ta.grad.numpy(), tx.grad.numpy())


@pytest.mark.parametrize("op, shapes, params, msg", [
    ("matmul", [(2, 3), (4, 2)], {}, "matmul shapes do not match"),
    ("matmul", [(2, 2, 3), (3, 3, 2)], {}, "do not broadcast"),
    ("matmul", [(3,), (3, 2)], {}, "matmul shapes do not match"),
    ("permute", [(2, 3)], {"axes": (0, 0)}, "do not fit"),
    ("permute", [(2, 3)], {}, "permute needs axes"),
    ("slice", [(4,)], {"begin": (3,), "end": (2,)}, "does not fit"),
    ("slice", [("N", 3)], {"begin": (1, 0)}, "symbolic size N"),
    ("slice", [(4,)], {"step": (0,)}, "slice step"),
    ("pad", [(4,)], {"low": (-1,)}, "pad low"),
    ("pad", [("N",)], {"low": (1,)}, "cannot be padded"),
    ("concat", [(2, 3), (3, 3)], {"axis": 1}, "differ on another axis"),
    ("concat", [("N", 3), (2, 3)], {"axis": 0}, "symbolic size"),
    ("concat", [(2, 3)], {"axis": 2}, "axis 2 does not fit"),
    ("sum_to", [(2, 3)], {"shape": (4,)}, "cannot sum"),
    ("sum", [(2, 3)], {"axes": (0, 0)}, "do not fit"),
    ("argmax", [(2, 0)], {"axis": 1}, "empty axis"),
])
def test_bad_shapes_are_one_line_usage_errors(op, shapes, params, msg):
    g = Graph()
    args = [g.input(f"x{k}", s, F64) for k, s in enumerate(shapes)]
    with pytest.raises(UsageError, match=msg) as e:
        g.add(op, *args, **params)
    assert "\n" not in str(e.value)


def test_gather_needs_integer_indices_and_gives_their_gradient_none():
    g = Graph()
    x = g.input("x", (3, 2), F64)
    with pytest.raises(UsageError, match="integer indices"):
        g.add("gather", x, g.input("f", (4, 1), F64), axis=0)
    i = g.input("i", (4, 1), "int64")
    y = g.add("gather", x, i, axis=0)
    assert g.node(y)["dtype"] == F64 and g.shape(y) == (4, 2)
    assert g.node(g.add("argmax", x, axis=0))["dtype"] == "int64"
    with pytest.raises(UsageError, match="do not add up"):
        split(g, x, (1, 1), axis=0)


# ------------------------------------------------------- the NumPy lowerings
def _lines(prog, op):
    """The step-function lines under the comment of each node of ``op``."""
    src = prog.source.splitlines()
    return [src[k + 1].strip() for k, line in enumerate(src)
            if line.strip().startswith("# ") and f"= {op}(" in line]


def test_views_and_dedicated_rows_are_used():
    g = Graph()
    x = g.input("x", (4, 6), F64)
    ids = g.input("ids", (3, 1), "int64")
    p = g.add("permute", x, axes=(1, 0), name="p")
    s = g.add("slice", p, begin=(1, 0), end=(5, None), step=(2, 1), name="s")   # (2, 4)
    e = g.add("gather", x, ids, axis=0, name="e")                                # (3, 6)
    c = g.add("concat", g.add("pad", s, low=(0, 1), high=(1, 1), name="q"),
              g.add("slice", e, begin=(0, 0), end=(None, 6)), axis=0, name="c")
    L = g.add("sum", g.add("tanh", c), name="L")
    gg = grad(g, L, [x])
    prog = compile_graph(gg.graph, [L, gg[x]])
    assert np.shares_memory(prog.value("s"), prog.value("x"))      # permute + slice: views
    assert "= permute(" not in prog.source and "# s = slice(" not in prog.source
    assert _lines(prog, "gather")[0].startswith("np.take(")
    assert any("np.add.at(" in line for line in prog.source.splitlines())   # its transpose
    assert _lines(prog, "pad")[0].startswith("np.copyto(")
    # concat's parts are computed in their place in its buffer: no copy into it
    assert np.shares_memory(prog.value("q"), prog.value("c"))
    assert np.shares_memory(prog.value("e"), prog.value("c"))
    assert "# c = concat(" not in prog.source
    rng = np.random.default_rng(1)
    xv, iv = rng.normal(size=(4, 6)), np.array([[3], [0], [3]])
    prog.inputs["x"][...] = xv
    prog.inputs["ids"][...] = iv
    for _ in range(2):  # twice: the pad's zeros and the scatter's fill survive a second step
        prog.run()
    tx = torch.tensor(xv, requires_grad=True)
    tq = F.pad(tx.T[1:5:2], (1, 1, 0, 1))
    tL = torch.tanh(torch.cat([tq, F.embedding(torch.tensor(iv[:, 0]), tx)], 0)).sum()
    tL.backward()
    np.testing.assert_allclose(prog.value(L), tL.item(), rtol=1e-12)
    np.testing.assert_allclose(prog.value(gg[x]), tx.grad.numpy(), rtol=1e-12, atol=1e-13)


def test_batched_matmul_with_a_2d_right_operand_is_one_gemm():
    """(B, T, k) @ (k, m) runs as one GEMM over the stacked rows."""
    case = next(c for c in CASES if c[0] == "matmul shared weight")
    got, want = _run(case, fuse=True)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    g = Graph()
    a, b = g.input("a", (2, 3, 4), F64), g.input("b", (4, 5), F64)
    prog = compile_graph(g, [g.add("matmul", a, b, name="y")])
    assert "np.matmul(b_a_6x4, b_b, out=b_y_6x5)" in prog.source, prog.source
    av, bv = np.arange(24.0).reshape(2, 3, 4), np.arange(20.0).reshape(4, 5)
    prog.inputs["a"][...], prog.inputs["b"][...] = av, bv
    prog.run()
    np.testing.assert_array_equal(prog.value("y"), np.matmul(av, bv))


def test_a_buffer_view_is_never_a_silent_copy():
    """numpy_lower.view_as names a reshaped view of a program buffer; a buffer that cannot be
    reshaped without a copy raises instead of handing a compile-time snapshot to the step."""
    from symdl.backends.numpy_lower import view_as

    class Prog:
        def __init__(self, buf):
            self.buffers = {"x": buf}

        def alias(self, key, array):
            self.buffers[key] = array
            return key

    ok = Prog(np.zeros((4, 6)))
    ok.buffers[view_as(ok, "x", (24,))][3] = 1.0
    assert ok.buffers["x"][0, 3] == 1.0  # writes through: a view
    with pytest.raises(ValueError):
        view_as(Prog(np.zeros((6, 4)).T), "x", (24,))
