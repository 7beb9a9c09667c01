"""Every declared op, checked from its declaration: claims, kernels, finite
differences, PyTorch, kink conventions, large logits.

Parametrized over the registry, so a new op brings its own tests (and must
add a PyTorch reference to ``TORCH_REFS``).  Compiled programs are cached per
module: numba compiles each kernel once per session.
"""
from __future__ import annotations

import functools
import warnings

import mpmath
import numpy as np
import pytest
import sympy as sp
from sympy.core.relational import Relational

from symdl.backends.numpy_backend import compile_graph
from symdl.derive import grad
from symdl.graph import Graph
from symdl.ops import OPS, Y
from symdl.ops.claims import check_equal, check_op

ELEMENTWISE = OPS.declared("elementwise")
ROWLOSSES = OPS.declared("rowloss")
FLAVORS = ["numba", "numpy"]
N = 9            # points per elementwise test
KINK_GAP = 0.05  # sample points stay this far from a kink

#: Known bugs in symdl/, as ``{(op, argument): reason}``; the tests that hit
#: them are strict xfails (they start passing -> the marker must go).
GRAD_BUGS: dict = {}


def _arg_params(known_bugs=True):
    out = []
    for op in ELEMENTWISE:
        for i in range(op.arity):
            marks = ()
            if known_bugs and (op.name, i) in GRAD_BUGS:
                marks = pytest.mark.xfail(strict=True, reason=GRAD_BUGS[(op.name, i)])
            out.append(pytest.param(op.name, i, id=f"{op.name}-{i}", marks=marks))
    return out


OP_NAMES = [op.name for op in ELEMENTWISE]
#: (op, argument) pairs, for tests that run grad(): known bugs are xfails.
OP_ARGS = _arg_params()
#: (op, argument) pairs, for tests that do not.
OP_ARGS_SYMBOLIC = _arg_params(known_bugs=False)


def _with_custom(params):
    """Each param set once with default op parameters, once with others
    (only for ops that have parameters)."""
    out = []
    for p in params:
        name = p.values[0]
        out.append(pytest.param(*p.values, False, id=p.id + "-default", marks=p.marks))
        if OPS[name].params:
            out.append(pytest.param(*p.values, True, id=p.id + "-custom", marks=p.marks))
    return out


# --------------------------------------------------------------- sampling
def op_params(op, custom: bool) -> dict:
    """``{name: value}``: the defaults, or (custom) other values."""
    return {s.name: (2 * float(v) + 0.25 if custom else float(v)) for s, v in op.params.items()}


def _subs_params(op, e, params: dict):
    return e.subs({s: sp.Float(params[s.name], 30) for s in op.params})


def _kink_functions(op, params):
    """Functions of the inputs that vanish at the op's kinks: arguments of
    Abs/sign/Heaviside, lhs - rhs of Piecewise conditions, Min/Max gaps."""
    found = set()
    exprs = [op.expr, op.kernel_expr] + [op.diff(i) for i in range(op.arity)]
    for e in exprs:
        for node in sp.preorder_traversal(e):
            if isinstance(node, (sp.Abs, sp.sign, sp.Heaviside)):
                found.add(node.args[0])
            elif isinstance(node, sp.Piecewise):
                for _, cond in node.args:
                    for rel in (cond.atoms(Relational) if not isinstance(cond, bool) else ()):
                        found.add(rel.lhs - rel.rhs)
            elif isinstance(node, (sp.Min, sp.Max)) and len(node.args) == 2:
                found.add(node.args[0] - node.args[1])
    return [sp.lambdify(op.inputs, _subs_params(op, k, params), "numpy") for k in found
            if k.free_symbols & set(op.inputs)]


DOMAINS = {
    "real": lambda r, n: r.uniform(-3, 3, n),
    "positive": lambda r, n: r.uniform(0.2, 3, n),
    "nonzero": lambda r, n: r.choice([-1.0, 1.0], n) * r.uniform(0.3, 3, n),
    "unit": lambda r, n: r.uniform(0, 1, n),
    "sign": lambda r, n: r.choice([-1.0, 1.0], n),
}


