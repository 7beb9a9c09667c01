"""Faults of issue 12 around checkpoints and resume: edited or corrupt meta.json,
every checkpoint corrupt, two writers, kills while pruning, stale temporaries,
SIGTERM, and command-line settings that disagree with the checkpoint."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from symdl.cli import main
from symdl.errors import CheckpointError
from symdl.train import checkpoint as ck

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["train", "--dataset", "xor", "--hidden", "4", "--no-progress", "--json"]  # 6 steps/epoch


def cli(capsys, *argv):
    try:
        code = main([*ARGS, *argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def child(code: str):
    """Run ``code`` in a fresh interpreter (its own process, killable)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def newest(folder: Path) -> ck.Checkpoint:
    return ck.load_checkpoint(ck.list_checkpoints(folder)[-1])


def same_state(a: Path, b: Path) -> bool:
    x, y = newest(a), newest(b)
    return sorted(x.arrays) == sorted(y.arrays) and all(
        np.array_equal(x.arrays[k], y.arrays[k]) for k in x.arrays) and \
        x.meta["history"]["train_loss"] == y.meta["history"]["train_loss"]


def forge(path: Path, edit) -> None:
    """Edit ``meta.json`` with ``edit(meta)`` and recompute its digest (a forger can)."""
    meta = json.loads((path / "meta.json").read_text())
    edit(meta)
    meta["meta_sha256"] = ck.meta_digest(meta)
    (path / "meta.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs of 3 and 4 epochs."""
    out = {}
    for epochs in (3, 4):
        folder = tmp_path_factory.mktemp(f"ref{epochs}")
        assert main([*ARGS, "--epochs", str(epochs), "--checkpoint", str(folder)]) == 0
        out[epochs] = folder
    return out


@pytest.fixture()
def two(tmp_path, capsys):
    """A folder holding the checkpoints of epochs 1 and 2."""
    assert main([*ARGS, "--epochs", "2", "--checkpoint", str(tmp_path)]) == 0
    capsys.readouterr()
    return tmp_path


# ------------------------------------------------------------------ 1. meta.json
def test_edited_epoch_is_caught_by_the_checksum_and_moved_aside(capsys, two, reference):
    path = ck.list_checkpoints(two)[-1]
    text = (path / "meta.json").read_text()
    assert '"epoch": 2' in text
    (path / "meta.json").write_text(text.replace('"epoch": 2', '"epoch": 3'))
    with pytest.raises(CheckpointError, match="meta.json does not match its SHA-256"):
        ck.load_checkpoint(path)
    edited = (path / "meta.json").read_bytes()
    code, out, err = cli(capsys, "--epochs", "3", "--checkpoint", str(two))
    assert code == 0, err
    assert "moved aside to corrupt-" + path.name in err and "falling back" in err
    assert (two / f"corrupt-{path.name}" / "meta.json").read_bytes() == edited  # kept as it was
    assert json.loads(out)["train_loss"] == newest(reference[3]).meta["history"]["train_loss"]
    assert same_state(two, reference[3])  # no epoch skipped


@pytest.mark.parametrize("edit, fragment", [
    (lambda m: m.update(format_version="x"), "format_version = 'x'"),
    (lambda m: m.update(format_version=None), "format_version = None"),
    (lambda m: m.pop("optimizer"), "field optimizer missing"),
    (lambda m: m["optimizer"].pop("t"), "field optimizer.t missing"),
    (lambda m: m.update(rng={"bit_generator": "PCG64", "state": "garbage"}), "rng is not a generator"),
    (lambda m: m.update(rng=[1, 2]), "rng = [1, 2]"),
    (lambda m: m.update(epoch=-1), "epoch = -1"),
    (lambda m: m.update(global_step=True), "global_step = True"),
    (lambda m: m["position"].update(pos="3"), "position.pos = '3'"),
    (lambda m: m["optimizer"]["hyper"].update(lr="fast"), "hyper holds a non-number"),
    (lambda m: m.update(format_version=1), "reads format 2 only"),
])
def test_every_field_is_checked_with_its_type(capsys, two, edit, fragment):
    path = ck.list_checkpoints(two)[-1]
    forge(path, edit)
    with pytest.raises(CheckpointError, match="corrupt|format") as info:
        ck.load_checkpoint(path)
    assert fragment in str(info.value)
    code, _, err = cli(capsys, "--epochs", "3", "--resume", str(path))
    assert code == 4 and fragment in err and len(err.strip().splitlines()) == 1


def test_forty_bit_flips_of_meta_json_are_all_refused(two):
    path = ck.list_checkpoints(two)[-1]
    good = (path / "meta.json").read_bytes()
    rng, tried, kept_json = random.Random(12), 0, 0
    while kept_json < 40 and tried < 20000:
        tried += 1
        data = bytearray(good)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        try:
            meta = json.loads(data)
        except ValueError:
            continue
        if isinstance(meta, dict) and ck.meta_digest(meta) == ck.meta_digest(json.loads(good)):
            continue  # the same content (a flip inside the digest itself is refused below too)
        kept_json += 1
        (path / "meta.json").write_bytes(bytes(data))
        with pytest.raises(CheckpointError):  # never a traceback, never accepted
            ck.load_checkpoint(path)
    assert kept_json == 40


def test_a_flip_inside_the_digest_is_refused(two):
    path = ck.list_checkpoints(two)[-1]
    forge(path, lambda m: None)
    meta = json.loads((path / "meta.json").read_text())
    meta["meta_sha256"] = ("0" if meta["meta_sha256"][0] != "0" else "1") + meta["meta_sha256"][1:]
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="SHA-256"):
        ck.load_checkpoint(path)


