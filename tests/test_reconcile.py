"""The notes against symdl: every verdict is SymPy's, and each one is the right one."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from symdl.backends.numpy_backend import compile_graph
from symdl.derive import grad
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.optim.reconcile import (RECONCILIATIONS, _decide, reconcile, reconciliations, same,
                                   to_latex)

EXPECTED = {"nesterov": "equal after substitution", "l2": "equal after renaming",
            "label_smoothing": "different", "nadam": "different", "adam": "different",
            "momentum": "equal", "elu": "different", "gru": "equal after renaming"}


def test_every_listed_difference_has_an_entry():
    assert set(RECONCILIATIONS) == set(EXPECTED)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_verdict(key):
    r = reconcile(key)
    assert r.verdict == EXPECTED[key]
    assert r.notes and r.symdl and r.sentence
    tex = to_latex(r)
    assert f"SymPy's verdict: {r.verdict}" in tex and "torch" in tex.lower()
    assert "**" not in tex and "Piecewise" not in tex


def test_decide_is_not_typed_it_follows_the_expressions():
    a, b, c = sp.symbols("a b c", real=True)
    assert _decide([a + b], [b + a])[0] == "equal"
    assert _decide([a - 2 * b], [b - 2 * a], groups=[(a,), (b,)]) == ("equal after renaming",
                                                                      {a: b, b: a})
    assert _decide([a - 2 * b], [b - 3 * a], groups=[(a,), (b,)])[0] == "different"
    assert same(sp.sin(a) ** 2 + sp.cos(a) ** 2, 1) and not same(sp.exp(a), 1 + a)


def test_l2_renaming_is_eta_to_alpha_and_alpha_to_lambda():
    r = reconcile("l2")
    assert {k.name: v.name for k, v in r.mapping.items()} == {"eta": "alpha", "alpha": "lambda"}


def test_label_smoothing_sums_and_symdl_s_target_is_what_its_op_computes():
    r = reconcile("label_smoothing")
    eps = sp.Symbol("varepsilon", real=True)
    (_, notes), (_, ours) = r.notes[0], r.symdl[0]
    assert sp.expand(sum(notes)) == 1 - eps / 4 and sp.expand(sum(ours)) == 1
    # the compiled cross-entropy's gradient at z = 0 is 1/K - t: read t back, K = 4
    g = Graph()
    z, y = g.input("z", ("N", 4), "float64"), g.input("y", ("N",), "int64")
    L = g.add("sum", g.add("softmax_cross_entropy", z, y, epsilon=0.2), name="L")
    gg = grad(g, L, wrt=["z"])
    prog = compile_graph(gg.graph, [gg.grads["z"]], dims={"N": 1}, flavor="numpy")
    prog.inputs["z"][...] = 0.0
    prog.inputs["y"][...] = 0
    prog.run()
    target = 0.25 - prog.value(gg.grads["z"])[0]
    np.testing.assert_allclose(target, [float(v.subs(eps, 0.2)) for v in ours], atol=1e-12)


def test_nadam_and_adam_witnesses():
    nadam = reconcile("nadam")
    ratio = nadam.witness[0][1]
    b1, t = sp.Symbol("beta1", real=True), sp.Symbol("t", integer=True, positive=True)
    assert same(ratio, (1 - b1 ** (t + 1)) / (1 - b1 ** t))
    assert nadam.witness[1][1] == 9 and abs(float(nadam.witness[2][1]) - 0.5645) < 1e-3
    adam = reconcile("adam")
    lr = sp.Symbol("lr", real=True)
    assert same(adam.witness[0][1], lr / (1 - b1 ** t))


def test_elu_agrees_only_at_alpha_one():
    r = reconcile("elu")
    assert r.witness[0][1] == sp.FiniteSet(1)


def test_nesterov_substitution_is_the_look_ahead_point():
    r = reconcile("nesterov")
    names = {k.name: v for k, v in r.mapping.items()}
    w, u, beta, eta = (sp.Symbol(n, real=True) for n in ("w_{t-1}", "u_{t-1}", "beta", "eta"))
    assert same(names[r"\theta_{t-1}"], w - beta * u) and same(names["b_{t-1}"], u / eta)


def test_unknown_key_is_a_usage_error():
    with pytest.raises(UsageError, match="known"):
        reconcile("adagrad")


def test_all_at_once_is_fast_enough_for_the_gallery():
    import time
    t0 = time.process_time()
    assert len(reconciliations()) == len(EXPECTED)
    assert time.process_time() - t0 < 10
