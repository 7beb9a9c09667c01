"""The row-op family: claims, PyTorch agreement, large logits, NaN/±inf, LayerNorm.

Every declared :class:`~symdl.ops.rowops.RowOp` has its output and VJP
checked by SymPy on explicit rows; compiled kernels (both flavours, the last
axis of tensors of rank 1 to 3) agree with PyTorch in value and gradient;
logits of ±1000 (±88.8 in float32) give finite values with no floating-point
warning; NaN and ±inf give what PyTorch gives; a new row op is one
declaration; an MLP with LayerNorm runs the normalization as one kernel each
way and trains as PyTorch does.
"""
from __future__ import annotations

import functools
import re
import warnings

import numpy as np
import pytest
import sympy as sp

from symdl.backends.numpy_backend import compile_graph
from symdl.derive import grad
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.ops import OPS, RowOp
from symdl.ops.claims import _check_rowop, check_op
from symdl.ops.registry import register
from symdl.ops.rowops import z_j

torch = pytest.importorskip("torch")
F = torch.nn.functional

ROWOPS = [op.name for op in OPS.declared() if isinstance(op, RowOp)]
FLAVORS = ["numba", "numpy"]


def _strict(fn):
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


# ---------------------------------------------------------------- claims
def test_the_family_is_declared():
    assert {"softmax", "log_softmax", "masked_softmax", "layer_norm", "softmax_cross_entropy",
            "nll", "multi_hinge"} <= set(ROWOPS)


@pytest.mark.parametrize("name", ROWOPS)
def test_value_and_vjp_claims_hold(name):
    res = check_op(name)
    assert res and all(r.ok for r in res.values()), {k: r for k, r in res.items() if not r.ok}
    assert any(k.startswith("vjp") for k in res)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "layer_norm", "softmax_cross_entropy"])
def test_a_perturbed_vjp_is_rejected(name):
    op = OPS[name]
    wrong = RowOp(name=op.name, stats=op.stats, out=op.out, vjp=op.vjp * (1 + sp.Rational(1, 1000)),
                  plain=op.plain, output=op.output, operands=op.operands, vjp_stats=op.vjp_stats,
                  params=op.params, smoothing=op.smoothing, onehot_only=op.onehot_only)
    assert not all(r.ok for r in _check_rowop(wrong).values())


# ------------------------------------------------------------ programs
class RowProgram:
    """``y = op(z, operands...)``, ``L = Σ w ⊙ y``, compiled for ``[y, dL/dz]``."""

    def __init__(self, name, shape, operands, flavor, dtype, params):
        g = Graph()
        self.z = g.input("z", shape, dtype)
        self.ops = [g.input(f"o{k}", s, d) for k, (s, d) in enumerate(operands)]
        self.y = g.add(name, self.z, *self.ops, name="y", **params)
        self.w = g.input("w", g.shape(self.y), dtype)
        L = g.add("sum", g.add("mul", self.y, self.w, name="yw"), name="L")
        self.dz = grad(g, L, wrt=[self.z]).grads[self.z]
        self.prog = compile_graph(grad(g, L, wrt=[self.z]).graph, [self.y, self.dz], flavor=flavor)

    def run(self, z, *operands, w=None):
        p = self.prog
        p.inputs[self.z][...] = z
        for n, v in zip(self.ops, operands):
            p.inputs[n][...] = v
        p.inputs[self.w][...] = 1.0 if w is None else w
        p.run()
        return p.value(self.y).copy(), p.value(self.dz).copy()


@functools.lru_cache(maxsize=None)
def program(name, shape, operands=(), flavor="numba", dtype="float64", params=()):
    return RowProgram(name, shape, operands, flavor, dtype, dict(params))


def torch_ref(fn, z, w, *extra):
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    y = fn(zt, *extra)
    (dz,) = torch.autograd.grad((y * torch.tensor(w, dtype=torch.float64)).sum(), [zt])
    return y.detach().numpy(), dz.numpy()