@functools.lru_cache(maxsize=None)
def sample_points(name: str, custom: bool = False, seed: int = 0) -> tuple:
    """``N`` points per input from the op's domain, away from kinks
    (non-smooth ops: ``|x| > 0.05``, ``|t x - 1| > 0.05`` for hinge,
    ``|x - t| > 0.05`` for mae, and so on, read off the declaration)."""
    op = OPS[name]
    rng = np.random.default_rng(seed + sum(map(ord, name)))
    for d in op.domain:
        assert d in DOMAINS, f"op {name}: no sampler for domain {d!r}; add one to DOMAINS"
    cols = [DOMAINS[d](rng, N) for d in op.domain]
    if not op.smooth:
        kinks = _kink_functions(op, op_params(op, custom))
        assert kinks, f"op {name} is declared non-smooth but no kink was found"
        for _ in range(1000):
            bad = np.zeros(N, bool)
            for k in kinks:
                bad |= np.abs(np.broadcast_to(k(*cols), (N,))) < KINK_GAP
            if not bad.any():
                break
            for c, d in zip(cols, op.domain):
                c[bad] = DOMAINS[d](rng, int(bad.sum()))
        else:
            raise AssertionError(f"could not sample {name} away from its kinks")
    return tuple(np.ascontiguousarray(c, dtype=np.float64) for c in cols)


def test_samples_avoid_kinks():
    """The sampler keeps hinge away from t x = 1, mae from x = t, relu from 0."""
    x, t = sample_points("hinge")
    assert set(np.unique(t)) <= {-1.0, 1.0} and np.all(np.abs(t * x - 1) > KINK_GAP)
    x, t = sample_points("mae")
    assert np.all(np.abs(x - t) > KINK_GAP)
    (x,) = sample_points("relu")
    assert np.all(np.abs(x) > KINK_GAP)


@functools.lru_cache(maxsize=None)
def _mp_function(name: str, which, custom: bool):
    op = OPS[name]
    e = op.expr if which is None else op.diff(which)
    return sp.lambdify(op.inputs, _subs_params(op, e, op_params(op, custom)), modules=["mpmath"])


def sympy_values(name: str, cols, which=None, custom=False) -> np.ndarray:
    """The plain declaration (``which=None``) or ``sympy.diff`` of it with
    respect to input ``which``, evaluated by mpmath at 30 digits."""
    f = _mp_function(name, which, custom)
    out = []
    with mpmath.workdps(30):
        for k in range(len(cols[0])):
            out.append(float(f(*[mpmath.mpf(float(c[k])) for c in cols])))
    return np.array(out)


# ---------------------------------------------------------------- programs
class Tiny:
    """``y = op(x0, ..., xk)``, ``L = sum(y)`` and ``dL/dx_i``, compiled."""

    def __init__(self, name, flavor, dtype="float64", custom=False):
        op = OPS[name]
        self.op = op
        g = Graph()
        self.ins = [g.input(f"x{i}", ("N",), dtype) for i in range(op.arity)]
        self.y = g.add(name, *self.ins, name="y", **op_params(op, custom))
        self.L = g.add("sum", self.y, name="L")
        self.grad_error = None
        try:
            gg = grad(g, self.L, wrt=self.ins)
        except Exception as e:  # noqa: BLE001 (kept, re-raised by the gradient tests)
            self.grad_error = e
            self.grads = []
            self.prog = compile_graph(g, [self.y, self.L], dims={"N": N}, flavor=flavor)
        else:
            self.grads = [gg.grads[w] for w in self.ins]
            self.prog = compile_graph(gg.graph, [self.y, self.L, *self.grads], dims={"N": N},
                                      flavor=flavor)

    def run(self, cols):
        for w, c in zip(self.ins, cols):
            self.prog.inputs[w][...] = c
        self.prog.run()
        return self.prog.value(self.y).copy()

    def grad(self, i):
        if self.grad_error is not None:
            raise self.grad_error
        return self.prog.value(self.grads[i]).copy()