# ------------------------------------------------------- 2. every checkpoint corrupt
def test_auto_refuses_when_every_checkpoint_is_corrupt_and_overwrites_nothing(capsys, two):
    for p in ck.list_checkpoints(two):
        data = bytearray((p / "arrays.npz").read_bytes())
        data[len(data) // 2] ^= 0x10
        (p / "arrays.npz").write_bytes(bytes(data))
    before = {p.name: (p / "arrays.npz").read_bytes() for p in ck.list_checkpoints(two)}
    for attempt in range(2):  # and again: the moved-aside ones still count
        code, out, err = cli(capsys, "--epochs", "3", "--checkpoint", str(two))
        assert code == 4 and out == ""
        assert "no checkpoint in" in err and "--resume never" in err
    assert ck.list_checkpoints(two) == []
    assert {p.name[len("corrupt-"):]: (p / "arrays.npz").read_bytes()
            for p in two.iterdir() if p.name.startswith("corrupt-")} == before
    code, _, err = cli(capsys, "--epochs", "1", "--resume", "never", "--checkpoint", str(two))
    assert code == 0  # starting afresh is explicit; the corrupt ones are still there
    assert len([p for p in two.iterdir() if p.name.startswith("corrupt-")]) == 2


def test_a_corrupt_checkpoint_in_the_way_of_a_save_is_moved_aside(capsys, tmp_path):
    assert main([*ARGS, "--epochs", "1", "--checkpoint", str(tmp_path)]) == 0
    path = ck.list_checkpoints(tmp_path)[-1]
    (path / "arrays.npz").write_bytes(b"torn")
    code, _, err = cli(capsys, "--epochs", "1", "--resume", "never", "--checkpoint", str(tmp_path))
    assert code == 0, err
    assert (tmp_path / f"corrupt-{path.name}" / "arrays.npz").read_bytes() == b"torn"
    ck.load_checkpoint(path)  # the new one


# ----------------------------------------------------------------- 3. two writers
def test_one_writer_per_folder(capsys, tmp_path):
    with ck.FolderLock(tmp_path):
        code, out, err = cli(capsys, "--epochs", "1", "--checkpoint", str(tmp_path))
    assert code == 4 and out == ""
    assert f"in use by another symdl process (PID {os.getpid()})" in err
    assert ck.list_checkpoints(tmp_path) == []


def test_a_second_process_is_refused_and_a_dead_writers_lock_is_taken_over(capsys, tmp_path):
    first = child(f"""
        from symdl.cli import main
        main({[*ARGS, "--epochs", "100000", "--checkpoint", str(tmp_path)]!r})
    """)
    deadline = time.time() + 120
    while not ck.list_checkpoints(tmp_path) and time.time() < deadline:
        time.sleep(0.05)
    code, _, err = cli(capsys, "--epochs", "1", "--checkpoint", str(tmp_path))
    assert code == 4 and f"(PID {first.pid})" in err
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert (tmp_path / ".lock").read_text().strip() == str(first.pid)  # stale, left behind
    code, _, err = cli(capsys, "--epochs", "1", "--resume", "never", "--checkpoint", str(tmp_path))
    assert code == 0, err


# ------------------------------------------- 4. pruning, temporaries, SIGTERM
def test_sigkill_mid_prune_leaves_no_half_deleted_checkpoint(capsys, tmp_path, reference):
    # the child dies halfway through deleting a pruned checkpoint
    proc = child(f"""
        import os, signal, shutil
        import symdl.train.checkpoint as c
        real = shutil.rmtree
        def rmtree(path, *a, **k):
            if os.path.basename(path).startswith(".trash-"):
                os.unlink(os.path.join(path, "meta.json"))
                os.kill(os.getpid(), signal.SIGKILL)
            return real(path, *a, **k)
        c.shutil.rmtree = rmtree
        from symdl.cli import main
        main({[*ARGS, "--epochs", "4", "--checkpoint", str(tmp_path)]!r})
    """)
    proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL
    names = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith(".trash-ckpt-") for n in names)  # the half-deleted one, renamed first
    for p in ck.list_checkpoints(tmp_path):
        ck.load_checkpoint(p)  # every ckpt-* is whole
    code, out, err = cli(capsys, "--epochs", "4", "--checkpoint", str(tmp_path))
    assert code == 0, err
    assert "cleared 1 leftover" in err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".trash-", ".tmp-"))]
    assert same_state(tmp_path, reference[4])