ELEMENT_REFS = {
    "softmax": (lambda z: F.softmax(z, -1), ()),
    "log_softmax": (lambda z: F.log_softmax(z, -1), ()),
    "layer_norm": (lambda z: F.layer_norm(z, z.shape[-1:], eps=1e-5), ()),
}
SHAPES = [(7,), (5, 4), (2, 3, 6)]


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(ELEMENT_REFS))
def test_per_element_row_ops_match_torch(name, shape, flavor):
    rng = np.random.default_rng(0)
    z, w = 3 * rng.normal(size=shape), rng.normal(size=shape)
    want_y, want_dz = torch_ref(ELEMENT_REFS[name][0], z, w)
    y, dz = program(name, shape, flavor=flavor).run(z, w=w)
    np.testing.assert_allclose(y, want_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dz, want_dz, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_layer_norm_eps_and_finite_differences(flavor):
    rng = np.random.default_rng(1)
    z, w = rng.normal(size=(4, 5)) * 0.01, rng.normal(size=(4, 5))  # eps matters at this scale
    p = program("layer_norm", (4, 5), flavor=flavor, params=(("eps", 1e-3),))
    y, dz = p.run(z, w=w)
    want_y, want_dz = torch_ref(lambda t: F.layer_norm(t, (5,), eps=1e-3), z, w)
    np.testing.assert_allclose(y, want_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dz, want_dz, rtol=1e-11, atol=1e-12)
    v, h = rng.normal(size=z.shape), 1e-9
    num = ((p.run(z + h * v, w=w)[0] * w).sum() - (p.run(z - h * v, w=w)[0] * w).sum()) / (2 * h)
    np.testing.assert_allclose(np.vdot(dz, v), num, rtol=1e-5)


def _masked_ref(z, k):
    return F.softmax(z.masked_fill(~k, float("-inf")), -1)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_masked_softmax_matches_torch_and_a_fully_masked_row_is_zero(flavor):
    rng = np.random.default_rng(2)
    z, w = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    k = (rng.random((4, 5)) > 0.4).astype(float)
    k[0, 0] = 1.0
    k[3] = 0.0  # fully masked
    p = program("masked_softmax", (4, 5), (((4, 5), "float64"),), flavor)
    y, dz = _strict(lambda: p.run(z, k, w=w))
    want_y, want_dz = torch_ref(_masked_ref, z[:3], w[:3], torch.tensor(k[:3] > 0))
    np.testing.assert_allclose(y[:3], want_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dz[:3], want_dz, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(y[3], 0.0)
    np.testing.assert_array_equal(dz[3], 0.0)
    assert np.all(y[k == 0] == 0) and np.all(dz[k == 0] == 0)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_on_rank_3_logits_matches_torch(eps, flavor):
    rng = np.random.default_rng(3)
    z, y = rng.normal(size=(2, 3, 4)), rng.integers(0, 4, (2, 3))
    w = rng.normal(size=(2, 3))
    p = program("softmax_cross_entropy", (2, 3, 4), (((2, 3), "int64"),), flavor,
                params=(("epsilon", eps),))
    r, dz = p.run(z, y, w=w)
    def ce(t):
        return F.cross_entropy(t.permute(0, 2, 1), torch.tensor(y), label_smoothing=eps,
                               reduction="none")
    want_r, want_dz = torch_ref(ce, z, w)
    np.testing.assert_allclose(r, want_r, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dz, want_dz, rtol=1e-12, atol=1e-12)


def test_operand_shapes_are_checked_in_one_line():
    g = Graph()
    z = g.input("z", ("N", 4), "float64")
    with pytest.raises(UsageError, match=r"softmax_cross_entropy: z \('N', 4\) needs labels"):
        g.add("softmax_cross_entropy", z, g.input("y", (4,), "int64"))
    with pytest.raises(UsageError, match="masked_softmax: .* needs mask m of shape"):
        g.add("masked_softmax", z, g.input("m", ("N", 3), "float64"))


def test_a_vjp_has_no_second_derivative_and_says_so():
    with pytest.raises(UsageError, match="no second derivative .* softmax"):
        OPS["softmax"].grad_op(0).grad_op(0)


# ----------------------------------------------------- large logits
BIG = {"float64": 1000.0, "float32": 88.8}
LOSS_REFS = {
    "softmax_cross_entropy": lambda z, y, p: F.cross_entropy(
        z, y, label_smoothing=p.get("epsilon", 0.0), reduction="none"),
    "nll": lambda z, y, p: F.nll_loss(z, y, reduction="none"),
    # PyTorch divides by the number of classes; symdl sums
    "multi_hinge": lambda z, y, p: F.multi_margin_loss(z, y, reduction="none") * z.shape[1],
}


def _big_rows(b):
    return np.array([[b, -b, 0.0], [-b, b, 0.5], [b, b, -b], [-b, -b, -b], [0.0, -b, b]])


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("dtype", sorted(BIG))
@pytest.mark.parametrize("name", sorted(ELEMENT_REFS))
def test_large_logits_per_element_ops_are_finite_and_silent(name, dtype, flavor):
    z = _big_rows(BIG[dtype])
    w = np.random.default_rng(4).normal(size=z.shape)
    p = program(name, (5, 3), flavor=flavor, dtype=dtype)
    y, dz = _strict(lambda: p.run(z.astype(dtype), w=w.astype(dtype)))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dz)), (y, dz)
    want_y, want_dz = torch_ref(ELEMENT_REFS[name][0], z, w)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=2e-5, atol=1e-4)
    np.testing.assert_allclose(y, want_y, **tol)
    np.testing.assert_allclose(dz, want_dz, **tol)


