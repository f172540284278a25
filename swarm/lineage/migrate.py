"""Bringing a lineage to the current layout (``swarm lineage migrate DIR``).

Layout 1 kept a second copy of every adapter in the lineage's own ``cas/``
(``swarm.lineage.cas``); layout 2 keeps them in the machine's adapter store
(``swarm.lineage.layout``). ``migrate`` puts every adapter that a commit
reachable from any ref points at into the store (by hash: one the store holds
already is not copied again; each copy is verified as it is written), checks
that the stored config is the one the pointers name, and only then writes
``lineage.json``; it removes the blobs of ``cas/`` last. It is all or nothing:
a pointer whose adapter cannot be moved leaves the lineage at layout 1, as
readable as before, and names the problem. It runs under the writer lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from swarm.adapters.store import AdapterStore
from swarm.adapters.validate import CONFIG_FILE, WEIGHTS_FILE
from swarm.durable import fsync_dir
from swarm.errors import AdapterError, LineageError
from swarm.lineage.cas import LegacyContentStore
from swarm.lineage.gitstore import record_user
from swarm.lineage.layout import LAYOUT_VERSION, default_adapter_store, read_layout, write_layout
from swarm.lineage.pointers import pointer_shas
from swarm.lineage.reader import LineageReader
from swarm.lineage.repo import take_lock

__all__ = ["Migration", "migrate"]

_log = logging.getLogger(__name__)
_BLOB = re.compile(r"[0-9a-f]{62}")


@dataclass(frozen=True)
class Migration:
    """What ``migrate`` did."""

    path: Path
    from_version: int
    adapter_store: Path
    adapters: int = 0  # adapters the lineage's commits point at
    copied: int = 0  # of those, how many the store did not hold yet
    freed: int = 0  # bytes of cas/ removed


def migrate(path: Path | str, adapter_store: Path | str | None = None, *,
            lock_timeout: float = 5.0) -> Migration:
    """Upgrade the lineage ``path`` to the current layout; a current one is left as it is.

    ``adapter_store`` is the machine's adapter store (default: ``adapters/``
    beside the lineage, where a swarm run keeps it unless ``model.adapter_store``
    says otherwise).

    Raises:
        LineageError: not a lineage, another writer holds it, or an adapter a
            commit points at cannot be moved (missing, corrupt, not a PEFT adapter).
    """
    path = Path(path)
    if not (path / "HEAD").is_file():
        raise LineageError(f"{path} is not a lineage directory")
    lock_fd = take_lock(path / "lineage.lock", lock_timeout)
    try:
        layout = read_layout(path)
        if layout.version >= LAYOUT_VERSION:
            assert layout.adapter_store is not None
            return Migration(path, layout.version, layout.adapter_store)
        root = Path(adapter_store) if adapter_store is not None else default_adapter_store(path)
        store = AdapterStore(root)
        reader = LineageReader(path)
        legacy = LegacyContentStore(path / "cas")
        pointers = _pointers(reader)
        copied = sum(_move(legacy, store, sha, config) for sha, config in sorted(pointers))
        new = write_layout(path, root)
        record_user(store, path, new)
        freed = _remove_blobs(legacy)
        _log.info("migrated %s to layout %s: %d adapter(s) in %s", path, new.format,
                  len(pointers), root)
        return Migration(path, layout.version, root, len(pointers), copied, freed)
    finally:
        os.close(lock_fd)


def _pointers(reader: LineageReader) -> set[tuple[str, str | None]]:
    """``(weights, config)`` of every pointer in a commit reachable from any ref.

    A pointer file that is not a pointer names no adapter: nothing to move
    (``swarm lineage fsck`` reports it).
    """
    found: set[tuple[str, str | None]] = set()
    refs = [r for r in reader.refs() if not r.startswith("refs/notes/")]
    for blob, pointer in reader.pointers_reached(refs).items():
        try:
            found.add(pointer_shas(pointer))
        except ValueError as exc:
            _log.warning("%s: pointer %s names no adapter (%s)", reader.path, blob[:12], exc)
    return found


def _move(legacy: LegacyContentStore, store: AdapterStore, sha: str, config: str | None) -> bool:
    """Put one adapter of ``cas/`` into ``store``; return whether it was copied (not there yet).

    Raises:
        LineageError: it cannot be moved.
    """
    if config is None:
        raise LineageError(f"cannot migrate adapter {sha}: its pointer names no config, and "
                           f"the adapter store keeps whole PEFT folders")
    fresh = not store.has(sha)
    try:
        with tempfile.TemporaryDirectory(prefix=".migrate-", dir=legacy.root.parent) as tmp:
            folder = legacy.export({"sha256": sha, "config_sha256": config}, Path(tmp))
            if not (folder / WEIGHTS_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
                raise LineageError("incomplete")
            store.put(folder, sha=sha)
        stored = store.config_sha256(sha)
    except (AdapterError, LineageError) as exc:
        raise LineageError(f"cannot migrate adapter {sha}: {exc}") from None
    if stored != config:
        raise LineageError(f"cannot migrate adapter {sha}: the adapter store keeps its config "
                           f"as {stored[:12]}…, not as the {config[:12]}… its pointers name")
    return fresh


def _remove_blobs(legacy: LegacyContentStore) -> int:
    """Remove the blobs ``cas/`` held (only files named as swarm named them); return bytes freed."""
    freed = 0
    base = legacy.root / "sha256"
    for sub in sorted(base.iterdir()) if base.is_dir() else []:
        for blob in sorted(sub.iterdir()):
            if _BLOB.fullmatch(blob.name) and blob.is_file() and not blob.is_symlink():
                freed += blob.stat().st_size
                blob.unlink()
        fsync_dir(sub)
        _rmdir(sub)
    tmp = legacy.root / "tmp"
    for leftover in sorted(tmp.iterdir()) if tmp.is_dir() else []:
        if leftover.name.startswith("put-") and leftover.is_file():
            leftover.unlink()
    for folder in (base, tmp, legacy.root):
        _rmdir(folder)
    return freed


def _rmdir(folder: Path) -> None:
    """Remove ``folder`` when it is empty (a file someone put there keeps it)."""
    with contextlib.suppress(OSError):
        folder.rmdir()
