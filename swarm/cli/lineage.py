"""CLI group ``swarm lineage``: read and curate a lineage directory.

``log``, ``show``, ``diff``, ``graph``, ``checkout``, ``fsck``, ``kg`` and
``messages`` (``swarm.cli.lineage_agents``) only read the lineage (no lock, safe
while a swarm runs, on every layout version); ``promote``, ``prune``, ``gc``
and ``migrate`` take the writer lock, so they wait for (or refuse while) a
running coordinator holds it. ``gc`` removes nothing unless told
``--delete``. Every failure is one ``LineageError`` line naming the directory
or file and the problem (an ``OSError`` the library did not already name is
turned into one here).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarm.cli.lineage_agents import register_agent_commands
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

    _read_commands(command)
    register_agent_commands(command)
    _write_commands(command)


def _read_commands(command: Any) -> None:
    """``log``, ``show``, ``diff``, ``graph``, ``checkout``, ``fsck``: lock-free reads."""
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
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="picture to write (.png, .svg or .pdf; default phylogeny.png, "
                        "or NAME-phylogeny.png with --artifact)")
    p.add_argument("--max-commits", type=int, default=400, help="draw the newest N (default 400)")
    p.add_argument("--title", default=None)
    p.add_argument("--artifact", metavar="NAME", default=None,
                   help="draw this shared artifact's versions instead, coloured by fitness")
    p = command("checkout", "write a version of a shared artifact into a new folder", _checkout)
    p.add_argument("ref", help="commit, tag or branch; with --artifact also an agent id")
    p.add_argument("dest", type=Path, help="folder to write (new, or empty)")
    p.add_argument("--artifact", metavar="NAME", default=None,
                   help="the artifact (needed when the commit holds several)")
    command("fsck", "check the repository (git fsck --strict) and adapter blobs", _fsck)


def _write_commands(command: Any) -> None:
    """``promote``, ``prune``, ``gc``, ``migrate``: they take the writer lock."""
    p = command("promote", "mark a version as promoted (an annotated tag)", _promote)
    p.add_argument("ref")
    p.add_argument("name", help="tag name")
    p.add_argument("-m", "--message", default="")
    p = command("prune", "retire a branch; its history is kept under refs/pruned/", _prune)
    p.add_argument("branch", help="e.g. agent/a")
    p.add_argument("--reason", required=True)
    p = command("gc", "remove stored adapter weights that no ref reaches (a dry run unless "
                      "--delete)", _gc)
    p.add_argument("--delete", action="store_true",
                   help="remove them (default: only list what would be removed)")
    p.add_argument("--pruned", action="store_true",
                   help="also remove adapters that only pruned lines (refs/pruned/) reach")
    p = command("migrate", "upgrade a lineage written by an older swarm to the current layout",
                _migrate)
    p.add_argument("lineage", nargs="?", type=Path, default=None,
                   help="lineage directory (default: -C, or the current one)")
    p.add_argument("--adapter-store", type=Path, default=None,
                   help="the machine's adapter store to move its adapters into "
                        "(default: adapters/ beside the lineage; use model.adapter_store's "
                        "value if the run set it)")


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

    if args.artifact is not None:
        return _artifact_graph(args)
    graph = _reader(args).phylogeny()
    dest = draw(graph, args.output or Path("phylogeny.png"), args.title, args.max_commits)
    print(f"wrote {dest} ({graph.number_of_nodes()} commits, {len(graph.graph['lanes'])} lanes)")
    return 0


def _artifact_graph(args: argparse.Namespace) -> int:
    from swarm.lineage.artifactview import artifact_phylogeny, draw_artifact, fittest

    graph = artifact_phylogeny(_reader(args), args.artifact)
    out = args.output or Path(f"{args.artifact}-phylogeny.png")
    dest = draw_artifact(graph, out, args.title, max_commits=args.max_commits)
    best = fittest(graph)
    agents = {a["agent"] for a in graph.nodes.values()} - {None}
    found = f"best {best[1]:.6g} at {best[0][:12]}" if best else "no version scored yet"
    print(f"wrote {dest} ({graph.number_of_nodes()} versions of {args.artifact}, "
          f"{len(agents)} individuals; {found})")
    return 0


def _checkout(args: argparse.Namespace) -> int:
    from swarm.lineage.artifactview import artifact_version, checkout_artifact

    reader = _reader(args)
    sha, name = artifact_version(reader, args.ref, args.artifact)
    dest = checkout_artifact(reader, sha, args.dest, name)
    count = sum(1 for path in dest.rglob("*") if path.is_file())
    print(f"wrote artifact {name} as of {args.ref} ({sha[:12]}): {count} file(s) in {dest}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from swarm.lineage.gitstore import GitLineageStore

    with GitLineageStore.open(args.dir, lock_timeout=5) as store:
        sha = store.promote(args.ref, args.name, args.message)
    print(f"promoted {sha[:12]} as {args.name}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from swarm.lineage.gitstore import GitLineageStore

    with GitLineageStore.open(args.dir, lock_timeout=5) as store:
        ref = store.prune(args.branch, args.reason)
    print(f"pruned {args.branch}; its line is kept as {ref}")
    return 0


def _fsck(args: argparse.Namespace) -> int:
    problems = _reader(args).fsck()
    for line in problems:
        print(line)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


def _gc(args: argparse.Namespace) -> int:
    from swarm.lineage.gc import collect_garbage
    from swarm.lineage.gitstore import GitLineageStore

    with GitLineageStore.open(args.dir, lock_timeout=5) as store:
        report = collect_garbage(store, pruned=args.pruned, delete=args.delete)
    verb = "removed" if report.deleted else "would remove"
    for entry in report.garbage:
        print(f"{verb} {entry.name}  {_size(entry.size):>9}  {entry.why}")
    for line in report.refused:
        print(line)
    if report.kept_pruned:
        kept = sum(g.size for g in report.kept_pruned)
        print(f"kept {len(report.kept_pruned)} adapter(s) ({_size(kept)}) that only pruned "
              f"history references (add --pruned to remove them)")
    users = f" (used by {len(report.lineages)} lineages)" if len(report.lineages) > 1 else ""
    if not report.garbage:
        print(f"nothing to remove in {report.store}{users}")
    elif report.deleted:
        print(f"freed {_size(report.freed)} in {report.store}{users}")
    else:
        print(f"dry run: {len(report.garbage)} entr{'y' if len(report.garbage) == 1 else 'ies'}"
              f", {_size(report.freed)} would be freed in {report.store}{users}; "
              f"add --delete to remove them")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from swarm.lineage.layout import LAYOUT_VERSION
    from swarm.lineage.migrate import migrate

    done = migrate(args.lineage or args.dir, args.adapter_store)
    if done.from_version >= LAYOUT_VERSION:
        print(f"{done.path} has the current layout already; nothing to do")
        return 0
    print(f"migrated {done.path} from layout {done.from_version}: {done.adapters} adapter(s) "
          f"now in {done.adapter_store} ({done.copied} copied, "
          f"{done.adapters - done.copied} there already); removed cas/ ({_size(done.freed)})")
    return 0


def _size(n: int) -> str:
    """Bytes in the largest unit that keeps at least 1 (``1.5 MiB``)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
