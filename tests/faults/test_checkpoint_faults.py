"""Faults around checkpoints: kills, full disks, corrupt and foreign files."""
from __future__ import annotations

import json
import os
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
ARGS = ["train", "--hidden", "16", "--batch-size", "64", "--json"]


def cli(capsys, *argv):
    code = main([*ARGS, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def final_params(folder: Path) -> dict:
    newest = ck.list_checkpoints(folder)[-1]
    return ck.load_checkpoint(newest).arrays


def python(code: str, *args, timeout=240):
    """Run ``code`` in a fresh interpreter (its own process, killable)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 6-epoch run: its history and final parameters."""
    folder = tmp_path_factory.mktemp("reference")
    assert main([*ARGS, "--epochs", "6", "--checkpoint", str(folder)]) == 0
    return folder


def test_kill_between_epochs_then_resume_is_bit_identical(capsys, tmp_path, reference):
    # the child SIGKILLs itself right after its second checkpoint is complete
    proc = python(f"""
        import os, signal, sys
        import symdl.train.trainer as tr
        real = tr.save_checkpoint
        count = []
        def save(*a, **k):
            path = real(*a, **k)
            count.append(path)
            if len(count) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return path
        tr.save_checkpoint = save
        from symdl.cli import main
        main({[*ARGS, "--epochs", "6", "--checkpoint", str(tmp_path)]!r})
    """)
    proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL
    assert len(ck.list_checkpoints(tmp_path)) == 2
    code, out, err = cli(capsys, "--epochs", "6", "--checkpoint", str(tmp_path))
    assert code == 0 and "resumed from" in err
    ref = json.loads((ck.list_checkpoints(reference)[-1] / "meta.json").read_text())["history"]
    mine = json.loads(out)
    assert mine["train_loss"] == ref["train_loss"]
    assert mine["val_accuracy"] == ref["val_accuracy"]
    a, b = final_params(tmp_path), final_params(reference)
    assert sorted(a) == sorted(b)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_sigkill_mid_write_leaves_the_previous_checkpoint(capsys, tmp_path, reference):
    # the child dies between writing the temporary folder and renaming it
    proc = python(f"""
        import os, signal
        import symdl.train.checkpoint as c
        calls = []
        real = os.rename
        def rename(src, dst):
            calls.append(dst)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst)
        c.os.rename = rename
        from symdl.cli import main
        main({[*ARGS, "--epochs", "6", "--checkpoint", str(tmp_path)]!r})
    """)
    proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL
    done = ck.list_checkpoints(tmp_path)
    assert [p.name for p in done] == ["ckpt-000000021", "ckpt-000000042"]
    assert any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())  # the torn one
    for p in done:
        ck.load_checkpoint(p)  # both verify
    code, out, err = cli(capsys, "--epochs", "6", "--checkpoint", str(tmp_path))
    assert code == 0
    assert json.loads(out)["train_loss"] == json.loads(
        (ck.list_checkpoints(reference)[-1] / "meta.json").read_text())["history"]["train_loss"]


def test_ctrl_c_saves_an_interrupted_checkpoint_and_exits_130(capsys, tmp_path, reference):
    proc = subprocess.Popen([sys.executable, "-m", "symdl", *ARGS, "--epochs", "4000",
                             "--checkpoint", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ck.list_checkpoints(tmp_path) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    newest = ck.load_checkpoint(ck.list_checkpoints(tmp_path)[-1])
    assert newest.meta["reason"] == "interrupted"


def test_full_disk_keeps_the_previous_checkpoint(capsys, tmp_path, monkeypatch):
    assert main([*ARGS, "--epochs", "1", "--checkpoint", str(tmp_path)]) == 0
    capsys.readouterr()
    before = {p.name: (p / "arrays.npz").read_bytes() for p in ck.list_checkpoints(tmp_path)}
    real = ck._write

    def full(path, data):
        if path.name == "meta.json":
            raise OSError(28, "No space left on device")
        return real(path, data)
    monkeypatch.setattr(ck, "_write", full)
    code, out, err = cli(capsys, "--epochs", "2", "--checkpoint", str(tmp_path))
    assert code == 4
    assert "disk full" in err and "previous checkpoint is kept" in err
    after = {p.name: (p / "arrays.npz").read_bytes() for p in ck.list_checkpoints(tmp_path)}
    assert after == before
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())


@pytest.fixture()
def one_checkpoint(tmp_path, capsys):
    assert main([*ARGS, "--epochs", "2", "--checkpoint", str(tmp_path)]) == 0
    capsys.readouterr()
    return ck.list_checkpoints(tmp_path)


def test_bit_flip_is_refused_and_auto_falls_back(capsys, tmp_path, one_checkpoint):
    newest = one_checkpoint[-1] / "arrays.npz"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x10
    newest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        ck.load_checkpoint(one_checkpoint[-1])
    code, out, err = cli(capsys, "--epochs", "2", "--checkpoint", str(tmp_path))
    assert code == 0
    assert "falling back to the previous checkpoint" in err and one_checkpoint[-1].name in err


@pytest.mark.parametrize("damage, message", [
    ("truncate", "SHA-256"),
    ("no_meta", "meta.json missing"),
    ("bad_json", "meta.json is corrupt"),
    ("newer", "newer than this symdl"),
    ("pickle", "refused to load"),
])
def test_damaged_checkpoint_exits_4(capsys, tmp_path, one_checkpoint, damage, message):
    target = one_checkpoint[-1]
    meta_path = target / "meta.json"
    meta = json.loads(meta_path.read_text())
    if damage == "truncate":
        p = target / "arrays.npz"
        p.write_bytes(p.read_bytes()[:100])
    elif damage == "no_meta":
        meta_path.unlink()
    elif damage == "bad_json":
        meta_path.write_text("{not json")
    elif damage == "newer":
        meta["format_version"] = 99
        meta_path.write_text(json.dumps(meta))
    elif damage == "pickle":
        payload = ck.npz_bytes({"param/0.W": np.array([{"evil": 1}], dtype=object)})
        (target / "arrays.npz").write_bytes(payload)
        import hashlib
        meta["arrays_sha256"] = hashlib.sha256(payload).hexdigest()
        meta["meta_sha256"] = ck.meta_digest(meta)  # a forger can recompute the digests
        meta_path.write_text(json.dumps(meta))
    code, _, err = cli(capsys, "--epochs", "3", "--resume", str(target))
    assert code == 4
    assert message in err and len(err.strip().splitlines()) == 1


def test_foreign_checkpoint_lists_the_differences(capsys, tmp_path, one_checkpoint):
    code, _, err = main(["train", "--hidden", "8", "--batch-size", "64", "--epochs", "3",
                         "--resume", str(one_checkpoint[-1])]), *capsys.readouterr()
    assert code == 4
    assert "different graph" in err and "reshaped 0.W (16, 64) -> (8, 64)" in err


def test_read_only_folder_exits_4_before_training(capsys):
    code, out, err = cli(capsys, "--epochs", "1", "--checkpoint", "/proc/symdl-cannot-write-here")
    assert code == 4 and "not writable" in err and out == ""
