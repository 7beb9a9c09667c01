"""Issue 12, items 6 and 8 for the row losses (the fault-suite record).

Softmax cross-entropy (with and without label smoothing), NLL and the
multiclass hinge: logits of ±1000 (float64) and ±88.8 (float32) give finite
values and gradients with no floating-point warning in both kernel flavours
(the NumPy reference used to warn "underflow encountered in exp"); NaN and
±inf logits give PyTorch's values and gradients (nll(±inf) and multi_hinge
with infinite logits used to give NaN or 0).  Helpers from tests/test_rowops.py.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from test_rowops import (BIG, FLAVORS, LOSS_REFS, SPECIAL_ROWS, SPECIAL_Y, _big_rows,  # noqa: E402
                         _strict, program, torch_ref)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("dtype", sorted(BIG))
@pytest.mark.parametrize("case", ["softmax_cross_entropy", "softmax_cross_entropy-0.1", "nll",
                                  "multi_hinge"])
def test_large_logits_losses_are_finite_and_silent(case, dtype, flavor):
    name, _, eps = case.partition("-")
    params = (("epsilon", float(eps)),) if eps else ()
    z, y = _big_rows(BIG[dtype]), np.array([1, 0, 2, 0, 1])
    p = program(name, (5, 3), (((5,), "int64"),), flavor, dtype, params)
    r, dz = _strict(lambda: p.run(z.astype(dtype), y))
    assert np.all(np.isfinite(r)) and np.all(np.isfinite(dz)), (r, dz)
    want_r, want_dz = torch_ref(lambda t: LOSS_REFS[name](t, torch.tensor(y), dict(params)), z,
                                np.ones(5))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(r, want_r, **tol)
    np.testing.assert_allclose(dz, want_dz, **tol)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("case", ["softmax_cross_entropy", "softmax_cross_entropy-0.1", "nll",
                                  "multi_hinge"])
def test_nan_and_inf_logits_give_what_torch_gives(case, flavor):
    name, _, eps = case.partition("-")
    params = (("epsilon", float(eps)),) if eps else ()
    n = len(SPECIAL_Y)
    p = program(name, (n, 3), (((n,), "int64"),), flavor, "float64", params)
    r, dz = p.run(SPECIAL_ROWS, SPECIAL_Y)
    want_r, want_dz = torch_ref(lambda t: LOSS_REFS[name](t, torch.tensor(SPECIAL_Y), dict(params)),
                                SPECIAL_ROWS, np.ones(n))
    np.testing.assert_array_equal(r, want_r)  # the same NaN and signed infinity
    np.testing.assert_allclose(dz, want_dz, rtol=1e-12, atol=1e-15, equal_nan=True)
