"""Learning-rate schedules: each declaration against torch.optim.lr_scheduler
for 1,000 steps, spec parsing and its errors, printing."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from symdl.errors import UsageError
from symdl.nn.parameter import Parameter
from symdl.optim import SGD
from symdl.optim.derivation import schedule_latex, schedule_text
from symdl.optim.schedules import cosine_lr, linear_lr, make_schedule, sequential

torch = pytest.importorskip("torch")
S = torch.optim.lr_scheduler
STEPS = 1000
LR = 0.1


def torch_lrs(make, lr=LR, steps=STEPS):
    """torch's learning rate after 0, 1, ..., steps-1 scheduler steps."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's step(0) deprecation notice
        sched = make(opt)
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return np.array(out)


def ours(spec, lr=LR, steps=STEPS):
    sc = make_schedule(spec, lr)
    return np.array([sc.lr_at(t) for t in range(steps)])


CASES = [  # (spec, torch scheduler factory, rtol)
    ("constant", lambda o: S.ConstantLR(o, factor=1.0, total_iters=1), 0),
    ("step:step_size=30,gamma=0.5", lambda o: S.StepLR(o, 30, 0.5), 1e-12),
    ("step:step_size=7", lambda o: S.StepLR(o, 7), 1e-12),
    ("multistep:milestones=100/250/600,gamma=0.3", lambda o: S.MultiStepLR(o, [100, 250, 600], 0.3), 1e-12),
    ("exponential:gamma=0.995", lambda o: S.ExponentialLR(o, 0.995), 1e-12),
    ("linear:start_factor=0.1,end_factor=1,total_iters=40", lambda o: S.LinearLR(o, 0.1, 1.0, 40), 1e-12),
    ("linear:start_factor=1,end_factor=0.2,total_iters=300", lambda o: S.LinearLR(o, 1.0, 0.2, 300), 1e-12),
    ("cosine:T_max=80,eta_min=0.001", lambda o: S.CosineAnnealingLR(o, 80, 0.001), 1e-9),
    ("cosine:T_max=1000", lambda o: S.CosineAnnealingLR(o, 1000), 1e-9),
    ("cosine_restarts:T_0=10", lambda o: S.CosineAnnealingWarmRestarts(o, 10), 1e-12),
    ("cosine_restarts:T_0=7,T_mult=2,eta_min=0.01",
     lambda o: S.CosineAnnealingWarmRestarts(o, 7, 2, 0.01), 1e-12),
    ("cosine_restarts:T_0=3,T_mult=3", lambda o: S.CosineAnnealingWarmRestarts(o, 3, 3), 1e-12),
    ("cyclic:base_lr=0.01,max_lr=0.1,step_size_up=25",
     lambda o: S.CyclicLR(o, 0.01, 0.1, 25, cycle_momentum=False), 1e-12),
    ("cyclic:base_lr=0.01,max_lr=0.1,step_size_up=20,step_size_down=45,mode=triangular2",
     lambda o: S.CyclicLR(o, 0.01, 0.1, 20, 45, mode="triangular2", cycle_momentum=False), 1e-12),
    ("cyclic:base_lr=0.01,max_lr=0.1,step_size_up=30,mode=exp_range,gamma=0.998",
     lambda o: S.CyclicLR(o, 0.01, 0.1, 30, mode="exp_range", gamma=0.998, cycle_momentum=False), 1e-12),
    ("linear:start_factor=0.01,total_iters=20+cosine@20:T_max=300,eta_min=0.001",
     lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.01, 1.0, 20), S.CosineAnnealingLR(o, 300, 0.001)], [20]),
     1e-9),
    ("warmup_cosine:warmup=50,T_max=950,start_factor=0.05",
     lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.05, 1.0, 50), S.CosineAnnealingLR(o, 950)], [50]), 1e-9),
    ("step:step_size=100+exponential@400:gamma=0.99",
     lambda o: S.SequentialLR(o, [S.StepLR(o, 100), S.ExponentialLR(o, 0.99)], [400]), 1e-12),
]


