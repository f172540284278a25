"""Agents' knowledge graphs as the lineage recorded them: as of a round, as a tree, as a diff.

``graph_at_round(reader, agent, n)`` reads ``agents/<id>/kg.json`` from the
agent's line as of round ``n`` (``swarm.lineage.rounds``) and rebuilds the
``KnowledgeGraph``; ``tree_lines`` prints its hierarchy (goal > subgoal >
step/fact) indented, ``diff_graphs`` compares two versions (nodes and edges
added and removed, attributes changed: merging is add-wins, but a role may
rebuild its graph from scratch), and ``draw_graph`` draws it with matplotlib
(``swarm.lineage.kgdrawing``). ``swarm lineage kg`` is built on these.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm.errors import LineageError, SwarmError
from swarm.knowledge import LEVELS, KnowledgeGraph
from swarm.lineage.reader import LineageReader
from swarm.lineage.repo import agent_branch, kg_path
from swarm.lineage.rounds import RoundCommit, commit_at_round, first_with, line_rounds

__all__ = ["GraphAtRound", "GraphDiff", "graph_at_round", "find_graph", "known_agents", "diff_graphs",
           "tree_lines", "counts_line", "short_value", "short_attrs", "draw_graph"]

_RANK = {level: i for i, level in enumerate(LEVELS)}
_HIDDEN = ("level", "stamp")  # what every node has; not shown among its attributes


@dataclass(frozen=True)
class GraphAtRound:
    """An agent's knowledge graph as committed in ``commit`` (round ``round``)."""

    agent: str
    round: int
    commit: str
    subject: str
    kg: KnowledgeGraph


@dataclass(frozen=True)
class GraphDiff:
    """What changed from one version of a graph to another.

    ``changed`` maps a node to ``{attribute: (old, new)}`` (None: absent on that side).
    """

    added_nodes: list[str] = field(default_factory=list)
    removed_nodes: list[str] = field(default_factory=list)
    added_edges: list[tuple[str, str]] = field(default_factory=list)
    removed_edges: list[tuple[str, str]] = field(default_factory=list)
    changed: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Nothing changed."""
        return not (self.added_nodes or self.removed_nodes or self.added_edges
                    or self.removed_edges or self.changed)

    def to_dict(self) -> dict[str, Any]:
        """The diff as JSON data."""
        return {"added_nodes": self.added_nodes, "removed_nodes": self.removed_nodes,
                "added_edges": [list(e) for e in self.added_edges],
                "removed_edges": [list(e) for e in self.removed_edges],
                "changed": {n: {k: list(v) for k, v in attrs.items()}
                            for n, attrs in self.changed.items()}}


def known_agents(reader: LineageReader) -> list[str]:
    """Every agent with a line in the lineage (live or pruned), sorted."""
    names: set[str] = set()
    for prefix in ("refs/heads/agent/", "refs/pruned/agent/"):
        names.update(ref.removeprefix(prefix) for ref in reader.refs(prefix))
    return sorted(names)


def graph_at_round(reader: LineageReader, agent: str, n: int | None = None) -> GraphAtRound:
    """``agent``'s knowledge graph as of round ``n`` (None: its newest).

    Raises:
        LineageError: an unknown agent (naming some known ones), no graph of the
            agent at round ``n`` yet (naming the round of its first), no graph in
            the whole lineage, or a ``kg.json`` that is not a knowledge graph.
    """
    found = find_graph(reader, agent, n)
    if found is None:
        raise _no_graph(reader, agent, line_rounds(reader, _line_ref(reader, agent)), n)
    return found


def find_graph(reader: LineageReader, agent: str, n: int | None = None) -> GraphAtRound | None:
    """``graph_at_round``, but None where the agent has no graph yet at round ``n``.

    Raises:
        LineageError: an unknown agent, or a ``kg.json`` that is not a knowledge graph.
    """
    agents = known_agents(reader)
    if agent not in agents:
        raise LineageError(f"no agent {agent!r} in {reader.path} ({_some(agents)})")
    picked = commit_at_round(line_rounds(reader, _line_ref(reader, agent)), n)
    path = kg_path(agent)
    raw = None if picked is None else _show_or_none(reader, picked.commit, path)
    if picked is None or raw is None:
        return None
    try:
        kg = KnowledgeGraph.from_json(raw.decode())
    except (ValueError, KeyError, TypeError, SwarmError) as exc:
        raise LineageError(f"{path} at {picked.commit[:12]} in {reader.path} is not a "
                           f"knowledge graph ({exc!r})") from None
    return GraphAtRound(agent, picked.round, picked.commit, picked.subject, kg)


def _show_or_none(reader: LineageReader, commit: str, path: str) -> bytes | None:
    try:
        return reader.show(commit, path)
    except LineageError:
        return None


def _line_ref(reader: LineageReader, agent: str) -> str:
    live = f"refs/heads/{agent_branch(agent)}"
    return live if reader.refs(live) else f"refs/pruned/{agent_branch(agent)}"


def _some(names: list[str], shown: int = 5) -> str:
    if not names:
        return "it holds no agents"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"known: {', '.join(names[:shown])}{more}"


def _no_graph(reader: LineageReader, agent: str, line: list[RoundCommit],
              n: int | None) -> LineageError:
    """Why ``agent`` has no graph as of round ``n``: not yet, never, or none in the lineage."""
    first = first_with(reader, line, kg_path(agent))
    if first is not None:
        at = f"round {n}" if n is not None else "its newest commit"
        return LineageError(f"agent {agent!r} has no knowledge graph yet at {at} (its first "
                            f"is in round {first.round})")
    anywhere = reader.git("log", "--branches=agent/*", "-n1", "--format=%H", "--",
                          ":(glob)agents/*/kg.json").strip()
    if not anywhere:
        return LineageError(f"{reader.path} holds no knowledge graphs (no agents/*/kg.json on "
                            "any agent branch: its roles keep none, or it was written before "
                            "graphs were recorded)")
    return LineageError(f"agent {agent!r} has no knowledge graph in {reader.path} (other "
                        "agents do)")


def diff_graphs(old: KnowledgeGraph, new: KnowledgeGraph) -> GraphDiff:
    """What ``new`` added, removed and changed relative to ``old`` (the stamp is not compared)."""
    a, b = old.graph, new.graph
    changed: dict[str, dict[str, tuple[Any, Any]]] = {}
    for node in sorted(set(a) & set(b)):
        before = {k: v for k, v in a.nodes[node].items() if k != "stamp"}
        after = {k: v for k, v in b.nodes[node].items() if k != "stamp"}
        attrs = {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after))
                 if before.get(k) != after.get(k)}
        if attrs:
            changed[node] = attrs
    return GraphDiff(
        added_nodes=sorted(set(b) - set(a), key=lambda n: _order(b.nodes[n], n)),
        removed_nodes=sorted(set(a) - set(b), key=lambda n: _order(a.nodes[n], n)),
        added_edges=sorted(set(b.edges()) - set(a.edges())),
        removed_edges=sorted(set(a.edges()) - set(b.edges())),
        changed=changed,
    )


def _order(attrs: Mapping[str, Any], node: str) -> tuple[int, str]:
    return _RANK.get(str(attrs.get("level")), len(LEVELS)), node


def short_value(value: Any, width: int = 40) -> str:
    """A value as JSON, cut to ``width`` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def short_attrs(attrs: Mapping[str, Any], width: int = 40) -> str:
    """A node's own attributes in short form: ``key=value`` pairs, each value cut to ``width``."""
    return " ".join(f"{k}={short_value(v, width)}" for k, v in sorted(attrs.items())
                    if k not in _HIDDEN)


