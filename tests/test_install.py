"""An installed symdl (``pip install .`` into a fresh venv) works outside the checkout."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: what ``pip install .`` reads (a copy: the build writes build/ and *.egg-info next to it)
SOURCES = ("symdl", "gallery", "pyproject.toml", "setup.py", "README.md", "LICENSE")


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A venv (system site-packages: NumPy, SymPy... need no download) with symdl installed."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    # --without-pip: the system's pip and setuptools run in it (no download, a current setuptools)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(tmp / "venv")], check=True)
    python = tmp / "venv" / "bin" / "python"
    r = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-build-isolation",
                        "--no-deps", str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return python, elsewhere


def _run(python, cwd, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(python), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_the_installed_package_is_complete(venv):
    python, elsewhere = venv
    code = ("import pathlib, importlib.metadata as md, symdl\n"
            "root = pathlib.Path(symdl.__file__).parent\n"
            "print(root)\n"
            "print((root / 'py.typed').is_file())\n"
            "print(sorted(p.name for p in (root / '_gallery').glob('*.py')) == "
            f"{sorted(p.name for p in (ROOT / 'gallery').glob('*.py'))!r})\n"
            "meta = md.metadata('symdl')\n"
            "print(meta['License-Expression'], 'Typing :: Typed' in meta.get_all('Classifier'))\n"
            "print(any(f.name == 'LICENSE' for f in md.files('symdl')))\n")
    r = _run(python, elsewhere, "-c", code)
    assert r.returncode == 0, r.stderr
    root, typed, gallery, meta, license_file = r.stdout.splitlines()
    assert "site-packages" in root and not root.startswith(str(ROOT))  # not the checkout
    assert (typed, gallery, meta, license_file) == ("True", "True", "MIT True", "True")


@pytest.mark.slow
def test_gallery_runs_in_any_folder(venv):
    python, elsewhere = venv
    assert not (elsewhere / "gallery").exists()
    r = _run(python, elsewhere, "-m", "symdl", "gallery", "--only", "schedules", "--out", "notes")
    assert r.returncode == 0, r.stderr
    assert (elsewhere / "notes" / "schedules.tex").stat().st_size > 0
    assert "schedules" in (elsewhere / "notes" / "notes.tex").read_text()


@pytest.mark.slow
def test_kernels_check_outside_a_checkout_says_there_is_no_kernels_folder(venv):
    python, elsewhere = venv
    r = _run(python, elsewhere, "-m", "symdl", "kernels", "--check")
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "no kernels/ folder here" in lines[0]
