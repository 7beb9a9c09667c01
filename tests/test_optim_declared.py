"""Optimizers declared once: a new optimizer (Lion) is one declaration in this file, and trains;
the built-ins' signatures and defaults come from their rules and agree with torch.optim;
``p.grad = g`` and ``p.data = d`` write through into the arrays the optimizer and programs use."""
from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import sympy as sp

from symdl.cli import main
from symdl.errors import UsageError
from symdl.nn.parameter import Parameter, ParamPack
from symdl.ops.registry import real
from symdl.optim import OPTIMIZERS, SGD, Adam, AdamW, NAdam, declare_optimizer
from symdl.optim.base import update_kernel_source
from symdl.optim.derivation import rule_latex, rule_text
from symdl.optim.listing import optim_listing
from symdl.optim.rules import UpdateRule, g, p

torch = pytest.importorskip("torch")


# ------------------------------------------------ a new optimizer: one declaration
def declare_lion():
    """Lion (Chen et al. 2023), the whole of it: the rule, then one call."""
    lr, beta1, beta2, wd, m, c = real("lr beta1 beta2 weight_decay m c")
    rule = UpdateRule(
        "lion",
        ((c, beta1 * m + (1 - beta1) * g),
         (p, p - lr * (sp.sign(c) + wd * p)),
         (m, beta2 * m + (1 - beta2) * g)),
        state=(m,), hyper={lr: 1e-4, beta1: 0.9, beta2: 0.99, wd: 0.0},
        doc="Lion: the sign of an interpolated momentum")
    return declare_optimizer("lion", rule)


@pytest.fixture
def Lion():
    cls = declare_lion()
    yield cls
    del OPTIMIZERS["lion"]


def torch_lion(init, grads, lr, betas, weight_decay):
    """Lion as lion-pytorch writes it, in float64 torch tensors."""
    params = [torch.tensor(a.copy()) for a in init]
    moms = [torch.zeros_like(q) for q in params]
    for gs in grads:
        for q, m, gr in zip(params, moms, gs):
            gr = torch.tensor(gr)
            q.mul_(1 - lr * weight_decay)
            q.add_(torch.sign(m * betas[0] + gr * (1 - betas[0])), alpha=-lr)
            m.mul_(betas[1]).add_(gr, alpha=1 - betas[1])
    return [q.numpy() for q in params]


def test_lion_is_registered_with_its_signature_and_checks(Lion):
    assert OPTIMIZERS["lion"] is Lion and Lion.__name__ == "Lion" and list(OPTIMIZERS)[-1] == "lion"
    assert str(inspect.signature(Lion)) == "(params, lr=0.0001, betas=(0.9, 0.99), weight_decay=0.0)"
    assert "Lion(params, lr=0.0001, betas=(0.9, 0.99), weight_decay=0.0)" in Lion.__doc__
    w = [Parameter(np.zeros(3), "w")]
    assert Lion(w, lr=0.1, betas=(0.8, 0.9)).hyper == {"lr": 0.1, "beta1": 0.8, "beta2": 0.9,
                                                       "weight_decay": 0.0}
    for kw, message in [(dict(betas=(1.5, 0.9)), "invalid beta1"), (dict(lr=-1), "invalid lr"),
                        (dict(momentum=0.9), "no hyperparameter 'momentum'"),
                        (dict(betas=0.9), "betas must be a pair")]:
        with pytest.raises(UsageError, match=message):
            Lion(w, **kw)
    with pytest.raises(UsageError, match="declared twice"):
        declare_lion()


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
def test_lion_matches_torch_formula_float64(Lion, packed):
    rng = np.random.default_rng(7)
    shapes = [(3, 4), (5,), (2, 1, 3)]
    init = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(100)]
    params = [Parameter(a.copy(), f"w{i}") for i, a in enumerate(init)]
    if packed:
        ParamPack(params)
    opt = Lion(params, lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)
    assert opt.flat == packed and [s.name for s in opt.rule.state] == ["m"]
    for gs in grads:
        for q, gr in zip(params, gs):
            q.grad = gr  # write-through (the PyTorch habit)
        opt.step()
    ref = torch_lion(init, grads, 0.01, (0.8, 0.95), 0.1)
    for q, r, a0 in zip(params, ref, init):
        assert np.abs(r - a0).max() > 0.1
        np.testing.assert_allclose(q.data, r, rtol=1e-12, atol=1e-14)


