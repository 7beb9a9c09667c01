"""Build the API reference from the docstrings with pdoc: ``python docs/build_api.py OUT``.

Every module of the package is documented (a package's ``__all__`` would otherwise hide
the submodules it does not list).  Any warning pdoc gives (a docstring or annotation it
cannot read, an ``__all__`` entry that does not resolve) is printed and the build fails
(exit 1), so the reference never silently loses a page.
"""
from __future__ import annotations

import pkgutil
import sys
import warnings
from pathlib import Path


def modules() -> list:
    """The module specifications for pdoc: each module once (a package's walk adds the
    submodules its ``__all__`` names; the others are given on their own)."""
    import pdoc.extract

    import symdl
    for name in symdl.__all__:  # the lazily loaded top-level API, resolved for pdoc
        getattr(symdl, name)
    names = ["symdl", *sorted(m.name for m in pkgutil.walk_packages(symdl.__path__, "symdl.")
                              if not m.name.endswith("__main__"))]
    covered, specs = set(), []
    for name in names:
        if name not in covered:
            specs.append(name)
            covered.update(pdoc.extract.walk_specs([name]))
    return specs


def build(out: Path) -> list:
    """Write the HTML reference under ``out``; returns pdoc's warnings (as strings)."""
    import pdoc
    import pdoc.render
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.render.configure(docformat="numpy", show_source=False, search=True,
                              footer_text="symdl API reference")
        pdoc.pdoc(*modules(), output_directory=Path(out))
    return [str(w.message).splitlines()[0] for w in caught]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "docs/api")
    problems = build(out)
    for p in problems:
        print(f"pdoc: {p}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} warning(s): the API reference must build cleanly", file=sys.stderr)
        return 1
    print(f"API reference written to {out}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
