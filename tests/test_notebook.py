"""examples/teacher.ipynb runs in a real Jupyter kernel (nbclient) with no error and shows its
derivations as LaTeX, its graphs and plots as SVG and the training history as a table."""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "teacher.ipynb"


def _outputs(cell) -> dict:
    """``{mime type: data}`` of a code cell's rich outputs (last one wins)."""
    out = {}
    for o in cell.get("outputs", []):
        out.update(o.get("data", {}))
    return out


def test_teacher_notebook_executes_with_latex_and_svg(monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # stored clean
    # the kernel imports this checkout (and inherits the tests' kernel cache folder)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    start = time.perf_counter()
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    seconds = time.perf_counter() - start
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert not [o for c in code for o in c.outputs
                if o.output_type == "stream" and o.name == "stderr" and "Traceback" in o.text]
    by_source = {c.source.splitlines()[-1]: _outputs(c) for c in code}
    mimes = [m for c in code for m in _outputs(c)]
    assert mimes.count("text/latex") >= 5 and mimes.count("image/svg+xml") >= 4

    derivation = by_source['derive("x*tanh(softplus(x))")']["text/latex"]
    assert derivation.startswith("\\begin{align*}") and "\\text{chain" in derivation
    assert by_source["g"]["image/svg+xml"].lstrip().startswith("<?xml")
    assert by_source["grad(g, L)"]["image/svg+xml"] != by_source["g"]["image/svg+xml"]
    assert "\\frac{\\partial" in by_source['derive_graph(g, L, ["0.W"])']["text/latex"]
    assert "\\checkmark" in by_source['layer_derivation("dense")']["text/latex"]
    table = by_source["history"]
    assert table["text/html"].count("<tr>") == 21 and "<th>val accuracy</th>" in table["text/html"]
    assert "image/svg+xml" in by_source["history.plot()"]  # no %matplotlib magic needed
    assert "image/svg+xml" in by_source['plot.activation("mish")']
    rule = by_source["Adam(list(model.parameters()), lr=0.01).derivation()"]["text/latex"]
    assert "\\alpha = 0.01" in rule and "\\hat{m}_{t}" in rule
    assert by_source["model"]["text/plain"] == \
        "Sequential(Dense(2, 4), Activation('mish'), Dense(4, 2))"
    assert seconds < 180, f"the notebook took {seconds:.0f} s (keep it under a minute)"
