"""The lineage store: a plain Git repository recording every adapter, artifact and round.

Layout of each commit's tree (DESIGN.md section 7)::

    agents/<agent_id>/adapter.json    pointer: sha256, size, base model, rank, parents
    agents/<agent_id>/profile.json
    agents/<agent_id>/kg.json         knowledge graph, node-link JSON
    artifacts/<name>/...              shared artifacts that agents evolve
    matchmaker/state.json             (on the ``swarm`` branch)
    rounds/<nnnnn>.json               (on the ``swarm`` branch; rounds/latest.json = newest)

Refs: one branch per agent, ``refs/heads/agent/<id>``; the swarm-wide branch
``refs/heads/swarm`` (HEAD) holds rounds and matchmaker state; merges are merge
commits with every partner as a parent; evaluation results are git notes
(``refs/notes/commits`` unless told otherwise); promoted versions are annotated
tags ``refs/tags/<name>``; a pruned line keeps its history under
``refs/pruned/agent/<id>`` (an annotated tag holding the reason) and leaves the
active branches. Every commit message ends with a ``Lineage-Branch:`` trailer
naming the branch it was made on.

Adapter weights live in the machine's adapter store (``swarm.adapters.store``,
shared with the model server), which ``lineage.json`` names
(``swarm.lineage.layout``); git holds only the pointer, so a commit copies no
weights.

``LineageStore`` is the interface the recorder, the CLI and notebooks use;
``GitLineageStore`` implements it by composing a ``LineageReader`` (lock-free
reads) and, for the one writer, a ``LineageWriter`` (guarded by an flock on
``lineage.lock``). A write returns only once it is durable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from swarm.adapters.store import AdapterStore
from swarm.errors import AdapterError, LineageError
from swarm.lineage.batch import FileValue
from swarm.lineage.layout import (
    LAYOUT_VERSION,
    Layout,
    default_adapter_store,
    migrate_hint,
    read_layout,
    same_path,
)
from swarm.lineage.pointers import make_pointer
from swarm.lineage.reader import DiffEntry, LineageReader, LogEntry
from swarm.lineage.repo import (
    LATEST_ROUND_PATH,
    MATCHMAKER_PATH,
    SWARM_BRANCH,
    adapter_path,
    agent_branch,
    artifact_path,
    ensure_config,
    init_repo,
    kg_path,
    profile_path,
    round_path,
    take_lock,
)
from swarm.lineage.writer import CommitSpec, LineageWriter

if TYPE_CHECKING:
    import networkx as nx

_log = logging.getLogger(__name__)

__all__ = [
    "LineageView",
    "LineageStore",
    "GitLineageStore",
    "LineageReader",
    "CommitSpec",
    "LogEntry",
    "DiffEntry",
    "FileValue",
    "SWARM_BRANCH",
    "MATCHMAKER_PATH",
    "LATEST_ROUND_PATH",
    "agent_branch",
    "adapter_path",
    "profile_path",
    "kg_path",
    "round_path",
    "artifact_path",
    "record_user",
]


class LineageView(Protocol):
    """Reading a lineage (``LineageReader`` is one; so is every ``LineageStore``)."""

    @property
    def path(self) -> Path:
        """The lineage directory."""
        ...

    def refs(self, prefix: str = "refs/") -> dict[str, str]:
        """A snapshot of every ref under ``prefix``: ``{ref: sha}``."""
        ...

    def resolve(self, name: str) -> str:
        """The commit sha that ``name`` (sha, ref, branch, agent id, tag) names."""
        ...

    def log(self, agent: str, limit: int | None = None,
            first_parent: bool = True) -> list[LogEntry]:
        """The history of ``agent``'s line, newest first."""
        ...

    def ancestry(self, ref: str) -> list[str]:
        """Every commit ``ref`` descends from (itself included), newest first."""
        ...

    def show(self, ref: str, path: str) -> bytes:
        """The bytes of ``path`` as of ``ref``."""
        ...

    def show_json(self, ref: str, path: str) -> Any:
        """``show`` decoded as JSON."""
        ...

    def diff(self, a: str, b: str) -> list[DiffEntry]:
        """The files that differ between commits ``a`` and ``b``."""
        ...

    def patch(self, a: str, b: str) -> str:
        """A unified diff between commits ``a`` and ``b``."""
        ...

    def get_note(self, commit: str, namespace: str = "commits") -> bytes | None:
        """The git note on ``commit``, or None."""
        ...

    def checkout(self, ref: str, dest: Path, adapters: bool = False) -> Path:
        """Write the tree of ``ref`` (and with ``adapters`` each adapter) into ``dest``."""
        ...

    def get_adapter(self, pointer: Mapping[str, Any] | str, dest: Path) -> Path:
        """Materialize the adapter a pointer names as the PEFT folder ``dest``."""
        ...

    def referenced(self, commit: str) -> list[str]:
        """The adapters (sha256) ``commit``'s tree points at."""
        ...

    def adapters_reached(self, refs: Iterable[str]) -> set[str]:
        """Every adapter a commit reachable from ``refs`` points at (with its pointer's parents)."""
        ...

    def phylogeny(self, notes: str | None = "commits") -> nx.DiGraph:
        """The family tree as a graph (``swarm.lineage.phylogeny.build``)."""
        ...

    def fsck(self) -> list[str]:
        """Problems of the repository and of the adapters its tips point at."""
        ...


