"""Garbage collection of adapter weights (``swarm lineage gc``).

The machine's adapter store keeps every adapter the model server trained or
merged, kept or not. ``collect_garbage`` finds the entries no lineage using the
store still reaches: an adapter is kept when a commit reachable from a live ref
(a branch, a promoted tag, anything but the notes and the pruned lines) of any
such lineage points at it, or names it as a parent; one that only pruned
history reaches is kept unless ``pruned`` is asked for. It removes nothing
unless ``delete`` is asked for, and then only complete entries the store wrote
itself (``AdapterStore.remove``) and the temporary folders of puts that died an
hour ago or more.

Every lineage that uses the store recorded itself there
(``swarm.lineage.store.record_user``). While collecting, the writer lock of
each of them is held, so no swarm commits (or trains an adapter it is about to
commit) meanwhile; a lineage that is being written, or that cannot be found
where it was recorded, stops the collection with a message saying what to do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from swarm.adapters.store import AdapterStore
from swarm.errors import AdapterError, LineageError
from swarm.lineage.layout import read_layout, same_path
from swarm.lineage.reader import LineageReader
from swarm.lineage.repo import take_lock
from swarm.lineage.store import LineageStore, LineageView

__all__ = ["Garbage", "GcReport", "collect_garbage"]

_LIVE_EXCLUDED = ("refs/notes/", "refs/pruned/")


@dataclass(frozen=True)
class Garbage:
    """One store entry no live ref reaches: what it is, its size, and why it may go."""

    name: str  # an adapter's sha256, or a temporary folder's name
    size: int
    why: str


@dataclass
class GcReport:
    """What a collection found (and, with ``deleted``, removed)."""

    store: Path
    lineages: list[Path]
    garbage: list[Garbage] = field(default_factory=list)
    kept_pruned: list[Garbage] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # entries swarm did not write whole
    deleted: bool = False

    @property
    def freed(self) -> int:
        """Bytes the garbage takes (freed, when ``deleted``)."""
        return sum(g.size for g in self.garbage)


def collect_garbage(store: LineageStore, *, pruned: bool = False,
                    delete: bool = False) -> GcReport:
    """Find (and with ``delete`` remove) the adapters no lineage using ``store.adapters`` reaches.

    ``store`` must be the writer of its lineage (its lock is held).

    Raises:
        LineageError: ``store`` is read-only, another lineage using the store is
            being written or cannot be found where it was recorded.
    """
    if not store.writable:
        raise LineageError("gc needs the lineage's writer (open it with writer=True)")
    adapters = store.adapters
    with _other_lineages(store) as others:
        live, pruned_only = _reached([store, *others])
        report = GcReport(adapters.root, [store.path, *(r.path for r in others)])
        for sha in adapters.list():
            if sha in live:
                continue
            refusal = adapters.removal_refusal(sha)
            if refusal is not None:
                report.refused.append(refusal)
                continue
            entry = Garbage(sha, adapters.entry_size(sha),
                            "only pruned history references it" if sha in pruned_only
                            else "no commit references it")
            keep = sha in pruned_only and not pruned
            (report.kept_pruned if keep else report.garbage).append(entry)
        report.garbage += [Garbage(p.name, _du(p), "left by a put that died")
                           for p in adapters.stale_temps()]
        if delete:
            _sweep(adapters, report)
    return report


def _reached(lineages: Sequence[LineageView]) -> tuple[set[str], set[str]]:
    """(adapters live refs reach, adapters only pruned refs reach) over every lineage."""
    live: set[str] = set()
    pruned: set[str] = set()
    for lineage in lineages:
        refs = list(lineage.refs())
        live |= lineage.adapters_reached(r for r in refs if not r.startswith(_LIVE_EXCLUDED))
        pruned |= lineage.adapters_reached(r for r in refs if r.startswith("refs/pruned/"))
    return live, pruned - live


@contextlib.contextmanager
def _other_lineages(store: LineageStore) -> Iterator[list[LineageReader]]:
    """Readers of the other lineages using ``store.adapters``, their writer locks held meanwhile."""
    adapters = store.adapters
    me = read_layout(store.path).id
    held: list[int] = []
    readers: list[LineageReader] = []
    try:
        for ident, info in sorted(adapters.users().items()):
            if ident == me:
                continue
            path = _recorded_path(adapters, ident, info)
            if path is None:
                continue  # it keeps its adapters elsewhere now
            try:
                held.append(take_lock(path / "lineage.lock", 0.0))
            except LineageError:
                raise LineageError(
                    f"{path} also keeps its adapters in {adapters.root} and is being written "
                    f"(a swarm runs on it): run gc once it has stopped") from None
            readers.append(LineageReader(path, adapters))
        yield readers
    finally:
        for fd in held:
            os.close(fd)


def _recorded_path(adapters: AdapterStore, ident: str, info: dict[str, object]) -> Path | None:
    """Where the lineage ``ident`` recorded as a user is (None: it uses another store now).

    Raises:
        LineageError: it is not where it was recorded.
    """
    where = info.get("lineage")
    path = adapters.root / where if isinstance(where, str) and where else None
    record = adapters.root / ".users" / f"{ident}.json"
    try:
        layout = read_layout(path) if path is not None and (path / "HEAD").is_file() else None
    except LineageError:
        layout = None
    if path is None or layout is None or layout.id != ident:
        raise LineageError(
            f"{record} names a lineage that keeps its adapters here too, at {path}, which is "
            f"not there now: if it moved, run `swarm lineage gc` once in its new place; if it "
            f"was deleted, remove that file")
    if layout.adapter_store is None or not same_path(layout.adapter_store, adapters.root):
        return None
    return path


def _sweep(adapters: AdapterStore, report: GcReport) -> None:
    removed: list[Garbage] = []
    for entry in report.garbage:
        if entry.name.startswith("."):  # a dead put's temporary folder (stale_temps)
            shutil.rmtree(adapters.root / entry.name, ignore_errors=True)
        else:
            try:
                adapters.remove(entry.name)
            except AdapterError as exc:  # changed since it was listed
                report.refused.append(str(exc))
                continue
        removed.append(entry)
    report.garbage = removed
    report.deleted = True


def _du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())
