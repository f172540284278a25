"""Evolved artifacts in the lineage: the seed, the individuals, children, merges, evaluations.

An artifact ``NAME`` is a directory tree whose files live at ``artifacts/NAME/``
in commits that hold nothing else, so a three-way merge of two individuals has
a merge base (the seed) and pulls in nothing but the artifact:

- the seed: a root commit made from the config's folder, ref ``refs/artifacts/NAME/seed``;
- an individual: branch ``artifact/NAME/AGENT``, forked from the seed;
- a child (a mutation: one parent; a crossover: two, ours first) is committed on
  a ref of its own, ``refs/artifacts/NAME/tried/AGENT/<n>`` (so ``git log --graph
  --all`` shows every child, kept or not), and becomes the individual
  (``advance``) only if selection keeps it;
- an evaluation is a git note (JSON) on the commit (namespace ``commits``: ``git
  log --notes`` shows it) and on its root tree (namespace ``evals``: the cache,
  so the same tree is never evaluated twice);
- a promotion tags the promoted commit ``NAME-promoted-<n>`` and gives every
  individual a merge commit of its tip and the promoted commit, with the
  promoted tree; a pruned individual moves to ``refs/pruned/artifact/NAME/AGENT``.

Merges are real git merges (``git merge-tree --write-tree``); each conflicting
hunk is resolved by the caller's ``choose`` (a seeded coin, or an LLM).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm.errors import LineageError
from swarm.lineage.names import check_id, check_tree_path
from swarm.lineage.phylogeny import read_blobs
from swarm.lineage.repo import TRAILER
from swarm.lineage.store import LineageStore

__all__ = ["ARTIFACTS_DIR", "EVALS", "Artifact", "Hunk", "MergeResult", "read_folder",
           "resolve_markers"]

ARTIFACTS_DIR = "artifacts"
EVALS = "evals"  # notes namespace of the evaluation cache (keyed by tree)
MAX_FILES = 1000
MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class Hunk:
    """One conflicting hunk of a merge: the lines of each side."""

    path: str
    index: int
    ours: list[str]
    theirs: list[str]


#: ``choose(hunk) -> lines``: the resolution of one hunk (ours, theirs, or other lines).
Chooser = Callable[[Hunk], list[str]]


@dataclass(frozen=True)
class MergeResult:
    """A crossover's commit, and what its resolution decided."""

    sha: str
    conflicted_files: list[str] = field(default_factory=list)
    hunks: list[str] = field(default_factory=list)  # per hunk: "ours", "theirs" or "other"


