"""The lineage: every adapter version, round and merge of a swarm, in a plain Git repository.

``LineageStore`` (a protocol) is the interface the recorder, the CLI and
notebooks use; ``GitLineageStore.open`` gives one, composed of a
``LineageReader`` (lock-free reads, also usable alone) and a ``LineageWriter``
(the single writer). Adapter weights stay in the machine's adapter store
(``swarm.adapters``); the repository holds pointers to them. ``phylogeny()``
gives the family tree as a networkx graph and ``draw`` a picture of it;
``collect_garbage`` and ``migrate`` are what ``swarm lineage gc`` and
``swarm lineage migrate`` run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from swarm.lineage.gc import GcReport, collect_garbage
from swarm.lineage.gitstore import GitLineageStore
from swarm.lineage.layout import LAYOUT_VERSION, Layout, read_layout
from swarm.lineage.migrate import Migration, migrate
from swarm.lineage.pointers import POINTER_FORMAT
from swarm.lineage.reader import DiffEntry, LineageReader, LogEntry
from swarm.lineage.repo import (
    LATEST_ROUND_PATH,
    MATCHMAKER_PATH,
    SWARM_BRANCH,
    adapter_path,
    agent_branch,
    artifact_path,
    kg_path,
    profile_path,
    round_path,
)
from swarm.lineage.store import LineageStore, LineageView
from swarm.lineage.writer import CommitSpec, LineageWriter

if TYPE_CHECKING:
    from swarm.lineage.phylogeny import build, draw, generations

__all__ = [
    "LineageStore",
    "LineageView",
    "GitLineageStore",
    "LineageReader",
    "LineageWriter",
    "CommitSpec",
    "LogEntry",
    "DiffEntry",
    "Layout",
    "LAYOUT_VERSION",
    "POINTER_FORMAT",
    "read_layout",
    "GcReport",
    "collect_garbage",
    "Migration",
    "migrate",
    "SWARM_BRANCH",
    "MATCHMAKER_PATH",
    "LATEST_ROUND_PATH",
    "agent_branch",
    "adapter_path",
    "profile_path",
    "kg_path",
    "round_path",
    "artifact_path",
    "build",
    "draw",
    "generations",
]

_PHYLOGENY = ("build", "draw", "generations")


def __getattr__(name: str) -> Any:
    """``draw``, ``build`` and ``generations`` load networkx (and matplotlib) only when asked for."""
    if name in _PHYLOGENY:
        from swarm.lineage import phylogeny

        return getattr(phylogeny, name)
    raise AttributeError(f"module 'swarm.lineage' has no attribute {name!r}")
