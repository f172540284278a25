"""A content-addressed store for large binaries (adapter weights), keyed by sha256.

Layout: ``<root>/sha256/<first two hex>/<remaining 62 hex>``. A blob is
written to ``<root>/tmp/``, hashed while it is copied, fsynced, renamed into
place and its directory fsynced (and the parent of every directory the put
created), so a reader sees a blob whole or not at all, and a blob that is there
is durable. Storing the same bytes twice stores them once. Symlinks are
refused, never followed: a link to a system file must not land in the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from swarm.durable import fsync_dir
from swarm.errors import LineageError

__all__ = ["ContentStore", "sha256_file", "POINTER_FORMAT"]

POINTER_FORMAT = "swarm-adapter-pointer/1"

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()




def _make_dirs(path: Path) -> None:
    """Create ``path`` and any missing parents, making each new entry durable."""
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue  # a concurrent put made it; whoever made it fsyncs its entry
        fsync_dir(folder.parent)


def _open_regular(path: Path) -> int:
    """Open ``path`` for reading without following a symlink; it must be a regular file.

    Raises:
        LineageError: a symlink, not a regular file, or unreadable.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if path.is_symlink():
            raise LineageError(f"{path} is a symlink; the store keeps only regular files") \
                from None
        raise LineageError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LineageError(f"{path} is not a regular file")
    return fd


class ContentStore:
    """Durable, deduplicated blobs addressed by their sha256."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        """Where the blob ``sha256`` lives (whether or not it is stored)."""
        if not isinstance(sha256, str) or len(sha256) != 64 or \
                any(c not in "0123456789abcdef" for c in sha256):
            raise LineageError(f"{sha256!r} is not a lowercase sha256 hex digest")
        return self.root / "sha256" / sha256[:2] / sha256[2:]

    def has(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        return self.path(sha256).is_file()

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; return ``(sha256, size)``. A blob already stored is not rewritten."""
        sha = hashlib.sha256(data).hexdigest()
        if not self.has(sha):
            self._install(sha, lambda fh: fh.write(data))
        return sha, len(data)

    def put_file(self, source: Path) -> tuple[str, int]:
        """Store a file's bytes (streamed, hashed while copied); return ``(sha256, size)``."""
        src_fd = _open_regular(Path(source))
        tmp_dir = self.root / "tmp"
        _make_dirs(tmp_dir)
        h = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as out, os.fdopen(src_fd, "rb") as src:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = h.hexdigest()
            if not self.has(sha):
                self._move_in(Path(tmp_name), sha)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return sha, size

    def _install(self, sha: str, write: Callable[[IO[bytes]], object]) -> None:
        tmp_dir = self.root / "tmp"
        _make_dirs(tmp_dir)
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            self._move_in(Path(tmp_name), sha)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)

    def _move_in(self, tmp: Path, sha: str) -> None:
        final = self.path(sha)
        _make_dirs(final.parent)  # a new fan-out folder's own entry is durable too
        os.chmod(tmp, 0o444)
        os.replace(tmp, final)
        fsync_dir(final.parent)

    def put_adapter(
        self, source: Path | bytes, meta: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Store a PEFT adapter folder (weights and config) or safetensors bytes; return its pointer.

        The pointer (what ``agents/<id>/adapter.json`` holds) names the weights'
        sha256 and size, ``base_model``, ``rank`` and ``parents`` (from ``meta``,
        else from the adapter config) and ``config_sha256``; other ``meta`` keys
        are kept as they are.

        Raises:
            LineageError: a parent that is not a sha256, a symlink, a missing
                weights file or a config that is not a JSON object.
        """
        meta = dict(meta or {})
        parents = list(meta.pop("parents", []))
        for parent in parents:  # they come from host reports: adapter hashes, nothing else
            self.path(parent)
        config: dict[str, Any] = {}
        config_sha = None
        if isinstance(source, bytes):
            sha, size = self.put_bytes(source)
        else:
            folder = Path(source)
            if folder.is_symlink():
                raise LineageError(f"{folder} is a symlink; store the folder it points to")
            weights = folder / "adapter_model.safetensors"
            if not weights.is_file() and not weights.is_symlink():
                raise LineageError(f"{folder} holds no adapter_model.safetensors")
            sha, size = self.put_file(weights)
            config_file = folder / "adapter_config.json"
            if config_file.is_file() or config_file.is_symlink():
                with os.fdopen(_open_regular(config_file), "rb") as fh:
                    raw = fh.read()
                try:
                    config = json.loads(raw)
                except ValueError as exc:
                    raise LineageError(f"{config_file} is not JSON: {exc}") from None
                if not isinstance(config, dict):
                    raise LineageError(f"{config_file} is not a JSON object")
                config_sha = self.put_bytes(raw)[0]
        return {
            "format": POINTER_FORMAT,
            "sha256": sha,
            "size": size,
            "base_model": meta.pop("base_model", config.get("base_model_name_or_path")),
            "rank": meta.pop("rank", config.get("r")),
            "parents": parents,
            "config_sha256": config_sha,
            **meta,
        }

    def get(self, sha256: str, dest: Path) -> Path:
        """Copy the blob to ``dest`` (atomically: temp file then rename); return ``dest``.

        Raises:
            LineageError: the blob is not stored.
        """
        src = self.path(sha256)
        if not src.is_file():
            raise LineageError(f"adapter blob {sha256} is not in the content store {self.root}")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        return dest

    def read(self, sha256: str) -> bytes:
        """The blob's bytes (for small blobs such as adapter configs)."""
        src = self.path(sha256)
        if not src.is_file():
            raise LineageError(f"blob {sha256} is not in the content store {self.root}")
        return src.read_bytes()

    def verify(self, sha256: str) -> bool:
        """Whether the blob is stored and its bytes still hash to its name."""
        return self.has(sha256) and sha256_file(self.path(sha256)) == sha256

    def __iter__(self) -> Iterator[str]:
        """Every stored sha256."""
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for sub in sorted(base.iterdir()):
            for blob in sorted(sub.iterdir()):
                yield sub.name + blob.name

    def clean_tmp(self) -> None:
        """Remove temp files left by a writer that died mid-copy (call with the writer lock)."""
        tmp_dir = self.root / "tmp"
        if tmp_dir.is_dir():
            for leftover in tmp_dir.iterdir():
                leftover.unlink(missing_ok=True)
