"""Durable file writes: a file or a rename survives a crash once these return."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["write_durably", "fsync_dir"]


def write_durably(path: Path, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to ``path`` and fsync the file (its folder entry is ``fsync_dir``'s)."""
    with open(path, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """Make the entries of folder ``path`` (renames into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
