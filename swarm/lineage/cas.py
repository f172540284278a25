"""Layout 1's blob store: adapter weights and configs in a lineage's own ``cas/`` (read only).

Lineages written before the layout had a version kept a second copy of every
adapter they referenced in ``<lineage>/cas/sha256/<first two hex>/<remaining
62 hex>``, one blob per file (weights and config separately). Readers still
read such a lineage through ``LegacyContentStore``, and ``swarm lineage
migrate`` moves its adapters into the machine's adapter store
(``swarm.lineage.migrate``). Nothing writes this layout any more. Symlinks are
refused, never followed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from swarm.adapters.files import open_no_follow
from swarm.adapters.validate import CONFIG_FILE, WEIGHTS_FILE, is_sha256
from swarm.errors import AdapterFormatError, LineageError
from swarm.lineage.pointers import pointer_shas

__all__ = ["LegacyContentStore", "sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file's bytes, read in chunks (a symlink is not followed)."""
    h = hashlib.sha256()
    with os.fdopen(_open_regular(path), "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _open_regular(path: Path) -> int:
    """Open ``path`` for reading without following a symlink; it must be a regular file.

    Raises:
        LineageError: a symlink, not a regular file, or unreadable.
    """
    try:
        return open_no_follow(path)
    except AdapterFormatError as exc:
        raise LineageError(str(exc)) from None


class LegacyContentStore:
    """The blobs of a layout-1 lineage's ``cas/``, addressed by their sha256 (read only)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        """Where the blob ``sha256`` lives (whether or not it is stored).

        Raises:
            LineageError: ``sha256`` is not a lowercase sha256 hex digest.
        """
        if not is_sha256(sha256):
            raise LineageError(f"{sha256!r} is not a lowercase sha256 hex digest")
        return self.root / "sha256" / sha256[:2] / sha256[2:]

    def has(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        return self.path(sha256).is_file()

    def open(self, sha256: str) -> IO[bytes]:
        """The blob, opened for reading.

        Raises:
            LineageError: the blob is not stored (or is not a regular file).
        """
        if not self.has(sha256):
            raise LineageError(f"adapter blob {sha256} is not in the content store {self.root}")
        return os.fdopen(_open_regular(self.path(sha256)), "rb")

    def verify(self, sha256: str) -> bool:
        """Whether the blob is stored and its bytes still hash to its name."""
        try:
            return self.has(sha256) and sha256_file(self.path(sha256)) == sha256
        except LineageError:
            return False

    def __iter__(self) -> Iterator[str]:
        """Every stored sha256."""
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for sub in sorted(base.iterdir()):
            for blob in sorted(sub.iterdir()):
                yield sub.name + blob.name

    # -- the AdapterSource interface (swarm.lineage.pointers) -----------------

    def export(self, pointer: Any, dest: Path) -> Path:
        """Write a pointer's weights (and config, when it names one) as the PEFT folder ``dest``."""
        try:
            sha, config = pointer_shas(pointer)
        except ValueError as exc:
            raise LineageError(f"not an adapter pointer: {exc}") from None
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for blob, name in ((sha, WEIGHTS_FILE), (config, CONFIG_FILE)):
            if blob is None:
                continue
            tmp = dest / f".{name}.tmp-{os.getpid()}"
            with self.open(blob) as source, open(tmp, "wb") as target:
                shutil.copyfileobj(source, target, _CHUNK)
            os.replace(tmp, dest / name)
        return dest

    def removed(self, pointer: Any) -> bool:
        """Never: nothing removes blobs from a layout-1 ``cas/`` but a migration."""
        pointer_shas(pointer)
        return False

    def problems(self, where: str, pointer: Any) -> list[str]:
        """Each blob the pointer names must be stored and hash to its name."""
        sha, config = pointer_shas(pointer)
        return [f"{where}: adapter blob {blob} missing or corrupt"
                for blob in (sha, config) if blob is not None and not self.verify(blob)]