@functools.lru_cache(maxsize=None)
def tiny(name, flavor, dtype="float64", custom=False) -> Tiny:
    return Tiny(name, flavor, dtype, custom)


# ------------------------------------------------------------- (a) claims
@pytest.mark.parametrize("name", OP_NAMES + [op.name for op in ROWLOSSES])
def test_claims_hold(name):
    op = OPS[name]
    results = check_op(name)
    if op.kind == "elementwise":
        assert len(results) == len(op.grad_forms) + (op.stable is not None)
    else:
        assert results, f"row loss {name} has no checked claims"
    bad = {k: r for k, r in results.items() if not r.ok}
    assert not bad, f"{name}: claims fail: {bad}"


@pytest.mark.parametrize("name, i", OP_ARGS_SYMBOLIC)
def test_kernel_derivative_is_sympy_diff(name, i):
    """The derivative kernels use (a stated form, or diff of the stable
    form) equals sympy.diff of the plain declaration."""
    op = OPS[name]
    r = check_equal(op.derivative(i).subs(Y, op.expr), op.diff(i))
    assert r.ok, f"{name}.grad{i}: {r.detail}"


# ---------------------------------------------- (b) kernels against SymPy
@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("name", OP_NAMES)
def test_forward_kernel_matches_sympy(name, flavor):
    cols = sample_points(name)
    got = tiny(name, flavor).run(cols)
    want = sympy_values(name, cols)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"{name} forward")


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("name, i", OP_ARGS)
def test_backward_kernel_matches_sympy(name, i, flavor):
    cols = sample_points(name)
    t = tiny(name, flavor)
    t.run(cols)
    got = t.grad(i)
    want = sympy_values(name, cols, which=i)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"d{name}/dx{i}")


# --------------------------------------------- (c) finite differences
@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("name, i", OP_ARGS)
def test_backward_matches_finite_differences(name, i, flavor):
    cols = sample_points(name)
    t = tiny(name, flavor)
    t.run(cols)
    analytic = t.grad(i)
    h = 1e-6
    plus = [c.copy() for c in cols]
    plus[i] = plus[i] + h
    minus = [c.copy() for c in cols]
    minus[i] = minus[i] - h
    numeric = (t.run(plus) - t.run(minus)) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=f"d{name}/dx{i}")


# ------------------------------------------------------- (d) PyTorch
def torch_refs():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    return {
        "identity": lambda x: x * 1,
        "step": lambda x: (x > 0).to(x.dtype),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "leaky_relu": lambda x, alpha: F.leaky_relu(x, alpha),
        "elu": lambda x, alpha: F.elu(x, alpha),
        "softplus": F.softplus,
        "gelu": F.gelu,
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "gelu_sigmoid": lambda x: x * torch.sigmoid(1.702 * x),
        "selu": F.selu,
        "silu": F.silu,
        "softsign": F.softsign,
        "log_sigmoid": F.logsigmoid,
        "add": torch.add,
        "sub": torch.sub,
        "mul": torch.mul,
        "div": torch.div,
        "neg": torch.neg,
        "exp": torch.exp,
        "log": torch.log,
        "pow": torch.pow,
        "sqrt": torch.sqrt,
        "square": torch.square,
        "abs": torch.abs,
        "mse": lambda x, t: (x - t) ** 2,
        "mae": lambda x, t: torch.abs(x - t),
        "bce_logits": lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction="none"),
        "hinge": lambda x, t: torch.relu(1 - t * x),
    }


#: Ops whose PyTorch reference has no gradient (compared forward only).
TORCH_FORWARD_ONLY = {"step"}


