"""Second order: gradients of gradients compile fused; hvp and hessian against SymPy and torch."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symdl.backends.second_order import hessian, hvp
from symdl.backends.numpy_backend import compile_graph
from symdl.backends.plan import plan
from symdl.derive import grad, hvp_graph
from symdl.errors import UsageError
from symdl.graph import Graph
from symdl.ops import OPS, G, Y

F64 = "float64"


# ------------------------------------------------------------- the planner
def _crossing_groups():
    """Two fusable chains that each feed the other: a1 -> b1 and b2 -> a2.
    No path leaves and re-enters either group, yet merging both makes the
    schedule cyclic (group {a1, a2} needs b2, group {b2, b1} needs a1)."""
    g = Graph()
    x = g.input("x", ("N",), F64)
    a1 = g.add("tanh", x, name="a1")
    b2 = g.add("exp", x, name="b2")
    a2 = g.add("mul", a1, b2, name="a2")
    b1 = g.add("add", b2, a1, name="b1")
    return g, [a2, b1]


def _schedule_respects_dependencies(g, units):
    done = set(g.inputs()) | set(g.params())
    for u in units:
        inside = set(u.nodes)
        for n in u.nodes:
            for a in g.args(n):
                assert a in done or a in inside, f"{n} (unit {u.name}) runs before {a}"
        done |= inside


def test_groups_that_feed_each_other_are_not_both_merged():
    g, outs = _crossing_groups()
    units = plan(g, {n: (3,) for n in g.order()}, outs)
    _schedule_respects_dependencies(g, units)
    assert len([u for u in units if u.fused]) == 2  # still fused, just not into a cycle
    xv = np.array([-0.7, 0.2, 1.3])
    values = []
    for fuse in (True, False):
        prog = compile_graph(g, outs, dims={"N": 3}, fuse=fuse)
        prog.inputs["x"][...] = xv
        prog.run()
        values.append([prog.value(o).copy() for o in outs])
    want = [np.tanh(xv) * np.exp(xv), np.exp(xv) + np.tanh(xv)]
    for got in values:
        np.testing.assert_allclose(got, want, rtol=1e-14)
