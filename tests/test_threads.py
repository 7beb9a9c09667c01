"""The pool of symdl.backends.threads: batched products split over threads give
bit-identical results, errors reach the caller, the user's thread count rules,
and compiled attention uses the pool only where BLAS would run one thread."""
import numpy as np
import pytest

from symdl.backends import threads
from symdl.backends.numpy_work import BLAS_SPLITS, POOL_MIN


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.setattr(threads, "count", lambda: 2)


@pytest.mark.parametrize("sa,sb", [((5, 3, 4, 6), (5, 3, 6, 2)),   # same batch dims
                                   ((5, 4, 6), (6, 3)),             # shared right operand
                                   ((1, 4, 6), (7, 6, 3)),          # broadcast left batch
                                   ((3, 2, 4, 6), (2, 6, 5))])      # fewer dims on the right
def test_split_products_are_bit_identical(two_threads, sa, sb):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(sa, dtype=np.float32), rng.standard_normal(sb, dtype=np.float32)
    want = np.matmul(a, b)
    out = np.full_like(want, np.nan)
    threads.batched_matmul(a, b, out)
    assert np.array_equal(out, want)


def test_one_thread_runs_in_the_caller(monkeypatch):
    monkeypatch.setattr(threads, "count", lambda: 1)
    monkeypatch.setattr(threads, "run", lambda jobs: pytest.fail("the pool was used"))
    a = np.ones((4, 2, 3))
    out = np.empty((4, 2, 2))
    threads.batched_matmul(a, np.ones((4, 3, 2)), out)
    assert (out == 3).all()


def test_an_error_in_a_pool_thread_reaches_the_caller():
    ran = []

    def bad():
        raise ValueError("from the pool")
    with pytest.raises(ValueError, match="from the pool"):
        threads.run([lambda: ran.append(1), bad])
    assert ran == [1]
    threads.run([lambda: ran.append(2), lambda: ran.append(3)])  # the pool still works
    assert sorted(ran) == [1, 2, 3]


def test_count_follows_numba():
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert threads.count() == 1
    finally:
        numba.set_num_threads(before)


def test_attention_products_use_the_pool_and_big_gemms_do_not():
    from symdl.backends.numpy_backend import compile_graph
    from symdl.graph import Graph
    g = Graph()
    q = g.input("q", (8, 4, 64, 32), "float32")
    k = g.input("k", (8, 4, 32, 64), "float32")
    x = g.input("x", (2048, 128), "float32")
    w = g.input("w", (128, 512), "float32")
    g.add("matmul", q, k, name="s")
    g.add("matmul", x, w, name="y")
    assert 64 * 64 * 32 < BLAS_SPLITS and 8 * 4 * 64 * 64 * 32 >= POOL_MIN
    prog = compile_graph(g, ["s", "y"], dims={})
    rng = np.random.default_rng(1)
    for n in ("q", "k", "x", "w"):
        prog.inputs[n][...] = rng.standard_normal(prog.inputs[n].shape)
    prog.run()
    body = prog.source.split("def step():")[1]
    assert body.count("batched_matmul") == 1 and "np.matmul(b_x, b_w" in body, body
    np.testing.assert_array_equal(prog.value("s"), np.matmul(prog.inputs["q"], prog.inputs["k"]))


def test_split_copies_are_exact(two_threads, monkeypatch):
    monkeypatch.setattr(threads, "COPY_MIN", 1)
    src = np.random.default_rng(2).standard_normal((5, 6, 4, 3)).transpose(0, 2, 1, 3)
    dst = np.zeros(src.shape)
    threads.copyto(dst, src)
    assert np.array_equal(dst, src)


def test_a_reshape_that_gathers_copies_once():
    from symdl.backends.numpy_backend import compile_graph
    from symdl.graph import Graph
    g = Graph()
    x = g.input("x", (2, 3, 4, 5), "float64")
    p = g.add("permute", x, axes=(0, 2, 1, 3), name="p")
    g.add("reshape", p, shape=(2, 4, 15), name="r")
    prog = compile_graph(g, ["r"], dims={})
    xv = np.random.default_rng(3).standard_normal((2, 3, 4, 5))
    prog.inputs["x"][...] = xv
    prog.run()
    np.testing.assert_array_equal(prog.value("r"), xv.transpose(0, 2, 1, 3).reshape(2, 4, 15))
    assert ".reshape(" not in prog.source.split("def step():")[1]


def test_callers_in_several_threads_and_nested_calls_get_their_results(two_threads):
    import threading
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((6, 8, 9)), rng.standard_normal((6, 9, 7))
    want, outs = np.matmul(a, b), [np.zeros((6, 8, 7)) for _ in range(4)]

    def work(out):
        for _ in range(50):
            threads.batched_matmul(a, b, out)
    ts = [threading.Thread(target=work, args=(o,)) for o in outs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(np.array_equal(o, want) for o in outs)
    nested = np.zeros_like(want)
    threads.run([lambda: threads.batched_matmul(a, b, nested), lambda: None])  # no deadlock
    assert np.array_equal(nested, want)
