"""Lock-free reads of a lineage directory (``LineageReader``).

Every query resolves its refs once and then reads immutable objects by sha, so
a reader sees one consistent snapshot even while the writer commits: the writer
makes objects durable before it moves a ref, and moves refs atomically. Reads
run short-lived plain ``git`` commands, which never take a lock. Adapter
weights are read from where the lineage's layout keeps them
(``swarm.lineage.layout``): the machine's adapter store, or the ``cas/`` of a
lineage written before the layout had a version.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarm.adapters.store import AdapterStore
from swarm.errors import LineageError
from swarm.lineage.cas import LegacyContentStore
from swarm.lineage.layout import Layout, read_layout
from swarm.lineage.names import check_ref_name, check_rev, check_tree_path, is_sha
from swarm.lineage.pointers import AdapterSource, StoreSource, pointer_shas
from swarm.lineage.repo import split_trailer

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["LogEntry", "DiffEntry", "LineageReader"]

_POINTER_GLOB = ":(glob)agents/*/adapter.json"


@dataclass(frozen=True)
class LogEntry:
    """One commit as ``log`` reports it."""

    commit: str
    parents: tuple[str, ...]
    author: str
    time: int
    message: str
    branch: str | None


@dataclass(frozen=True)
class DiffEntry:
    """One changed path between two commits: status ``A``dded, ``D``eleted or ``M``odified."""

    status: str
    path: str
    old_sha: str | None
    new_sha: str | None


class LineageReader:
    """Read-only view of a lineage directory (a bare git repository plus ``lineage.json``).

    Args:
        path: the lineage directory.
        adapters: the adapter store to read through (default: the one the
            layout names, opened without creating anything).

    Raises:
        LineageError: not a lineage directory, or a layout newer than this code knows.
    """

    def __init__(self, path: Path, adapters: AdapterStore | None = None) -> None:
        self.path = Path(path)
        self.git_dir = self.path
        if not (self.path / "HEAD").is_file() or not (self.path / "objects").is_dir():
            raise LineageError(f"{self.path} is not a lineage directory (no git repository)")
        self.layout: Layout = read_layout(self.path)
        self.adapters: AdapterStore | None = None
        self.source: AdapterSource
        if self.layout.adapter_store is None:  # layout 1: the lineage's own cas/
            self.source = LegacyContentStore(self.path / "cas")
        else:
            self.adapters = adapters or AdapterStore(self.layout.adapter_store, create=False)
            self.source = StoreSource(self.adapters)

    # -- plumbing -------------------------------------------------------------

    def git(self, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
        """Run one plain git command on the repository and return its stdout.

        Raises:
            LineageError: git failed (its stderr is the message).
        """
        # stdout goes to a temp file, not a pipe: git writes a pipe in 4 KiB pieces and
        # the ping-pong with the reader made big outputs (100k-line rev-lists) 3x slower.
        with tempfile.TemporaryFile() as out:
            proc = subprocess.run(
                ["git", "--git-dir", str(self.git_dir), *args],
                input=input,
                stdout=out,
                stderr=subprocess.PIPE,
                check=False,
            )
            if check and proc.returncode != 0:
                lines = proc.stderr.decode(errors="replace").strip().splitlines()
                msg = "; ".join(ln.strip() for ln in lines if ln.strip())
                raise LineageError(f"git {args[0]} failed in {self.path}: {msg}")
            out.seek(0)
            return out.read()

    def refs(self, prefix: str = "refs/") -> dict[str, str]:
        """A snapshot of every ref under ``prefix``: ``{ref: sha}`` (tags as tag-object shas)."""
        out = self.git("for-each-ref", "--format=%(objectname) %(refname)", prefix).decode()
        return {ref: sha for sha, _, ref in (ln.partition(" ") for ln in out.splitlines())}

    def resolve(self, name: str) -> str:
        """The commit sha that ``name`` names.

        ``name`` may be a sha, a full ref, a branch (``agent/a``, ``swarm``), a
        bare agent id (``a`` -> ``agent/a``), a promoted tag or a pruned line.

        Raises:
            LineageError: not a valid name (``check_rev``), or nothing by that name.
        """
        check_rev(name)
        if is_sha(name) or name.startswith("refs/"):
            candidates = [name]
        else:
            candidates = [f"refs/heads/agent/{name}", f"refs/heads/{name}", f"refs/tags/{name}"]
            candidates += [f"refs/pruned/agent/{name}", f"refs/pruned/{name}", name]
        for cand in candidates:
            out = self.git("rev-parse", "--verify", "-q", f"{cand}^{{commit}}", check=False)
            if out.strip():
                return out.decode().strip()
        for cand in candidates:
            if cand.startswith("refs/") and (self.git_dir / cand).is_file():
                raise LineageError(f"{cand} in {self.path} names a missing or corrupt object "
                                   "(the repository is damaged; run swarm lineage fsck)")
        raise LineageError(f"no commit, branch, agent or tag named {name!r} in {self.path}")

    # -- queries --------------------------------------------------------------

    def log(
        self, agent: str, limit: int | None = None, first_parent: bool = True
    ) -> list[LogEntry]:
        """The history of ``agent``'s line, newest first.

        With ``first_parent`` (the default) it follows the line of descent only
        (merged-in partners are named as parents but not walked); without it,
        every ancestor is listed.
        """
        args = ["log", "-z", "--format=%H%x1f%P%x1f%an <%ae>%x1f%at%x1f%B"]
        if first_parent:
            args.append("--first-parent")
        if limit is not None:
            args.append(f"-n{int(limit)}")
        raw = self.git(*args, self.resolve(agent), "--").decode(errors="replace")
        entries = []
        for record in raw.split("\0"):
            if not record:
                continue
            sha, parents, author, when, body = record.split("\x1f", 4)
            message, branch = split_trailer(body)
            entries.append(
                LogEntry(sha, tuple(parents.split()), author, int(when), message, branch)
            )
        return entries

    def ancestry(self, ref: str) -> list[str]:
        """Every commit ``ref`` descends from (itself included), newest first."""
        return self.git("rev-list", self.resolve(ref), "--").decode().split()

    def show(self, ref: str, path: str) -> bytes:
        """The bytes of ``path`` as of ``ref``.

        Raises:
            LineageError: no such ref or no such file there.
        """
        sha = self.resolve(ref)
        path = "/".join(check_tree_path(path))
        proc = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "cat-file", "blob", f"{sha}:{path}"],
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise LineageError(f"no file {path!r} at {ref} ({sha[:12]})")
        return proc.stdout

    def show_json(self, ref: str, path: str) -> Any:
        """``show`` decoded as JSON."""
        return json.loads(self.show(ref, path))

    def diff(self, a: str, b: str) -> list[DiffEntry]:
        """The files that differ between commits ``a`` and ``b``, sorted by path."""
        raw = self.git(
            "diff-tree", "-r", "-z", "--no-renames", self.resolve(a), self.resolve(b), "--"
        )
        fields = raw.decode(errors="replace").split("\0")
        entries = []
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            if not meta.startswith(":"):
                continue
            _, _, old, new, status = meta[1:].split(" ")
            entries.append(
                DiffEntry(
                    status[0],
                    path,
                    None if set(old) == {"0"} else old,
                    None if set(new) == {"0"} else new,
                )
            )
        return sorted(entries, key=lambda e: e.path)

    def patch(self, a: str, b: str) -> str:
        """A unified diff between commits ``a`` and ``b`` (as plain ``git diff`` prints it)."""
        return self.git("diff", self.resolve(a), self.resolve(b), "--").decode(errors="replace")

    def get_note(self, commit: str, namespace: str = "commits") -> bytes | None:
        """The git note on ``commit`` in ``refs/notes/<namespace>``, or None."""
        check_ref_name(f"refs/notes/{namespace}")
        out = self.git(
            "notes", f"--ref=refs/notes/{namespace}", "show", self.resolve(commit), check=False
        )
        return out or None

    def checkout(self, ref: str, dest: Path, adapters: bool = False) -> Path:
        """Write the tree of ``ref`` into ``dest``; with ``adapters``, fetch each adapter too.

        Adapter weights go to ``agents/<id>/adapter/`` next to their pointer file.
        """
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        raw = self.git("archive", "--format=tar", self.resolve(ref))
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            tar.extractall(dest, filter="data")
        if adapters:
            for pointer_file in sorted(dest.glob("agents/*/adapter.json")):
                self.get_adapter(json.loads(pointer_file.read_text()), pointer_file.parent / "adapter")
        return dest

    def get_adapter(self, pointer: Mapping[str, Any] | str, dest: Path) -> Path:
        """Materialize an adapter as the PEFT folder ``dest`` (weights and config).

        ``pointer`` is a pointer dict or a bare sha256 (of a layout-1 lineage:
        the weights only).

        Raises:
            LineageError: not a pointer, or the adapter is not stored.
        """
        return self.source.export(pointer, Path(dest))

    # -- what commits reference ----------------------------------------------

    def referenced(self, commit: str) -> list[str]:
        """The adapters (weights sha256) that ``commit``'s tree points at, sorted.

        This is what a machine needs in its adapter store to use the commit.
        """
        listing = self.git("ls-tree", "-r", "-z", f"{self.resolve(commit)}^{{tree}}", "--",
                           "agents")
        blobs = [row.split()[2] for row in listing.decode(errors="replace").split("\0")
                 if row.endswith("/adapter.json") and row.count("/") == 2]
        found = set()
        for raw in self._blobs(blobs).values():
            with contextlib.suppress(ValueError):
                found.add(pointer_shas(_json_or_none(raw))[0])
        return sorted(found)

    def adapters_reached(self, refs: Iterable[str]) -> set[str]:
        """Every adapter a commit reachable from ``refs`` points at, with the parents its pointer names."""
        reached: set[str] = set()
        for pointer in self.pointers_reached(refs).values():
            try:
                sha, _ = pointer_shas(pointer)
            except ValueError:
                continue  # names nothing (fsck reports it)
            parents = pointer.get("parents")
            reached.add(sha)
            reached.update(p for p in (parents if isinstance(parents, list) else [])
                           if isinstance(p, str))
        return reached

    def pointers_reached(self, refs: Iterable[str]) -> dict[str, Any]:
        """Every version of every ``agents/<id>/adapter.json`` in a commit reachable from ``refs``.

        Returns ``{git blob id: decoded JSON}`` (None for a blob that is not JSON).
        One ``git log`` lists each pointer version once (a commit's changes
        against its first parent, a root's against nothing), however long the history.
        """
        revs = "".join(f"{ref}\n" for ref in refs)
        if not revs:
            return {}
        out = self.git("log", "--stdin", "--format=", "--raw", "--no-abbrev", "--root",
                       "--diff-merges=first-parent", "--", _POINTER_GLOB, input=revs.encode())
        blobs = {fields[3] for fields in (ln.split() for ln in out.decode(errors="replace")
                                          .splitlines() if ln.startswith(":"))
                 if len(fields) >= 5 and set(fields[3]) != {"0"}}
        return {blob: _json_or_none(raw) for blob, raw in self._blobs(sorted(blobs)).items()}

    def _blobs(self, blobs: Sequence[str]) -> dict[str, bytes]:
        """The bytes of each git blob, read with one ``cat-file --batch`` (missing ones left out)."""
        if not blobs:
            return {}
        raw = self.git("cat-file", "--batch", input="".join(f"{b}\n" for b in blobs).encode())
        out: dict[str, bytes] = {}
        pos = 0
        while pos < len(raw):
            end = raw.index(b"\n", pos)
            header = raw[pos:end].split()
            if len(header) != 3:  # "<name> missing"
                pos = end + 1
                continue
            size = int(header[2])
            out[header[0].decode()] = raw[end + 1 : end + 1 + size]
            pos = end + 2 + size
        return out

    # -- whole-lineage views --------------------------------------------------

    def phylogeny(self, notes: str | None = "commits") -> nx.DiGraph:
        """The swarm's family tree: one node per commit, an edge from each parent to child.

        See ``swarm.lineage.phylogeny.build`` for the node and graph attributes.
        """
        from swarm.lineage.phylogeny import build

        return build(self, notes)

    def fsck(self) -> list[str]:
        """Problems found by ``git fsck --strict`` and in the adapters the refs' tips point at.

        The adapters of a pruned line may be gone (``swarm lineage gc --pruned``
        removes them); one that is there must still be whole. Returns an empty
        list for a healthy store.
        """
        proc = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "fsck", "--strict", "--no-dangling",
             "--no-progress"],
            capture_output=True,
            check=False,
        )
        out = (proc.stdout + proc.stderr).decode(errors="replace")
        problems = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("notice")]
        if proc.returncode != 0 and not problems:
            problems.append(f"git fsck exited {proc.returncode}")
        return problems + self._check_pointers(self.refs())

    def _check_pointers(self, refs: Mapping[str, str]) -> list[str]:
        problems = []
        seen: set[str] = set()
        live_first = sorted(refs.items(), key=lambda item: item[0].startswith("refs/pruned/"))
        tips = {sha: ref.startswith("refs/pruned/") for ref, sha in reversed(live_first)}
        for tip, pruned in tips.items():
            listing = self.git("ls-tree", "-r", "-z", f"{tip}^{{tree}}", "--", "agents", check=False)
            for row in listing.decode(errors="replace").split("\0"):
                if not row.endswith("/adapter.json"):
                    continue
                blob = row.split()[2]
                if blob in seen:
                    continue
                seen.add(blob)
                where = row.split("\t", 1)[1]
                try:
                    pointer = json.loads(self.git("cat-file", "blob", blob))
                    if not (pruned and self.source.removed(pointer)):
                        problems += self.source.problems(where, pointer)
                except (ValueError, LineageError) as exc:
                    problems.append(f"{where}: not a valid adapter pointer ({exc})")
        return problems

def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
