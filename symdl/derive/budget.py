"""The work bound of one derivation: a wall-clock deadline and a size limit.

SymPy can run for minutes on inputs well inside the parser's limits (the
product rule on 119 factors, towers of powers), so :func:`symdl.derive.derive`
holds a :class:`Budget`: the deadline is checked between steps and, in the main
thread, enforced by an interval timer that interrupts SymPy mid-step; the
expression's size is checked after each step.  Past either, a one-line
:class:`~symdl.errors.UsageError` "too large to derive in N s" (exit code 2).
"""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

import sympy as sp

from ..errors import UsageError

__all__ = ["TIME_LIMIT", "MAX_NODES", "Budget", "OutOfTime", "size_over"]

#: Seconds one derivation may take (``derive(..., time_limit=)``, ``--time-limit``).
TIME_LIMIT = 10.0
#: Nodes the expression may have after any step (a product of 119 sines grows to 119²).
MAX_NODES = 20_000


class OutOfTime(BaseException):
    """Raised by the interval timer inside SymPy; a ``BaseException`` (as
    ``KeyboardInterrupt``) so that no ``except Exception`` in SymPy swallows it."""


class Budget:
    """The deadline (``seconds`` from now; None: none) and size limit of one derivation."""

    def __init__(self, seconds: float | None, max_nodes: int = MAX_NODES):
        if seconds is not None and not float(seconds) > 0:
            raise UsageError(f"the time limit must be a positive number of seconds, not {seconds}")
        self.seconds, self.max_nodes = seconds, int(max_nodes)
        self.end = None if seconds is None else time.monotonic() + float(seconds)

    def error(self, why: str = "") -> UsageError:
        """The one-line error to raise when the budget is spent."""
        timed = self.seconds is not None and not why
        limit = f" in {float(self.seconds):g} s" if timed else ""
        hint = ", or a longer --time-limit" if self.seconds is not None else ""
        return UsageError(f"too large to derive{limit}{why} (try a smaller expression{hint})")

    def check(self, expr: sp.Expr) -> None:
        """Raise :meth:`error` past the deadline or when ``expr`` is too big."""
        if self.end is not None and time.monotonic() > self.end:
            raise self.error()
        if size_over(expr, self.max_nodes):
            raise self.error(f": the expression grew past {self.max_nodes} nodes")

    @contextmanager
    def alarm(self):
        """Interrupt the block at the deadline with :class:`OutOfTime` (main thread,
        where SIGALRM exists and no other timer is set; elsewhere :meth:`check`
        between steps is the only bound)."""
        usable = (self.end is not None and hasattr(signal, "setitimer")
                  and threading.current_thread() is threading.main_thread()
                  and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
        if not usable:
            yield
            return

        def fire(signum, frame):
            raise OutOfTime()

        old = signal.signal(signal.SIGALRM, fire)
        signal.setitimer(signal.ITIMER_REAL, max(self.end - time.monotonic(), 1e-3))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


def size_over(e: sp.Expr, limit: int) -> bool:
    """Whether ``e`` has more than ``limit`` nodes (stops counting there)."""
    n = 0
    for _ in sp.preorder_traversal(e):
        n += 1
        if n > limit:
            return True
    return False