# ----------------------------------------------------- NaN and ±inf
INF, NAN = np.inf, np.nan
SPECIAL_ROWS = np.array([[INF, 0.0, 1.0], [0.0, INF, 1.0], [-INF, 0.0, 1.0], [0.0, -INF, 1.0],
                         [NAN, 0.0, 1.0], [INF, INF, 0.0], [-INF, -INF, 2.0], [0.0, 1.0, 2.0]])
SPECIAL_Y = np.array([1, 1, 1, 1, 1, 1, 2, 0])


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
# the row losses' large-logit and NaN/±inf cases (issue 12, items 6 and 8) are in
# tests/faults/test_rowloss_faults.py


def test_nan_and_inf_through_softmax_give_what_torch_gives(name, flavor):
    w = np.arange(1.0, 4.0)[None].repeat(len(SPECIAL_Y), 0)
    y, dz = program(name, SPECIAL_ROWS.shape, flavor=flavor).run(SPECIAL_ROWS, w=w)
    want_y, want_dz = torch_ref(ELEMENT_REFS[name][0], SPECIAL_ROWS, w)
    np.testing.assert_allclose(y, want_y, rtol=1e-12, atol=1e-15, equal_nan=True)
    np.testing.assert_allclose(dz, want_dz, rtol=1e-12, atol=1e-15, equal_nan=True)


# --------------------------------------------- a new row op: one declaration
def test_a_new_row_op_is_one_declaration():
    """A per-row log-sum-exp declared here: claims, kernels and torch agree."""
    m, s = sp.symbols("m s", real=True)
    name = "test_logsumexp"
    try:
        register(RowOp(name=name, stats=((m, "max", z_j), (s, "sum", sp.exp(z_j - m))),
                       out=m + sp.log(s), vjp=sp.Symbol("g", real=True) * sp.exp(z_j - m) / s,
                       plain=lambda z: sp.log(sum(sp.exp(zi) for zi in z)), output="row"))
        assert all(r.ok for r in check_op.__wrapped__(name).values())
        rng = np.random.default_rng(5)
        z, w = rng.normal(size=(3, 4)) * 400, rng.normal(size=3)
        for flavor in FLAVORS:
            y, dz = _strict(lambda: RowProgram(name, (3, 4), (), flavor, "float64", {}).run(z, w=w))
            want_y, want_dz = torch_ref(lambda t: torch.logsumexp(t, -1), z, w)
            np.testing.assert_allclose(y, want_y, rtol=1e-12)
            np.testing.assert_allclose(dz, want_dz, rtol=1e-12, atol=1e-300)
    finally:
        OPS.pop(name, None)
        OPS.pop(f"{name}.grad0", None)


# ------------------------------------------------------------ LayerNorm
def _ln_mlp(rng):
    from symdl.nn import Activation, Dense, LayerNorm, Sequential
    m = Sequential(Dense(5, 8, rng=rng, dtype="float64"), LayerNorm(8, dtype="float64"),
                   Activation("tanh"), Dense(8, 3, rng=rng, dtype="float64"))
    m.layers[1].weight.data = rng.normal(size=8)
    m.layers[1].bias.data = rng.normal(size=8)
    return m


def test_mlp_with_layernorm_one_kernel_each_way_and_matches_torch():
    rng = np.random.default_rng(6)
    model = _ln_mlp(rng)
    g = Graph()
    x, y = g.input("x", ("N", 5), "float64"), g.input("y", ("N",), "int64")
    L = g.add("mean", g.add("softmax_cross_entropy", model.build(g, x), y, name="loss"), name="L")
    gg = grad(g, L)
    prog = compile_graph(gg.graph, [L] + list(gg.grads.values()), dims={"N": 6})
    calls = [c for c in prog.source.split("\n    k")]
    assert sum("= layer_norm(" in c for c in calls) == 1
    assert sum("= layer_norm.grad0(" in c for c in calls) == 1
    for c in calls:  # one kernel computes the normalization; its VJP (and the bias gradient below)
        if "layer_norm" in c:
            ops = re.findall(r"# \S+ = (\S+)\(", c)
            assert ops in (["layer_norm"], ["layer_norm.grad0", "sum_to"]), c
    X, Y = rng.normal(size=(6, 5)), rng.integers(0, 3, 6)
    prog.inputs[x][...], prog.inputs[y][...] = X, Y
    params = dict(model.named_parameters())
    for n, par in params.items():
        prog.buffers[n][...] = par.data
    prog.run()
    tm = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.LayerNorm(8), torch.nn.Tanh(),
                             torch.nn.Linear(8, 3)).double()
    names = {"0.W": "0.weight", "0.b": "0.bias", "1.weight": "1.weight", "1.bias": "1.bias",
             "3.W": "3.weight", "3.b": "3.bias"}
    tm.load_state_dict({names[n]: torch.tensor(p.data) for n, p in params.items()})
    loss = F.cross_entropy(tm(torch.tensor(X)), torch.tensor(Y))
    loss.backward()
    np.testing.assert_allclose(prog.value(L), loss.item(), rtol=1e-12)
    tparams = dict(tm.named_parameters())
    for n in params:
        np.testing.assert_allclose(prog.value(gg.grads[n]), tparams[names[n]].grad.numpy(),
                                   rtol=1e-10, atol=1e-12, err_msg=n)


