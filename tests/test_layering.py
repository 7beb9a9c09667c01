"""Imports flow one way (DESIGN.md) and modules stay small."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "symdl"

#: layer of each top-level part of the package; a module may import its own
#: layer and lower ones only.
LAYERS = {
    "errors": 0, "ops": 1, "graph": 2, "derive": 3, "printing": 4, "codegen": 4,
    "backends": 5, "data": 5, "nn": 6, "optim": 7, "train": 8, "testing": 8,
    "commands": 9, "info": 9, "cli": 10, "__main__": 11, "__init__": 0,
}
SIBLINGS_APART = {("printing", "codegen"), ("codegen", "printing"), ("backends", "printing")}
MAX_LINES = 400


def part(module_path: Path) -> str:
    rel = module_path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set:
    tree = ast.parse(path.read_text())
    here = path.relative_to(PKG).parts[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = here[: len(here) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
                if not target:  # "from . import x" at the top of the package
                    target = [a.name for a in node.names]
                out.add(target[0])
            elif node.module and node.module.split(".")[0] == "symdl" and "." in node.module:
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("symdl."):
                    out.add(a.name.split(".")[1])
    return out


MODULES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_flow_one_way(path):
    me = part(path)
    assert me in LAYERS, f"{me} has no layer in tests/test_layering.py"
    for other in imported_parts(path):
        if other not in LAYERS or other == me:
            continue
        assert (me, other) not in SIBLINGS_APART, f"{path.name}: {me} must not import {other}"
        if me == "__init__":
            continue  # the package root re-exports nothing heavy
        assert LAYERS[other] <= LAYERS[me], f"{path.relative_to(PKG)} ({me}) imports {other}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_modules_are_short(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PKG)} has {n} lines (aim under {MAX_LINES})"


def test_cupy_and_tests_are_never_imported_at_module_level():
    for path in MODULES:
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                assert not name.startswith(("cupy", "tests", "gallery", "kernels")), (path, name)


def test_the_layer_checker_catches_a_violation(tmp_path):
    bad = PKG / "ops" / "_probe_bad_import.py"
    try:
        bad.write_text("from ..train import Trainer\n")
        assert "train" in imported_parts(bad)
        assert LAYERS["train"] > LAYERS[part(bad)]
    finally:
        bad.unlink()
