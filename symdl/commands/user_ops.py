"""``--ops FILE.py``: a user's own op declarations, run before the model is built.

The file declares ops with the public functions (``symdl.ops.activation`` for an activation,
``symdl.ops.elementwise`` for any elementwise op), for example::

    import sympy as sp
    from symdl.ops import activation, real

    x = real("x")
    activation("mish", x, x * sp.tanh(sp.log(1 + sp.exp(x))))

and ``symdl train --ops mish.py --activation mish`` trains with it: SymPy derives its
derivative, the kernels are generated like the built-ins'.  ``--activation`` is checked
after the files are run (not by argparse ``choices``, which would need the registry, and so
SymPy, just to print ``--help``), and accepts only ops declared as activations.
"""
from __future__ import annotations

import argparse
import runpy
import traceback
from pathlib import Path

from ..errors import SymdlError, UsageError

__all__ = ["add_ops_args", "load_ops", "load_user_ops", "check_activation"]


def add_ops_args(p: argparse.ArgumentParser) -> None:
    """``--ops FILE.py`` (repeatable)."""
    p.add_argument("--ops", metavar="FILE.py", action="append", default=None,
                   help="a Python file declaring your own ops with symdl.ops.activation(...) or "
                   "symdl.ops.elementwise(...), run before the model is built "
                   "(e.g. --ops mish.py --activation mish); may be repeated")


def load_ops(path) -> list:
    """Run the declarations in ``path``; return the names of the ops it added, sorted.

    Running a file again is harmless (an identical declaration is no change); a file that
    fails says where, in one line (:class:`~symdl.errors.UsageError`).
    """
    from ..ops import OPS
    p = Path(path)
    if p.suffix != ".py":
        raise UsageError(f"--ops needs a Python file (FILE.py), not {str(path)!r}")
    if not p.is_file():
        raise UsageError(f"--ops: no file {str(path)!r}")
    before = set(OPS)
    try:
        runpy.run_path(str(p), run_name="__symdl_ops__")
    except SyntaxError as exc:
        raise UsageError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001  (the user's code: say where it failed)
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if Path(f.filename).resolve() == p.resolve()]
        where = f"{path}:{frames[-1].lineno}" if frames else str(path)
        what = str(exc) if isinstance(exc, SymdlError) else f"{type(exc).__name__}: {exc}"
        raise UsageError(f"{where}: {what}") from None
    return sorted(set(OPS) - before)


def check_activation(name) -> None:
    """Refuse an ``--activation`` that is not a declared activation (one input), naming them."""
    from ..ops import OPS, ElementwiseOp
    if name is None or name in OPS.activations():
        return
    op = dict.get(OPS, name)
    why = ""
    if isinstance(op, ElementwiseOp):
        why = (f": {name} is an op of {op.arity} inputs" if op.arity != 1 else
               f": {name} is an op but not an activation (declare it with symdl.ops.activation)")
    raise UsageError(f"unknown activation {name!r}{why} (choose from: "
                     f"{', '.join(OPS.activations())})")


def load_user_ops(args) -> None:
    """Run every ``--ops`` file, then check ``--activation`` against the registry."""
    for path in getattr(args, "ops", None) or ():
        load_ops(path)
    check_activation(getattr(args, "activation", None))
