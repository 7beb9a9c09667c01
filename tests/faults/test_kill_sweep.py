"""Twenty SIGKILLs at random moments of a checkpointed run, then a clean finish.

A driver process imports symdl once, runs the uninterrupted reference, then
forks one training run after another into the same checkpoint folder and
SIGKILLs each after a seeded random delay (most land in a checkpoint write,
a rename, a prune or a cleanup, since the tiny model makes those most of the
run).  After every kill each ``ckpt-*`` folder must still verify; after the
final, uninterrupted start there must be no temporary or trash folder left,
and the final parameters, optimizer state and history must equal the
reference's bit for bit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

DRIVER = r'''
import contextlib, io, json, os, random, signal, sys, time
from pathlib import Path
import numpy as np
from symdl.cli import main
from symdl.train import checkpoint as ck

folder, ref, seed, kills = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ARGS = ["train", "--dataset", "xor", "--hidden", "4", "--epochs", "60", "--batch-size", "16",
        "--keep-last", "2", "--no-progress", "--json"]

def run(where):
    """One training run in a forked child (the imported modules are shared, so it
    starts in milliseconds); returns its pid."""
    pid = os.fork()
    if pid == 0:
        # widen the window a kill can land in: each rename (a checkpoint's publication, a
        # prune's move to the trash) waits 5 ms with its temporary folder fully written,
        # so some of the 20 kills land inside a write however fast the training steps are
        rename = os.rename
        os.rename = lambda a, b: (time.sleep(0.005), rename(a, b))[1]
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os._exit(main([*ARGS, "--checkpoint", str(where)]))
    return pid

with contextlib.redirect_stdout(io.StringIO()):  # compile once, here: every fork inherits it
    # (without --keep-last, which applies only with --checkpoint: a refused warm-up compiled
    # nothing, and every fork then spent its first half second compiling)
    assert main([*ARGS[:-4], "--epochs", "1", "--json"]) == 0
pid = run(ref)                                   # the uninterrupted reference
t0 = time.perf_counter()
assert os.waitpid(pid, 0)[1] == 0
length = time.perf_counter() - t0
rng = random.Random(seed)
report = {"length": length, "kills": 0, "finished_early": 0, "strays_seen": 0, "torn": []}
for k in range(kills):
    pid = run(folder)
    # each killed run moves the folder on by what it saved: the delay is drawn
    # from the time the remaining epochs take, so the later runs are killed too
    # (a fixed range let a loaded machine finish 12 of 20 runs before the kill)
    done = 0
    for p in reversed(ck.list_checkpoints(folder)):
        with contextlib.suppress(ck.CheckpointError):
            done = ck.load_checkpoint(p).meta["epoch"]
            break
    time.sleep(rng.uniform(0.0, length * (60 - done) / 60 / 3))
    os.kill(pid, signal.SIGKILL)
    status = os.waitpid(pid, 0)[1]
    if os.WIFSIGNALED(status):
        report["kills"] += 1
    else:
        report["finished_early"] += 1
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    report["strays_seen"] += any(n.startswith((ck.TMP, ck.TRASH)) for n in names)
    for p in ck.list_checkpoints(folder):
        try:
            ck.load_checkpoint(p)
        except ck.CheckpointError as exc:
            report["torn"].append(f"after kill {k}: {exc}")
pid = run(folder)                                # the next start, left to finish
report["final_status"] = os.waitpid(pid, 0)[1]
report["left"] = sorted(p.name for p in folder.iterdir())
a = ck.load_checkpoint(ck.list_checkpoints(folder)[-1])
b = ck.load_checkpoint(ck.list_checkpoints(ref)[-1])
report["same_arrays"] = sorted(a.arrays) == sorted(b.arrays) and all(
    np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)
report["same_history"] = all(a.meta["history"][k] == b.meta["history"][k]
                             for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"))
report["epochs"] = (a.meta["epoch"], b.meta["epoch"])
print(json.dumps(report))
'''


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks its runs (POSIX)")
def test_twenty_sigkills_leave_nothing_torn_and_resume_bit_identically(tmp_path):
    folder, ref = tmp_path / "run", tmp_path / "reference"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(DRIVER), str(folder), str(ref),
                           "12", "20"], cwd=ROOT, capture_output=True, text=True, timeout=170,
                          env={**os.environ, "NUMBA_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["kills"] + report["finished_early"] == 20
    assert report["kills"] >= 15, report           # the kills landed while it ran
    assert report["strays_seen"] >= 1, report      # ... and some inside a write or a prune
    assert report["torn"] == []                     # every ckpt-* verified after every kill
    assert report["final_status"] == 0
    assert not [n for n in report["left"] if n.startswith((".tmp-", ".trash-", "corrupt-"))], report
    assert report["epochs"] == [60, 60]
    assert report["same_arrays"] and report["same_history"], report
