"""Optimizers against torch.optim: 200 steps on the same random gradients,
packed and unpacked, float64 (1e-10) and float32; state round trips;
hyperparameter errors; flush-to-zero; printed derivations."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from symdl.backends.loader import load_function
from symdl.errors import UsageError
from symdl.nn.parameter import Parameter, ParamPack
from symdl.optim import OPTIMIZERS, Adam, NAdam
from symdl.optim.base import update_kernel_source
from symdl.optim.derivation import rule_latex, rule_text
from symdl.optim.rules_adaptive import adam_rule

torch = pytest.importorskip("torch")
SHAPES = [(3, 4), (5,), (2, 1, 3)]
STEPS = 200

CASES = [  # (registry name, torch class name, hyperparameters)
    ("sgd", "SGD", dict(lr=0.05)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.9)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02)),
    ("adagrad", "Adagrad", dict()),
    ("adagrad", "Adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.2)),
    ("rmsprop", "RMSprop", dict()),
    ("rmsprop", "RMSprop", dict(lr=0.003, momentum=0.9, weight_decay=0.05)),
    ("rmsprop", "RMSprop", dict(lr=0.003, alpha=0.9, centered=True)),
    ("rmsprop", "RMSprop", dict(lr=0.003, centered=True, momentum=0.5, eps=1e-6)),
    ("adadelta", "Adadelta", dict()),
    ("adadelta", "Adadelta", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1)),
    ("adam", "Adam", dict()),
    ("adam", "Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adam", "Adam", dict(lr=0.01, amsgrad=True)),
    ("adam", "Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.05)),
    ("adamw", "AdamW", dict()),
    ("adamw", "AdamW", dict(lr=0.01, weight_decay=0.2, amsgrad=True)),
    ("adamax", "Adamax", dict()),
    ("adamax", "Adamax", dict(lr=0.01, betas=(0.85, 0.99), weight_decay=0.1)),
    ("nadam", "NAdam", dict()),
    ("nadam", "NAdam", dict(lr=0.01, momentum_decay=0.01, weight_decay=0.1)),
    ("nadam", "NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for n, _, kw in CASES]


@pytest.fixture(autouse=True)
def torch_float64():
    """NAdam keeps its mu_product in torch's default dtype: float64 for float64 runs."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def arrays(seed, dtype, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(STEPS)]
    return init, grads


def run_symdl(name, kw, init, grads, packed):
    params = [Parameter(a.copy(), f"w{i}") for i, a in enumerate(init)]
    if packed:
        ParamPack(params)
    opt = OPTIMIZERS[name](params, **kw)
    assert opt.flat == packed
    for gs in grads:
        for q, gr in zip(params, gs):
            q.grad[...] = gr
        opt.step()
    return [q.data for q in params], opt


def run_torch(cls, kw, init, grads):
    params = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    opt = getattr(torch.optim, cls)(params, **kw)
    for gs in grads:
        for q, gr in zip(params, gs):
            q.grad = torch.tensor(gr)
        opt.step()
    return [q.detach().numpy() for q in params]


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
@pytest.mark.parametrize("name,cls,kw", CASES, ids=IDS)
def test_matches_torch_float64(name, cls, kw, packed):
    init, grads = arrays(1, np.float64)
    mine, opt = run_symdl(name, kw, init, grads, packed)
    ref = run_torch(cls, kw, init, grads)
    for a, b, a0 in zip(mine, ref, init):
        assert np.abs(b - a0).max() > 1e-3  # the run moved the parameters
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    assert opt.t == STEPS


FLOAT32 = [c for c in CASES if c[2] == {} or "amsgrad" in c[2] or "centered" in c[2]]