def torch_eval(name, cols, params, dtype="float64"):
    """PyTorch's values and gradients of ``sum(op(...))`` (float64)."""
    import torch
    refs = torch_refs()
    if name not in refs:
        pytest.fail(f"op {name} has no PyTorch reference: add one to TORCH_REFS in tests/test_ops.py")
    xs = [torch.tensor(np.asarray(c, dtype=np.float64), requires_grad=name not in TORCH_FORWARD_ONLY)
          for c in cols]
    y = refs[name](*xs, **params)
    if name in TORCH_FORWARD_ONLY:
        return y.detach().numpy(), None
    grads = torch.autograd.grad(y.sum(), xs, allow_unused=True)
    grads = [np.zeros(len(cols[0])) if gr is None else gr.numpy() for gr in grads]
    return y.detach().numpy(), grads


def test_every_op_has_a_torch_reference():
    refs = torch_refs()
    missing = [n for n in OP_NAMES if n not in refs]
    assert not missing, f"ops without a PyTorch reference in TORCH_REFS: {missing}"


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("name, custom", _with_custom([pytest.param(n, id=n) for n in OP_NAMES]))
def test_forward_matches_torch(name, custom, flavor):
    op = OPS[name]
    params = op_params(op, custom)
    cols = sample_points(name, custom)
    want, _ = torch_eval(name, cols, params)
    got = tiny(name, flavor, custom=custom).run(cols)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"{name} {params}")


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("name, i, custom", _with_custom(OP_ARGS))
def test_backward_matches_torch(name, i, custom, flavor):
    if name in TORCH_FORWARD_ONLY:
        # no PyTorch gradient to compare with; the derivative is 0 a.e.
        t = tiny(name, flavor, custom=custom)
        t.run(sample_points(name, custom))
        assert np.all(t.grad(i) == 0.0)
        return
    op = OPS[name]
    params = op_params(op, custom)
    cols = sample_points(name, custom)
    _, want = torch_eval(name, cols, params)
    t = tiny(name, flavor, custom=custom)
    t.run(cols)
    np.testing.assert_allclose(t.grad(i), want[i], rtol=1e-10, atol=1e-12,
                               err_msg=f"d{name}/dx{i} {params}")


# ------------------------------------------------- (e) kink conventions
@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("custom", [False, True])
def test_kink_conventions(flavor, custom):
    """PyTorch's conventions at the kinks, exactly, through the compiled
    backward kernels: relu'(0) = 0, leaky_relu'(0) = α, abs'(0) = 0,
    mae'(x = t) = 0, hinge'(t x = 1) = 0."""
    zeros = [np.zeros(N)]
    t = tiny("relu", flavor, custom=custom)
    t.run(zeros)
    assert np.all(t.grad(0) == 0.0)

    alpha = op_params(OPS["leaky_relu"], custom)["alpha"]
    t = tiny("leaky_relu", flavor, custom=custom)
    t.run(zeros)
    assert np.all(t.grad(0) == alpha)

    t = tiny("abs", flavor, custom=custom)
    t.run(zeros)
    assert np.all(t.grad(0) == 0.0)

    x = np.linspace(-2, 2, N)
    t = tiny("mae", flavor, custom=custom)
    t.run([x, x.copy()])
    assert np.all(t.grad(0) == 0.0) and np.all(t.grad(1) == 0.0)

    s = np.where(np.arange(N) % 2 == 0, 1.0, -1.0)
    t = tiny("hinge", flavor, custom=custom)
    t.run([s.copy(), s])  # t * x = 1 exactly
    assert np.all(t.grad(0) == 0.0) and np.all(t.grad(1) == 0.0)


def test_kink_conventions_agree_with_torch():
    """The same points through PyTorch: the conventions really are its."""
    refs = torch_refs()
    z = [np.zeros(N)]
    for name, cols, params in [("relu", z, {}), ("leaky_relu", z, {"alpha": 0.01}),
                               ("abs", z, {}), ("mae", [np.ones(N), np.ones(N)], {}),
                               ("hinge", [np.ones(N), np.ones(N)], {})]:
        assert name in refs
        _, want = torch_eval(name, cols, params)
        t = tiny(name, "numba")
        t.run(cols)
        for i, w in enumerate(want):
            np.testing.assert_array_equal(t.grad(i), w, err_msg=f"{name}'{i} at the kink")


