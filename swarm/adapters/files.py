"""File operations of the adapter store: no symlink followed, nothing acknowledged before it is durable."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import IO

from swarm.durable import fsync_dir
from swarm.errors import AdapterFormatError

__all__ = ["copy_hashed", "is_regular", "make_dirs_durably", "open_no_follow", "write_hashed"]

_CHUNK = 1 << 20


def make_dirs_durably(path: Path) -> None:
    """Create ``path`` and its missing parents, making each new folder's entry durable."""
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # a concurrent put made it; whoever made it fsyncs its entry
        fsync_dir(folder.parent)


def is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def open_no_follow(path: Path) -> int:
    """Open ``path`` for reading without following a symlink; it must be a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block
    except FileNotFoundError:
        raise AdapterFormatError(f"{path.parent}: no {path.name}") from None
    except OSError as exc:
        raise AdapterFormatError(f"{path}: cannot be read ({exc.strerror}); symlinks are refused") \
            from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise AdapterFormatError(f"{path}: cannot be read (not a regular file)")
    return fd


def copy_hashed(src: Path, dest: Path) -> str:
    """Copy one file without following a symlink at ``src``, fsynced; return its bytes' sha256."""
    with os.fdopen(open_no_follow(src), "rb") as source:
        return write_hashed(source, dest)


def write_hashed(source: IO[bytes], dest: Path) -> str:
    """Write ``source`` to ``dest`` (fsynced before it returns), hashing it on the way."""
    digest = hashlib.sha256()
    with open(dest, "wb") as target:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            target.write(chunk)
        target.flush()
        os.fsync(target.fileno())
    return digest.hexdigest()
