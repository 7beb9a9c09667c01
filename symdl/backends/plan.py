"""Execution planning: which nodes fuse into one kernel, in what order.

Elementwise nodes (and ``broadcast_to``/``scale``, which are elementwise in
disguise) of one shape are fused into groups along producer→consumer edges,
greedily in topological order, unless the merge would make the group
depend on itself through an outside node.  A member is *materialized* (has
a buffer) when something outside its group, or the caller, reads it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..graph import Graph
from ..ops import OPS, ElementwiseOp

VIEWS = ("transpose", "reshape")
ELEMENTWISE_LIKE = ("broadcast_to", "scale")


def is_elementwise(g: Graph, n: str) -> bool:
    op = g.op(n)
    if op in ELEMENTWISE_LIKE:
        return True
    if op in ("input", "param"):
        return False
    return isinstance(OPS[op], ElementwiseOp)


@dataclass
class Unit:
    """One scheduled step: a fused group or a single node."""

    nodes: list
    fused: bool = False
    outputs: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.nodes[0]


def plan(g: Graph, shapes: dict, outputs, fuse: bool = True) -> list:
    """Units in execution order.  ``shapes`` are the concrete node shapes;
    ``fuse=False`` gives every elementwise node a kernel (and a buffer) of its own."""
    group_of: dict = {}
    groups: dict = {}
    order = g.order()
    for n in order:
        if not is_elementwise(g, n):
            continue
        target = None
        for a in g.args(n):
            gid = group_of.get(a)
            if fuse and gid is not None and shapes[a] == shapes[n] and _acyclic(g, groups[gid], n):
                target = gid
                break
        if target is None:
            target = n
            groups[n] = []
        groups[target].append(n)
        group_of[n] = target

    unit_of = {n: group_of.get(n, n) for n in order}
    dag = nx.DiGraph()
    dag.add_nodes_from(set(unit_of.values()))
    for n in order:
        for a in g.args(n):
            if unit_of[a] != unit_of[n]:
                dag.add_edge(unit_of[a], unit_of[n])
    wanted = set(outputs)
    units = []
    for u in nx.lexicographical_topological_sort(dag):
        if u in groups:
            members = groups[u]
            inside = set(members)
            outs = [m for m in members
                    if m in wanted or not fuse or any(c not in inside for c in g.consumers(m))]
            units.append(Unit(members, True, outs))
        else:
            units.append(Unit([u]))
    return units


def _acyclic(g: Graph, members: list, n: str) -> bool:
    """Adding ``n`` keeps the group free of paths leaving and re-entering it."""
    inside = set(members)
    outside_args = [a for a in g.args(n) if a not in inside]
    if not outside_args:
        return True
    below = set()
    for m in members:
        below |= nx.descendants(g.nx, m)
    return not any(a in below for a in outside_args)