# ------------------------------------------------------- (f) row losses
ROW_CASES = [
    ("softmax_cross_entropy", "index", {"epsilon": 0.0}),
    ("softmax_cross_entropy", "index", {"epsilon": 0.1}),
    ("softmax_cross_entropy", "dense", {"epsilon": 0.0}),
    ("softmax_cross_entropy", "dense", {"epsilon": 0.1}),
    ("nll", "index", {}),
    ("nll", "dense", {}),
    ("multi_hinge", "index", {"margin": 1.0}),
    ("multi_hinge", "index", {"margin": 0.5}),
    ("multi_hinge", "onehot", {"margin": 1.0}),
]
RN, RC = 5, 4


def _row_id(case):
    name, labels, params = case
    return "-".join([name, labels] + [f"{k}={v}" for k, v in params.items()])


def test_every_row_loss_has_cases():
    assert {op.name for op in ROWLOSSES} <= {c[0] for c in ROW_CASES}


class RowProgram:
    def __init__(self, name, labels, params, flavor, dtype="float64", n=RN, c=RC):
        g = Graph()
        self.z = g.input("z", ("N", c), dtype)
        if labels == "index":
            self.lab = g.input("lab", ("N",), "int64")
        else:
            self.lab = g.input("lab", ("N", c), dtype)
        self.r = g.add(name, self.z, self.lab, name="r", **params)
        self.L = g.add("sum", self.r, name="L")
        gg = grad(g, self.L, wrt=[self.z])
        self.dz = gg.grads[self.z]
        self.prog = compile_graph(gg.graph, [self.r, self.L, self.dz], dims={"N": n}, flavor=flavor)

    def run(self, z, lab):
        self.prog.inputs[self.z][...] = z
        self.prog.inputs[self.lab][...] = lab
        self.prog.run()
        return self.prog.value(self.r).copy(), self.prog.value(self.dz).copy()


@functools.lru_cache(maxsize=None)
def row_program(name, labels, params: tuple, flavor, dtype="float64", n=RN, c=RC):
    return RowProgram(name, labels, dict(params), flavor, dtype, n, c)


