"""Convolution: unfold/fold transposes checked exactly, NumPy rows, Conv1d/Conv2d against torch.

The transposes run through the exact SymPy check and the adjoint identity of
``tests/test_structural.py`` on a table of their own (strides, paddings,
dilations, 1-D and 2-D).  Layers are compared with ``torch.nn.functional`` in
float64 (values and gradients to 1e-10) through :func:`compare_layer`, which
``tests/test_pool_norm.py`` reuses, and with finite differences.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import test_structural as ts
from symdl.backends.numpy_backend import compile_graph
from symdl.derive import grad
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.nn.conv import Conv1d, Conv2d, Flatten, MaxPool2d, Residual
from symdl.nn.layers import Activation, Sequential
from symdl.nn.norm import set_batchnorm_mode
from symdl.ops import OPS
from symdl.ops.conv import conv_output_size, receptive_field
from symdl.testing import check_grad

F64 = "float64"

UNFOLD_CASES = [
    ("unfold", [(1, 1, 4, 4)], {"kernel": 2, "stride": 2}),
    ("unfold", [(1, 1, 5, 4)], {"kernel": 3, "stride": 2, "padding": 1}),
    ("unfold", [(1, 2, 5, 5)], {"kernel": 2, "dilation": 2}),
    ("unfold", [(2, 1, 4, 5)], {"kernel": (2, 3), "stride": (1, 2), "padding": (0, 2)}),
    ("unfold", [(1, 2, 6)], {"kernel": 3, "stride": 2, "padding": 1, "dilation": 2}),   # 1-D
    ("fold", [(1, 4, 4)], {"output_size": (4, 4), "kernel": 2, "stride": 2}),
    ("fold", [(1, 9, 6)], {"output_size": (5, 4), "kernel": 3, "stride": 2, "padding": 1}),
    ("fold", [(1, 8, 9)], {"output_size": (5, 5), "kernel": 2, "dilation": 2}),
    ("fold", [(1, 6, 2)], {"output_size": (6,), "kernel": 3, "stride": 2, "padding": 1,
                           "dilation": 2}),
]


@pytest.mark.parametrize("case", UNFOLD_CASES, ids=ts._case_id)
def test_unfold_fold_transposes_equal_sympy_diff(case):
    ts.test_vjp_equals_sympy_diff(case)


@pytest.mark.parametrize("case", UNFOLD_CASES, ids=ts._case_id)
def test_unfold_fold_adjoint_identity(case):
    ts.test_adjoint_identity(case)


def test_unfold_of_symbols_reads_the_right_entries():
    """Column (offset (p, q), position (i, j)) holds x[iS + pD − P, jS + qD − P] (0 outside)."""
    x = ts.symbols_array("x", (1, 1, 3, 3))
    u = OPS["unfold"].impl(x, kernel=2, stride=2, padding=1)
    # positions (0,0),(0,1),(1,0),(1,1); offset (1,1) reads x[2i, 2j]
    assert list(u[0, 3]) == [x[0, 0, 0, 0], x[0, 0, 0, 2], x[0, 0, 2, 0], x[0, 0, 2, 2]]
    assert list(u[0, 0]) == [0, 0, 0, x[0, 0, 1, 1]]


@pytest.mark.parametrize("k, s, p, d", [(3, 1, 0, 1), (3, 2, 1, 1), (2, 2, 2, 2), ((2, 3), (1, 2),
                                                                                  (0, 1), (2, 1))])
def test_unfold_and_fold_match_torch(k, s, p, d):
    x = np.random.default_rng(0).normal(size=(2, 3, 7, 6))
    u = OPS["unfold"].impl(x, kernel=k, stride=s, padding=p, dilation=d)
    np.testing.assert_array_equal(u, F.unfold(torch.tensor(x), k, d, p, s).numpy())
    f = OPS["fold"].impl(u, output_size=(7, 6), kernel=k, stride=s, padding=p, dilation=d)
    want = F.fold(torch.tensor(u), (7, 6), k, d, p, s).numpy()
    np.testing.assert_allclose(f, want, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("flavor", ["numba", "numpy"])
@pytest.mark.parametrize("p", [0, 1])
def test_numpy_rows_are_strided_views_and_agree_with_impl(flavor, p):
    g = Graph()
    x = g.input("x", ("N", 2, 6, 5), F64)
    u = g.add("unfold", x, kernel=3, stride=2, padding=p, dilation=1, name="u")
    f = g.add("fold", u, output_size=(6, 5), kernel=3, stride=2, padding=p, name="f")
    prog = compile_graph(g, [u, f], dims={"N": 3}, flavor=flavor)
    # numba: one parallel loop per op over the N·C maps; NumPy: strided views and adds
    assert ("b_fold_numba(" in prog.source and "b_unfold_numba(" in prog.source
            if flavor == "numba" else "fold_into" in prog.source)
    assert not any(k.endswith("@impl") for k in prog.buffers)
    xv = np.random.default_rng(1).normal(size=(3, 2, 6, 5))
    for _ in range(2):  # buffers are reused: the second step must not see the first's sums
        prog.inputs["x"][...] = xv
        prog.run()
    uv = OPS["unfold"].impl(xv, kernel=3, stride=2, padding=p)
    np.testing.assert_array_equal(prog.value(u), uv)
    np.testing.assert_allclose(prog.value(f), OPS["fold"].impl(
        uv, output_size=(6, 5), kernel=3, stride=2, padding=p), rtol=1e-15)


# ----------------------------------------------------------------- layers
def compare_layer(module, shape, torch_fn, params=(), fuse=True, dims_name="N", seed=0,
                  make_x=None, tol=1e-10, flavor="auto"):
    """Build ``L = Σ c ⊙ tanh(module(x))`` in float64, differentiate it with
    respect to ``x`` and ``params``, run it, and compare value and gradients
    with ``torch_fn(x, *params)`` under torch autograd."""
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.input("x", (dims_name, *shape[1:]), F64)
    y = module.build(g, x)
    c = g.input("c", g.shape(y), F64)
    L = g.add("sum", g.add("mul", c, g.add("tanh", y)), name="L")
    wrt = ["x", *params]
    gg = grad(g, L, wrt)
    bind = {p: dict(module.named_parameters())[p].data for p in params}
    prog = compile_graph(gg.graph, [y, L] + [gg[w] for w in wrt], bind=bind,
                         dims={dims_name: shape[0]}, fuse=fuse, flavor=flavor)
    xv = make_x(rng) if make_x else rng.normal(size=shape)
    tx = torch.tensor(xv, requires_grad=True)
    tp = [torch.tensor(bind[p], requires_grad=True) for p in params]
    ty = torch_fn(tx, *tp)
    cv = rng.normal(size=tuple(ty.shape))
    prog.inputs["x"][...] = xv
    prog.inputs["c"][...] = cv
    set_batchnorm_mode(prog, module, train=True)  # a batch norm inside: batch statistics
    prog.run()
    (torch.tanh(ty) * torch.tensor(cv)).sum().backward()
    assert prog.value(y).shape == tuple(ty.shape)
    np.testing.assert_allclose(prog.value(y), ty.detach().numpy(), rtol=tol, atol=tol)
    for w, t in zip(wrt, [tx, *tp]):
        np.testing.assert_allclose(prog.value(gg[w]), t.grad.numpy(), rtol=tol, atol=tol,
                                   err_msg=f"gradient of {w}")
    return prog


SHAPES = [(2, 4, 7, 7), (3, 2, 6, 9)]
GRID = list(itertools.product([1, 2], [0, 1, 2], [1, 2], [1, 2]))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("stride, padding, dilation, groups", GRID,
                         ids=[f"s{s}p{p}d{d}g{g}" for s, p, d, g in GRID])
def test_conv2d_matches_torch(shape, stride, padding, dilation, groups):
    c = shape[1]
    m = Conv2d(c, 4, 3, stride, padding, dilation, groups, rng=np.random.default_rng(3),
               dtype=F64)
    assert m.weight.shape == (4, c // groups, 3, 3) and m.bias.shape == (4,)
    compare_layer(m, shape, lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups),
                  params=["weight", "bias"])


def test_conv2d_rectangular_no_bias_unfused():
    m = Conv2d(2, 3, (2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2), bias=False,
               dtype=F64)
    compare_layer(m, (2, 2, 5, 7), lambda x, w: F.conv2d(x, w, None, (2, 1), (1, 0), (1, 2)),
                  params=["weight"], fuse=False)


@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 0, 1, 1), (2, 1, 2, 2),
                                                               (1, 2, 1, 2)])
def test_conv1d_matches_torch(stride, padding, dilation, groups):
    m = Conv1d(4, 6, 3, stride, padding, dilation, groups, dtype=F64)
    compare_layer(m, (3, 4, 11), lambda x, w, b: F.conv1d(x, w, b, stride, padding, dilation,
                                                          groups), params=["weight", "bias"])


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_conv_block_on_the_numpy_reference_flavor(fuse):
    """Conv → BatchNorm → max pool with the plain NumPy kernels (no numba)."""
    from symdl.nn import BatchNorm2d
    rng = np.random.default_rng(5)
    block = Sequential(Conv2d(2, 3, 3, stride=2, padding=1, groups=1, dtype=F64, rng=rng),
                       BatchNorm2d(3, dtype=F64), MaxPool2d(2, padding=1))
    block.name_parameters()
    names = [n for n, _ in block.named_parameters()]

    def torch_block(x, w, b, gamma, beta):
        z = F.batch_norm(F.conv2d(x, w, b, 2, 1), None, None, gamma, beta, training=True)
        return F.max_pool2d(z, 2, padding=1)

    compare_layer(block, (3, 2, 7, 7), torch_block, params=names, fuse=fuse, flavor="numpy")


def test_conv_init_and_state_dict_match_torch_layout():
    m = Conv2d(3, 8, 5, rng=np.random.default_rng(0))
    t = torch.nn.Conv2d(3, 8, 5)
    assert {k: tuple(v.shape) for k, v in t.state_dict().items()} == \
        {k: v.shape for k, v in m.state_dict().items()}
    bound = 1 / np.sqrt(3 * 25)  # torch's kaiming_uniform_(a=√5) bound
    assert np.abs(m.weight.data).max() <= bound and np.abs(m.weight.data).max() > 0.9 * bound
    assert m.weight.data.std() == pytest.approx(bound / np.sqrt(3), rel=0.1)


def test_small_cnn_gradient_matches_finite_differences():
    net = Sequential(Conv2d(1, 3, 3, padding=1, dtype=F64), Activation("tanh"),
                     MaxPool2d(2), Conv2d(3, 2, 2, stride=2, dtype=F64), Flatten())
    net.name_parameters()
    g = Graph()
    x = g.input("x", ("N", 1, 6, 6), F64)
    y = net.build(g, x)
    assert g.shape(y) == ("N", 2)
    L = g.add("mean", g.add("square", y), name="L")
    res = check_grad(g, L, wrt=["x", *g.params()], dims={"N": 2}, rtol=1e-6)
    assert res.n_checks == 3 * (1 + 4)


def test_residual_sums_both_paths():
    block = Sequential(Conv2d(2, 2, 3, padding=1, dtype=F64), Activation("tanh"))
    m = Residual(block)
    assert [n for n, _ in m.named_parameters()] == ["block.0.weight", "block.0.bias"]
    compare_layer(m, (2, 2, 5, 5), lambda x, w, b: torch.tanh(F.conv2d(x, w, b, padding=1)) + x,
                  params=["block.0.weight", "block.0.bias"])
    g = Graph()
    with pytest.raises(UsageError, match="needs the same shape"):
        Residual(Conv2d(2, 3, 3, dtype=F64)).build(g, g.input("x", ("N", 2, 5, 5), F64))


# ------------------------------------------------------------ arithmetic
@pytest.mark.parametrize("args, want", [
    ((32, 5, 1, 2), 32), ((227, 11, 4, 0), 55), ((7, 3, 2, 0), 3), ((5, 3, 1, 1), 5),
    ((8, 3, 1, 0, 2), 4), ((9, 3, 2, 2, 2), 5), ((1, 1), 1),
])
def test_conv_output_size_exercises(args, want):
    assert conv_output_size(*args) == want
    assert conv_output_size(*args) == torch.nn.Conv2d(1, 1, *args[1:2], *args[2:]).forward(
        torch.zeros(1, 1, args[0], args[0])).shape[-1]


def test_conv_output_size_errors():
    with pytest.raises(UsageError, match=r"non-integer output size.*floor it to 14"):
        conv_output_size(28, 3, stride=2, padding=1)
    assert conv_output_size(28, 3, stride=2, padding=1, exact=False) == 14
    with pytest.raises(UsageError, match="empty output"):
        conv_output_size(4, 3, dilation=2)
    with pytest.raises(UsageError, match="stride must be an integer >= 1"):
        conv_output_size(8, 3, stride=0)
    with pytest.raises(UsageError, match="kernel must be an integer"):
        conv_output_size(8, 2.5)
    g = Graph()
    with pytest.raises(UsageError, match="empty output"):
        g.add("unfold", g.input("x", ("N", 1, 4, 4)), kernel=5)
    with pytest.raises(UsageError, match="expects .N, 3, H, W."):
        Conv2d(3, 4, 3).build(g, g.input("y", ("N", 2, 8, 8)))
    with pytest.raises(UsageError, match="groups 2 must divide"):
        Conv2d(3, 4, 3, groups=2)


def test_receptive_field():
    assert receptive_field([(3, 1, 1)] * 3) == 7 == receptive_field([(7, 1, 1)])
    assert receptive_field([(3, 1, 2)]) == 5                      # dilation 2 spreads 3 taps
    assert receptive_field([(3, 2), (3, 2), (3, 1)]) == 15        # 1 + 2 + 2·2 + 2·4
    assert receptive_field([(3, 1)] * 5) == 1 + 5 * 2             # 1 + L(K − 1)
    with pytest.raises(UsageError, match="stride must be an integer >= 1"):
        receptive_field([(3, 0, 1)])


# ---------------------------------------------------------------- summary
def test_summary_three_3x3_against_one_7x7():
    """The notes' comparison: the same 7×7 view with 27C² weights instead of 49C²."""
    from symdl.nn import summary
    C = 16
    three = Sequential(*[Conv2d(C, C, 3, padding=1, bias=False) for _ in range(3)])
    one = Conv2d(C, C, 7, padding=3, bias=False)
    s3, s1 = three.summary(("N", C, 32, 32)), summary(one, ("N", C, 32, 32))
    assert s3.total_params == 27 * C * C and s1.total_params == 49 * C * C
    assert [r.field for r in s3.rows] == [(3, 3), (5, 5), (7, 7)]
    assert s3.receptive_field == s1.receptive_field == (7, 7)
    assert s3.rows[-1].shape == s1.rows[-1].shape == ("N", C, 32, 32)
    text = str(s3)
    assert "total parameters: 6,912" in text and "receptive field of the output: 7×7" in text