def test_lion_prints_lists_its_kernels_and_trains_from_the_cli(Lion, capsys):
    text = rule_text("lion")
    assert "cₜ = (1 - β₁) gₜ + β₁ mₜ₋₁" in text and "θₜ = θₜ₋₁ - α (λ θₜ₋₁ + sign(cₜ))" in text, text
    assert r"\theta_{t} &= \theta_{t-1} - \alpha \left(\lambda \theta_{t-1} + \operatorname{sign}" \
        in rule_latex("lion")
    assert [label for label, _ in Lion.variants()] == ["lion"]
    listing = optim_listing()
    assert {"numba/optim_lion.py", "numpy/optim_lion.py"} <= set(listing)
    assert "def lion_32(" in listing["numba/optim_lion.py"]
    assert main(["derive", "--optimizer", "lion"]) == 0
    assert "sign(cₜ)" in capsys.readouterr().out
    code = main(["train", "--dataset", "xor", "--optimizer", "lion", "--lr", "0.02",
                 "--epochs", "40", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["train_loss"][-1] < 0.5 * summary["train_loss"][0]


# ------------------------------------------- the built-ins: declared once, torch's API
TORCH_NAMES = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adadelta": "Adadelta",
               "adam": "Adam", "adamw": "AdamW", "adamax": "Adamax", "nadam": "NAdam"}


@pytest.mark.parametrize("name", list(TORCH_NAMES))
def test_signature_is_torch_and_defaults_are_the_rules(name):
    cls = OPTIMIZERS[name]
    ours = dict(inspect.signature(cls).parameters)
    theirs = dict(inspect.signature(getattr(torch.optim, TORCH_NAMES[name])).parameters)
    assert list(ours) == [n for n in theirs if n in ours]  # torch's names, in torch's order
    for n, par in ours.items():
        if n == "params" or (name, n) == ("sgd", "lr"):  # torch's SGD default lr moved to 1e-3
            continue
        assert par.default == theirs[n].default, n
    # each default is the one in the rule's hyper dict (in every form of the rule that has it)
    for _, rule in cls.variants():
        for s, d in rule.hyper.items():
            shown = ours["betas"].default[int(s.name[-1]) - 1] if s.name.startswith("beta") else \
                ours[s.name].default
            assert shown == d, (name, s.name)


def test_variant_labels_are_the_kernels_file_functions():
    assert {n: [label for label, _ in cls.variants()] for n, cls in OPTIMIZERS.items()} == {
        "sgd": ["sgd", "sgd_momentum", "sgd_nesterov"], "adagrad": ["adagrad"],
        "rmsprop": ["rmsprop", "rmsprop_momentum", "rmsprop_centered", "rmsprop_centered_momentum"],
        "adadelta": ["adadelta"], "adam": ["adam", "adam_amsgrad"], "adamw": ["adamw", "adamw_amsgrad"],
        "adamax": ["adamax"], "nadam": ["nadam", "nadam_decoupled"]}
    assert issubclass(AdamW, Adam) and AdamW.declaration.name == "adamw"


def test_positional_arguments_and_switch_checks():
    w = [Parameter(np.zeros(3), "w")]
    assert Adam(w, 0.01, (0.8, 0.9)).hyper["beta1"] == 0.8
    assert SGD(w, 0.1, 0.9).rule.state and not SGD(w, 0.1).rule.state  # momentum picks the form
    with pytest.raises(UsageError, match="at most 5 arguments"):
        SGD(w, 0.1, 0.9, 0, 0, False, 1)
    with pytest.raises(UsageError, match="Nesterov momentum requires"):
        SGD(w, lr=0.1, nesterov=True)
    with pytest.raises(UsageError, match="nesterov must be True or False"):
        SGD(w, lr=0.1, momentum=0.9, nesterov="yes")
    with pytest.raises(UsageError, match="has no option 'amsgrad'"):
        rule_text("sgd", amsgrad=True)
    assert "decoupled weight decay" in rule_text("nadam", decoupled_weight_decay=True)


@pytest.fixture
def torch_float64():
    """torch keeps NAdam's mu_product in its default dtype: float64 here."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def test_nadam_products_are_per_optimizer(torch_float64):
    """Two NAdams stepped alternately (different β₁) agree with torch; each rule evaluates
    ∏ μ_i with its own running value (a shared one would restart from i = 1 at every call)."""
    rng = np.random.default_rng(3)
    init, grads = rng.standard_normal(6), [rng.standard_normal(6) for _ in range(50)]
    ours = [Parameter(init.copy(), "a"), Parameter(init.copy(), "b")]
    opts = [NAdam([ours[0]], lr=0.01), NAdam([ours[1]], lr=0.01, betas=(0.8, 0.99))]
    theirs = [torch.tensor(init.copy(), requires_grad=True) for _ in range(2)]
    refs = [torch.optim.NAdam([theirs[0]], lr=0.01), torch.optim.NAdam([theirs[1]], lr=0.01, betas=(0.8, 0.99))]
    for gr in grads:
        for q, opt, tq, ref in zip(ours, opts, theirs, refs):
            q.grad = gr
            opt.step()
            tq.grad = torch.tensor(gr)
            ref.step()
    for q, tq in zip(ours, theirs):
        np.testing.assert_allclose(q.data, tq.detach().numpy(), rtol=1e-10, atol=1e-13)
    products = [next(e for s, e in o.rule.scalars.items() if s.name == "mu_prod").func._imp_ for o in opts]
    assert products[0] is not products[1] and products[0].t == products[1].t == 50


def test_kernel_source_per_form_is_the_declared_rule():
    """The kernels/ sources are generated from the declaration's forms (nothing listed twice)."""
    listing = optim_listing()
    assert sorted(k for k in listing if k.startswith("numba/")) == sorted(
        f"numba/optim_{n}.py" for n in OPTIMIZERS)
    for label, rule in Adam.variants():
        body = update_kernel_source(rule, "float64", "numpy").split("\n", 4)[4]
        assert body.replace("def kernel(", f"def {label}_64(") in listing["numpy/optim_adam.py"]


# ------------------------------------------------------------ write-through
def test_grad_assignment_writes_into_the_pack_and_the_step_uses_it():
    rng = np.random.default_rng(1)
    init = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]

    def run(assign):
        ps = [Parameter(a.copy(), f"w{i}") for i, a in enumerate(init)]
        pack = ParamPack(ps)
        views = [(q.data, q.grad) for q in ps]
        opt = SGD(ps, lr=0.1)
        for q, gr in zip(ps, grads):
            assign(q, gr)
        opt.step()
        assert all(q.data is d and q.grad is gr for q, (d, gr) in zip(ps, views))  # same views
        return pack, ps

    pack, by_attr = run(lambda q, gr: setattr(q, "grad", gr))
    _, by_index = run(lambda q, gr: q.grad.__setitem__(Ellipsis, gr))
    np.testing.assert_array_equal(pack.grad, np.concatenate([gr.ravel() for gr in grads]))
    for a, b, a0, gr in zip(by_attr, by_index, init, grads):
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_allclose(a.data, a0 - 0.1 * gr, rtol=1e-15)