def row_data(name, labels, params, seed=0):
    """Logits, labels (int or dense) and the integer classes, kinks avoided."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, RC, RN)
    y[:RC] = np.arange(RC)  # every class appears
    z = rng.normal(size=(RN, RC))
    if name == "nll":
        z = z - np.log(np.exp(z).sum(1, keepdims=True))  # log-probabilities
    if name == "multi_hinge":
        m = params["margin"]
        for _ in range(1000):
            gap = np.abs(z - z[np.arange(RN), y][:, None] + m)
            gap[np.arange(RN), y] = 1.0
            if gap.min() > KINK_GAP:
                break
            z = rng.normal(size=(RN, RC))
    if labels == "index":
        lab = y
    elif labels == "onehot":
        lab = np.eye(RC)[y]
    else:
        lab = rng.dirichlet(np.ones(RC), RN)
    return z, lab, y


def torch_row(name, labels, params, z, lab):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    lt = torch.tensor(lab, dtype=torch.int64 if labels == "index" else torch.float64)
    if name == "softmax_cross_entropy":
        r = F.cross_entropy(zt, lt, label_smoothing=params["epsilon"], reduction="none")
    elif name == "nll":
        r = F.nll_loss(zt, lt, reduction="none") if labels == "index" else -(lt * zt).sum(1)
    elif name == "multi_hinge":
        target = lt if labels == "index" else lt.argmax(1)
        # PyTorch divides by the number of classes C; symdl sums
        r = F.multi_margin_loss(zt, target, margin=params["margin"], reduction="none") * z.shape[1]
    else:
        pytest.fail(f"row loss {name} has no PyTorch reference in torch_row")
    (dz,) = torch.autograd.grad(r.sum(), [zt])
    return r.detach().numpy(), dz.numpy()


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("case", ROW_CASES, ids=_row_id)
def test_row_loss_matches_torch(case, flavor):
    name, labels, params = case
    z, lab, _ = row_data(name, labels, params)
    want_r, want_dz = torch_row(name, labels, params, z, lab)
    r, dz = row_program(name, labels, tuple(params.items()), flavor).run(z, lab)
    np.testing.assert_allclose(r, want_r, rtol=1e-12, atol=1e-12, err_msg=f"{case} loss")
    np.testing.assert_allclose(dz, want_dz, rtol=1e-12, atol=1e-12, err_msg=f"{case} gradient")


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("case", ROW_CASES, ids=_row_id)
def test_row_loss_finite_differences(case, flavor):
    """Central differences of sum(loss) along random directions of z."""
    name, labels, params = case
    z, lab, _ = row_data(name, labels, params, seed=1)
    p = row_program(name, labels, tuple(params.items()), flavor)
    _, dz = p.run(z, lab)
    rng = np.random.default_rng(2)
    h = 1e-6
    for _ in range(3):
        v = rng.normal(size=z.shape)
        numeric = (p.run(z + h * v, lab)[0].sum() - p.run(z - h * v, lab)[0].sum()) / (2 * h)
        np.testing.assert_allclose(np.vdot(dz, v), numeric, rtol=1e-6, atol=1e-8, err_msg=str(case))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_int_and_onehot_labels_agree(flavor):
    for name, params in [("softmax_cross_entropy", (("epsilon", 0.1),)), ("nll", ()),
                         ("multi_hinge", (("margin", 1.0),))]:
        z, y, _ = row_data(name, "index", dict(params) or {"margin": 1.0})
        a = row_program(name, "index", params, flavor).run(z, y)
        b = row_program(name, "onehot" if name == "multi_hinge" else "dense", params,
                        flavor).run(z, np.eye(RC)[y])
        np.testing.assert_allclose(a[0], b[0], rtol=1e-13, atol=1e-14, err_msg=name)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-13, atol=1e-14, err_msg=name)


# ---------------------------------------------------- (g) large logits
LARGE = np.array([1e3, -1e3, 1e4, -1e4, 1e3, -1e3, 1e4, -1e4, 0.0])
SECOND = {"unit": np.array([0, 0, 0, 0, 1, 1, 1, 1, 0.5]),
          "sign": np.array([1, 1, 1, 1, -1, -1, -1, -1, 1.0])}
LARGE_EW = ["bce_logits", "softplus", "sigmoid", "log_sigmoid", "silu", "hinge"]
DTYPES = ["float64", "float32"]


def _strict_run(fn):
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LARGE_EW)
def test_large_logits_elementwise(name, dtype):
    op = OPS[name]
    cols = [LARGE] + [SECOND[d] for d in op.domain[1:]]
    t = tiny(name, "numba", dtype)
    y = _strict_run(lambda: t.run([c.astype(dtype) for c in cols]))
    grads = [t.grad(i) for i in range(op.arity)]
    assert np.all(np.isfinite(y)), f"{name} {dtype}: {y}"
    for gr in grads:
        assert np.all(np.isfinite(gr)), f"{name} {dtype}: gradient {gr}"
    want, want_g = torch_eval(name, cols, op_params(op, False))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y, want, **tol, err_msg=f"{name} {dtype}")
    for i, (gr, w) in enumerate(zip(grads, want_g)):
        np.testing.assert_allclose(gr, w, **tol, err_msg=f"d{name}/dx{i} {dtype}")


LARGE_Z = np.array([[1e3, -1e3, 0.0], [-1e3, 1e3, 0.5], [1e4, -1e4, 0.0], [-1e4, 0.0, 1e4]])
LARGE_Y = np.array([1, 0, 2, 0])


LARGE_ROW_CASES = [("softmax_cross_entropy", "index", (("epsilon", 0.0),)),
                   ("softmax_cross_entropy", "index", (("epsilon", 0.1),)),
                   ("softmax_cross_entropy", "dense", (("epsilon", 0.1),)),
                   ("nll", "index", ())]


@pytest.mark.parametrize("case, dtype", [
    pytest.param(c, dt, id=_row_id((c[0], c[1], dict(c[2]))) + "-" + dt)
    for c in LARGE_ROW_CASES for dt in DTYPES
    if dt == "float64" or c[1] == "index"])  # float32 dense: same code as float64 dense
def test_large_logits_row_losses(case, dtype):
    name, labels, params = case
    n, c = LARGE_Z.shape
    lab = LARGE_Y if labels == "index" else np.eye(c)[LARGE_Y]
    p = row_program(name, labels, params, "numba", dtype, n, c)
    r, dz = _strict_run(lambda: p.run(LARGE_Z.astype(dtype), lab))
    assert np.all(np.isfinite(r)) and np.all(np.isfinite(dz)), (r, dz)
    want_r, want_dz = torch_row(name, labels, dict(params), LARGE_Z, lab)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(r, want_r, **tol)
    np.testing.assert_allclose(dz, want_dz, **tol)


# ----------------------------------------------------- (h) wrong claims
def test_wrong_claims_are_rejected():
    x = sp.Symbol("x", real=True)
    sig = OPS["sigmoid"]
    assert not check_equal((Y * (1 + Y)).subs(Y, sig.expr), sig.diff(0)).ok
    assert check_equal((Y * (1 - Y)).subs(Y, sig.expr), sig.diff(0)).ok
    # a "stable" softplus that forgot the absolute value
    assert not check_equal(sp.Max(x, 0) + sp.log(1 + sp.exp(-x)), OPS["softplus"].expr).ok
    assert not check_equal(1 + Y**2, 1 - Y**2).ok
    assert not check_equal((1 + Y**2).subs(Y, sp.tanh(x)), OPS["tanh"].diff(0)).ok


@pytest.mark.parametrize("name", [op.name for op in ELEMENTWISE if op.grad_forms or op.stable is not None])
def test_perturbed_claims_are_rejected(name):
    """Each op's stated forms, off by a little, fail the check."""
    op = OPS[name]
    if op.stable is not None:
        assert not check_equal(op.stable + sp.Rational(1, 1000), op.expr).ok
    for i, form in op.grad_forms.items():
        wrong = form.subs(Y, op.expr) * (1 + sp.Rational(1, 1000))
        if op.diff(i).equals(0):
            wrong = wrong + sp.Rational(1, 1000)
        assert not check_equal(wrong, op.diff(i)).ok, f"{name}: wrong d/dx{i} accepted"


def test_wrong_kink_value_is_rejected():
    x = sp.Symbol("x", real=True)
    relu = OPS["relu"]
    # Heaviside(x) is 1/2 at 0, relu'(0) = 0 by the declared convention
    assert not check_equal(sp.Heaviside(x), relu.diff(0)).ok
    assert not check_equal(sp.Piecewise((1, x >= 0), (0, True)), relu.diff(0)).ok


def test_claim_check_skips_undefined_points_but_never_passes_on_them():
    """A point where a side is undefined (nan) tells nothing; one where the sides
    differ fails; a claim undefined everywhere is not proven."""
    import sympy as sp

    from symdl.ops.claims import check_equal
    x = sp.Symbol("x")
    assert check_equal(sp.Abs(x) / x, sp.sign(x)).ok          # undefined only at 0
    assert not check_equal(sp.Abs(x) / x, -sp.sign(x)).ok
    bad = check_equal(sp.nan * x, 0)
    assert not bad.ok and "undefined" in bad.detail
