"""symdl.plot: an activation and its derived derivative, training curves, schedules; the same
input gives the same bytes."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from symdl import plot
from symdl.errors import UsageError
from symdl.optim.schedules import make_schedule
from symdl.train.trainer import History


def _lines(fig, i=0):
    return [(ln.get_xdata(), ln.get_ydata()) for ln in fig.axes[i].get_lines()
            if len(ln.get_xdata()) > 2]


def test_activation_draws_f_and_the_derived_derivative():
    fig = plot.activation("tanh")
    (x, f), (x2, fp) = _lines(fig)
    assert x[0] == -5 and x[-1] == 5 and np.array_equal(x, x2)
    np.testing.assert_allclose(f, np.tanh(x), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fp, 1 - np.tanh(x) ** 2, rtol=1e-12, atol=1e-15)
    assert "tanh" in fig.axes[0].get_title()


def test_activation_of_an_expression_and_a_kink():
    (x, f), (_, fp) = _lines(plot.activation("x*sigmoid(x)"))
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(fp, s + x * s * (1 - s), rtol=1e-12, atol=1e-14)
    (x, f), (_, fp) = _lines(plot.activation("relu", domain=(-2, 2), points=5))
    assert list(x) == [-2, -1, 0, 1, 2]
    assert list(fp) == [0, 0, 0, 1, 1]  # relu'(0) = 0, as PyTorch


def test_log_is_plotted_where_it_is_defined():
    assert plot.default_domain(sp.log(sp.Symbol("x", real=True))) == (0.0, 5.0)
    (x, f), (_, fp) = _lines(plot.activation("log"))
    assert x[0] == 0 and x[-1] == 5
    assert np.isnan(f[0]) and np.isnan(fp[0])  # log 0 = -inf and 1/0: clipped, not drawn
    np.testing.assert_allclose(fp[1:], 1 / x[1:], rtol=1e-12)
    (x, f), _ = _lines(plot.activation("log(x)", domain=(-1, 1), points=5))
    assert np.isnan(f[:3]).all() and f[4] == 0.0  # undefined for x <= 0


def test_activation_refuses_what_it_cannot_plot():
    with pytest.raises(UsageError, match="one variable"):
        plot.activation("x*y")
    with pytest.raises(UsageError, match="one-input op"):
        plot.activation("add")
    with pytest.raises(UsageError, match="lo < hi"):
        plot.activation("tanh", domain=(1, 1))


def test_same_input_same_bytes(tmp_path):
    a, b = plot.to_svg(plot.activation("gelu")), plot.to_svg(plot.activation("gelu"))
    assert a == b and "<dc:date>" not in a
    for fmt in ("svg", "png", "pdf"):
        plot.save(plot.activation("softplus"), tmp_path / f"a.{fmt}")
        plot.save(plot.activation("softplus"), tmp_path / f"b.{fmt}")
        assert (tmp_path / f"a.{fmt}").read_bytes() == (tmp_path / f"b.{fmt}").read_bytes()
    assert plot.to_png(plot.activation("tanh")).startswith(b"\x89PNG")
    with pytest.raises(UsageError, match="formats: svg, png, pdf"):
        plot.save(plot.activation("tanh"), tmp_path / "a.jpg")


def test_history_curves():
    h = History([1.0, 0.5, 0.25], [0.5, 0.75, 0.9], [1.1, 0.6, 0.4], [0.4, 0.6, 0.8], [0.1] * 3)
    fig = plot.history(h)
    assert [a.get_title() for a in fig.axes] == ["loss", "accuracy"]
    loss = [list(ln.get_ydata()) for ln in fig.axes[0].get_lines()]
    assert loss == [[1.0, 0.5, 0.25], [1.1, 0.6, 0.4]]
    assert list(fig.axes[1].get_lines()[0].get_xdata()) == [1, 2, 3]
    # a regression history (no accuracy, no validation): one panel
    fig = plot.history({"train_loss": [3.0, 2.0], "train_accuracy": [None, None]})
    assert len(fig.axes) == 1
    with pytest.raises(UsageError):
        plot.history([1, 2])


def test_history_into_given_axes_uses_a_twin_axis():
    fig = plot.history(History([1.0, 0.5], [0.5, 0.8], [], [], []))
    base = plot._figure(None)[1][0]
    fig = plot.history(History([1.0, 0.5], [0.5, 0.8], [], [], []), ax=base)
    assert fig is base.figure and len(fig.axes) == 2  # the twin holds the accuracy


def test_schedule_curve():
    sched = make_schedule("cosine:T_max=50", 0.1)
    fig = plot.schedule(sched, 60)
    (t, eta), = _lines(fig)
    assert list(t) == list(range(60))
    assert list(eta) == [sched.lr_at(s) for s in range(60)]
    assert eta[50] == pytest.approx(0.0, abs=1e-15)
    assert plot.to_svg(plot.schedule("step:step_size=10", 30)) == plot.to_svg(
        plot.schedule("step:step_size=10", 30))


def test_figures_show_themselves_in_jupyter_and_x_to_the_x_is_drawn_right_of_zero():
    fig = plot.activation("tanh")
    assert fig._repr_svg_() == plot.to_svg(fig)  # no %matplotlib magic needed
    x = sp.Symbol("x", real=True)
    assert plot.default_domain(x**x) == (0.0, 5.0)  # NaN at most negative points
    assert plot.default_domain(1 / x) == (-5.0, 5.0)  # a pole is left out, not the half line
    assert plot.default_domain(sp.acos(x)) == (-1.0, 1.0)
    assert plot.default_domain(sp.log(-x)) == (-5.0, 0.0)
    assert plot.default_domain(sp.sqrt(4 - x**2)) == (-2.0, 2.0)
    (xs, f), (_, fp) = _lines(plot.activation("acos(x)"))
    assert xs[0] == -1 and xs[-1] == 1 and np.isnan(fp[[0, -1]]).all()  # f' = -1/sqrt(1-x²)
    np.testing.assert_allclose(fp[1:-1], -1 / np.sqrt(1 - xs[1:-1] ** 2), rtol=1e-12)
