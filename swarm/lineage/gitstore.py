"""``GitLineageStore``: the ``LineageStore`` on a git repository (``swarm.lineage.store``).

It composes a ``LineageReader`` (lock-free reads) and, for the one writer, a
``LineageWriter`` (guarded by an flock on ``lineage.lock``), and keeps the
lineage's adapters in the machine's adapter store named by ``lineage.json``
(``swarm.lineage.layout``): a commit writes only a pointer to an adapter the
store holds, never the weights.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from swarm.lineage.repo import ensure_config, init_repo, take_lock
from swarm.lineage.writer import CommitSpec, LineageWriter

if TYPE_CHECKING:
    import networkx as nx

_log = logging.getLogger(__name__)

__all__ = ["GitLineageStore", "record_user"]


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

    def point(self, branch: str, target: str) -> str:
        """``LineageWriter.point``."""
        return self._writer().point(branch, target)

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
