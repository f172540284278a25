"""``swarm lineage kg`` and ``swarm lineage messages``: what the agents knew and said.

``kg AGENT`` prints an agent's knowledge graph as of a round (an indented
hierarchy and its counts), ``--diff M`` what changed since round ``M``,
``--draw FILE`` a picture of it, ``--json`` node-link JSON.
``messages --round N`` lists a round's conversation, each answer under the
message it answers. Both only read (no lock), like ``log`` and ``show``; the
lineage side is ``swarm.lineage.kgview``, ``swarm.lineage.messagelog`` and
``swarm.lineage.rounds``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from swarm.knowledge import KnowledgeGraph
    from swarm.lineage.kgview import GraphAtRound, GraphDiff
    from swarm.wire.messages import LogEntry

__all__ = ["register_agent_commands"]


def _round(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a round number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"round {value} is not a round (rounds count from 0)")
    return value


def register_agent_commands(command: Any) -> None:
    """Add ``kg`` and ``messages`` through ``command(name, help, handler)`` (``swarm.cli.lineage``)."""
    p = command("kg", "print, diff or draw an agent's knowledge graph as of a round", _kg)
    p.add_argument("agent", help="agent id")
    p.add_argument("--round", type=_round, default=None, metavar="N",
                   help="the graph as of round N (default: its newest)")
    p.add_argument("--diff", type=_round, default=None, metavar="M",
                   help="what changed from round M to round N")
    p.add_argument("--draw", type=Path, default=None, metavar="FILE",
                   help="also draw the graph into FILE (.png, .svg or .pdf)")
    p.add_argument("--json", action="store_true", help="node-link JSON (with --diff: the diff)")
    p = command("messages", "list a round's agent messages, answers under their questions",
                _messages)
    p.add_argument("--round", type=_round, required=True, metavar="N")
    p.add_argument("--agent", default=None, help="only messages this agent sent or received")
    p.add_argument("--kind", default=None, help="only messages of this type (e.g. Question)")
    p.add_argument("--correlation", default=None, metavar="ID",
                   help="only the message with this id and its answers")
    p.add_argument("--json", action="store_true", help="the kept messages as JSON")


def _kg(args: argparse.Namespace) -> int:
    from swarm.lineage.kgview import (
        counts_line,
        diff_graphs,
        draw_graph,
        find_graph,
        graph_at_round,
    )
    from swarm.lineage.reader import LineageReader
    from swarm.lineage.rounds import check_round

    reader = LineageReader(args.dir)
    for n in (args.round, args.diff):
        check_round(reader, n)
    at = graph_at_round(reader, args.agent, args.round)
    asked = at.round if args.round is None else args.round
    # drawn first: a picture that cannot be written is the only output, not a late one
    drawn = None if args.draw is None else draw_graph(
        at.kg, args.draw, f"{args.agent}'s knowledge graph, round {asked}: {counts_line(at.kg)}")
    if args.diff is not None:
        base = find_graph(reader, args.agent, args.diff)
        old = base.kg if base else _empty(args.agent)
        _print_diff(args, base, at, old, diff_graphs(old, at.kg))
    elif args.json:
        print(json.dumps({"round": asked, "commit": at.commit, **json.loads(at.kg.to_json())},
                         indent=1, sort_keys=True))
    else:
        _print_graph(args, at)
    if drawn is not None:
        print(f"wrote {drawn}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _empty(agent: str) -> KnowledgeGraph:
    from swarm.knowledge import KnowledgeGraph

    return KnowledgeGraph(agent)


def _as_of(args: argparse.Namespace, at: GraphAtRound) -> str:
    asked = at.round if args.round is None else args.round
    when = "" if asked == at.round else f", committed in round {at.round}"
    return f"round {asked}{when} ({at.commit[:12]})"


def _print_graph(args: argparse.Namespace, at: GraphAtRound) -> None:
    from swarm.lineage.kgview import counts_line, tree_lines

    print(f"knowledge graph of {args.agent} as of {_as_of(args, at)}")
    for line in tree_lines(at.kg):
        print(f"  {line}")
    print(counts_line(at.kg))


def _print_diff(args: argparse.Namespace, base: GraphAtRound | None, at: GraphAtRound,
                old_kg: KnowledgeGraph, diff: GraphDiff) -> None:
    from swarm.lineage.kgview import short_attrs, short_value

    if args.json:
        ends = {"from": {"round": args.diff, "commit": base.commit if base else None},
                "to": {"round": at.round, "commit": at.commit}}
        print(json.dumps({"agent": args.agent, **ends, **diff.to_dict()}, indent=1))
        return
    since = f"round {args.diff}" if base else f"round {args.diff} (no graph yet: all of it is new)"
    print(f"knowledge graph of {args.agent}: {since} -> {_as_of(args, at)}")
    new, old = at.kg.graph, old_kg.graph
    for node in diff.added_nodes:
        parents = sorted(new.predecessors(node))
        under = f"(under {', '.join(parents)})" if parents else ""
        print(_joined(f"+ {new.nodes[node].get('level')} {node}", short_attrs(new.nodes[node]),
                      under))
    for node in diff.removed_nodes:
        print(_joined(f"- {old.nodes[node].get('level')} {node}", short_attrs(old.nodes[node])))
    for node, attrs in diff.changed.items():
        changes = ", ".join(f"{k}: {_or_absent(a, short_value)} -> {_or_absent(b, short_value)}"
                            for k, (a, b) in attrs.items())
        print(f"~ {new.nodes[node].get('level')} {node}  {changes}")
    for parent, child in diff.added_edges:
        print(f"+ edge {parent} -> {child}")
    for parent, child in diff.removed_edges:
        print(f"- edge {parent} -> {child}")
    print(f"nodes: {len(diff.added_nodes)} added, {len(diff.removed_nodes)} removed, "
          f"{len(diff.changed)} changed; edges: {len(diff.added_edges)} added, "
          f"{len(diff.removed_edges)} removed" + ("  (no change)" if diff.empty else ""))


def _joined(*parts: str) -> str:
    return "  ".join(p for p in parts if p)


def _or_absent(value: Any, fmt: Any) -> str:
    return "(absent)" if value is None else str(fmt(value))


def _messages(args: argparse.Namespace) -> int:
    from swarm.lineage.messagelog import read_messages, select, threaded
    from swarm.lineage.reader import LineageReader

    log = read_messages(LineageReader(args.dir), args.round)
    shown = select(log.messages, args.agent, args.kind, args.correlation)
    if args.json:
        out = msgspec.to_builtins(log)
        out["shown"] = len(shown)
        out["messages"] = msgspec.to_builtins(shown)
        print(json.dumps(out, indent=1))
        return 0
    filters = [f"{k} {v}" for k, v in (("agent", args.agent), ("kind", args.kind),
                                       ("correlation", args.correlation)) if v is not None]
    which = f"; {len(shown)} shown ({', '.join(filters)})" if filters else ""
    print(f"round {log.round}: {log.kept} of {log.total} message(s) kept "
          f"(lineage.messages: {log.policy}){which}")
    start = min((m.at for m in log.messages), default=0.0)
    for depth, m in threaded(shown):
        print(f"{'  ' * depth}{_message_line(m, start)}")
    return 0


def _message_line(m: LogEntry, start: float) -> str:
    """``+0.012s  a -> b  Question  {"q": ...}  error=agent.timeout  id=...``."""
    to = f"#{m.topic}" if m.topic else (m.recipient or "?")
    if m.body:
        body = m.body if len(m.body) <= 60 else m.body[:59] + "…"
    elif m.body_sha256:
        body = f"sha256:{m.body_sha256[:12]}… ({m.size} B)"
    else:
        body = f"({m.size} B)"
    error = f"  error={m.error}" if m.error else ""
    return f"+{m.at - start:.3f}s  {m.sender} -> {to}  {m.kind}  {body}{error}  id={m.msg_id}"