class LineageStore(LineageView, Protocol):
    """A lineage that is read and, by its single writer, written."""

    @property
    def adapters(self) -> AdapterStore:
        """The adapter store that keeps the durable copy of every adapter a commit references."""
        ...

    @property
    def writable(self) -> bool:
        """Whether this handle is the writer."""
        ...

    def commit(self, branch: str, files: Mapping[str, FileValue], message: str, *,
               parents: Sequence[str] | None = None, author: str | None = None,
               when: float | None = None) -> str:
        """Commit ``files`` on ``branch``; return the commit sha once it is durable."""
        ...

    def commit_many(self, specs: Sequence[CommitSpec], *,
                    notes: Mapping[int, FileValue] | None = None,
                    namespace: str = "commits") -> list[str]:
        """Commit a batch (and its notes) in one atomic ref transaction."""
        ...

    def merge(self, branch: str, others: Sequence[str], files: Mapping[str, FileValue],
              message: str, *, author: str | None = None) -> str:
        """A merge commit on ``branch`` with its tip and each of ``others`` as parents."""
        ...

    def note(self, commit: str, data: FileValue, namespace: str = "commits") -> str:
        """Attach ``data`` as the git note of ``commit``."""
        ...

    def note_many(self, items: Mapping[str, FileValue], namespace: str = "commits") -> str:
        """Attach several notes in one notes commit."""
        ...

    def promote(self, ref: str, name: str, message: str = "", *,
                author: str | None = None) -> str:
        """Tag ``ref``'s commit as promoted under ``name``."""
        ...

    def prune(self, branch: str, reason: str, *, author: str | None = None) -> str:
        """Retire an agent branch to ``refs/pruned/...``; return that ref."""
        ...

    def pointer(self, sha: str, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The pointer to commit for an adapter the store holds (nothing is copied)."""
        ...

    def put_adapter(self, source: Path, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Store a PEFT folder in the adapter store (once per hash); return its pointer."""
        ...

    def maintain(self) -> None:
        """Roll small packs together and extend the commit-graph."""
        ...

    def close(self) -> None:
        """Release the writer (idempotent)."""
        ...

    def __enter__(self) -> LineageStore: ...

    def __exit__(self, *exc: object) -> None: ...


class GitLineageStore:
    """A ``LineageStore`` on a git repository: a ``LineageReader`` plus, for the writer, a ``LineageWriter``.

    Create with ``GitLineageStore.open``.
    """

    def __init__(self, reader: LineageReader, writer: LineageWriter | None) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        create: bool = False,
        writer: bool = True,
        lock_timeout: float = 30.0,
        maintain_every: int = 64,
        adapter_store: Path | str | None = None,
    ) -> GitLineageStore:
        """Open (or with ``create`` make) the lineage directory ``path``.

        With ``writer`` this process becomes the single writer: it takes the
        directory's lock (waiting up to ``lock_timeout`` seconds) and cleans up
        after a writer that died. ``maintain_every`` batches trigger a
        ``maintain()``. ``adapter_store`` is the machine's adapter store: a new
        lineage records it (default: ``adapters/`` beside the lineage), an
        existing one must be keeping its adapters there.

        Raises:
            LineageError: not a lineage directory, another writer holds it, a
                layout to migrate first (writer) or newer than this code knows,
                or another adapter store than the lineage's.
        """
        path = Path(path)
        store = None if adapter_store is None else Path(adapter_store)
        created = create and not (path / "HEAD").is_file()
        if created:
            init_repo(path, store or default_adapter_store(path))
        if not (path / "HEAD").is_file():
            raise LineageError(f"{path} is not a lineage directory (use create=True)")
        if not writer:
            return cls(LineageReader(path), None)
        lock_fd = take_lock(path / "lineage.lock", lock_timeout)
        try:
            layout = _writable_layout(path, store)
            ensure_config(path)
            assert layout.adapter_store is not None
            adapters = AdapterStore(layout.adapter_store, create=created)  # a put makes it later
            record_user(adapters, path, layout)
            return cls(LineageReader(path, adapters), LineageWriter(path, lock_fd, maintain_every))
        except BaseException:
            os.close(lock_fd)
            raise

    # -- what it is -----------------------------------------------------------

    @property
    def path(self) -> Path:
        """The lineage directory."""
        return self.reader.path

    @property
    def git_dir(self) -> Path:
        """The git repository (the lineage directory itself: a bare repository)."""
        return self.reader.git_dir

    @property
    def layout(self) -> Layout:
        """The lineage's layout (``lineage.json``)."""
        return self.reader.layout

    @property
    def adapters(self) -> AdapterStore:
        """The machine's adapter store this lineage keeps its adapters in.

        Raises:
            LineageError: a lineage of layout 1 (its adapters are in its own ``cas/``).
        """
        if self.reader.adapters is None:
            raise LineageError(migrate_hint(self.path))
        return self.reader.adapters

    @property
    def writable(self) -> bool:
        """Whether this handle is the writer."""
        return self.writer is not None

    # -- reads: the reader's ---------------------------------------------------

    def git(self, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
        """Run one plain git command on the repository (``LineageReader.git``)."""
        return self.reader.git(*args, input=input, check=check)

    def refs(self, prefix: str = "refs/") -> dict[str, str]:
        """``LineageReader.refs``."""
        return self.reader.refs(prefix)

    def resolve(self, name: str) -> str:
        """``LineageReader.resolve``."""
        return self.reader.resolve(name)

    def log(self, agent: str, limit: int | None = None,
            first_parent: bool = True) -> list[LogEntry]:
        """``LineageReader.log``."""
        return self.reader.log(agent, limit, first_parent)

    def ancestry(self, ref: str) -> list[str]:
        """``LineageReader.ancestry``."""
        return self.reader.ancestry(ref)

    def show(self, ref: str, path: str) -> bytes:
        """``LineageReader.show``."""
        return self.reader.show(ref, path)

    def show_json(self, ref: str, path: str) -> Any:
        """``LineageReader.show_json``."""
        return self.reader.show_json(ref, path)

    def diff(self, a: str, b: str) -> list[DiffEntry]:
        """``LineageReader.diff``."""
        return self.reader.diff(a, b)

    def patch(self, a: str, b: str) -> str:
        """``LineageReader.patch``."""
        return self.reader.patch(a, b)

    def get_note(self, commit: str, namespace: str = "commits") -> bytes | None:
        """``LineageReader.get_note``."""
        return self.reader.get_note(commit, namespace)

    def checkout(self, ref: str, dest: Path, adapters: bool = False) -> Path:
        """``LineageReader.checkout``."""
        return self.reader.checkout(ref, dest, adapters)

    def get_adapter(self, pointer: Mapping[str, Any] | str, dest: Path) -> Path:
        """``LineageReader.get_adapter``."""
        return self.reader.get_adapter(pointer, dest)

    def referenced(self, commit: str) -> list[str]:
        """``LineageReader.referenced``."""
        return self.reader.referenced(commit)

    def adapters_reached(self, refs: Iterable[str]) -> set[str]:
        """``LineageReader.adapters_reached``."""
        return self.reader.adapters_reached(refs)

    def phylogeny(self, notes: str | None = "commits") -> nx.DiGraph:
        """``LineageReader.phylogeny``."""
        return self.reader.phylogeny(notes)

    def fsck(self) -> list[str]:
        """``LineageReader.fsck``."""
        return self.reader.fsck()

    # -- writes: the writer's --------------------------------------------------

    def _writer(self) -> LineageWriter:
        if self.writer is None:
            raise LineageError("this lineage handle is read-only (open it with writer=True)")
        return self.writer

    def commit(self, branch: str, files: Mapping[str, FileValue], message: str, *,
               parents: Sequence[str] | None = None, author: str | None = None,
               when: float | None = None) -> str:
        """``LineageWriter.commit``."""
        return self._writer().commit(branch, files, message, parents=parents, author=author,
                                     when=when)

    def commit_many(self, specs: Sequence[CommitSpec], *,
                    notes: Mapping[int, FileValue] | None = None,
                    namespace: str = "commits") -> list[str]:
        """``LineageWriter.commit_many``."""
        return self._writer().commit_many(specs, notes=notes, namespace=namespace)

    def merge(self, branch: str, others: Sequence[str], files: Mapping[str, FileValue],
              message: str, *, author: str | None = None) -> str:
        """``LineageWriter.merge``."""
        return self._writer().merge(branch, others, files, message, author=author)

    def note(self, commit: str, data: FileValue, namespace: str = "commits") -> str:
        """``LineageWriter.note``."""
        return self._writer().note(commit, data, namespace)

    def note_many(self, items: Mapping[str, FileValue], namespace: str = "commits") -> str:
        """``LineageWriter.note_many``."""
        return self._writer().note_many(items, namespace)

    def promote(self, ref: str, name: str, message: str = "", *,
                author: str | None = None) -> str:
        """``LineageWriter.promote``."""
        return self._writer().promote(ref, name, message, author=author)

    def prune(self, branch: str, reason: str, *, author: str | None = None) -> str:
        """``LineageWriter.prune``."""
        return self._writer().prune(branch, reason, author=author)

    def maintain(self) -> None:
        """``LineageWriter.maintain``."""
        self._writer().maintain()

    def pointer(self, sha: str, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The pointer to commit for the adapter ``sha`` in the adapter store (nothing is copied).

        See ``swarm.lineage.pointers.make_pointer`` for ``meta``.

        Raises:
            LineageError: not a sha256, a bad parent, or the store lacks the adapter.
        """
        return make_pointer(self.adapters, sha, meta)

    def put_adapter(self, source: Path, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Store a PEFT folder in the adapter store (once per content hash); return its pointer.

        Raises:
            LineageError: the folder is refused (a symlink, a missing weights
                file, a config that is not a LoRA config...).
        """
        try:
            ref = self.adapters.put(source)
        except AdapterError as exc:
            raise LineageError(str(exc)) from None
        return make_pointer(self.adapters, ref.sha256, meta)

    def flush(self) -> None:
        """Nothing to do: every write is durable when it returns. Kept for symmetry."""

    def close(self) -> None:
        """Stop the writer's git processes and release the writer lock (idempotent)."""
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> GitLineageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _writable_layout(path: Path, store: Path | None) -> Layout:
    """The layout of a lineage about to be written (read under the writer lock).

    Raises:
        LineageError: a layout to migrate first, or another adapter store than ``store``.
    """
    layout = read_layout(path)
    if layout.version < LAYOUT_VERSION:
        raise LineageError(migrate_hint(path, store))
    if store is not None and layout.adapter_store is not None and \
            not same_path(layout.adapter_store, store):
        raise LineageError(f"{path} keeps its adapters in {layout.adapter_store}, not in {store} "
                           f"(model.adapter_store): point it there, or start a new lineage")
    return layout


def record_user(adapters: AdapterStore, path: Path, layout: Layout) -> None:
    """Record the lineage ``path`` as a user of ``adapters`` (so gc elsewhere keeps its adapters).

    The record names the lineage relative to the store's root when that is
    possible without ``..`` above their common folder, else by absolute path;
    it is rewritten only when it changed. A store that cannot be written is
    reported and left as it is (nothing can be removed from it either).
    """
    if layout.id is None or not adapters.root.is_dir():
        return
    here = os.path.abspath(path)
    root = os.path.abspath(adapters.root)
    where = os.path.relpath(here, root) if here.startswith(os.path.dirname(root) + os.sep) \
        else here
    if adapters.users().get(layout.id) == {"lineage": where}:
        return
    try:
        adapters.record_user(layout.id, {"lineage": where})
    except (OSError, AdapterError) as exc:
        _log.warning("cannot record lineage %s as a user of the adapter store %s: %s",
                     path, adapters.root, exc)
