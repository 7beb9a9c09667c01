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
    "display": 0, "draw": 4, "plot": 8,
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
        elif isinstance(node, ast.Call) and _dynamic_import(node):
            # importlib.import_module("symdl.x") / __import__("symdl.x"), or relative
            target = node.args[0].value
            package = next((k.value.value for k in node.keywords if k.arg == "package"
                            and isinstance(k.value, ast.Constant)), None)
            if target.startswith("."):
                level = len(target) - len(target.lstrip("."))
                base = here[: len(here) - level + 1]
                out.add([*base, *target.lstrip(".").split(".")][0])
            elif target.startswith("symdl.") or (package or "").startswith("symdl"):
                out.add(target.split(".")[1])
    return out


def _dynamic_import(call: ast.Call) -> bool:
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    return (name in ("import_module", "__import__") and call.args
            and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str))


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


def test_the_layer_checker_catches_an_importlib_import():
    bad = PKG / "derive" / "_probe_bad_import.py"
    try:
        bad.write_text("import importlib\nimportlib.import_module('symdl.printing')\n"
                       "__import__('symdl.train')\n")
        assert {"printing", "train"} <= imported_parts(bad)
    finally:
        bad.unlink()


#: the only parts that may import numba or load generated kernels
KERNEL_PARTS = ("backends", "codegen")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_only_backends_and_codegen_touch_numba_or_kernels(path):
    if part(path) in KERNEL_PARTS or path.name == "info.py":  # info reports numba's version
        return
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [a.name for a in node.names]
        for name in names:
            assert not name.startswith("numba"), f"{path.relative_to(PKG)} imports numba"
            assert name not in ("load_function", "loader") and not name.endswith(".loader"), (
                f"{path.relative_to(PKG)} loads kernels itself ({name}); go through the backend")
