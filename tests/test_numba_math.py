"""exp32, the float32 exp the generated numba loops call: accuracy, special
values, the version tag in the generated import line, and that the loop
around it calls no libm exp (so LLVM can vectorise it)."""
import re

import numpy as np
import pytest
import sympy as sp

pytest.importorskip("numba")

from numba import njit  # noqa: E402

from symdl.backends import numba_math  # noqa: E402
from symdl.backends.numba_math import exp32  # noqa: E402
from symdl.codegen.printers import ArrayPrinter, ScalarPrinter  # noqa: E402
from symdl.codegen.render import EXP32  # noqa: E402


@njit(error_model="numpy")
def _loop(a, out):
    for i in range(a.shape[0]):
        out[i] = exp32(a[i])


def _exp(x):
    x = np.asarray(x, np.float32)
    out = np.empty_like(x)
    _loop(x, out)
    return out


def test_within_one_ulp_over_the_normal_range():
    x = np.linspace(-104.0, 88.75, 2_000_001, dtype=np.float32)
    got = _exp(x).astype(np.float64)
    ref = np.exp(x.astype(np.float64))
    normal = (ref >= np.finfo(np.float32).tiny) & (ref <= np.finfo(np.float32).max)
    ulps = np.abs(got[normal] - ref[normal]) / np.spacing(ref[normal].astype(np.float32))
    assert ulps.max() <= 1.0
    small = ~normal & (ref < 1)  # denormal results: within one denormal step
    assert small.any() and np.abs(got[small] - ref[small]).max() <= np.float32(1.5e-45)


def test_special_values_as_numpy():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 88.72, 88.73, 89.0, 1e30,
                  -103.97, -104.0, -200.0, -1e30], np.float32)
    with np.errstate(over="ignore"):
        want = np.exp(x)
    got = _exp(x)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    inf = np.isinf(want)
    assert np.array_equal(got[inf], want[inf])
    ok = np.isfinite(want)
    assert np.all(np.abs(got[ok] - want[ok]) <= np.spacing(want[ok]))
    assert got[3] == 1.0 and got[4] == 1.0


def test_version_tag_in_the_generated_import_line():
    assert EXP32.endswith(f"# v{numba_math.VERSION}")
    namespace = {}
    exec(EXP32, namespace)
    assert namespace["_exp32"] is exp32


def test_float32_loops_print_exp32_and_float64_loops_libm():
    x = sp.Symbol("x", real=True)
    assert ScalarPrinter("float32").doprint(sp.exp(-x)) == "_exp32(-x)"
    assert ScalarPrinter("float64").doprint(sp.exp(-x)) == "np.exp(-x)"
    assert ArrayPrinter("float32").doprint(sp.exp(-x)) == "np.exp(-x)"


def test_the_loop_calls_no_libm_exp():
    _exp(np.zeros(8, np.float32))
    ir = "\n".join(_loop.inspect_llvm().values())
    calls = re.findall(r"call [^\n]*@([\w.]+)\(", ir)
    assert not [c for c in calls if "exp" in c], calls


def test_a_reassociating_first_caller_does_not_change_it(tmp_path):
    """numba compiles a callee with its first caller's fastmath flags unless the callee
    sets its own; with "reassoc", (k + M) - M folds to k and exp32(-1) came out 0.5.  In a
    fresh process with an empty numba cache, a reassociating loop compiles it first."""
    import os
    import subprocess
    import sys
    code = (
        "import numpy as np\n"
        "from numba import njit\n"
        "from symdl.backends.numba_math import exp32\n"
        "@njit(fastmath={'nsz', 'reassoc'})\n"
        "def first(a):\n"
        "    s = np.float32(0)\n"
        "    for i in range(a.shape[0]):\n"
        "        s += exp32(a[i])\n"
        "    return s\n"
        "print(first(np.array([-1.0], np.float32)), exp32(np.float32(-1.0)))\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    got = [float(v) for v in out.stdout.split()]
    np.testing.assert_allclose(got, [np.exp(-1.0)] * 2, rtol=2e-7)
