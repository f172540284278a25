"""The lineage's single writer (``LineageWriter``): commits, notes, tags and pruned lines.

The writer builds git objects itself (``swarm.lineage.batch``), writes each
batch as one fsynced pack and only then moves its refs with an atomic
compare-and-swap transaction (``swarm.lineage.git``), so a write returns only
once it is durable, and a crash at any instant leaves a repository ``git
fsck`` accepts. A batch moves its refs all or none, though a reader may see
one branch of a multi-branch batch move before another. It holds the
directory's writer lock (an flock on ``lineage.lock``, taken by
``GitLineageStore.open``) until ``close``; one thread owns it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from swarm.durable import fsync_dir
from swarm.errors import LineageError
from swarm.lineage.batch import FileValue, ObjectBatch, split_paths
from swarm.lineage.git import (
    CatFile,
    RefUpdater,
    encode_commit,
    encode_tag,
    for_each_ref,
    parse_commit_tree,
    signature,
    write_pack,
)
from swarm.lineage.names import branch_ref, check_id, check_ref_name, is_sha
from swarm.lineage.repo import SWARM_BRANCH, TRAILER, recover

_log = logging.getLogger(__name__)

__all__ = ["CommitSpec", "LineageWriter"]


@dataclass(frozen=True)
class CommitSpec:
    """One commit of a batch (see ``LineageStore.commit`` for the fields)."""

    branch: str
    files: Mapping[str, FileValue]
    message: str
    parents: Sequence[str] | None = None
    author: str | None = None
    when: float | None = None
    extra: Mapping[str, str] = field(default_factory=dict)



class LineageWriter:
    """Writes one lineage repository; owns its writer lock (``lock_fd``) until ``close``.

    On start it removes what a writer that died left half-done (``recover``).
    ``maintain_every`` batches trigger a ``maintain()``.
    """

    def __init__(self, git_dir: Path, lock_fd: int, maintain_every: int = 64) -> None:
        self.git_dir = Path(git_dir)
        self._lock_fd: int | None = lock_fd
        self._keep = (lock_fd,)
        self._cat = CatFile(self.git_dir, self._keep)
        self._refs = RefUpdater(self.git_dir, self._keep)
        self._batch = ObjectBatch(self._cat)
        self._maintain_every = maintain_every
        self._packs = 0
        recover(self.git_dir)
        self._tips = for_each_ref(self.git_dir, keep_fds=self._keep)

    # -- writes ---------------------------------------------------------------

    def commit(
        self,
        branch: str,
        files: Mapping[str, FileValue],
        message: str,
        *,
        parents: Sequence[str] | None = None,
        author: str | None = None,
        when: float | None = None,
    ) -> str:
        """Commit ``files`` on ``branch`` and return the commit sha once it is durable.

        Args:
            branch: ``agent/<id>``, ``swarm`` or a full ref; created if missing.
            files: ``{path: content}`` applied on top of the first parent's tree;
                bytes or str are stored as is, a mapping as JSON, None deletes the path.
            message: the commit message (a ``Lineage-Branch`` trailer is appended).
            parents: explicit parents (shas or names); default: the branch tip.
                The first parent's tree is the base; more parents make a merge.
            author: ``"Name"`` or ``"Name <email>"`` (default ``swarm``).
            when: unix time of the commit (default now).

        Raises:
            LineageError: bad path, unknown parent, lost compare-and-swap.
        """
        spec = CommitSpec(branch, files, message, parents, author, when)
        return self.commit_many([spec])[0]

    def commit_many(
        self,
        specs: Sequence[CommitSpec],
        *,
        notes: Mapping[int, FileValue] | None = None,
        namespace: str = "commits",
    ) -> list[str]:
        """Commit a batch in order, all-or-nothing: one pack, one atomic ref transaction.

        ``notes`` maps an index into ``specs`` to the git note of that commit; the
        notes commit joins the same transaction, so a round and the notes that
        describe it land together or not at all.

        Returns the commit shas, once every one of them is durable.
        """
        self._need_writer()
        tips = dict(self._tips)
        try:
            shas = [self._build_commit(spec, tips) for spec in specs]
            if notes:
                self._build_notes({shas[i]: data for i, data in notes.items()}, namespace, tips)
            self._publish(tips)
        finally:
            self._batch.clear()
        return shas

    def merge(
        self,
        branch: str,
        others: Sequence[str],
        files: Mapping[str, FileValue],
        message: str,
        *,
        author: str | None = None,
    ) -> str:
        """A merge commit on ``branch`` whose parents are its tip and each of ``others``.

        The tree is ``branch``'s tree with ``files`` applied (the merged adapter's pointer).
        """
        ref = branch_ref(branch)
        if ref not in self._tips:
            raise LineageError(f"cannot merge into {branch!r}: no such branch")
        parents = [self._tips[ref], *(self._batch.resolve(o, self._tips) for o in others)]
        return self.commit(branch, files, message, parents=parents, author=author)

    def point(self, branch: str, target: str) -> str:
        """Move (or create) ``branch`` to the existing commit ``target``; return its sha.

        For lines that move to a commit made before: an evolved artifact's
        individual taking the child its selection kept.

        Raises:
            LineageError: a bad name, an unknown commit, a lost compare-and-swap.
        """
        self._need_writer()
        check_ref_name(branch)
        sha = self._batch.resolve(target, self._tips)
        tips = dict(self._tips)
        tips[branch_ref(branch)] = sha
        try:
            self._publish(tips)
        finally:
            self._batch.clear()
        return sha

    def note(self, commit: str, data: FileValue, namespace: str = "commits") -> str:
        """Attach ``data`` (JSON for a mapping) as the git note of ``commit`` (or a tree, see
        ``note_many``); return the notes commit."""
        return self.note_many({commit: data}, namespace)

    def note_many(self, items: Mapping[str, FileValue], namespace: str = "commits") -> str:
        """Attach several notes in one notes commit (replacing earlier notes of those objects).

        A key names a commit (any name ``resolve`` takes) or, by its full sha, a
        tree: an artifact's evaluation is cached on its tree.
        """
        self._need_writer()
        tips = dict(self._tips)
        try:
            shas = {self._note_target(c, tips): data for c, data in items.items()}
            sha = self._build_notes(shas, namespace, tips)
            self._publish(tips)
        finally:
            self._batch.clear()
        return sha

    def _note_target(self, name: str, tips: Mapping[str, str]) -> str:
        if is_sha(name) and self._batch.object(name)[0] == "tree":
            return name
        return self._batch.resolve(name, tips)

    def _build_notes(
        self, items: Mapping[str, FileValue], namespace: str, tips: dict[str, str]
    ) -> str:
        files = {f"{sha[:2]}/{sha[2:]}": data for sha, data in items.items()}
        spec = CommitSpec(f"refs/notes/{namespace}", files, "Notes added by swarm lineage")
        return self._build_commit(spec, tips)

    def promote(self, ref: str, name: str, message: str = "", *, author: str | None = None) -> str:
        """Mark ``ref``'s commit as promoted with the annotated tag ``name``; return the commit.

        ``name`` is one ref component (``best-1``, not ``refs/heads/main`` or
        ``a/b``), so a promotion can never shadow or look like a branch.

        Raises:
            LineageError: a bad name, the tag exists already or ``ref`` is unknown.
        """
        self._need_writer()
        check_id("tag name", name)
        target = self._batch.resolve(ref, self._tips)
        tag_ref = f"refs/tags/{name}"
        if tag_ref in self._tips:
            raise LineageError(f"tag {name!r} exists already")
        self._write_tag(tag_ref, name, target, message or f"promoted {name}", author)
        return target

    def prune(self, branch: str, reason: str, *, author: str | None = None) -> str:
        """Retire ``branch``: its line moves to ``refs/pruned/...`` with ``reason``; nothing is deleted.

        Only agent branches (``agent/<id>``) and artifact individuals
        (``artifact/<name>/<id>``) can be pruned: the ``swarm`` branch
        holds the rounds and the matchmaker's state, and without it the next
        ``--resume`` would silently start over at round 0.

        Returns the ref that now holds the pruned line.

        Raises:
            LineageError: not an agent branch, or no such branch.
        """
        self._need_writer()
        check_ref_name(branch)
        ref = branch_ref(branch)
        if ref == f"refs/heads/{SWARM_BRANCH}":
            raise LineageError(f"cannot prune {branch!r}: it is the swarm's own branch (rounds "
                               f"and matchmaker state); only agent branches can be pruned")
        if not ref.startswith(("refs/heads/agent/", "refs/heads/artifact/")):
            raise LineageError(f"cannot prune {branch!r}: only agent branches (agent/<id>) "
                               f"and artifact individuals (artifact/<name>/<id>) can be pruned")
        if ref not in self._tips:
            raise LineageError(f"cannot prune {branch!r}: no such branch")
        short = ref[len("refs/heads/") :]
        pruned, n = f"refs/pruned/{short}", 1
        while pruned in self._tips:
            n += 1
            pruned = f"refs/pruned/{short}.{n}"
        self._write_tag(pruned, short, self._tips[ref], reason or "pruned", author, drop=ref)
        return pruned

    def _write_tag(
        self, ref: str, name: str, target: str, message: str, author: str | None,
        drop: str | None = None,
    ) -> None:
        tagger = signature(author or "swarm", time.time())
        body = encode_tag(target, "commit", name, tagger, message.rstrip("\n") + "\n")
        tips = dict(self._tips)
        tips[ref] = self._batch.add("tag", body)
        if drop is not None:
            del tips[drop]
        try:
            self._publish(tips)
        finally:
            self._batch.clear()

    def maintain(self) -> None:
        """Keep reads fast: roll small packs together and extend the commit-graph file.

        Safe while readers run (git repacks are designed for that).
        """
        self._need_writer()
        for args in (
            ["repack", "-d", "-q", "--geometric=2"],
            ["commit-graph", "write", "--reachable", "--split", "--no-progress"],
        ):
            proc = subprocess.run(
                ["git", "--git-dir", str(self.git_dir), *args],
                capture_output=True,
                pass_fds=self._keep,
                check=False,
            )
            if proc.returncode != 0:
                raise LineageError(f"git {args[0]} failed: {proc.stderr.decode().strip()}")
        self._packs = 0

    def close(self) -> None:
        """Stop the writer's git processes and release the writer lock (idempotent)."""
        self._cat.close()
        self._refs.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- internals ------------------------------------------------------------

    def _need_writer(self) -> None:
        if self._lock_fd is None:
            raise LineageError(f"the lineage writer of {self.git_dir} is closed")

    def _build_commit(self, spec: CommitSpec, tips: dict[str, str]) -> str:
        check_ref_name(spec.branch)
        ref = branch_ref(spec.branch)
        if spec.parents is None:
            parents = [tips[ref]] if ref in tips else []
        else:
            parents = [self._batch.resolve(p, tips) for p in spec.parents]
        base = parse_commit_tree(self._batch.object(parents[0])[1]) if parents else None
        tree = self._batch.edit_tree(base, split_paths(spec.files)) or self._batch.add("tree", b"")
        message = spec.message.rstrip("\n") + "\n"
        if ref.startswith("refs/heads/"):
            message += f"\n{TRAILER}: {ref[len('refs/heads/'):]}\n"
        sig = signature(spec.author or "swarm", time.time() if spec.when is None else spec.when)
        sha = self._batch.add("commit", encode_commit(tree, parents, sig, sig, message))
        tips[ref] = sha
        return sha

    def _publish(self, tips: dict[str, str]) -> None:
        """Make the pending objects durable, then move the changed refs atomically."""
        updates: dict[str, tuple[str | None, str | None]] = {}
        for ref in tips.keys() | self._tips.keys():
            old, new = self._tips.get(ref), tips.get(ref)
            if old != new:
                updates[ref] = (old, new)
        if write_pack(self.git_dir, self._batch.pending) is not None:
            self._packs += 1
        try:
            self._refs.apply(updates)
        except LineageError:
            self._tips = for_each_ref(self.git_dir, keep_fds=self._keep)
            raise
        # git fsyncs each ref file before renaming it but not the folder holding the
        # rename; without this a power cut could undo an acknowledged ref move.
        folders = {(self.git_dir / ref).parent for ref in updates}
        if any(new is None for _, new in updates.values()):
            folders.add(self.git_dir)  # a deletion may have rewritten packed-refs
        for folder in folders:
            if folder.is_dir():
                fsync_dir(folder)
        self._tips = tips
        if self._packs >= self._maintain_every:
            try:
                self.maintain()
            except LineageError as exc:  # the batch is durable already; retry maintenance later
                self._packs = 0
                _log.warning("lineage maintenance failed (will retry): %s", exc)
