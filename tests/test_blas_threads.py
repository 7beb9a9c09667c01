"""OpenBLAS's idle worker threads sleep once the NumPy backend exists (backends/blas_threads.py):
between GEMMs they burn no CPU that numba's threads need; products are unchanged."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from symdl.backends.blas_threads import openblas_paths

CHILD = r"""
import os, time, json
import numpy as np
rng = np.random.default_rng(0)
a, b = rng.random((800, 800)), rng.random((800, 800))

def idle_cpu():
    c = a @ b                      # wakes OpenBLAS's workers
    t0 = time.process_time()
    time.sleep(0.2)                # what do they burn while nothing is asked of them?
    return c, time.process_time() - t0

before, spun = idle_cpu()
from symdl.backends.numpy_backend import NumpyBackend
NumpyBackend()
from symdl.backends.blas_threads import quiet
after, slept = idle_cpu()
print(json.dumps({"spun": spun, "slept": slept, "same": bool((before == after).all()),
                  "libs": quiet(), "timeout": os.environ["OPENBLAS_THREAD_TIMEOUT"]}))
"""


@pytest.mark.skipif(not openblas_paths() or (os.cpu_count() or 1) < 2,
                    reason="NumPy's BLAS here is not a multi-threaded OpenBLAS")
def test_idle_openblas_threads_sleep_after_the_backend_is_made():
    import json
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    env.update(OPENBLAS_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         check=True)
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["libs"] and got["timeout"] == "20"
    assert got["same"]
    assert got["slept"] < 0.03, got   # spinning workers burn about the whole 0.2 s


def test_a_timeout_the_user_set_is_kept(monkeypatch):
    from symdl.backends import blas_threads
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "12")
    monkeypatch.setattr(blas_threads, "_quieted", None)
    blas_threads.quiet()
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "12"
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(x @ x.T, np.einsum("ik,jk->ij", x, x))