@pytest.mark.parametrize("spec,make,rtol", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(spec, make, rtol):
    mine, ref = ours(spec), torch_lrs(make)
    np.testing.assert_allclose(mine, ref, rtol=rtol, atol=1e-15 * LR)
    assert np.ptp(ref) > 0 or spec == "constant"  # the schedule actually moves


def test_cyclic_default_base_lr_is_lr():
    sc = make_schedule("cyclic:max_lr=1,step_size_up=5", 0.2)
    assert sc.lr_at(0) == pytest.approx(0.2) and sc.lr_at(5) == pytest.approx(1.0)


def test_time_based_formula():
    sc = make_schedule("time:k=0.05", 0.3)
    for t in (0, 1, 7, 999, 10 ** 6):
        assert sc.lr_at(t) == pytest.approx(0.3 / (1 + 0.05 * t), rel=1e-15)


def test_cosine_restarts_exact_at_every_restart():
    """A floating-point log would put some restarts one step late."""
    sc = make_schedule("cosine_restarts:T_0=1,T_mult=10", 1.0)
    starts = [sum(10 ** k for k in range(n)) for n in range(2, 8)]  # 11, 111, 1111, ...
    assert math.floor(math.log(1 + 111 * 9) / math.log(10)) == 2  # the naive formula is late here
    for s in starts:
        assert sc.lr_at(s) == 1.0, s
        assert sc.lr_at(s - 1) < 1.0


def test_sequence_api_and_schedule_apply():
    sc = sequential([linear_lr(0.1, 0.5, 1.0, 4), cosine_lr(0.1, 10)], [4])
    assert [round(sc.lr_at(t), 12) for t in (0, 2, 4)] == [0.05, 0.075, 0.1]
    p = Parameter(np.zeros(2))
    opt = SGD([p], lr=0.1)
    assert sc.apply(opt, 1) == opt.hyper["lr"] == pytest.approx(0.0625)
    p.grad[...] = 1.0
    opt.step()
    np.testing.assert_allclose(p.data, -0.0625)


@pytest.mark.parametrize("spec,message", [
    ("bogus", "unknown schedule 'bogus'"),
    ("step", "needs step_size"),
    ("step:size=3", "has no parameter 'size'"),
    ("step:step_size=abc", "must be an integer"),
    ("step:step_size=0", "must be >= 1"),
    ("step:step_size=3,gamma=-1", "gamma must be > 0"),
    ("step:step_size=3,step_size=4", "given twice"),
    ("cosine:T_max", "expected key=value"),
    ("cosine:T_max=nan", "T_max must be > 0"),
    ("multistep:milestones=30/20", "increasing"),
    ("cyclic:max_lr=1,mode=sawtooth", "mode must be"),
    ("linear:start_factor=0", "start_factor must be > 0"),
    ("", "empty schedule spec"),
    ("cosine:T_max=5+step:step_size=3", "needs its start step"),
    ("cosine@3:T_max=5", "starts at 0"),
    ("cosine:T_max=5+step@0:step_size=2", "must be >= 1"),
])
def test_spec_errors(spec, message):
    with pytest.raises(UsageError) as e:
        make_schedule(spec, 0.1)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_spec_parsing_values():
    sc = make_schedule(" step : step_size = 10 , gamma = 0.5 ", 0.2)
    assert sc.values == {"lr": 0.2, "step_size": 10, "gamma": 0.5}
    assert make_schedule("time:k=1e+3", 1.0).lr_at(1) == pytest.approx(1 / 1001)


def test_printing():
    text = schedule_text("cosine:T_max=50,eta_min=0.001", 0.1)
    assert "ηₜ = ηₘᵢₙ + (η₀ - ηₘᵢₙ) (1 + cos(π t/Tₘₐₓ))/2" in text and "T_max = 50" in text
    tex = schedule_latex("cosine:T_max=50", 0.1)
    assert r"\cos{\left(\frac{\pi t}{T_{\max}} \right)}" in tex and r"\begin{align*}" in tex
    assert "[t ≥ m₁] + [t ≥ m₂]" in schedule_text("multistep:milestones=3/9")
    assert "nₜ = ⌊log(1 + t (Tₘᵤₗₜ - 1)/T₀)/log(Tₘᵤₗₜ)⌋" in schedule_text("cosine_restarts:T_0=2,T_mult=2")
    seq = schedule_text("warmup_cosine:warmup=5,T_max=45")
    assert "if t < M₁" in seq and "(t - M₁)" in seq
    assert schedule_text("step:step_size=3") == schedule_text(make_schedule("step:step_size=3", 0.1))
    assert math.isclose(make_schedule("step:step_size=3", 0.1)(3), 0.01)
