"""Lock-free reads of a lineage repository (``LineageReader``).

Every query resolves its refs once and then reads immutable objects by sha, so
a reader sees one consistent snapshot even while the writer commits: the writer
makes objects durable before it moves a ref, and moves refs atomically. Reads
run short-lived plain ``git`` commands, which never take a lock.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarm.errors import LineageError
from swarm.lineage.cas import POINTER_FORMAT, ContentStore
from swarm.lineage.names import check_ref_name, check_rev, check_tree_path, is_sha

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "TRAILER",
    "POINTER_FORMAT",
    "LogEntry",
    "DiffEntry",
    "LineageReader",
    "branch_ref",
    "split_trailer",
]

TRAILER = "Lineage-Branch"


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


def branch_ref(name: str) -> str:
    """The full ref of a branch name: ``agent/a`` -> ``refs/heads/agent/a``; refs stay as given."""
    return name if name.startswith("refs/") else f"refs/heads/{name}"


def split_trailer(body: str) -> tuple[str, str | None]:
    """Split a commit message into (message, branch named by its ``Lineage-Branch`` trailer)."""
    text = body.rstrip("\n")
    head, sep, last = text.rpartition("\n")
    prefix = f"{TRAILER}: "
    if last.startswith(prefix):
        return head.rstrip("\n"), last[len(prefix) :].strip()
    return body.rstrip("\n"), None


class LineageReader:
    """Read-only view of a lineage directory (a bare git repository plus ``cas/``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.git_dir = self.path
        self.cas = ContentStore(self.path / "cas")
        if not (self.path / "HEAD").is_file() or not (self.path / "objects").is_dir():
            raise LineageError(f"{self.path} is not a lineage directory (no git repository)")

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
        """Materialize an adapter from the content store as a PEFT folder ``dest``.

        ``pointer`` is a pointer dict (weights and config) or a bare sha256 (weights only).
        """
        dest = Path(dest)
        sha = pointer if isinstance(pointer, str) else str(pointer["sha256"])
        self.cas.get(sha, dest / "adapter_model.safetensors")
        config = None if isinstance(pointer, str) else pointer.get("config_sha256")
        if config:
            self.cas.get(str(config), dest / "adapter_config.json")
        return dest

    def phylogeny(self, notes: str | None = "commits") -> nx.DiGraph:
        """The swarm's family tree: one node per commit, an edge from each parent to child.

        See ``swarm.lineage.phylogeny.build`` for the node and graph attributes.
        """
        from swarm.lineage.phylogeny import build

        return build(self, notes)

    def fsck(self) -> list[str]:
        """Problems found by ``git fsck --strict`` and in adapter blobs the refs point at.

        Returns an empty list for a healthy store.
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
        return problems + self._check_pointers(self.refs().values())

    def _check_pointers(self, tips: Sequence[str] | Any) -> list[str]:
        problems = []
        seen: set[str] = set()
        for tip in set(tips):
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
                    problems += self._check_pointer(where, self.git("cat-file", "blob", blob))
                except (ValueError, LineageError) as exc:
                    problems.append(f"{where}: not a valid adapter pointer ({exc})")
        return problems

    def _check_pointer(self, where: str, raw: bytes) -> list[str]:
        """Problems of one pointer file's bytes (ValueError: not a pointer at all)."""
        pointer = json.loads(raw)
        if not isinstance(pointer, dict):
            raise ValueError(f"a JSON {type(pointer).__name__}, not an object")
        problems = []
        for key in ("sha256", "config_sha256"):
            sha = pointer.get(key)
            if sha is None and key == "config_sha256":
                continue
            if not isinstance(sha, str):
                raise ValueError(f"{key} is {sha!r}, not a sha256 string")
            if not self.cas.verify(sha):
                problems.append(f"{where}: adapter blob {sha} missing or corrupt")
        return problems