@pytest.mark.parametrize("name,cls,kw", FLOAT32, ids=[f"{c[0]}-{sorted(c[2])}" for c in FLOAT32])
def test_matches_torch_float32(name, cls, kw):
    torch.set_default_dtype(torch.float32)
    init, grads = arrays(2, np.float32)
    mine, _ = run_symdl(name, kw, init, grads, packed=True)
    ref = run_torch(cls, kw, init, grads)
    for a, b in zip(mine, ref):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_parallel_kernel_float32():
    """Above UPDATE_PARALLEL_WORK (arrays x elements) the kernel runs numba's
    prange loop; below it, a serial loop; both agree with torch."""
    torch.set_default_dtype(torch.float32)
    for n, parallel in ((400_000, True), (70_000, False)):
        init, grads = arrays(3, np.float32, shapes=[(n,)])
        grads = grads[:20]
        mine, opt = run_symdl("adam", dict(lr=0.01), init, grads, packed=False)
        assert list(opt._kernels) == [("float32", parallel)]
        assert ("in prange(" in opt._kernels[("float32", parallel)].__source__) == parallel
        ref = run_torch("Adam", dict(lr=0.01), init, grads)
        np.testing.assert_allclose(mine[0], ref[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["adam", "rmsprop", "adadelta", "nadam", "adamax", "adagrad"])
def test_numpy_flavour_matches_numba(name):
    """The NumPy reference kernel (printed with np.where for the flush) gives the same result."""
    kw = {"rmsprop": dict(centered=True, momentum=0.9)}.get(name, {})
    init, grads = arrays(4, np.float64)
    numba_out, _ = run_symdl(name, kw, init, grads[:30], packed=True)
    params = [Parameter(a.copy(), f"w{i}") for i, a in enumerate(init)]
    ParamPack(params)
    opt = OPTIMIZERS[name](params, **kw)
    opt._kernels[("float64", False)] = load_function(update_kernel_source(opt.rule, "float64", "numpy"))
    for gs in grads[:30]:
        for q, gr in zip(params, gs):
            q.grad[...] = gr
        opt.step()
    for a, b in zip(numba_out, params):
        np.testing.assert_allclose(a, b.data, rtol=1e-13, atol=1e-15)


ROUND_TRIP = [("sgd", dict(momentum=0.9)), ("adagrad", dict(initial_accumulator_value=0.1)),
              ("rmsprop", dict(centered=True, momentum=0.9)), ("adadelta", {}),
              ("adam", dict(amsgrad=True)), ("adamw", {}), ("adamax", {}), ("nadam", {})]


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
@pytest.mark.parametrize("name,kw", ROUND_TRIP, ids=[r[0] for r in ROUND_TRIP])
def test_state_round_trip_continues_identically(name, kw, packed):
    init, grads = arrays(5, np.float64)
    params = [Parameter(a.copy(), f"w{i}") for i, a in enumerate(init)]
    if packed:
        ParamPack(params)
    a = OPTIMIZERS[name](params, lr=0.01, **kw)

    def run(opt, ps, gs):
        for step in gs:
            for q, gr in zip(ps, step):
                q.grad[...] = gr
            opt.step()

    run(a, params, grads[:60])
    saved, t, data = a.state_arrays(), a.t, [q.data.copy() for q in params]
    assert saved and all(k.split(".")[0] in ("flat", "w0", "w1", "w2") for k in saved)
    run(a, params, grads[60:100])
    params_b = [Parameter(d.copy(), f"w{i}") for i, d in enumerate(data)]
    if packed:
        ParamPack(params_b)
    b = OPTIMIZERS[name](params_b, lr=0.01, **kw)
    b.load_state_arrays(saved, t)
    run(b, params_b, grads[60:100])
    assert b.t == a.t == 100
    for qa, qb in zip(params, params_b):
        np.testing.assert_array_equal(qa.data, qb.data)
    for k, arr in a.state_arrays().items():
        np.testing.assert_array_equal(arr, b.state_arrays()[k])
    # state_arrays are copies
    next(iter(saved.values()))[...] = 123.0
    assert not any((v == 123.0).all() for v in a.state_arrays().values())


@pytest.mark.parametrize("packed", [False, True])
def test_zero_grad(packed):
    params = [Parameter(np.ones(s), f"w{i}") for i, s in enumerate(SHAPES)]
    if packed:
        ParamPack(params)
    opt = Adam(params, lr=0.1)
    for q in params:
        q.grad[...] = 3.0
    opt.zero_grad()
    assert all((q.grad == 0).all() for q in params)
    opt.step()  # zero gradients from a zero state: no move
    assert all((q.data == 1).all() for q in params)


@pytest.mark.parametrize("make,message", [
    (lambda ps: Adam(ps, foo=1), "no hyperparameter 'foo'"),
    (lambda ps: OPTIMIZERS["rmsprop"](ps, betas=(0.9, 0.99)), "no hyperparameter 'betas'"),
    (lambda ps: OPTIMIZERS["adagrad"](ps, momentum=0.9), "no hyperparameter 'momentum'"),
    (lambda ps: Adam(ps, lr=-1.0), "invalid lr"),
    (lambda ps: Adam(ps, betas=(1.0, 0.9)), "invalid beta1"),
    (lambda ps: Adam(ps, betas=0.9), "betas must be a pair"),
    (lambda ps: Adam(ps, eps="small"), "eps must be a number"),
    (lambda ps: Adam(ps, amsgrad="yes"), "amsgrad must be True or False"),
    (lambda ps: OPTIMIZERS["adadelta"](ps, rho=1.5), "invalid rho"),
    (lambda ps: NAdam(ps, momentum_decay=-1), "invalid momentum_decay"),
])
def test_bad_hyperparameters(make, message):
    with pytest.raises(UsageError, match=message):
        make([Parameter(np.zeros(3), "w")])


def test_hyper_round_trips_through_constructor():
    opt = Adam([Parameter(np.zeros(3), "w")], lr=0.01, betas=(0.8, 0.9))
    assert opt.hyper == {"lr": 0.01, "beta1": 0.8, "beta2": 0.9, "eps": 1e-8, "weight_decay": 0.0}
    again = Adam([Parameter(np.zeros(3), "w")], **opt.hyper)
    assert again.hyper == opt.hyper


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_subnormal_state_is_flushed(dtype):
    tiny = np.finfo(dtype).tiny
    q = Parameter(np.ones(8, dtype), "w")
    opt = Adam([q])
    opt.step()
    m, v = opt._groups[0][2]
    m[...] = tiny * 1.05  # just above tiny: x0.9 takes it below
    v[...] = tiny * 4
    opt.step()  # zero gradient
    assert (m == 0).all() and (v != 0).all()  # m fell below tiny -> 0; v (x0.999) still normal
    src = update_kernel_source(adam_rule(), dtype, "numba")
    assert repr(float(tiny)) in src
    assert repr(float(tiny)) not in update_kernel_source(adam_rule(flush_state=False), dtype, "numba")


def test_variants_give_kernel_sources():
    for name, cls in OPTIMIZERS.items():
        labels = []
        for label, rule in cls.variants():
            labels.append(label)
            for flavor in ("numba", "numpy"):
                src = update_kernel_source(rule, "float32", flavor)
                assert src.startswith("# generated by symdl") and "def kernel(" in src
        assert len(labels) == len(set(labels)) and labels[0].startswith(name[:3])


# ------------------------------------------------------------- derivations
def test_adam_latex_and_text():
    tex = rule_latex("adam")
    for piece in [r"m_{t} &= \beta_{1} m_{t-1} + \left(1 - \beta_{1}\right) g_{t}",
                  r"v_{t} &= \beta_{2} v_{t-1} + \left(1 - \beta_{2}\right) g_{t}^{2}",
                  r"\hat{m}_{t} &= \frac{m_{t}}{1 - \beta_{1}^{t}}",
                  r"\hat{v}_{t} &= \frac{v_{t}}{1 - \beta_{2}^{t}}",
                  r"\theta_{t} &= \theta_{t-1} - \alpha \frac{\hat{m}_{t}}{\sqrt{\hat{v}_{t}} + \epsilon}",
                  r"\begin{align*}", r"\epsilon = 10^{-8}"]:
        assert piece in tex, piece
    text = rule_text("adam")
    assert "m̂ₜ = mₜ/(1 - β₁ᵗ)" in text and "θₜ = θₜ₋₁ - α m̂ₜ/(√v̂ₜ + ε)" in text
    assert "flush" not in text + tex


@pytest.mark.parametrize("name,options,pieces", [
    ("adam", dict(amsgrad=True), ["vᵐᵃˣₜ = max(vᵐᵃˣₜ₋₁, vₜ)", "v̂ₜ = vᵐᵃˣₜ/(1 - β₂ᵗ)"]),
    ("adamw", {}, ["θₜ = θₜ₋₁ - α (λ θₜ₋₁ + m̂ₜ/(√v̂ₜ + ε))"]),
    ("adamax", {}, ["uₜ = max(β₂ uₜ₋₁, |gₜ| + ε)", "α/(1 - β₁ᵗ) · mₜ/uₜ"]),
    ("adagrad", {}, ["sₜ = sₜ₋₁ + gₜ²", "α/(1 + η (t - 1)) · gₜ/(√sₜ + ε)"]),
    ("adadelta", {}, ["√(uₜ₋₁ + ε)/√(vₜ + ε)", "uₜ = ρ uₜ₋₁ + (1 - ρ) Δθₜ²"]),
    ("rmsprop", dict(centered=True, momentum=True), ["ṽₜ = vₜ - ḡₜ²", "bₜ = μ bₜ₋₁ + gₜ/(√ṽₜ + ε)"]),
    ("nadam", {}, ["μₜ = β₁ (1 - 0.96^(t ψ)/2)", "∏ᵢ₌₁ᵗ μᵢ", "ψ = momentum_decay = 0.004"]),
    ("sgd", {}, ["θₜ = θₜ₋₁ - α bₜ", "gₜ ← gₜ + λ θₜ₋₁"]),
])
def test_rule_text_pieces(name, options, pieces):
    text = rule_text(name, **options)
    for piece in pieces:
        assert piece in text, piece


def test_optimizer_derivation_uses_its_values_and_variant():
    d = Adam([Parameter(np.zeros(2), "w")], lr=0.02, amsgrad=True).derivation()
    assert "α = lr = 0.02" in d.text and "vᵐᵃˣ" in d.text and r"\alpha = 0.02" in d.latex
    assert d._repr_latex_().startswith("\\begin{align*}\n&\\textbf{adam: Adam, AMSGrad")
    with pytest.raises(UsageError):
        rule_text("adamm")


def test_derivations_deterministic_across_processes():
    code = ("from symdl.optim.derivation import rule_text, rule_latex, schedule_text\n"
            "import sys\nsys.stdout.buffer.write(''.join(rule_text(n) + rule_latex(n) for n in "
            "['sgd','adagrad','rmsprop','adadelta','adam','adamw','adamax','nadam']).encode()"
            " + schedule_text('cyclic:max_lr=1,step_size_up=4').encode())")
    here = "".join(rule_text(n) + rule_latex(n) for n in
                   ["sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "adamax", "nadam"])
    from symdl.optim.derivation import schedule_text
    here += schedule_text("cyclic:max_lr=1,step_size_up=4")
    env = dict(os.environ, PYTHONHASHSEED="4242")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=True).stdout
    assert out == here.encode()


def test_trajectories_plot(tmp_path):
    from symdl.optim.trajectories import SURFACES, gradient, plot_trajectories
    out = plot_trajectories(tmp_path / "paths.png", steps=40)
    assert (tmp_path / "paths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(out) == {"quadratic", "rosenbrock"} and set(out["quadratic"]) == set(OPTIMIZERS)
    f, df = gradient(SURFACES["rosenbrock"])
    np.testing.assert_allclose(df(-1.2, 1.0), [-215.6, -88.0])  # ∇ of the declared surface
    for name, path in out["quadratic"].items():
        assert path.shape == (41, 2) and np.allclose(path[0], SURFACES["quadratic"].start)
        fq, _ = gradient(SURFACES["quadratic"])
        assert fq(*path[-1]) < fq(*path[0]), name  # every optimizer went downhill
