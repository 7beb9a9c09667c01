"""Execution planning: which nodes fuse into one kernel, in what order.

Elementwise nodes (and structural ops that declare a ``pointwise`` form,
such as ``broadcast_to`` and ``scale``) of one shape are fused into groups,
greedily in topological order: a node joins the group of one of its
arguments, and other argument groups of its shape merge in too (the gates
of an LSTM cell, computed from separate slices, become one kernel), unless
the merge could make the *schedule* cyclic: the group would depend on itself
through outside nodes or through other groups (group A feeding group B
while B feeds A, common in gradients of gradients).  A member is
*materialized* (has a buffer) when something outside its group, or the
caller, reads it.

The schedule is kept acyclic by numbering its units so that every edge goes
from a lower number to a higher one (a topological order kept up to date);
a merge is accepted when the merged unit can take a number above all of its
producers and below all of its consumers.  That test is local (it reads one
of the two units' neighbours, not the whole schedule), so planning is linear
in the graph's size: an unrolled sequence of 256 steps plans in the time of 256
steps, where searching the schedule's descendants at every merge made it
quadratic.  It may refuse a merge that a full search would allow, never the
other way round.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..graph import LEAVES, Graph
from ..ops import OPS, ElementwiseOp

__all__ = ["Schedule", "Unit", "is_elementwise", "plan"]


def is_elementwise(g: Graph, n: str) -> bool:
    """An elementwise op, or a structural one that declares a ``pointwise`` form."""
    op = g.op(n)
    if op in LEAVES:
        return False
    opdef = OPS[op]
    return isinstance(opdef, ElementwiseOp) or getattr(opdef, "pointwise", None) is not None


@dataclass
class Unit:
    """One scheduled step: a fused group or a single node."""

    nodes: list
    fused: bool = False
    outputs: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.nodes[0]


class Schedule:
    """The units planned so far, their edges, and a number per unit that
    increases along every edge.  ``work`` counts the neighbours read by the
    merge tests (a regression test bounds it by the graph's size)."""

    def __init__(self):
        self.num: dict = {}
        self.succ: dict = {}
        self.pred: dict = {}
        self.count = 0
        self.work = 0

    def add(self, u: str, preds) -> None:
        """A new unit ``u`` read from the units ``preds``, after all of them."""
        self.num[u], self.count = self.count, self.count + 1
        self.pred[u], self.succ[u] = set(preds) - {u}, set()
        for p in self.pred[u]:
            self.succ[p].add(u)

    def merged_number(self, x: str, y: str):
        """A number for the union of units ``x`` and ``y`` that is above every
        producer and below every consumer, else None.  One of their own
        numbers is taken; the numbering already orders each unit's own
        neighbours, so only the other unit's side needs reading: the producers
        of the newer unit for the older number, the consumers of the older
        unit for the newer one (a long chain that keeps growing reads only
        its newest member's neighbours)."""
        if self.num[x] > self.num[y]:
            x, y = y, x
        lo, hi = self.num[x], self.num[y]
        self.work += len(self.pred[y])
        if all(self.num[p] < lo for p in self.pred[y] if p != x):
            return lo
        self.work += len(self.succ[x])
        if all(self.num[c] > hi for c in self.succ[x] if c != y):
            return hi
        return None

    def merge(self, keep: str, other: str, number: int) -> None:
        """Fold unit ``other`` into ``keep`` and give it ``number``."""
        for p in self.pred.pop(other):
            self.succ[p].discard(other)
            if p != keep:
                self.succ[p].add(keep)
                self.pred[keep].add(p)
        for c in self.succ.pop(other):
            self.pred[c].discard(other)
            if c != keep:
                self.pred[c].add(keep)
                self.succ[keep].add(c)
        del self.num[other]
        self.pred[keep].discard(other)
        self.succ[keep].discard(other)
        self.num[keep] = number


def plan(g: Graph, shapes: dict, outputs, fuse: bool = True, schedule: Schedule | None = None,
         order=None):
    """Units in execution order.  ``shapes`` are the concrete node shapes;
    ``fuse=False`` gives every elementwise node a kernel (and a buffer) of its
    own; ``schedule`` (a fresh :class:`Schedule`) is filled for inspection;
    ``order`` is ``g.order()`` when the caller has it already."""
    order = g.order() if order is None else order
    pos = {n: k for k, n in enumerate(order)}
    groups: dict = {}   # group id -> members
    unit_of: dict = {}  # node -> its unit (a group id, or the node itself)
    sched = schedule if schedule is not None else Schedule()
    for n in order:
        args = g.args(n)
        sched.add(n, {unit_of[a] for a in args})
        unit_of[n] = n
        if not is_elementwise(g, n):
            continue
        groups[n] = [n]
        if not fuse:
            continue
        # n joins the first argument group of its shape that can take it; the
        # other argument groups of its shape merge in where they can
        for a in args:
            gid = unit_of[a]
            if gid == unit_of[n] or gid not in groups or shapes[a] != shapes[n]:
                continue
            cur = unit_of[n]
            k = sched.merged_number(gid, cur)
            if k is not None:
                keep, other = (gid, cur) if cur == n else (cur, gid)
                _absorb(sched, groups, unit_of, keep, other, k)
    dag = nx.DiGraph()
    dag.add_nodes_from(sched.num)
    dag.add_edges_from((u, s) for u in sched.succ for s in sched.succ[u])
    wanted = set(outputs)
    units = []
    for u in nx.lexicographical_topological_sort(dag):
        if u in groups:
            members = sorted(groups[u], key=pos.get)
            inside = set(members)
            outs = [m for m in members
                    if m in wanted or not fuse or any(c not in inside for c in g.consumers(m))]
            units.append(Unit(members, True, outs))
        else:
            units.append(Unit([u]))
    return units


def _absorb(sched: Schedule, groups: dict, unit_of: dict, keep: str, other: str, number: int):
    """Merge group ``other`` into group ``keep``."""
    sched.merge(keep, other, number)
    for m in groups.pop(other):
        unit_of[m] = keep
        groups[keep].append(m)
