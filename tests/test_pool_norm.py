"""Pooling, upsampling and normalization vs torch autograd (float64), by hand, by differences."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from symdl.backends.numpy_backend import compile_graph
from symdl.derive import grad
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.nn.conv import (AdaptiveAvgPool2d, AvgPool2d, Conv2d, Flatten, GlobalAvgPool2d,
                           LPPool2d, MaxPool2d, Upsample)
from symdl.nn.layers import Sequential
from symdl.nn.norm import (BatchNorm1d, BatchNorm2d, InstanceNorm2d, LayerNorm, batchnorm_layers,
                           set_batchnorm_mode, update_running_stats)
from symdl.testing import check_grad
from test_conv import compare_layer

F64 = "float64"


# ----------------------------------------------------------------- pooling
@pytest.mark.parametrize("k, s, p", [(2, None, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (2, 1), (1, 0)),
                                     (2, 1, 0)])
def test_max_pool_matches_torch(k, s, p):
    compare_layer(MaxPool2d(k, s, p), (2, 3, 7, 6),
                  lambda x: F.max_pool2d(x, k, s if s is not None else k, p))


def test_max_pool_padding_never_wins_over_negative_inputs():
    compare_layer(MaxPool2d(3, 2, 1), (2, 2, 5, 5), lambda x: F.max_pool2d(x, 3, 2, 1),
                  make_x=lambda rng: -5 - rng.random((2, 2, 5, 5)))


def test_max_pool_dilation_matches_torch():
    compare_layer(MaxPool2d(2, 1, 0, dilation=2), (1, 2, 5, 5),
                  lambda x: F.max_pool2d(x, 2, 1, 0, dilation=2))


@pytest.mark.parametrize("k, s, p", [(2, None, 0), (3, 2, 1), ((3, 2), 1, (1, 0))])
def test_avg_pool_matches_torch(k, s, p):
    compare_layer(AvgPool2d(k, s, p), (2, 3, 7, 6),
                  lambda x: F.avg_pool2d(x, k, s if s is not None else k, p))


@pytest.mark.parametrize("k, s, p, shape", [(3, 2, 1, (2, 2, 7, 8)), (2, 2, 0, (1, 2, 5, 7)),
                                            (3, 2, 0, (1, 2, 6, 5)), (3, 3, 1, (1, 2, 5, 7)),
                                            ((3, 2), (2, 1), (1, 0), (1, 2, 6, 5))])
@pytest.mark.parametrize("ceil", [False, True])
def test_ceil_mode_and_count_include_pad_match_torch(k, s, p, shape, ceil):
    """Values, shapes and gradients as torch for ceil_mode (max and average
    pooling) and count_include_pad=False (the divisor a constant of the graph)."""
    compare_layer(MaxPool2d(k, s, p, ceil_mode=ceil), shape,
                  lambda x: F.max_pool2d(x, k, s, p, ceil_mode=ceil))
    for inc in (True, False):
        compare_layer(AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=inc), shape,
                      lambda x: F.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=inc))


def test_ceil_mode_windows_by_hand():
    """A 5×5 input, 2×2 windows, stride 2: ceil_mode adds a third row and column of
    windows, which cover one pixel each (their mean is that pixel, not a quarter of it)."""
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    g = Graph()
    xi = g.input("x", (1, 1, 5, 5), F64)
    ys = [m.build(g, xi, prefix=f"{i}.") for i, m in enumerate(
        (MaxPool2d(2, ceil_mode=True), AvgPool2d(2, ceil_mode=True), AvgPool2d(2)))]
    prog = compile_graph(g, ys, dims={})
    prog.inputs["x"][...] = x
    prog.run()
    mx, avg, floor = (prog.value(y)[0, 0] for y in ys)
    assert mx.tolist() == [[6, 8, 9], [16, 18, 19], [21, 23, 24]]
    assert avg.tolist() == [[3, 5, 6.5], [13, 15, 16.5], [20.5, 22.5, 24]]
    assert floor.tolist() == [[3, 5], [13, 15]]
    assert repr(AvgPool2d(2, ceil_mode=True, count_include_pad=False)) == \
        "AvgPool2d(kernel_size=2, stride=2, ceil_mode=True, count_include_pad=False)"


@pytest.mark.parametrize("norm, k, s", [(2, 2, None), (2, 3, 2), (3, 2, 1)])
def test_lp_pool_matches_torch(norm, k, s):
    pos = (lambda rng: rng.random((2, 2, 6, 6)) + 0.1) if norm != 2 else None
    compare_layer(LPPool2d(norm, k, s), (2, 2, 6, 6), lambda x: F.lp_pool2d(x, norm, k, s),
                  make_x=pos)


def test_adaptive_global_pool_and_upsample_match_torch():
    compare_layer(AdaptiveAvgPool2d(1), (2, 3, 5, 4), lambda x: F.adaptive_avg_pool2d(x, 1))
    compare_layer(AdaptiveAvgPool2d((2, 3)), (2, 3, 4, 6),
                  lambda x: F.adaptive_avg_pool2d(x, (2, 3)))
    compare_layer(GlobalAvgPool2d(), (2, 3, 5, 4), lambda x: x.mean((2, 3)))
    compare_layer(Upsample(2), (2, 3, 3, 4), lambda x: F.interpolate(x, scale_factor=2,
                                                                      mode="nearest"))
    compare_layer(Upsample((3, 1)), (1, 2, 2, 3), lambda x: F.interpolate(x, scale_factor=(3, 1),
                                                                          mode="nearest"))
    compare_layer(Flatten(), (2, 3, 2, 2), lambda x: x.flatten(1))
    g = Graph()
    with pytest.raises(UsageError, match="must divide"):
        AdaptiveAvgPool2d(3).build(g, g.input("x", (1, 1, 4, 4)))


def _pool_by_hand(layer, x):
    g = Graph()
    xi = g.input("x", x.shape, F64)
    y = layer.build(g, xi)
    L = g.add("sum", y, name="L")
    gg = grad(g, L, [xi])
    prog = compile_graph(gg.graph, [y, gg[xi]])
    prog.inputs["x"][...] = x
    prog.run()
    return prog.value(y)[0, 0], prog.value(gg[xi])[0, 0]


def test_max_and_average_pooling_worked_by_hand():
    """The exercise of the notes: 2×2 pools with stride 2 over a 4×4 matrix."""
    x = np.array([[1, 1, 2, 4],
                  [5, 6, 7, 8],
                  [3, 2, 1, 0],
                  [1, 2, 3, 4]], dtype=float).reshape(1, 1, 4, 4)
    y, dx = _pool_by_hand(MaxPool2d(2, 2), x)
    np.testing.assert_array_equal(y, [[6, 8], [3, 4]])
    np.testing.assert_array_equal(dx, [[0, 0, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 1]])
    y, dx = _pool_by_hand(AvgPool2d(2, 2), x)
    np.testing.assert_array_equal(y, [[13 / 4, 21 / 4], [2, 2]])
    np.testing.assert_array_equal(dx, np.full((4, 4), 0.25))
    # ties: the gradient goes to the first maximum in row-major order, as torch's
    t = np.array([[3, 3], [3, 1]], dtype=float).reshape(1, 1, 2, 2)
    y, dx = _pool_by_hand(MaxPool2d(2), t)
    np.testing.assert_array_equal(dx, [[1, 0], [0, 0]])
    tx = torch.tensor(t, requires_grad=True)
    F.max_pool2d(tx, 2).sum().backward()
    np.testing.assert_array_equal(dx, tx.grad.numpy()[0, 0])


def test_pool_errors():
    with pytest.raises(UsageError, match="at most half the kernel"):
        MaxPool2d(2, padding=2)
    with pytest.raises(UsageError, match="norm_type must be a positive number"):
        LPPool2d(0, 2)
    with pytest.raises(UsageError, match="nearest"):
        Upsample(2, mode="bilinear")


# ----------------------------------------------------------- normalization
def _t_bn(x, w, b):
    return F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)


@pytest.mark.parametrize("layer, shape", [(BatchNorm2d, (4, 3, 5, 5)), (BatchNorm1d, (6, 3)),
                                          (BatchNorm1d, (4, 3, 7))])
def test_batchnorm_training_matches_torch(layer, shape):
    m = layer(3, dtype=F64)
    m.weight.data[...] = np.linspace(0.5, 1.5, 3)
    m.bias.data[...] = np.linspace(-0.2, 0.3, 3)
    m.name_parameters()
    compare_layer(m, shape, _t_bn, params=["weight", "bias"])


def test_instance_and_layer_norm_match_torch():
    compare_layer(InstanceNorm2d(3), (2, 3, 4, 5), lambda x: F.instance_norm(x, eps=1e-5))
    m = InstanceNorm2d(3, affine=True, dtype=F64)
    m.weight.data[...] = [0.5, 1.0, 2.0]
    m.bias.data[...] = [0.1, 0.0, -0.1]
    compare_layer(m, (2, 3, 4, 5), lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
                  params=["weight", "bias"])
    ln = LayerNorm((3, 4, 5), dtype=F64)
    ln.weight.data[...] = np.random.default_rng(0).normal(size=(3, 4, 5))
    compare_layer(ln, (2, 3, 4, 5), lambda x, w, b: F.layer_norm(x, (3, 4, 5), w, b),
                  params=["weight", "bias"])
    compare_layer(LayerNorm(5, elementwise_affine=False), (2, 3, 5),
                  lambda x: F.layer_norm(x, (5,)))


def test_batchnorm_running_statistics_and_eval_match_torch_after_10_steps():
    """Conv → BatchNorm2d → sum of squares, 10 SGD steps on fresh batches."""
    rng = np.random.default_rng(0)
    net = Sequential(Conv2d(2, 3, 3, padding=1, dtype=F64, rng=rng), BatchNorm2d(3, momentum=0.2,
                                                                                  dtype=F64))
    net.name_parameters()
    tnet = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1),
                               torch.nn.BatchNorm2d(3, momentum=0.2)).double()
    tnet.load_state_dict({k: torch.tensor(v) for k, v in net.state_dict().items()}, strict=False)
    g = Graph()
    x = g.input("x", ("N", 2, 5, 5), F64)
    y = net.build(g, x)
    L = g.add("mean", g.add("square", g.add("tanh", y)), name="L")
    names = [n for n, _ in net.named_parameters()]
    gg = grad(g, L, names)
    params = dict(net.named_parameters())
    prog = compile_graph(gg.graph, [L] + [gg[n] for n in names],
                         bind={n: p.data for n, p in params.items()}, dims={"N": 4})
    opt = torch.optim.SGD(tnet.parameters(), lr=0.1)
    for _ in range(10):
        xv = rng.normal(size=(4, 2, 5, 5))
        set_batchnorm_mode(prog, net, train=True)
        prog.inputs["x"][...] = xv
        prog.run()
        update_running_stats(net, prog)
        for n in names:
            params[n].data -= 0.1 * prog.value(gg[n])
        opt.zero_grad()
        torch.tanh(tnet(torch.tensor(xv))).square().mean().backward()
        opt.step()
    bn, tbn = batchnorm_layers(net)[0], tnet[1]
    np.testing.assert_allclose(bn.running_mean, tbn.running_mean.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.running_var, tbn.running_var.numpy(), rtol=1e-10, atol=1e-12)
    for n, p in tnet.state_dict().items():
        if n in params:
            np.testing.assert_allclose(params[n].data, p.numpy(), rtol=1e-10, atol=1e-12)
    # evaluation: the same graph with the mode input at 0 uses the running statistics
    ev = compile_graph(g, [y], bind={n: p.data for n, p in params.items()}, dims={"N": 3})
    xv = rng.normal(size=(3, 2, 5, 5))
    set_batchnorm_mode(ev, net, train=False)
    ev.inputs["x"][...] = xv
    ev.run()
    tnet.eval()
    np.testing.assert_allclose(ev.value(y), tnet(torch.tensor(xv)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)


def test_norm_gradients_match_finite_differences():
    net = Sequential(Conv2d(1, 2, 3, dtype=F64), BatchNorm2d(2, dtype=F64), InstanceNorm2d(2),
                     LayerNorm((2, 3, 3), dtype=F64), LPPool2d(2, 2, 1))
    net.name_parameters()
    g = Graph()
    y = net.build(g, g.input("x", ("N", 1, 5, 5), F64))
    L = g.add("sum", g.add("tanh", y), name="L")
    set_mode = {n: np.ones(()) for n in g.inputs() if n.endswith("train")}
    stats = {n: (np.ones if "var" in n else np.zeros)(g.shape(n)) for n in g.inputs()
             if "running" in n}
    res = check_grad(g, L, wrt=["x", *g.params()], feeds={**set_mode, **stats}, dims={"N": 3},
                     rtol=1e-6)
    assert res.n_checks == 3 * (1 + len(g.params()))


def test_norm_errors():
    with pytest.raises(UsageError, match="num_features must be a positive integer"):
        BatchNorm2d(0)
    with pytest.raises(UsageError, match="momentum"):
        BatchNorm2d(3, momentum=None)
    g = Graph()
    with pytest.raises(UsageError, match="expects 4-D input with 3 channels"):
        BatchNorm2d(3).build(g, g.input("x", ("N", 4, 2, 2)))
    with pytest.raises(UsageError, match="LayerNorm expects"):
        LayerNorm((3, 4)).build(g, g.input("y", ("N", 4, 3)))


def test_l2_pool_of_a_zero_window_has_zero_gradient_as_torch():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0] = 2.0
    y, dx = _pool_by_hand(LPPool2d(2, 2), x)
    np.testing.assert_allclose(y, [[2, 0], [0, 0]], atol=1e-150)
    tx = torch.tensor(x, requires_grad=True)
    F.lp_pool2d(tx, 2, 2).sum().backward()
    np.testing.assert_array_equal(dx, tx.grad.numpy()[0, 0])
    assert np.isfinite(dx).all() and dx[0, 0] == 1


def test_dropout2d_drops_whole_maps():
    from symdl.nn import Dropout2d
    from symdl.train.regularize import dropout_masks, fill_masks
    g = Graph()
    x = g.input("x", ("N", 6, 3, 3), F64)
    y = Dropout2d(0.5).build(g, x)
    L = g.add("sum", y, name="L")
    gg = grad(g, L, [x])
    prog = compile_graph(gg.graph, [y, gg[x]], dims={"N": 40})
    masks = dropout_masks(g)
    assert list(masks.values()) == [0.5] and g.shape(next(iter(masks))) == ("N", 6, 1, 1)
    prog.inputs["x"][...] = 1.0
    fill_masks(prog, masks, np.random.default_rng(0), train=True)
    prog.run()
    per_map = prog.value(y).reshape(40 * 6, 9)
    assert set(np.unique(per_map)) == {0.0, 2.0}
    assert (per_map == per_map[:, :1]).all()                    # a map is kept or dropped whole
    assert 0.35 < (per_map[:, 0] > 0).mean() < 0.65
    np.testing.assert_array_equal(prog.value(gg[x]), prog.value(y))   # d(x·m)/dx = m
    fill_masks(prog, masks, None, train=False)
    prog.run()
    assert (prog.value(y) == 1).all()
