"""CLI group ``swarm lineage``: read and curate a lineage directory.

``log``, ``show``, ``diff``, ``graph`` and ``fsck`` only read (no lock, safe
while a swarm runs); ``promote`` and ``prune`` take the writer lock, so they
wait for (or refuse while) a running coordinator holds it. Every failure is
one ``LineageError`` line naming the directory or file and the problem (an
``OSError`` the library did not already name is turned into one here).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarm.errors import LineageError

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``lineage`` command group."""
    group = sub.add_parser("lineage", help="inspect the Git-backed lineage store")
    cmds = group.add_subparsers(dest="lineage_command", metavar="COMMAND")
    cmds.required = True

    def command(name: str, help: str, handler: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = cmds.add_parser(name, help=help, description=help)
        p.add_argument("-C", "--dir", type=Path, default=Path("."),
                       help="lineage directory (default: the current one)")
        p.set_defaults(handler=_named_errors(handler))
        return p

    p = command("log", "history of an agent's line, newest first", _log)
    p.add_argument("agent", help="agent id, branch, tag or commit")
    p.add_argument("-n", "--limit", type=int, default=None, help="show at most N commits")
    p.add_argument("--all-ancestors", action="store_true",
                   help="walk merged-in partners too, not just the line of descent")
    p = command("show", "print a file as of a commit, branch, agent or tag", _show)
    p.add_argument("ref")
    p.add_argument("path", help="e.g. agents/a/adapter.json")
    p = command("diff", "files that changed between two commits", _diff)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("-p", "--patch", action="store_true", help="print the full diff")
    p = command("graph", "draw the phylogeny as a PNG/SVG picture", _graph)
    p.add_argument("-o", "--output", type=Path, default=Path("phylogeny.png"),
                   help="picture to write (.png, .svg or .pdf; default phylogeny.png)")
    p.add_argument("--max-commits", type=int, default=400, help="draw the newest N (default 400)")
    p.add_argument("--title", default=None)
    p = command("promote", "mark a version as promoted (an annotated tag)", _promote)
    p.add_argument("ref")
    p.add_argument("name", help="tag name")
    p.add_argument("-m", "--message", default="")
    p = command("prune", "retire a branch; its history is kept under refs/pruned/", _prune)
    p.add_argument("branch", help="e.g. agent/a")
    p.add_argument("--reason", required=True)
    command("fsck", "check the repository (git fsck --strict) and adapter blobs", _fsck)


def _named_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Turn an ``OSError`` (missing, read-only or full destination) into a one-line LineageError."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except OSError as exc:
            where = exc.filename or args.dir
            raise LineageError(f"{where}: {exc.strerror or exc}") from None

    return run


def _reader(args: argparse.Namespace) -> Any:
    from swarm.lineage.reader import LineageReader

    return LineageReader(args.dir)


def _log(args: argparse.Namespace) -> int:
    entries = _reader(args).log(args.agent, args.limit, first_parent=not args.all_ancestors)
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.time))
        merge = f"  merge of {', '.join(p[:10] for p in e.parents)}" if len(e.parents) > 1 else ""
        subject = e.message.splitlines()[0] if e.message else ""
        print(f"{e.commit[:12]}  {when}  {e.branch or '-':<16} {subject}{merge}")
    return 0


def _show(args: argparse.Namespace) -> int:
    sys.stdout.buffer.write(_reader(args).show(args.ref, args.path))
    return 0


def _diff(args: argparse.Namespace) -> int:
    reader = _reader(args)
    if args.patch:
        print(reader.patch(args.a, args.b), end="")
        return 0
    for entry in reader.diff(args.a, args.b):
        print(f"{entry.status}\t{entry.path}")
    return 0


def _graph(args: argparse.Namespace) -> int:
    from swarm.lineage.phylogeny import draw

    graph = _reader(args).phylogeny()
    dest = draw(graph, args.output, args.title, args.max_commits)
    print(f"wrote {dest} ({graph.number_of_nodes()} commits, {len(graph.graph['lanes'])} lanes)")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from swarm.lineage.store import LineageStore

    with LineageStore.open(args.dir, lock_timeout=5) as store:
        sha = store.promote(args.ref, args.name, args.message)
    print(f"promoted {sha[:12]} as {args.name}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from swarm.lineage.store import LineageStore

    with LineageStore.open(args.dir, lock_timeout=5) as store:
        ref = store.prune(args.branch, args.reason)
    print(f"pruned {args.branch}; its line is kept as {ref}")
    return 0


def _fsck(args: argparse.Namespace) -> int:
    problems = _reader(args).fsck()
    for line in problems:
        print(line)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1
