"""The lineage directory's format: its layout version and where its adapters are kept.

A lineage directory holds ``lineage.json``::

    {"format": "swarm-lineage/2", "id": "<32 hex digits>", "adapter_store": "../adapters"}

- ``format`` names the layout and its version.
- ``id`` tells this lineage apart from another one later made at the same
  path (the adapter store records the lineages that use it by id).
- ``adapter_store`` is the machine's adapter store (``swarm.adapters.store``),
  where the lineage keeps the durable copy of every adapter a commit
  references. It is relative to the lineage directory when the store lies in
  the lineage's run directory (its parent), so that a run directory moved
  aside keeps both, and absolute otherwise.

Layout versions:

1. (no ``lineage.json``: what swarm wrote before the layout had a version)
   adapter weights and configs as blobs in ``cas/sha256/<2 hex>/<62 hex>``
   inside the lineage directory, a second copy of what the machine's store held.
2. adapters in the machine's adapter store, shared with the model server; no ``cas/``.

Readers read every known version; a writer needs the current one
(``swarm lineage migrate DIR`` upgrades a lineage); a newer version than this
code knows is refused with a message saying so.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from swarm.durable import fsync_dir, write_durably
from swarm.errors import LineageError

__all__ = [
    "LAYOUT_FILE",
    "LAYOUT_NAME",
    "LAYOUT_VERSION",
    "Layout",
    "default_adapter_store",
    "layout_bytes",
    "migrate_hint",
    "read_layout",
    "same_path",
    "write_layout",
]

LAYOUT_FILE = "lineage.json"
LAYOUT_NAME = "swarm-lineage"
LAYOUT_VERSION = 2
_MAX_BYTES = 1 << 16


@dataclass(frozen=True)
class Layout:
    """What ``lineage.json`` says: version, id and adapter store (None for version 1)."""

    version: int
    id: str | None = None
    adapter_store: Path | None = None

    @property
    def format(self) -> str:
        """``swarm-lineage/<version>``."""
        return f"{LAYOUT_NAME}/{self.version}"


def default_adapter_store(lineage: Path) -> Path:
    """Where a lineage keeps its adapters unless told otherwise: ``adapters/`` beside it.

    The same place a swarm run's ``model.adapter_store`` defaults to (``<run dir>/adapters``).
    """
    return Path(lineage).parent / "adapters"


def same_path(a: Path, b: Path) -> bool:
    """Whether two paths name the same folder (symlinks and ``..`` resolved)."""
    return os.path.realpath(a) == os.path.realpath(b)


def read_layout(lineage: Path) -> Layout:
    """The layout of the lineage directory ``lineage`` (version 1 when it has no ``lineage.json``).

    Raises:
        LineageError: the file is unreadable or malformed, or names a layout
            newer than this code knows.
    """
    path = Path(lineage) / LAYOUT_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return Layout(1)
    except OSError as exc:
        raise LineageError(f"{path}: cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(_MAX_BYTES + 1)
    try:
        data = json.loads(raw)
        fmt = data["format"]
        name, _, version = fmt.partition("/")
        if name != LAYOUT_NAME or not version.isdigit() or len(raw) > _MAX_BYTES:
            raise ValueError(f"format {fmt!r} is not {LAYOUT_NAME}/<version>")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LineageError(f"{path}: not a lineage format file ({exc})") from None
    if int(version) > LAYOUT_VERSION:
        raise LineageError(f"{lineage} has the layout {fmt}, newer than this swarm knows "
                           f"({LAYOUT_NAME}/{LAYOUT_VERSION}): upgrade swarm to open it")
    store, ident = data.get("adapter_store"), data.get("id")
    if not isinstance(store, str) or not store or not isinstance(ident, str):
        raise LineageError(f"{path}: names no adapter store or id")
    # an absolute store stays as it is; a relative one is relative to the lineage
    return Layout(int(version), ident, Path(os.path.normpath(Path(lineage) / store)))


def layout_bytes(lineage: Path, adapter_store: Path, ident: str | None = None) -> bytes:
    """The ``lineage.json`` of a current-layout lineage at ``lineage`` keeping adapters in ``adapter_store``."""
    here, store = os.path.abspath(lineage), os.path.abspath(adapter_store)
    run_dir = os.path.dirname(here)
    where = os.path.relpath(store, here) if store.startswith(run_dir + os.sep) else store
    data = {"format": f"{LAYOUT_NAME}/{LAYOUT_VERSION}", "id": ident or uuid.uuid4().hex,
            "adapter_store": where}
    return (json.dumps(data, indent=2) + "\n").encode()


def write_layout(lineage: Path, adapter_store: Path, ident: str | None = None) -> Layout:
    """Write ``lineage.json`` durably (temp file, fsync, rename, fsync the folder); return it."""
    lineage = Path(lineage)
    tmp = lineage / f".{LAYOUT_FILE}.tmp-{os.getpid()}"
    write_durably(tmp, [layout_bytes(lineage, adapter_store, ident)])
    os.replace(tmp, lineage / LAYOUT_FILE)
    fsync_dir(lineage)
    return read_layout(lineage)


def migrate_hint(lineage: Path, adapter_store: Path | None = None) -> str:
    """The sentence that tells how to bring an old lineage to the current layout."""
    store = "" if adapter_store is None or same_path(adapter_store,
                                                    default_adapter_store(lineage)) \
        else f" --adapter-store {adapter_store}"
    return (f"{lineage} has the layout {LAYOUT_NAME}/1 (written before the layout had a "
            f"version), which this swarm reads but does not write: run "
            f"`swarm lineage migrate {lineage}{store}` to upgrade it")
