"""SELU's constants, GELU's sigmoid form, maxout, softmax's Jacobian, Xavier's 1/n,
line search, data augmentation and bagging (library and CLI)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import sympy as sp

from symdl.backends.numpy_backend import compile_graph
from symdl.cli import main
from symdl.data import load_digits
from symdl.data.augment import augment, parse_augment, rotate, shift
from symdl.derive import grad
from symdl.derive.jacobian import softmax_jacobian
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.nn import Maxout, Softmax, make_model
from symdl.nn.init import variance, xavier_variances
from symdl.ops import OPS
from symdl.ops.elementwise import SELU_ALPHA, SELU_CLOSED_FORMS, SELU_LAMBDA
from symdl.optim import SGD
from symdl.optim.line_search import ModelLoss, armijo, descend, grid_search
from symdl.train import Trainer
from symdl.train.ensemble import bagging, bootstrap

torch = pytest.importorskip("torch")


# ------------------------------------------------------------------ ops
def test_selu_constants_are_the_closed_forms_to_40_digits():
    alpha, lam = (c.evalf(45) for c in SELU_CLOSED_FORMS)
    assert abs(alpha - SELU_ALPHA) < sp.Float("1e-39", 45)
    assert abs(lam - SELU_LAMBDA) < sp.Float("1e-39", 45)
    # and PyTorch's (double) constants round to the same doubles
    x = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    want = [float(SELU_LAMBDA * SELU_ALPHA * (sp.exp(-1) - 1)), float(2 * SELU_LAMBDA)]
    np.testing.assert_allclose(torch.nn.functional.selu(x).numpy(), want, rtol=1e-15)


def test_gelu_sigmoid_is_x_sigma_1702x_and_close_to_gelu():
    op = OPS["gelu_sigmoid"]
    (x,) = op.inputs
    assert sp.simplify(op.expr - x * (1 / (1 + sp.exp(-sp.Rational(1702, 1000) * x)))) == 0
    z = np.linspace(-6, 6, 1201)
    f = sp.lambdify(x, op.expr, "numpy")(z)
    gelu = torch.nn.functional.gelu(torch.tensor(z)).numpy()
    err = np.abs(f - gelu).max()
    assert 0.01 < err < 0.03  # the approximation is visible, and small


# ------------------------------------------------------------------ maxout, softmax
def _run(module, X, dtype="float64"):
    g = Graph()
    x = g.input("x", ("N", X.shape[1]), dtype)
    y = module.build(g, x)
    L = g.add("sum", g.add("square", y), name="L")
    names = [n for n, _ in module.named_parameters()]
    gg = grad(g, L, ["x", *names])
    prog = compile_graph(gg.graph, [y, L] + [gg[w] for w in ["x", *names]],
                         bind={n: p.data for n, p in module.named_parameters()},
                         dims={"N": len(X)}, flavor="numpy")
    prog.inputs["x"][...] = X
    prog.run()
    return prog.value(y).copy(), float(prog.value(L)), {w: prog.value(gg[w]).copy()
                                                          for w in ["x", *names]}


def test_maxout_against_torch_finite_differences_and_sympy():
    m = Maxout(3, 2, pieces=3, rng=np.random.default_rng(1), dtype="float64")
    X = np.random.default_rng(2).normal(size=(5, 3))
    y, L, grads = _run(m, X)
    tx = torch.tensor(X, requires_grad=True)
    tW, tb = (torch.tensor(a, requires_grad=True) for a in (m.W.data, m.b.data))
    ty = (tx @ tW.T + tb).view(5, 2, 3).max(-1).values
    (ty ** 2).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-14)
    for name, t in (("x", tx), ("W", tW), ("b", tb)):
        np.testing.assert_allclose(grads[name], t.grad.numpy(), atol=1e-12, err_msg=name)
    # finite differences of the loss in one weight
    h, W0 = 1e-6, m.W.data.copy()
    m.W.data[4, 1] = W0[4, 1] + h
    up = _run(m, X)[1]
    m.W.data[4, 1] = W0[4, 1] - h
    down = _run(m, X)[1]
    m.W.data[...] = W0
    assert abs((up - down) / (2 * h) - grads["W"][4, 1]) < 1e-6
    # SymPy: row 0, unit 0 is Max of three affine pieces; its exact derivative
    xs = [sp.Float(v, 30) for v in X[0]]
    pieces = [sum(sp.Float(m.W.data[k, j], 30) * xs[j] for j in range(3)) + sp.Float(m.b.data[k], 30)
              for k in range(3)]
    wsym = sp.Symbol("w", real=True)
    k_best = int(np.argmax([float(p) for p in pieces]))
    expr = sp.Max(*[p + (wsym * xs[0] if k == k_best else 0) for k, p in enumerate(pieces)]) ** 2
    exact = float(sp.diff(expr, wsym).subs(wsym, 0))
    assert abs(exact - 2 * y[0, 0] * X[0, 0]) < 1e-12


def test_softmax_jacobian_is_derived_and_verified():
    for k in (2, 3, 4):
        j = softmax_jacobian(k)
        assert j.verified and j.in_outputs == j.stated
    s = softmax_jacobian(3)
    assert s.derived[0, 1].has(sp.exp)  # derived in the exponentials, not typed
    with pytest.raises(UsageError):
        softmax_jacobian(0)


def test_softmax_layer_matches_torch():
    X = np.random.default_rng(3).normal(size=(4, 5))
    y, _, grads = _run(Softmax(), X)
    tx = torch.tensor(X, requires_grad=True)
    ty = torch.softmax(tx, -1)
    (ty ** 2).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-14)
    np.testing.assert_allclose(grads["x"], tx.grad.numpy(), atol=1e-14)


# ------------------------------------------------------------------ init
def test_xavier_one_over_n_beside_the_compromise():
    v = xavier_variances((10, 30))  # fan_out 10, fan_in 30
    assert v == {"1/n_in": 1 / 30, "1/n_out": 1 / 10, "2/(n_in+n_out)": 2 / 40}
    n_in, n_out = sp.symbols("n_in n_out", positive=True)
    sym = xavier_variances((n_out, n_in))
    # the compromise is the harmonic mean of the two 1/n variances
    assert sp.simplify(sym["2/(n_in+n_out)"] - 2 / (1 / sym["1/n_in"] + 1 / sym["1/n_out"])) == 0
    assert variance("lecun_normal", (4, 8)) == 1 / 8


# ------------------------------------------------------------------ line search
def test_armijo_on_a_quadratic_and_bad_input():
    res = armijo(lambda w: float(w @ w), np.array([3.0]), np.array([6.0]))
    assert res.lr == 0.5 and res.f1 == 0.0 and res.tries == 2
    with pytest.raises(UsageError, match="no sufficient decrease"):
        armijo(lambda w: float(w @ w), np.array([3.0]), np.array([-6.0]), max_tries=5)
    with pytest.raises(UsageError):
        armijo(lambda w: 0.0, np.zeros(1), np.zeros(1), c=2.0)


def test_model_loss_gradient_and_descent():
    tr = load_digits("train")
    spec = make_model("mlp", 64, 10, (16,), "tanh", np.random.default_rng(0), "float64")
    ml = ModelLoss(spec.module, tr.X[:200], tr.y[:200], spec.loss, spec.loss_params)
    w = ml.get()
    g = ml.gradient(w)
    for i in (0, 7, len(w) - 1):
        e = np.zeros_like(w)
        e[i] = 1e-6
        assert abs((ml(w + e) - ml(w - e)) / 2e-6 - g[i]) < 1e-7
    steps = descend(ml, 8, lr0=4.0)
    losses = [steps[0].f0] + [s.f1 for s in steps]
    assert all(b < a for a, b in zip(losses, losses[1:]))  # Armijo: every step decreases
    assert all(s.f1 <= s.f0 + 1e-4 * s.lr * s.slope for s in steps)


def test_grid_search_picks_the_best_finite_score():
    best, scores = grid_search(lambda r: -abs(np.log10(r) + 1) if r < 5 else float("nan"),
                               [1e-3, 1e-2, 1e-1, 1.0, 10.0])
    assert best == 0.1 and len(scores) == 5
    with pytest.raises(UsageError):
        grid_search(lambda r: 0.0, [0.0])


# ------------------------------------------------------------------ augmentation
def test_shift_and_rotate_move_pixels_where_they_should():
    X = np.zeros((1, 64))
    X[0, 2 * 8 + 5] = 1.0
    assert shift(X, 1, 2).reshape(8, 8)[4, 6] == 1.0 and shift(X, 1, 2).sum() == 1.0
    assert shift(X, 3, 0).sum() == 0.0  # pushed out of the image
    R = rotate(X, 90).reshape(8, 8)
    assert np.argwhere(R > 0.999).tolist() == [[2, 2]]  # counter-clockwise about the centre
    np.testing.assert_allclose(rotate(X, 0), X)
    np.testing.assert_allclose(rotate(rotate(X, 90), -90), X, atol=1e-12)


def test_augment_is_seeded_keeps_labels_and_rejects_bad_specs():
    tr = load_digits("train")
    a = augment(tr, "copies=2,noise=0.05", rng=0)
    b = augment(tr, "copies=2,noise=0.05", rng=0)
    c = augment(tr, "copies=2,noise=0.05", rng=1)
    assert len(a) == 3 * len(tr) and np.array_equal(a.X, b.X) and not np.array_equal(a.X, c.X)
    np.testing.assert_array_equal(a.y, np.tile(tr.y, 3))
    np.testing.assert_array_equal(a.X[:len(tr)], tr.X)
    assert a.X.dtype == tr.X.dtype
    for bad in ("copies=0", "shift=x", "size=3", "noise=-1"):
        with pytest.raises(UsageError):
            parse_augment(bad)
    with pytest.raises(UsageError, match="square"):
        augment(load_digits("train").__class__(np.zeros((3, 5)), np.zeros(3, int), 2), "copies=1")


# ------------------------------------------------------------------ bagging
def _member(i, ss):
    spec = make_model("logreg", 64, 10, rng=np.random.default_rng(ss))
    return Trainer(spec.module, lambda ps: SGD(ps, lr=0.05, momentum=0.9), spec.loss,
                   spec.loss_params, 32, 3, seed=ss, progress=False)


def test_bootstrap_and_bagging():
    idx = bootstrap(1000, np.random.default_rng(0))
    assert len(idx) == 1000 and 0.55 < len(np.unique(idx)) / 1000 < 0.7  # about 1 - 1/e
    tr, te = load_digits("train"), load_digits("test")
    ens = bagging(_member, tr, 3, seed=0)
    again = bagging(_member, tr, 3, seed=0)
    probs = ens.predict(te.X)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(probs, again.predict(te.X))
    assert not np.array_equal(ens.samples[0], ens.samples[1])
    accs = ens.member_accuracies(te)
    assert ens.accuracy(te) == float(np.mean(probs.argmax(1) == te.y)) and len(accs) == 3
    with pytest.raises(UsageError):
        bagging(_member, tr, 0)


def test_cli_augment_and_ensemble(capsys):
    assert main(["train", "--model", "logreg", "--epochs", "2", "--ensemble", "3",
                 "--augment", "copies=1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["members"] == 3 and len(out["member_test_accuracy"]) == 3
    assert 0.5 < out["ensemble_test_accuracy"] <= 1.0
    assert main(["train", "--epochs", "1", "--augment", "copies=x"]) == 2
    assert "copies must be a number" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--plot", "curves.png"], ["--resume", "somewhere"],
                                   ["--checkpoint", "ck"]])
def test_ensemble_refuses_one_run_options(extra, capsys, tmp_path, monkeypatch):
    """An option that --ensemble would ignore is an error naming it, not silence."""
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--dataset", "xor", "--epochs", "1", "--ensemble", "2", *extra])
    err = capsys.readouterr().err
    assert code == 2 and extra[0] in err and "not supported" in err
    assert not (tmp_path / "curves.png").exists() and not (tmp_path / "ck").exists()
