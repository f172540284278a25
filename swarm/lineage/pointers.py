"""Adapter pointers: what ``agents/<id>/adapter.json`` holds, and where the weights it names are.

A pointer names an adapter by content hash; the weights live in an adapter
store, never in git::

    {"format": "swarm-adapter-pointer/1", "sha256": "<weights>", "size": 65536,
     "base_model": "tiny", "rank": 8, "parents": ["<sha256>", ...],
     "config_sha256": "<adapter_config.json>", ...extra keys}

``AdapterSource`` is what a lineage reader reads adapters through: the
machine's ``AdapterStore`` for the current layout (``StoreSource``), the
lineage's own ``cas/`` for layout 1 (``swarm.lineage.cas``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from swarm.adapters.store import AdapterStore
from swarm.adapters.validate import is_sha256
from swarm.errors import AdapterError, LineageError

__all__ = ["POINTER_FORMAT", "AdapterSource", "StoreSource", "make_pointer", "pointer_shas"]

POINTER_FORMAT = "swarm-adapter-pointer/1"


def pointer_shas(pointer: Any) -> tuple[str, str | None]:
    """``(weights sha256, config sha256 or None)`` of a pointer (a bare sha256 names weights only).

    Raises:
        ValueError: not a pointer (not an object, or a hash that is not a sha256).
    """
    if isinstance(pointer, str):
        pointer = {"sha256": pointer}
    if not isinstance(pointer, Mapping):
        raise ValueError(f"a JSON {type(pointer).__name__}, not an object")
    sha, config = pointer.get("sha256"), pointer.get("config_sha256")
    if not is_sha256(sha):
        raise ValueError(f"sha256 is {sha!r}, not a lowercase sha256 hex digest")
    if config is not None and not is_sha256(config):
        raise ValueError(f"config_sha256 is {config!r}, not a lowercase sha256 hex digest")
    return str(sha), None if config is None else str(config)


def make_pointer(store: AdapterStore, sha: str, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The pointer to commit for the adapter ``sha`` that ``store`` holds (nothing is copied).

    ``meta`` may give ``base_model``, ``rank``, ``parents`` (parent adapters'
    sha256) and any extra JSON keys; base model and rank default to the
    adapter config's.

    Raises:
        LineageError: ``sha`` or a parent is not a sha256, or the store lacks the adapter.
    """
    meta = dict(meta or {})
    parents = list(meta.pop("parents", []))
    for value in (sha, *parents):  # they come from host reports: adapter hashes, nothing else
        if not is_sha256(value):
            raise LineageError(f"{value!r} is not a lowercase sha256 hex digest")
    try:
        ref = store.ref(sha)
        config_sha = store.config_sha256(sha)
    except AdapterError as exc:
        raise LineageError(f"adapter {sha} cannot be committed: {exc}") from None
    return {
        "format": POINTER_FORMAT,
        "sha256": sha,
        "size": ref.size_bytes,
        "base_model": meta.pop("base_model", ref.base_model or None),
        "rank": meta.pop("rank", ref.rank),
        "parents": parents,
        "config_sha256": config_sha,
        **meta,
    }


class AdapterSource(Protocol):
    """Where a lineage reader finds the adapters its pointers name."""

    def export(self, pointer: Any, dest: Path) -> Path:
        """Write the adapter a pointer names as the PEFT folder ``dest``; return it.

        Raises:
            LineageError: not a pointer, or the adapter is not there.
        """
        ...

    def problems(self, where: str, pointer: Any) -> list[str]:
        """What is wrong with the stored copy of a pointer's adapter (``[]``: nothing).

        Raises:
            ValueError: not a pointer.
        """
        ...

    def removed(self, pointer: Any) -> bool:
        """Whether the pointer's adapter is gone as a whole (``gc`` removed it), not damaged.

        Raises:
            ValueError: not a pointer.
        """
        ...


class StoreSource:
    """Adapters read from the machine's ``AdapterStore`` (the current layout)."""

    def __init__(self, store: AdapterStore) -> None:
        self.store = store

    def export(self, pointer: Any, dest: Path) -> Path:
        """Copy the store's entry out as ``dest`` (weights and config)."""
        try:
            sha, _ = pointer_shas(pointer)
            return self.store.export(sha, dest)
        except ValueError as exc:
            raise LineageError(f"not an adapter pointer: {exc}") from None
        except AdapterError as exc:
            raise LineageError(f"adapter blob {pointer_shas(pointer)[0]} is not in the adapter "
                               f"store {self.store.root} ({exc})") from None

    def removed(self, pointer: Any) -> bool:
        """Whether the store holds no entry (not even a torn one) for the pointer's adapter."""
        sha, _ = pointer_shas(pointer)
        entry = self.store.root / sha
        return not entry.exists() and not entry.is_symlink()

    def problems(self, where: str, pointer: Any) -> list[str]:
        """The weights must hash to their name, the config to the pointer's ``config_sha256``."""
        sha, config = pointer_shas(pointer)
        if not self.store.verify(sha):
            return [f"{where}: adapter blob {sha} missing or corrupt in {self.store.root}"]
        if config is not None and self.store.config_sha256(sha) != config:
            return [f"{where}: adapter config {config} missing or corrupt in {self.store.root}"]
        return []