def test_kill_between_the_renames_of_a_replacement_loses_nothing(capsys, tmp_path, reference):
    assert main([*ARGS, "--epochs", "1", "--keep-last", "1", "--checkpoint", str(tmp_path)]) == 0
    capsys.readouterr()
    proc = child(f"""
        import os, signal
        import symdl.train.checkpoint as c
        real = os.rename
        def rename(src, dst):
            real(src, dst)
            if os.path.basename(dst).startswith(".trash-"):
                os.kill(os.getpid(), signal.SIGKILL)  # the old one moved, the new one not yet in
        c.os.rename = rename
        from symdl.cli import main
        main({[*ARGS, "--epochs", "1", "--keep-last", "1", "--resume", "never",
               "--checkpoint", str(tmp_path)]!r})
    """)
    proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL
    assert ck.list_checkpoints(tmp_path) == []  # the only checkpoint sits in .trash-
    code, out, err = cli(capsys, "--epochs", "3", "--keep-last", "1", "--checkpoint", str(tmp_path))
    assert code == 0 and "resumed from" in err, err  # put back, not deleted
    assert same_state(tmp_path, reference[3])


def test_stale_temporaries_of_dead_runs_are_cleared_at_the_next_start(capsys, two):
    stale = [two / ".tmp-ckpt-000000012-18853", two / ".trash-ckpt-000000006-18853"]
    for p in stale:
        p.mkdir()
        (p / "arrays.npz").write_bytes(b"half")
    (two / ".probe-18853").write_bytes(b"")
    code, _, err = cli(capsys, "--epochs", "3", "--checkpoint", str(two))
    assert code == 0 and "cleared 3 leftover" in err
    assert sorted(p.name for p in two.iterdir() if p.name.startswith(".") and p.name != ".lock") == []


def test_sigterm_saves_an_interrupted_checkpoint_and_exits_143(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "symdl", *ARGS, "--epochs", "100000",
                             "--checkpoint", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ck.list_checkpoints(tmp_path) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err
    assert newest(tmp_path).meta["reason"] == "interrupted"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".trash-"))]


# --------------------------------------------------- 5. settings on the command line
@pytest.mark.parametrize("flags, fragment", [
    (["--lr", "100"], "lr 0.05 in the checkpoint, 100.0 now"),
    (["--seed", "5"], "seed 0 in the checkpoint, 5 now"),
    (["--momentum", "0.5", "--clip-norm", "1"], "clip_norm None in the checkpoint, 1.0 now; "
                                                "momentum 0.9 in the checkpoint, 0.5 now"),
])
def test_explicit_settings_that_differ_from_the_checkpoint_are_refused(capsys, two, flags, fragment):
    before = {p.name: (p / "meta.json").read_bytes() for p in ck.list_checkpoints(two)}
    code, out, err = cli(capsys, "--epochs", "3", "--checkpoint", str(two), *flags)
    assert code == 2 and out == ""
    assert "trained with other settings" in err and fragment in err, err
    assert {p.name: (p / "meta.json").read_bytes() for p in ck.list_checkpoints(two)} == before


def test_settings_left_at_their_defaults_come_from_the_checkpoint_and_are_named(capsys, tmp_path):
    ref = tmp_path / "ref"
    assert main([*ARGS, "--epochs", "3", "--lr", "0.1", "--clip-norm", "0.5",
                 "--checkpoint", str(ref)]) == 0
    run = tmp_path / "run"
    assert main([*ARGS, "--epochs", "2", "--lr", "0.1", "--clip-norm", "0.5",
                 "--checkpoint", str(run)]) == 0
    capsys.readouterr()
    code, out, err = main([*ARGS[:-1], "--epochs", "3", "--checkpoint", str(run)]), *capsys.readouterr()
    assert code == 0, err
    assert "settings taken from the checkpoint" in err and "lr=0.1" in err and "clip_norm=0.5" in err
    assert "SGD(lr=0.1," in out  # the banner shows what really runs
    assert same_state(run, ref)
    assert newest(run).meta["settings"]["lr"] == 0.1  # and what is recorded