def tree_lines(kg: KnowledgeGraph, indent: str = "  ") -> list[str]:
    """The hierarchy as indented lines: ``level id  key=value ...``, children under parents.

    A node with several parents is printed in full under the first, and as
    ``(shown above)`` under the others.
    """
    g = kg.graph
    roots = sorted((n for n in g if g.in_degree(n) == 0), key=lambda n: _order(g.nodes[n], n))
    lines: list[str] = []
    seen: set[str] = set()
    for depth, node in _walk(kg, roots):
        attrs = g.nodes[node]
        text = f"{indent * depth}{attrs.get('level', '?')} {node}"
        if node in seen:
            lines.append(f"{text}  (shown above)")
            continue
        seen.add(node)
        extra = short_attrs(attrs)
        lines.append(f"{text}  {extra}" if extra else text)
    return lines


def _walk(kg: KnowledgeGraph, roots: list[str]) -> Iterator[tuple[int, str]]:
    """Depth-first ``(depth, node)``; a node seen before is yielded but not descended into."""
    g = kg.graph
    stack = [(0, r) for r in reversed(roots)]
    expanded: set[str] = set()
    while stack:
        depth, node = stack.pop()
        yield depth, node
        if node in expanded:
            continue
        expanded.add(node)
        kids = sorted(g.successors(node), key=lambda n: _order(g.nodes[n], n))
        stack.extend((depth + 1, k) for k in reversed(kids))


def counts_line(kg: KnowledgeGraph) -> str:
    """``7 nodes (1 goal, 2 subgoals, 1 step, 3 facts), 6 edges, 0 pending``."""
    levels = [str(a.get("level")) for _, a in kg.graph.nodes(data=True)]
    parts = [f"{levels.count(lv)} {lv}{'s' if levels.count(lv) != 1 else ''}" for lv in LEVELS
             if levels.count(lv)]
    nodes = kg.graph.number_of_nodes()
    inner = f" ({', '.join(parts)})" if parts else ""
    return (f"{nodes} node{'s' if nodes != 1 else ''}{inner}, {kg.graph.number_of_edges()} "
            f"edge{'s' if kg.graph.number_of_edges() != 1 else ''}, {len(kg.pending)} pending")


def draw_graph(kg: KnowledgeGraph, dest: Path, title: str | None = None) -> Path:
    """Draw ``kg`` into ``dest`` (PNG, SVG or PDF by suffix): levels as rows, coloured by level.

    Raises:
        LineageError: a bad suffix, an empty graph, or ``dest`` cannot be written.
    """
    from swarm.lineage.kgdrawing import render

    dest = Path(dest)
    if dest.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise LineageError(f"{dest}: the picture must end in .png, .svg or .pdf")
    if kg.graph.number_of_nodes() == 0:
        raise LineageError(f"the knowledge graph of {kg.owner!r} has no nodes to draw")
    try:
        render(kg.graph, dest, title or f"knowledge graph of {kg.owner}: {counts_line(kg)}")
    except OSError as exc:
        raise LineageError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return dest
