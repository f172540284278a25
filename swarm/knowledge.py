"""Hierarchical knowledge graphs (after DAMCS) with an order-free merge.

A graph is a ``networkx.DiGraph`` whose nodes carry a ``level`` (``goal``,
``subgoal``, ``step`` or ``fact``) and whose edges point from a parent to a
child (``goal -> subgoal -> step/fact``). Agents exchange ``KGDelta``-like
deltas: sets of added nodes and edges, each tagged with a Lamport-style
``(clock, origin)`` stamp.

Merging is add-wins: a node or edge once added stays; when two replicas set
the same node's attributes, the larger stamp wins. Both rules are
commutative, associative and idempotent, so two replicas that saw the same
deltas are equal whatever the order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from swarm.errors import SwarmError

__all__ = ["LEVELS", "Delta", "KnowledgeGraph", "KnowledgeError"]

LEVELS = ("goal", "subgoal", "step", "fact")
_RANK = {level: i for i, level in enumerate(LEVELS)}


class KnowledgeError(SwarmError):
    """A node or edge breaks the hierarchy (unknown level, edge upward or to a missing node)."""

    code = "knowledge"


@dataclass(frozen=True)
class Delta:
    """Additions to a graph: ``nodes`` maps id -> attributes, ``edges`` are (parent, child)."""

    origin: str
    clock: int
    nodes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    edges: tuple[tuple[str, str], ...] = ()


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
        **attrs: Any,
    ) -> Delta:
        """Add (or update) a node under ``parent`` locally and return the delta to share."""
        self.clock += 1
        delta = Delta(
            origin=self.owner,
            clock=self.clock,
            nodes={node: {"level": level, **attrs}},
            edges=((parent, node),) if parent is not None else (),
        )
        self.apply(delta)
        return delta

    def apply(self, delta: Delta) -> None:
        """Merge a delta (add-wins; the larger ``(clock, origin)`` stamp wins attributes).

        Raises:
            KnowledgeError: an unknown level, or an edge that does not go down the hierarchy.
        """
        stamp = (delta.clock, delta.origin)
        self.clock = max(self.clock, delta.clock)
        for node, attrs in delta.nodes.items():
            level = attrs.get("level")
            if level not in _RANK:
                raise KnowledgeError(f"node {node!r}: level {level!r} is not one of {LEVELS}")
            current = self.graph.nodes.get(node)
            if current is None or tuple(current["stamp"]) < stamp:
                self.graph.add_node(node, **{**dict(attrs), "stamp": stamp})
        self.pending.update(delta.edges)
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

    def as_delta(self) -> Delta:
        """The whole graph as one delta (used to merge replicas and to replay from JSON)."""
        nodes = {n: dict(a) for n, a in self.graph.nodes(data=True)}
        top = max((tuple(a["stamp"]) for a in nodes.values()), default=(0, self.owner))
        for attrs in nodes.values():
            attrs.pop("stamp")
        edges = tuple(sorted(self.graph.edges())) + tuple(sorted(self.pending))
        return Delta(origin=str(top[1]), clock=int(top[0]), nodes=nodes, edges=edges)

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


def replay(owner: str, deltas: Iterable[Delta]) -> KnowledgeGraph:
    """A fresh graph with ``deltas`` applied in the given order."""
    kg = KnowledgeGraph(owner)
    for delta in deltas:
        kg.apply(delta)
    return kg