def read_folder(folder: Path) -> dict[str, bytes]:
    """The files of a seed folder: ``{relative path: bytes}`` (regular files; no ``.git``).

    Raises:
        LineageError: no such folder, a symlink, a name the lineage refuses, too many
            files or bytes.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LineageError(f"artifact seed folder {folder} does not exist or is not a folder")
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".git") for part in path.relative_to(folder).parts):
            continue
        if path.is_symlink():
            raise LineageError(f"artifact seed {folder}: {rel} is a symlink (not taken)")
        if not path.is_file():
            continue
        check_tree_path(rel)
        files[rel] = path.read_bytes()
        total += len(files[rel])
        if len(files) > MAX_FILES or total > MAX_BYTES:
            raise LineageError(f"artifact seed {folder} has over {MAX_FILES} files or "
                               f"{MAX_BYTES >> 20} MiB")
    if not files:
        raise LineageError(f"artifact seed folder {folder} holds no files")
    return files


class Artifact:
    """One evolved artifact of a lineage (the module docstring's layout), written by its writer."""

    def __init__(self, store: LineageStore, name: str) -> None:
        self.store = store
        self.name = check_id("artifact name", name)
        self.prefix = f"{ARTIFACTS_DIR}/{name}/"
        self.seed_ref = f"refs/artifacts/{name}/seed"

    def branch(self, agent: str) -> str:
        """The individual of ``agent``: ``artifact/NAME/AGENT``."""
        return f"artifact/{self.name}/{check_id('agent id', agent)}"

    # -- reading ---------------------------------------------------------------

    def seed_sha(self) -> str | None:
        """The seed commit, or None before ``seed``."""
        return self.store.refs(self.seed_ref).get(self.seed_ref)

    def individuals(self) -> dict[str, str]:
        """``{agent: tip}`` of every live individual."""
        prefix = f"refs/heads/artifact/{self.name}/"
        return {ref[len(prefix):]: sha for ref, sha in self.store.refs(prefix).items()}

    def files(self, ref: str) -> dict[str, bytes]:
        """The artifact's files at commit ``ref``: ``{relative path: bytes}``."""
        return self._files_of_tree(self.store.resolve(ref))

    def tree(self, ref: str) -> str:
        """The root tree of commit ``ref`` (what evaluations are cached by)."""
        return self.store.git("rev-parse", f"{self.store.resolve(ref)}^{{tree}}").decode().strip()

    def evaluation(self, ref: str) -> dict[str, Any] | None:
        """The cached evaluation of ``ref``'s tree, or None."""
        out = self.store.git("notes", f"--ref=refs/notes/{EVALS}", "show", self.tree(ref),
                             check=False)
        return _json_or_none(out)

    # -- writing ---------------------------------------------------------------

    def seed(self, folder: Path | None) -> str:
        """The seed commit: the existing one (a resumed run), else one made from ``folder``.

        Raises:
            LineageError: no seed yet and no usable ``folder``.
        """
        sha = self.seed_sha()
        if sha is not None:
            return sha
        if folder is None:
            raise LineageError(f"artifact {self.name!r} has no seed commit and no seed folder")
        files = {self.prefix + rel: data for rel, data in read_folder(folder).items()}
        return self.store.commit(self.seed_ref, files, f"seed artifact {self.name} from "
                                 f"{Path(folder).name}", parents=[])

    def individual(self, agent: str) -> str:
        """``agent``'s tip, forking it from the seed first if it has none."""
        tip = self.individuals().get(agent)
        if tip is not None:
            return tip
        seed = self.seed_sha()
        if seed is None:
            raise LineageError(f"artifact {self.name!r} has no seed commit")
        return self.store.point(self.branch(agent), seed)

    def child(self, agent: str, parent: str, changes: Mapping[str, bytes | None], message: str,
              author: str | None = None) -> str:
        """Commit a mutation of ``parent`` (``changes``: relative path -> bytes, None deletes)."""
        files = {self.prefix + rel: data for rel, data in changes.items()}
        return self.store.commit(self._tried(agent), files, self._lane(agent, message),
                                 parents=[parent], author=author)

    def merge(self, agent: str, ours: str, theirs: str, choose: Chooser, message: str) -> MergeResult:
        """A three-way merge of ``ours`` and ``theirs``, each conflicting hunk ``choose``'s.

        Committed (parents ours, theirs) on ``agent``'s tried ref; not yet its individual.
        """
        merged, stages = self._merge_tree(ours, theirs)
        files = self._files_of_tree(merged)
        decided: list[str] = []
        for path, stage in sorted(stages.items()):
            if 2 in stage and 3 in stage and path in files:
                files[path], picks = resolve_markers(path, files[path], choose)
                decided += picks
            else:  # modified on one side, deleted on the other: the chooser takes a side
                side = self._take_side(path, stage, choose)
                decided.append(side)
                blob = stage.get(2 if side == "ours" else 3)
                if blob is None:
                    files.pop(path, None)
                else:
                    files[path] = self._blobs([blob])[0]
        base = self.files(ours)
        changes: dict[str, bytes | None] = {p: d for p, d in files.items() if base.get(p) != d}
        changes.update({p: None for p in base if p not in files})
        sha = self.store.commit(self._tried(agent), {self.prefix + p: d for p, d in changes.items()},
                                self._lane(agent, message), parents=[ours, theirs])
        return MergeResult(sha, sorted(stages), decided)

    def conflicts(self, ours: str, theirs: str) -> list[Hunk]:
        """The hunks a merge of ``ours`` and ``theirs`` would ask to choose (nothing committed)."""
        merged, stages = self._merge_tree(ours, theirs)
        files = self._files_of_tree(merged)
        hunks: list[Hunk] = []

        def keep(hunk: Hunk) -> list[str]:
            hunks.append(hunk)
            return hunk.ours

        for path, stage in sorted(stages.items()):
            if 2 in stage and 3 in stage and path in files:
                resolve_markers(path, files[path], keep)
            else:
                self._take_side(path, stage, keep)
        return hunks

    def advance(self, agent: str, sha: str) -> None:
        """``agent``'s individual becomes ``sha`` (selection kept the child)."""
        self.store.point(self.branch(agent), sha)

    def record(self, sha: str, result: Mapping[str, Any]) -> None:
        """Note ``result`` on commit ``sha`` and on its tree (the cache)."""
        data = dict(result)
        self.store.note_many({sha: data})
        self.store.note_many({self.tree(sha): data}, EVALS)

    def promote(self, sha: str, rnd: int, agents: Sequence[str]) -> str:
        """Broadcast ``sha`` to every individual of ``agents``; returns the promotion tag's name."""
        sha = self.store.resolve(sha)
        tags = self.store.refs(f"refs/tags/{self.name}-promoted-")
        tag = f"{self.name}-promoted-{len(tags) + 1}"
        self.store.promote(sha, tag, f"round {rnd}: promoted {sha[:12]} to every individual")
        promoted = self.files(sha)
        tips = self.individuals()
        for agent in agents:
            tip = tips.get(agent) or self.individual(agent)
            current = self.files(tip)
            changes: dict[str, bytes | None] = {p: d for p, d in promoted.items()
                                                if current.get(p) != d}
            changes.update({p: None for p in current if p not in promoted})
            self.store.commit(self.branch(agent), {self.prefix + p: d for p, d in changes.items()},
                              f"round {rnd}: promote {sha[:12]}", parents=[tip, sha])
        return tag

    def prune(self, agent: str, reason: str) -> str:
        """Retire ``agent``'s individual (its line stays under ``refs/pruned/``)."""
        return self.store.prune(self.branch(agent), reason)

    # -- internals -------------------------------------------------------------

    def _lane(self, agent: str, message: str) -> str:
        """``message`` with the trailer naming the individual's branch (the commit is made on
        a ref of its own, which the writer's trailer would not name)."""
        return f"{message.rstrip()}\n\n{TRAILER}: {self.branch(agent)}\n"

    def _tried(self, agent: str) -> str:
        """A new ref for a child of ``agent``'s: kept or not, every child stays in the graph."""
        prefix = f"refs/artifacts/{self.name}/tried/{check_id('agent id', agent)}/"
        return f"{prefix}{len(self.store.refs(prefix)) + 1}"

    def _take_side(self, path: str, stage: Mapping[int, str], choose: Chooser) -> str:
        ours, theirs = ([] if stage.get(n) is None else
                        self._blobs([stage[n]])[0].decode(errors="replace").splitlines(True)
                        for n in (2, 3))
        return "ours" if choose(Hunk(path, 0, ours, theirs)) == ours else "theirs"

    def _merge_tree(self, ours: str, theirs: str) -> tuple[str, dict[str, dict[int, str]]]:
        out = self.store.git("-c", "merge.conflictStyle=merge", "merge-tree", "--write-tree",
                             "-z", "--no-messages", self.store.resolve(ours),
                             self.store.resolve(theirs), check=False)
        items = out.split(b"\0")
        if not items or len(items[0]) != 40:
            raise LineageError(f"git merge-tree of {ours[:12]} and {theirs[:12]} failed: "
                               f"{out[:200]!r}")
        stages: dict[str, dict[int, str]] = {}
        for item in items[1:]:
            if not item:
                continue
            meta, _, path = item.decode(errors="replace").partition("\t")
            parts = meta.split()
            if len(parts) == 3 and path.startswith(self.prefix):
                stages.setdefault(path[len(self.prefix):], {})[int(parts[2])] = parts[1]
        return items[0].decode(), stages

    def _files_of_tree(self, tree: str) -> dict[str, bytes]:
        listing = self.store.git("ls-tree", "-r", "-z", tree, "--", self.prefix).split(b"\0")
        entries = [(m.split()[2].decode(), p.decode()) for m, _, p in
                   (i.partition(b"\t") for i in listing if i)]
        return {p[len(self.prefix):]: d for (_, p), d in
                zip(entries, self._blobs([b for b, _ in entries]), strict=True)}

    def _blobs(self, shas: Sequence[str]) -> list[bytes]:
        return read_blobs(self.store, shas, f"a file of artifact {self.name}:")


def resolve_markers(path: str, data: bytes, choose: Chooser) -> tuple[bytes, list[str]]:
    """``data`` (a file git left with conflict markers) with each hunk resolved by ``choose``.

    Returns the resolved bytes and, per hunk, ``ours``, ``theirs`` or ``other``.
    """
    lines = data.decode("utf-8", errors="surrogateescape").splitlines(keepends=True)
    out: list[str] = []
    picks: list[str] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("<<<<<<< "):
            out.append(lines[i])
            i += 1
            continue
        ours, theirs, j = [], [], i + 1
        while j < len(lines) and not lines[j].startswith("======="):
            ours.append(lines[j])
            j += 1
        j += 1
        while j < len(lines) and not lines[j].startswith(">>>>>>> "):
            theirs.append(lines[j])
            j += 1
        hunk = Hunk(path, len(picks), ours, theirs)
        chosen = choose(hunk)
        picks.append("ours" if chosen == ours else "theirs" if chosen == theirs else "other")
        out.extend(chosen)
        i = j + 1
    return "".join(out).encode("utf-8", errors="surrogateescape"), picks


def _json_or_none(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw.strip() else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
