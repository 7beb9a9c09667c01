"""Where the notes and symdl differ

Wherever the study notes write a rule differently from symdl (which follows
PyTorch), both forms side by side, symdl's taken from its own declarations,
and SymPy's verdict: equal, equal under a change of names, equal after a
change of variables, or different (with what differs, computed).  The
verdicts come from symdl.optim.reconcile; none is typed.
"""
from __future__ import annotations

import sys
from pathlib import Path

from symdl.commands.gallery import section, table, text
from symdl.optim.reconcile import reconciliations, to_latex

ORDER = 98


def build(out: Path, seed: int = 0) -> dict:
    out = Path(out)
    found = reconciliations()
    rows = [(text(r.title), text(r.verdict)) for r in found]
    parts = [section("Where the notes and symdl differ", "reconciliation"),
             "The course notes are students' summaries; in a few places they write a rule "
             "differently from PyTorch, which symdl follows. For each such place: the notes' form "
             "and symdl's (printed from the optimizer rule, op or cell symdl runs), and the verdict "
             "SymPy reaches by comparing them (expanding and simplifying the difference; searching "
             "the renamings of the symbols; or applying a change of variables). Where they differ, "
             "what differs is computed too.\n",
             table(["rule", "SymPy's verdict"], rows, "ll")]
    for r in found:
        parts.append(rf"\subsection{{{text(r.title)}}}" + "\n" + to_latex(r))
    (out / "reconciliation.tex").write_text("\n".join(parts))
    return {"title": "Where the notes and symdl differ", "files": ["reconciliation.tex"],
            "seeds": [seed]}


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
