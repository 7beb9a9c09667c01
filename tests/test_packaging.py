"""Packaging: the top-level API (lazy), the API reference (pdoc, no warning), LICENSE, CHANGELOG."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_import_symdl_is_cheap_and_the_api_loads_on_use(tmp_path):
    r = python("import sys, symdl\n"
               "heavy = sorted(m for m in ('sympy', 'numpy', 'networkx', 'numba', 'symdl.derive') "
               "if m in sys.modules)\n"
               "print(heavy)\n"
               "import symdl.nn, symdl.optim\n"
               "from symdl.derive import derive\n"
               "from symdl.derive.reverse import grad\n"
               "from symdl.graph import Graph\n"
               "from symdl.train.saved import load, save\n"
               "print(symdl.derive.derive is derive, symdl.grad is grad, symdl.Graph is Graph,\n"
               "      symdl.nn is sys.modules['symdl.nn'], symdl.optim.SGD.__name__,\n"
               "      symdl.save is save, symdl.load is load)\n"
               "d = symdl.derive('x**2', 'x')\n"
               "print(d.render('text').splitlines()[-1].split('[')[0].strip())\n"
               "print(set(symdl.__all__) <= set(dir(symdl)))\n"
               "try:\n    symdl.nope\nexcept AttributeError as e:\n    print(e)\n", tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "[]"  # import symdl: no SymPy, NumPy, networkx or numba
    assert lines[1] == "True True True True SGD True True"
    assert lines[2] == "= 2·x" and lines[3] == "True"
    assert lines[4] == "module 'symdl' has no attribute 'nope'"


def test_derivations_print_whatever_imported_them_first(tmp_path):
    """The printers register themselves when symdl.derive loads (not at import symdl)."""
    for first in ("from symdl.derive.steps import derive",
                  "from symdl.derive import derive",
                  "import symdl; derive = symdl.derive"):
        r = python(f"{first}\nd = derive('exp(2*x)', 'x')\n"
                   "print(str(d).splitlines()[-1]); print(d._repr_latex_().splitlines()[-2])",
                   tmp_path)
        assert r.returncode == 0, (first, r.stderr)
        out = r.stdout.splitlines()
        assert "2·e^(2·x)" in out[0] and "e^{2 x}" in out[1], (first, out)


def test_api_reference_builds_without_a_warning(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "build_api.py"), str(tmp_path / "api")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stderr == "", r.stderr[-3000:]
    api = tmp_path / "api"
    for page in ("index.html", "symdl.html", "symdl/train/saved.html", "symdl/nn/config.html",
                 "symdl/derive.html", "symdl/graph.html", "symdl/optim.html"):
        assert (api / page).is_file(), page
    assert "SavedModel" in (api / "symdl/train/saved.html").read_text()
    assert len(list(api.rglob("*.html"))) > 60  # every module, not only those in __all__s


def test_license_changelog_and_metadata():
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n\nCopyright (c) 2026 symdl developers")
    assert (ROOT / "symdl" / "py.typed").is_file()
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert "Typing :: Typed" in project["classifiers"] and project["urls"]["Changelog"]
    assert "pdoc>=14" in project["optional-dependencies"]["test"]
    assert meta["tool"]["setuptools"]["package-data"]["symdl"] == ["py.typed"]
    log = (ROOT / "CHANGELOG.md").read_text()
    assert log.startswith("# Changelog\n") and "Keep a Changelog" in log
    versions = re.findall(r"^## \[([^\]]+)\]", log, re.M)
    assert versions[:2] == ["Unreleased", "0.1.0"]
    for section in re.split(r"^## ", log, flags=re.M)[1:]:
        kinds = re.findall(r"^### (\w+)", section, re.M)
        assert kinds and set(kinds) <= {"Added", "Changed", "Deprecated", "Removed", "Fixed",
                                        "Security"}, section[:60]
