"""Hierarchical knowledge graphs (after DAMCS) with an order-free merge.

A graph is a ``networkx.DiGraph`` whose nodes carry a ``level`` (``goal``,
``subgoal``, ``step`` or ``fact``) and whose edges point from a parent to a
child (``goal -> subgoal -> step/fact``). Agents exchange deltas: sets of added
nodes and edges, each tagged with a Lamport-style ``(clock, origin)`` stamp.
A delta is the wire's ``KGDelta`` message itself (re-exported here), so the
graph makes and applies exactly what an agent sends and receives.

Merging is add-wins: a node or edge once added stays; when two replicas set
the same node's attributes, the larger stamp wins. Both rules are
commutative, associative and idempotent, so two replicas that saw the same
deltas are equal whatever the order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import networkx as nx

from swarm.errors import SwarmError
from swarm.wire.messages import KGDelta, KGEdge, KGNode

__all__ = ["LEVELS", "KGDelta", "KGEdge", "KGNode", "KnowledgeGraph", "KnowledgeError",
           "replay"]

LEVELS = ("goal", "subgoal", "step", "fact")
_RANK = {level: i for i, level in enumerate(LEVELS)}
#: What a node attribute may hold: what ``KGNode.attrs`` carries on the wire.
AttrValue = str | int | float | bool


class KnowledgeError(SwarmError):
    """A node or edge breaks the hierarchy (unknown level, edge upward or to a missing node)."""

    code = "knowledge"


class KnowledgeGraph:
    """One agent's hierarchical memory; ``apply`` merges deltas from anyone."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.graph: nx.DiGraph = nx.DiGraph()
        self.clock = 0
        # Edges whose ends have not arrived yet: deltas may come in any order.
        self.pending: set[tuple[str, str]] = set()

    def add(
        self,
        node: str,
        level: str,
        parent: str | None = None,
        **attrs: AttrValue,
    ) -> KGDelta:
        """Add (or update) a node under ``parent`` locally and return the delta to share."""
        self.clock += 1
        delta = KGDelta(
            sender=self.owner,
            origin=self.owner,
            clock=self.clock,
            nodes=[KGNode(id=node, level=level, attrs=attrs)],
            edges=[KGEdge(parent=parent, child=node)] if parent is not None else [],
        )
        self.apply(delta)
        return delta

    def apply(self, delta: KGDelta) -> None:
        """Merge a delta (add-wins; the larger ``(clock, origin)`` stamp wins attributes).

        Raises:
            KnowledgeError: an unknown level, or an edge that does not go down the hierarchy.
        """
        stamp = (delta.clock, delta.origin)
        self.clock = max(self.clock, delta.clock)
        for node in delta.nodes:
            if node.level not in _RANK:
                raise KnowledgeError(f"node {node.id!r}: level {node.level!r} is not one of "
                                     f"{LEVELS}")
            current = self.graph.nodes.get(node.id)
            if current is None or tuple(current["stamp"]) < stamp:
                self.graph.add_node(node.id, **{**node.attrs, "level": node.level, "stamp": stamp})
        self.pending.update((edge.parent, edge.child) for edge in delta.edges)
        for parent, child in sorted(self.pending):
            if parent not in self.graph or child not in self.graph:
                continue
            self.pending.discard((parent, child))
            if _RANK[self.graph.nodes[parent]["level"]] >= _RANK[self.graph.nodes[child]["level"]]:
                raise KnowledgeError(
                    f"edge {parent!r} -> {child!r} must go down the hierarchy {LEVELS}"
                )
            self.graph.add_edge(parent, child)

    def merge(self, other: KnowledgeGraph) -> None:
        """Merge every node and edge of another replica."""
        self.apply(other.as_delta())

    def as_delta(self) -> KGDelta:
        """The whole graph as one delta (used to merge replicas and to replay from JSON)."""
        top = max((tuple(a["stamp"]) for _, a in self.graph.nodes(data=True)),
                  default=(0, self.owner))
        nodes = [KGNode(id=n, level=a["level"],
                        attrs={k: v for k, v in a.items() if k not in ("level", "stamp")})
                 for n, a in self.graph.nodes(data=True)]
        edges = [KGEdge(parent=p, child=c)
                 for p, c in [*sorted(self.graph.edges()), *sorted(self.pending)]]
        return KGDelta(sender=self.owner, origin=str(top[1]), clock=int(top[0]), nodes=nodes,
                       edges=edges)

    def children(self, node: str) -> list[str]:
        """Direct children of ``node``, sorted."""
        return sorted(self.graph.successors(node))

    def to_json(self) -> str:
        """Node-link JSON, stable (sorted) so equal graphs give equal bytes."""
        data = nx.node_link_data(self.graph, edges="edges")
        data["nodes"] = sorted(data["nodes"], key=lambda n: n["id"])
        data["edges"] = sorted(data["edges"], key=lambda e: (e["source"], e["target"]))
        for node in data["nodes"]:
            node["stamp"] = list(node["stamp"])
        body = {"owner": self.owner, "clock": self.clock, "graph": data,
                "pending": sorted(self.pending)}
        return json.dumps(body, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> KnowledgeGraph:
        """Rebuild a graph written by ``to_json``."""
        data = json.loads(text)
        kg = cls(data["owner"])
        kg.graph = nx.node_link_graph(data["graph"], directed=True, edges="edges")
        for _, attrs in kg.graph.nodes(data=True):
            attrs["stamp"] = tuple(attrs["stamp"])
        kg.clock = int(data["clock"])
        kg.pending = {(str(a), str(b)) for a, b in data.get("pending", [])}
        return kg

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KnowledgeGraph):
            return NotImplemented
        return _canonical(self) == _canonical(other)

    __hash__ = None  # type: ignore[assignment]


def _canonical(kg: KnowledgeGraph) -> tuple[Any, ...]:
    nodes = sorted((n, sorted((k, str(v)) for k, v in a.items())) for n, a in kg.graph.nodes(data=True))
    return tuple(nodes), tuple(sorted(kg.graph.edges())), tuple(sorted(kg.pending))


def replay(owner: str, deltas: Iterable[KGDelta]) -> KnowledgeGraph:
    """A fresh graph with ``deltas`` applied in the given order."""
    kg = KnowledgeGraph(owner)
    for delta in deltas:
        kg.apply(delta)
    return kg
