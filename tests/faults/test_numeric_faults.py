"""NaN, ±inf and 0 through every elementwise op: the values and gradients PyTorch gives.

Each declared elementwise op (and, through ``grad()``, its ``.grad<i>`` ops) is
run on every combination of NaN, ±inf, 0 and a few finite values, in both
kernel flavours (numba loops and the NumPy reference) and both dtypes, and
compared with PyTorch autograd in the same dtype: the same NaN, the same signed infinity, the same
number.  Finite inputs raise no floating-point warning under
``numpy.errstate(all="raise")``.  The row-wise losses are tested with their
own family.
"""
from __future__ import annotations

import functools
import itertools
import warnings

import numpy as np
import pytest

from symdl.backends.numpy_backend import compile_graph
from symdl.data import load_digits
from symdl.derive import grad
from symdl.errors import NumericalError
from symdl.graph import Graph
from symdl.nn import make_model
from symdl.ops import OPS
from symdl.optim import SGD
from symdl.train import Trainer

torch = pytest.importorskip("torch")
F = torch.nn.functional

ELEMENTWISE = [op.name for op in OPS.declared("elementwise")]
FLAVORS = ["numba", "numpy"]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0]
FINITE = [0.0, 1.0, -1.0, 0.5, -2.5, 1e3, -1e3]

#: PyTorch's version of each op (as in tests/test_ops.py); step has no gradient there.
TORCH = {
    "identity": lambda x: x * 1, "step": lambda x: (x > 0).to(x.dtype), "sigmoid": torch.sigmoid,
    "tanh": torch.tanh, "relu": torch.relu, "leaky_relu": lambda x, alpha: F.leaky_relu(x, alpha),
    "elu": lambda x, alpha: F.elu(x, alpha), "softplus": F.softplus, "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu,
    "gelu_sigmoid": lambda x: x * torch.sigmoid(1.702 * x), "selu": F.selu,
    "softsign": F.softsign, "log_sigmoid": F.logsigmoid, "add": torch.add, "sub": torch.sub,
    "mul": torch.mul, "div": torch.div, "neg": torch.neg, "exp": torch.exp, "log": torch.log,
    "pow": torch.pow, "sqrt": torch.sqrt, "square": torch.square, "abs": torch.abs,
    "mse": lambda x, t: (x - t) ** 2, "mae": lambda x, t: torch.abs(x - t),
    "bce_logits": lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction="none"),
    "hinge": lambda x, t: torch.relu(1 - t * x),
}
NO_TORCH_GRAD = {"step"}
#: Where torch's float32 kernel differs from its own float64 one, float32 is
#: compared with torch's float64 values: torch's float32 gelu(inf) is NaN (float64: inf).
TORCH_F32_QUIRKS = {"gelu"}


def test_every_elementwise_op_has_a_reference():
    assert not set(ELEMENTWISE) - set(TORCH), "add a PyTorch reference to TORCH"


@functools.lru_cache(maxsize=None)
def program(name: str, flavor: str, n: int, dtype: str = "float64"):
    """``y = op(x0, ...)``, ``L = sum(y)`` and every ``dL/dx_i``, compiled."""
    op = OPS[name]
    g = Graph()
    ins = [g.input(f"x{i}", ("N",), dtype) for i in range(op.arity)]
    y = g.add(name, *ins, name="y")
    gg = grad(g, g.add("sum", y, name="L"), wrt=ins)
    outs = [y] + [gg.grads[w] for w in ins]
    return compile_graph(gg.graph, outs, dims={"N": n}, flavor=flavor), ins, outs


def run(name, flavor, cols, dtype="float64"):
    prog, ins, outs = program(name, flavor, len(cols[0]), dtype)
    for w, c in zip(ins, cols):
        prog.inputs[w][...] = c
    prog.run()
    return [prog.value(o).copy() for o in outs]


def torch_run(name, cols, dtype="float64"):
    xs = [torch.tensor(c.astype(dtype), requires_grad=name not in NO_TORCH_GRAD) for c in cols]
    params = {s.name: float(v) for s, v in OPS[name].params.items()}
    y = TORCH[name](*xs, **params)
    if name in NO_TORCH_GRAD:
        return [y.numpy()] + [np.zeros(len(cols[0]))] * len(cols)
    grads = torch.autograd.grad(y.sum(), xs, allow_unused=True)
    return [y.detach().numpy()] + [np.zeros(len(cols[0])) if gr is None else gr.numpy()
                                   for gr in grads]


def grid(name, values):
    arity = OPS[name].arity
    return [np.array(c) for c in zip(*itertools.product(values, repeat=arity))]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_nan_and_inf_give_what_torch_gives(name, flavor, dtype):
    """relu(nan) is NaN (was 0), relu'(nan) 1, |x|'(nan) 0, hinge(nan, t) NaN,
    bce_logits(inf, 0) inf (was NaN), pow'(0, 2) 0 (was NaN): as PyTorch."""
    cols = grid(name, SPECIAL + [1.0, -1.0, 0.5])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = run(name, flavor, cols, dtype)
    want = torch_run(name, cols, "float64" if name in TORCH_F32_QUIRKS else dtype)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    for k, (a, b) in enumerate(zip(got, want)):
        what = f"{name} value" if k == 0 else f"d{name}/dx{k - 1}"
        bad = ~(np.isclose(a, b, rtol=rtol, atol=0) | (np.isnan(a) & np.isnan(b)) | (a == b))
        where = [tuple(float(c[j]) for c in cols) for j in np.nonzero(bad)[0][:5]]
        assert not bad.any(), \
            f"{what} ({flavor}, {dtype}) at {where}: {a[bad][:5]} != torch {b[bad][:5]}"


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_finite_inputs_raise_no_floating_point_warning(name, flavor):
    cols = grid(name, FINITE)
    if OPS[name].domain[0] == "positive":  # log, sqrt, pow: keep the base positive (torch: NaN)
        cols[0] = np.abs(cols[0]) + 0.25
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        got = run(name, flavor, cols)
    want = torch_run(name, cols)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300, err_msg=name)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_pow_gradient_at_a_zero_base(flavor):
    """The kernel computed a**b * b / a: NaN at a = 0; torch gives b a^(b-1)."""
    a, b = np.zeros(4), np.array([2.0, 0.5, 1.0, 0.0])
    _, da, db = run("pow", flavor, [a, b])
    np.testing.assert_array_equal(da, [0.0, np.inf, 1.0, 0.0])
    np.testing.assert_array_equal(db, [0.0, 0.0, 0.0, 0.0])


def test_a_nan_weight_in_a_relu_network_stops_training():
    """relu(nan) was 0: a NaN weight trained on with finite losses. Now the
    guard sees the NaN loss, applies nothing and names the parameter."""
    spec = make_model("mlp", 64, 10, (16,), "relu", np.random.default_rng(0))
    spec.module.name_parameters()
    w = spec.module.parameters()[0]
    w.data[3, 5] = np.nan
    before = [p.data.copy() for p in spec.module.parameters()]
    tr = Trainer(spec.module, lambda ps: SGD(ps, lr=0.05), spec.loss, epochs=1, progress=False)
    with pytest.raises(NumericalError, match=r"non-finite .*not applied.*0\.W"):
        tr.fit(load_digits("train"))
    for p, old in zip(spec.module.parameters(), before):
        np.testing.assert_array_equal(p.data, old)  # NaN where it was, nothing else changed