def test_last_axis_layernorm_checks_its_arguments():
    from symdl.nn.layers import LayerNorm  # symdl.nn's LayerNorm extends it to several axes
    with pytest.raises(UsageError, match="last axis"):
        LayerNorm((3, 4))
    with pytest.raises(UsageError, match="eps must be positive"):
        LayerNorm(4, eps=0)
    g = Graph()
    with pytest.raises(UsageError, match="expects a last axis of 4"):
        LayerNorm(4).build(g, g.input("x", ("N", 5)))
    ln = LayerNorm(4, elementwise_affine=False)
    assert not list(ln.named_parameters())
    assert g.op(ln.build(g, g.input("h", ("N", 4)))) == "layer_norm"


def test_row_ops_print_in_graph_derivations():
    from symdl.derive.chains import derive_graph
    from symdl.printing.chains import derivation_latex, derivation_text
    g = Graph()
    x = g.input("x", ("N", 4), "float64")
    W = g.param("W", (4, 4), "float64")
    h = g.add("layer_norm", g.add("matmul", x, W, name="xW"), name="h")
    L = g.add("sum", g.add("log_softmax", h, name="p"), name="L")
    gd = derive_graph(g, L)
    text = derivation_text(gd)
    assert ("∂p/∂h  = per row, ∂L/∂zⱼ = gⱼ − (gₛ·e^(zⱼ − m))/s, where m = maxⱼ zⱼ"
            in text)
    assert "gₛ = Σⱼ gⱼ" in text and "gₓ = Σⱼ (gⱼ·(zⱼ − μ))/(C·√(eps + var))" in text
    assert r"g_{j} - \frac{g_{s} e^{z_{j} - m}}{s}" in derivation_latex(gd)


# ---------------------------------------------------------- second order
@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("case", ["softmax_cross_entropy", "softmax_cross_entropy-0.1", "nll"])
def test_hvp_through_row_losses_equals_torch(case, flavor):
    """The VJP of a row loss's VJP (declared and checked for second order)."""
    from symdl.backends.second_order import hvp
    name, _, eps = case.partition("-")
    params = {"epsilon": float(eps)} if eps else {}
    g = Graph()
    x, y = g.input("x", ("N", 3), "float64"), g.input("y", ("N",), "int64")
    W = g.param("W", (4, 3), "float64")
    z = g.add("tanh", g.add("matmul", x, g.add("transpose", W)))
    L = g.add("mean", g.add(name, z, y, **params), name="L")
    rng = np.random.default_rng(7)
    X, Y, Wv, v = (rng.normal(size=(6, 3)), rng.integers(0, 4, 6), rng.normal(size=(4, 3)),
                   rng.normal(size=(4, 3)))
    got = hvp(g, L, "W", v, feeds={"x": X, "y": Y}, params={"W": Wv}, flavor=flavor)
    ref = {"softmax_cross_entropy": lambda o, t: F.cross_entropy(o, t, label_smoothing=params.get(
        "epsilon", 0.0)), "nll": lambda o, t: F.nll_loss(o, t)}[name]
    _, want = torch.autograd.functional.hvp(
        lambda w: ref(torch.tanh(torch.tensor(X) @ w.T), torch.tensor(Y)),
        torch.tensor(Wv), torch.tensor(v))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


def test_third_order_and_undeclared_second_order_say_so():
    with pytest.raises(UsageError, match="no second derivative .* softmax_cross_entropy.grad0"):
        OPS["softmax_cross_entropy"].grad_op(0).grad_op(0).grad_op(0)
    with pytest.raises(UsageError, match="no second derivative .* multi_hinge"):
        OPS["multi_hinge"].grad_op(0).grad_op(0)