def test_data_assignment_writes_through_unpacked_and_from_torch():
    q = Parameter(np.ones((2, 3)), "w")
    opt = Adam([q], lr=0.1)
    arr = q.data
    q.data = torch.full((2, 3), 5.0, dtype=torch.float64)
    q.grad = np.ones((2, 3))
    opt.step()
    assert q.data is arr and np.allclose(q.data, 5.0 - 0.1)


@pytest.mark.parametrize("what,value,message", [
    ("grad", np.zeros((3, 2)), r"grad of shape \(3, 2\) to a parameter of shape \(2, 3\)"),
    ("grad", np.zeros((2, 3), np.float32), "grad of dtype float32 to a float64 parameter"),
    ("data", np.zeros(6), r"data of shape \(6,\)"),
    ("grad", None, "grad cannot be None"),
    ("data", 0.0, r"shape \(\)"),
])
def test_bad_assignment_is_a_usage_error(what, value, message):
    q = Parameter(np.ones((2, 3)), "w")
    ParamPack([q])
    with pytest.raises(UsageError, match=message):
        setattr(q, what, value)
    assert (q.data == 1).all() and (q.grad == 0).all()


def test_compiled_program_sees_assigned_weights():
    from symdl.nn import make_model
    from symdl.train import Trainer
    spec = make_model("mlp", 4, 3, (5,), "tanh", np.random.default_rng(0))
    tr = Trainer(spec.module, lambda ps: SGD(ps, lr=0.1), spec.loss, batch_size=8, epochs=1,
                 seed=np.random.SeedSequence(0), progress=False)
    X = np.random.default_rng(1).standard_normal((6, 4)).astype(tr.dtype)
    before = tr.predict(X)
    assert np.abs(before).max() > 0
    for q in tr.params:
        q.data = np.zeros(q.shape, q.dtype)
    assert (tr.pack.data == 0).all()
    np.testing.assert_array_equal(tr.predict(X), np.zeros_like(before))


def test_a_plain_subclass_with_a_rule_still_works():
    from symdl.optim import Optimizer
    lr = real("lr")

    class Plain(Optimizer):
        rule = UpdateRule("plain", ((p, p - lr * g),), hyper={lr: 0.5})

    q = Parameter(np.ones(3), "w")
    opt = Plain([q], lr=0.25)
    q.grad = np.full(3, 2.0)
    opt.step()
    assert opt.hyper == {"lr": 0.25} and np.allclose(q.data, 0.5) and Plain.variants()[0][0] == "plain"
    with pytest.raises(UsageError, match="by name only: lr"):
        Plain([q], momentum=0.9)
