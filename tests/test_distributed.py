"""Data-parallel training on MPI: 2 ranks equal 1 rank; dead or raising ranks stop the others."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from symdl.train.distributed import shard

ROOT = Path(__file__).resolve().parents[1]


def _mpiexec():
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


try:
    import mpi4py  # noqa: F401
    HAVE_MPI = _mpiexec() is not None
except ImportError:
    HAVE_MPI = False
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="mpi4py or mpiexec missing: "
                               "pip install -e '.[mpi]' (mpi4py and mpich)")

# One process trains every configuration and saves the parameters and the epoch metrics
# (rank 0); run alone, or as each rank under mpiexec with "dist".
WORKER = r'''
import json, sys
import numpy as np
from symdl.data import load_dataset
from symdl.nn import make_model
from symdl.optim import OPTIMIZERS
from symdl.train import Trainer
from symdl.train.callbacks import LambdaCallback

configs, out, dist = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "dist"
comm = None
if dist:
    from symdl.train.distributed import Communicator, NcclCommunicator
    gpu = any(c.get("backend") == "cuda" for c in configs)
    comm = (NcclCommunicator if gpu else Communicator)(check_every=3)
full = load_dataset("digits", seed=0, split="train")
results = {}
for i, c in enumerate(configs):
    X, y = full.X[:c["rows"]].astype(c["dtype"]), full.y[:c["rows"]]
    opts = {"channels": (4, 8)} if c["model"] == "cnn" else {}
    spec = make_model(c["model"], 64, 10, (32,), "relu", np.random.default_rng(1), c["dtype"],
                      **opts)
    kw = {"lr": 0.05, "momentum": 0.9} if c["opt"] == "sgd" else {"lr": 1e-3}
    cbs = []
    fault = c.get("fault")
    if fault and comm is not None and comm.rank == 1:
        def hook(step, logs, fault=fault, model=spec.module):
            if step == 4 and fault == "raise":
                raise RuntimeError("injected failure on rank 1")
            if step == 4 and fault == "perturb":
                model.parameters()[0].data[0, 0] += 1
        cbs.append(LambdaCallback(on_batch_end=hook))
    t = Trainer(spec.module, lambda ps: OPTIMIZERS[c["opt"]](ps, **kw), spec.loss,
                spec.loss_params, batch_size=c["batch"], epochs=1, seed=0, dtype=c["dtype"],
                comm=comm, progress=False, callbacks=cbs, backend=c.get("backend", "numpy"))
    h = t.fit(X, y)
    for p in t.params:
        results[f"{i}/{p.name}"] = t.backend.to_host(p.data)
    results[f"{i}/loss"] = np.array(h.train_loss)
    results[f"{i}/accuracy"] = np.array(h.train_accuracy)
results["ranks"] = np.array([comm.size if comm else 1])
results["reduces"] = np.array([comm.reduce_calls if comm else 0])
results["shared"] = np.array([comm is not None and t.pack in comm.nodes])
if comm is None or comm.rank == 0:
    np.savez(out, **results)
'''


def _env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                                    os.environ.get("PYTHONPATH")])))
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[k] = "1"  # two ranks on a small machine: no oversubscription
    return env


def _train(tmp_path, configs, ranks: int, timeout=600, **env):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / f"out{ranks}.npz"
    cmd = [sys.executable, str(script), json.dumps(configs), str(out), "dist" if ranks else "one"]
    if ranks:
        cmd = [_mpiexec(), "-disable-auto-cleanup", "-n", str(ranks), *cmd]
    r = subprocess.run(cmd, cwd=tmp_path, env={**_env(), **env}, capture_output=True,
                       text=True, timeout=timeout)
    return r, (dict(np.load(out)) if out.exists() else None)


# ------------------------------------------------------------------ no MPI needed
def test_shard_covers_the_batch_in_order():
    for n in (0, 1, 2, 5, 7, 64, 1441):
        for size in (1, 2, 3, 4, 8):
            cuts = [shard(n, r, size) for r in range(size)]
            assert cuts[0][0] == 0 and cuts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(cuts, cuts[1:]))      # contiguous
            sizes = [hi - lo for lo, hi in cuts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_shared_memory_needs_room(tmp_path):
    from symdl.train.shared_memory import room
    assert room(1, str(tmp_path)) and room(0, str(tmp_path / "absent"))
    assert not room(10 ** 18, str(tmp_path))  # an exabyte: never free


def test_nothing_imports_mpi_unless_asked():
    code = ("import sys, symdl, symdl.cli, symdl.train, symdl.train.distributed, "
            "symdl.commands.distributed; symdl.cli.build_parser(); "
            "print([m for m in sys.modules if m.startswith('mpi4py')])")
    r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_launch_command_and_missing_mpiexec(monkeypatch, tmp_path):
    from symdl.commands import distributed as cd
    from symdl.errors import BackendError
    monkeypatch.setattr(cd, "find_mpiexec", lambda: "/x/mpiexec")
    cmd = cd.launch_command(["train", "--ranks", "4", "--epochs", "2", "--ranks=3"], 4)
    assert cmd[:4] == ["/x/mpiexec", "-disable-auto-cleanup", "-n", "4"]
    assert cmd[4:] == [sys.executable, "-m", "symdl.commands.distributed", sys.executable, "-m",
                       "symdl", "train", "--epochs", "2", "--distributed"]
    monkeypatch.undo()
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendError, match=r"pip install 'symdl\[mpi\]'"):
        cd.find_mpiexec()


def test_ranks_and_distributed_together_is_a_usage_error():
    r = subprocess.run([sys.executable, "-m", "symdl", "train", "--ranks", "2", "--distributed"],
                       env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "symdl: error: --ranks starts mpiexec itself; under mpiexec give --distributed"]


# ------------------------------------------------------------------ 2 ranks = 1 rank
CONFIGS = [
    {"model": m, "opt": o, "dtype": d, "batch": 64, "rows": 600}
    for m in ("mlp", "cnn") for o in ("sgd", "adam") for d in ("float32", "float64")
] + [
    # an odd batch (31 + 30 rows), and a last batch of one row: rank 1 gets none
    {"model": "mlp", "opt": "sgd", "dtype": "float64", "batch": 61, "rows": 600},
    {"model": "mlp", "opt": "adam", "dtype": "float64", "batch": 599, "rows": 600},
]


@needs_mpi
@pytest.mark.slow
def test_two_ranks_equal_one_rank(tmp_path):
    r1, one = _train(tmp_path, CONFIGS, 0)
    assert r1.returncode == 0, r1.stderr
    r2, two = _train(tmp_path, CONFIGS, 2)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert r2.stderr == "" and r2.stdout == ""  # nobody printed (no progress off a terminal)
    # two ranks really shared the work: one gradient all-reduce per step, besides the checks
    steps = sum(-(-c["rows"] // c["batch"]) for c in CONFIGS)
    assert two["ranks"][0] == 2 and two["reduces"][0] >= steps
    assert two["shared"][0]  # one host: the gradients were summed in shared memory
    _same_parameters(CONFIGS, one, two)


def _same_parameters(configs, one, two):
    for i, c in enumerate(configs):
        tol = 1e-6 if c["dtype"] == "float32" else 1e-12
        names = [k for k in one if k.startswith(f"{i}/")]
        assert len(names) >= 4
        for k in names:
            a, b = one[k], two[k]
            if k.endswith("/accuracy"):  # hit counts: at most one row apart (a tie may flip)
                assert abs(a - b).max() <= 1 / c["rows"], (c, k)
                continue
            assert a.dtype == b.dtype and a.shape == b.shape
            err = np.abs(a - b).max() / np.abs(a).max()
            assert err <= tol, f"{c} {k}: relative difference {err:.3g} > {tol:g}"


@needs_mpi
@pytest.mark.slow
def test_two_ranks_through_mpi_equal_one_rank_and_shared_memory(tmp_path):
    """SYMDL_DIST_SHM=0 on any rank: the MPI all-reduce; same parameters as one rank, and, for
    two ranks, the very bits of the shared-memory sum (the same roundings)."""
    configs = [c for c in CONFIGS if c["model"] == "mlp" and c["opt"] == "sgd"]
    r1, one = _train(tmp_path, configs, 0)
    r2, shm = _train(tmp_path, configs, 2)
    r3, mpi = _train(tmp_path, configs, 2, SYMDL_DIST_SHM="0")
    assert r1.returncode == r2.returncode == r3.returncode == 0, r3.stderr
    assert shm["shared"][0] and not mpi["shared"][0]
    _same_parameters(configs, one, mpi)
    for k in shm:
        if "/" in k and not k.endswith("accuracy"):
            assert np.array_equal(shm[k], mpi[k]), k


@needs_mpi
@pytest.mark.slow
def test_three_ranks_sum_in_shared_memory(tmp_path):
    """Three slices of the sum (61 rows: 21, 20, 20), and a last batch of one row (two ranks
    without rows): the one-rank parameters."""
    configs = CONFIGS[-2:]
    r1, one = _train(tmp_path, configs, 0)
    r3, three = _train(tmp_path, configs, 3)
    assert r1.returncode == r3.returncode == 0, r3.stderr
    assert three["ranks"][0] == 3 and three["shared"][0]
    _same_parameters(configs, one, three)


def _gpus() -> int:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no CuPy, no driver, no device
        return 0


@needs_mpi
@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_MPI or _gpus() < 2, reason="needs CuPy with NCCL and 2 GPUs")
def test_two_gpu_ranks_equal_one_gpu(tmp_path):
    configs = [{**c, "backend": "cuda"} for c in CONFIGS if c["model"] == "mlp"][:4]
    r1, one = _train(tmp_path, configs, 0)
    assert r1.returncode == 0, r1.stderr
    r2, two = _train(tmp_path, configs, 2)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    for i, c in enumerate(configs):
        tol = 1e-6 if c["dtype"] == "float32" else 1e-12
        for k in (k for k in one if k.startswith(f"{i}/") and not k.endswith("accuracy")):
            err = np.abs(one[k] - two[k]).max() / np.abs(one[k]).max()
            assert err <= tol, f"{c} {k}: relative difference {err:.3g} > {tol:g}"


# ------------------------------------------------------------------ faults
@needs_mpi
@pytest.mark.slow
def test_a_raising_rank_stops_the_others(tmp_path):
    cfg = [{"model": "mlp", "opt": "sgd", "dtype": "float32", "batch": 16, "rows": 600,
            "fault": "raise"}]
    t0 = time.monotonic()
    r, out = _train(tmp_path, cfg, 2, timeout=120)
    assert time.monotonic() - t0 < 60
    assert r.returncode != 0 and out is None
    assert "RuntimeError: injected failure on rank 1" in r.stderr
    ours = [ln for ln in r.stderr.splitlines() if ln.startswith("symdl:")]
    assert len(ours) == 1 and re.match(r"symdl: error: rank 1 \(PID \d+ on .+\) stopped", ours[0])


@needs_mpi
@pytest.mark.slow
def test_parameters_that_drift_apart_stop_the_run(tmp_path):
    cfg = [{"model": "mlp", "opt": "sgd", "dtype": "float32", "batch": 16, "rows": 600,
            "fault": "perturb"}]
    r, out = _train(tmp_path, cfg, 2, timeout=120)
    assert r.returncode != 0 and out is None
    assert "ParameterMismatch: parameters differ across ranks after step 6 (rank(s) 1 differ " \
           "from rank 0)" in r.stderr


def _rank_pids(root_pid: int) -> dict:
    """{rank: pid} of the python processes below ``root_pid`` (mpich sets PMI_RANK)."""
    children: dict = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_bytes().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = {}, [root_pid]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
            name = (Path("/proc") / str(pid) / "comm").read_text().strip()
        except OSError:
            continue
        rank = [e[9:] for e in env if e.startswith(b"PMI_RANK=")]
        if rank and name.startswith("python"):
            out[int(rank[0])] = pid
    return out


def _kill_rank1_after_first_checkpoint(proc, ck: Path) -> float:
    deadline = time.monotonic() + 300
    while not any(ck.glob("ckpt-*")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.1)
    pids = _rank_pids(proc.pid)
    assert set(pids) == {0, 1}, pids
    os.kill(pids[1], signal.SIGKILL)  # mid-epoch: one checkpoint per epoch of 82 steps
    return time.monotonic()


TRAIN = ["-m", "symdl", "train", "--epochs", "500", "--batch-size", "16", "--seed", "3"]


def _resumes_on_one_rank(ck: Path):
    from symdl.train.checkpoint import latest_good, load_checkpoint
    good = latest_good(ck, lambda msg: None)
    assert good is not None
    load_checkpoint(good.path)  # verifies every array's SHA-256
    epoch = good.meta["epoch"]
    r = subprocess.run([sys.executable, *TRAIN[:3], "--epochs", str(epoch + 1), "--batch-size",
                        "16", "--seed", "3", "--checkpoint", str(ck), "--json"], env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"resumed from {good.path}" in r.stderr
    assert json.loads(r.stdout)["epochs"] == epoch + 1


@needs_mpi
@pytest.mark.slow
def test_kill_one_rank_under_mpiexec(tmp_path):
    """The rank's own exit code: an ``sh`` that ignores SIGUSR1 (mpich's notice, which would
    kill it) records it; the survivor then finds the death by its PID."""
    ck = tmp_path / "ck"
    status = tmp_path / "status"
    inner = " ".join([sys.executable, *TRAIN, "--distributed", "--checkpoint", str(ck)])
    sh = f"trap '' USR1; {inner}; echo $? > {status}-$PMI_RANK"
    proc = subprocess.Popen([_mpiexec(), "-disable-auto-cleanup", "-n", "2", "sh", "-c", sh],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = _kill_rank1_after_first_checkpoint(proc, ck)
    deadline = killed + 30
    while not Path(f"{status}-0").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert Path(f"{status}-0").exists(), "rank 0 still running 30 s after rank 1 died"
    assert Path(f"{status}-0").read_text().strip() == "1"
    _, err = proc.communicate(timeout=60)
    # rank 1's sh reports its child's death ("Killed"): the wrapper's line, not symdl's
    lines = [ln for ln in err.splitlines() if ln.strip() and ln.strip() != "Killed"]
    assert len(lines) == 1 and re.fullmatch(r"symdl: error: rank 1 \(PID \d+ on .+\) stopped "
                                            r"\(during .+\); .*checkpoint is kept\)", lines[0]), err
    _resumes_on_one_rank(ck)


@needs_mpi
@pytest.mark.slow
def test_kill_one_rank_under_symdl_ranks(tmp_path):
    """``symdl train --ranks 2``: rank 0 learns of the death from mpich (SIGUSR1)."""
    ck = tmp_path / "ck"
    proc = subprocess.Popen([sys.executable, *TRAIN, "--ranks", "2", "--checkpoint", str(ck)],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = _kill_rank1_after_first_checkpoint(proc, ck)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - killed < 30
    assert proc.returncode == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert re.match(r"symdl: error: rank 1 \(PID \d+ .*\) stopped", lines[0]), err
    _resumes_on_one_rank(ck)
