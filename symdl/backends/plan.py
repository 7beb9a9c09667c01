"""Execution planning: which nodes fuse into one kernel, in what order.

Elementwise nodes (and structural ops that declare a ``pointwise`` form,
such as ``broadcast_to`` and ``scale``) of one shape are fused into groups
along producer→consumer edges, greedily in topological order, unless the
merge would make the *schedule* cyclic: the group would depend on itself
through outside nodes or through other groups (group A feeding group B
while B feeds A, common in gradients of gradients).  A member is
*materialized* (has a buffer) when something outside its group, or the
caller, reads it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..graph import LEAVES, Graph
from ..ops import OPS, ElementwiseOp

__all__ = ["Unit", "is_elementwise", "plan"]


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


def plan(g: Graph, shapes: dict, outputs, fuse: bool = True) -> list:
    """Units in execution order.  ``shapes`` are the concrete node shapes;
    ``fuse=False`` gives every elementwise node a kernel (and a buffer) of its own."""
    group_of: dict = {}
    groups: dict = {}
    unit_of: dict = {}
    # the schedule so far: units of the nodes seen, with an edge wherever a
    # member of one reads a member of another; kept acyclic merge by merge
    dag = nx.DiGraph()
    for n in g.order():
        target = None
        if is_elementwise(g, n):
            for a in g.args(n):
                gid = group_of.get(a)
                if fuse and gid is not None and shapes[a] == shapes[n] and _acyclic(
                        dag, gid, {unit_of[b] for b in g.args(n) if unit_of[b] != gid}):
                    target = gid
                    break
            if target is None:
                target = n
                groups[n] = []
            groups[target].append(n)
            group_of[n] = target
        unit_of[n] = target or n
        dag.add_node(unit_of[n])
        dag.add_edges_from((unit_of[a], unit_of[n]) for a in g.args(n) if unit_of[a] != unit_of[n])
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


def _acyclic(dag: nx.DiGraph, unit: str, feeding: set) -> bool:
    """Adding a node read from the units ``feeding`` to ``unit`` keeps the
    schedule ``dag`` acyclic: ``unit`` must not already reach one of them.
    (Paths between single nodes are not enough: two groups can each feed
    the other with no path leaving and re-entering either one's members.)"""
    return not feeding or feeding.isdisjoint(nx.descendants(dag, unit))