def test_summary_lenet_rows():
    from symdl.nn import Dense, GlobalAvgPool2d
    net = Sequential(Conv2d(1, 6, 5, padding=2), Activation("relu"), MaxPool2d(2),
                     Conv2d(6, 16, 5), Activation("relu"), MaxPool2d(2), Flatten(),
                     Dense(400, 10))
    s = net.summary(("N", 1, 28, 28))
    assert [r.shape for r in s.rows][::3] == [("N", 6, 28, 28), ("N", 16, 10, 10), ("N", 400)]
    assert [r.params for r in s.rows] == [156, 0, 0, 2416, 0, 0, 0, 4010]
    assert [r.field for r in s.rows] == [(5, 5), (5, 5), (6, 6), (14, 14), (14, 14), (16, 16),
                                         (16, 16), None]
    assert s.total_params == net.num_parameters() == 156 + 2416 + 4010
    # strides and dilations: 1 + 2·2 (dilated 3×3) + 1·2 (stride-2 conv before it)
    d = Sequential(Conv2d(1, 2, 2, stride=2), Conv2d(2, 2, 3, dilation=2, padding=2),
                   Residual(Conv2d(2, 2, 3, padding=1)), GlobalAvgPool2d())
    s = d.summary((1, 1, 8, 8))
    assert [r.field for r in s.rows] == [(2, 2), (10, 10), (14, 14), None]
    assert "whole input" in str(s)
