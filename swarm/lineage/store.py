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

``LineageStore`` (reads and writes) and ``LineageView`` (reads) are the
interfaces the recorder, the CLI and notebooks use; ``GitLineageStore``
(``swarm.lineage.gitstore``) implements them by composing a ``LineageReader``
(lock-free reads) and, for the one writer, a ``LineageWriter`` (guarded by an
flock on ``lineage.lock``). A write returns only once it is durable. The
other names callers of the lineage need are in ``swarm.lineage``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from swarm.adapters.store import AdapterStore
from swarm.lineage.batch import FileValue
from swarm.lineage.reader import DiffEntry, LogEntry
from swarm.lineage.writer import CommitSpec

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["LineageView", "LineageStore"]


class LineageView(Protocol):
    """Reading a lineage (``LineageReader`` is one; so is every ``LineageStore``)."""

    @property
    def path(self) -> Path:
        """The lineage directory."""
        ...

    def git(self, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
        """Run one plain git command on the repository and return its stdout."""
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

    def point(self, branch: str, target: str) -> str:
        """Move (or create) ``branch`` to the existing commit ``target``."""
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
