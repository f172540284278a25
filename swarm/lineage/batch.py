"""One batch of git objects being built in memory: blobs, edited trees, commits.

``ObjectBatch`` holds the objects of the writer's current batch until they are
written as a pack, applies path edits to trees without an index (reading
existing trees through a persistent ``git cat-file``, with a bounded cache),
and resolves names to commits, seeing the batch's own commits first.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Union

from swarm.errors import LineageError
from swarm.lineage.git import BLOB_MODE, TREE_MODE, CatFile, encode_tree, object_id, parse_tree
from swarm.lineage.names import branch_ref, check_rev, check_tree_path

__all__ = ["FileValue", "ObjectBatch", "encode_file", "split_paths"]

FileValue = Union[bytes, str, Mapping[str, Any], None]  # noqa: UP007 (a runtime alias on 3.10)


def encode_file(path: str, value: FileValue) -> bytes | None:
    """The bytes stored for ``value``: bytes as is, str as UTF-8, a mapping as JSON."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, Mapping):
        return (json.dumps(value, sort_keys=True, indent=2) + "\n").encode()
    raise LineageError(f"file {path!r}: expected bytes, str, a JSON mapping or None")


def split_paths(files: Mapping[str, FileValue]) -> dict[tuple[str, ...], bytes | None]:
    """Validate ``{path: value}`` and key it by path components.

    Raises:
        LineageError: an empty, ``.``, ``..``, ``.git*`` or control-character
            component, or a path that is both a file and a folder in the same change.
    """
    changes: dict[tuple[str, ...], bytes | None] = {}
    for path, value in files.items():
        changes[check_tree_path(path)] = encode_file(path, value)
    for parts in changes:
        for i in range(1, len(parts)):
            if changes.get(parts[:i]) is not None:
                raise LineageError(f"path {'/'.join(parts[:i])!r} is both a file and a folder")
    return changes


class ObjectBatch:
    """Objects of the batch being built, plus a bounded cache of parsed trees."""

    def __init__(self, cat: CatFile, cache_size: int = 16384) -> None:
        self._cat = cat
        self.pending: dict[str, tuple[str, bytes]] = {}
        self._trees: OrderedDict[str, dict[str, tuple[str, str]]] = OrderedDict()
        self._cache_size = cache_size

    def add(self, kind: str, data: bytes) -> str:
        """Add an object to the batch; return its sha."""
        sha = object_id(kind, data)
        self.pending[sha] = (kind, data)
        return sha

    def clear(self) -> None:
        """Forget the batch's objects (after they were written, or on failure)."""
        self.pending.clear()

    def object(self, sha: str) -> tuple[str, bytes]:
        """``(type, body)`` of an object of this batch or of the repository."""
        return self.pending.get(sha) or self._cat.read(sha)

    def tree(self, sha: str) -> dict[str, tuple[str, str]]:
        """The entries of tree ``sha`` (cached; callers must not mutate them)."""
        entries = self._trees.get(sha)
        if entries is None:
            kind, data = self.object(sha)
            if kind != "tree":
                raise LineageError(f"{sha} is a {kind}, not a tree")
            entries = self._remember(sha, parse_tree(data))
        else:
            self._trees.move_to_end(sha)
        return entries

    def _remember(
        self, sha: str, entries: dict[str, tuple[str, str]]
    ) -> dict[str, tuple[str, str]]:
        self._trees[sha] = entries
        if len(self._trees) > self._cache_size:
            self._trees.popitem(last=False)
        return entries

    def edit_tree(
        self, tree: str | None, changes: Mapping[tuple[str, ...], bytes | None]
    ) -> str | None:
        """The sha of ``tree`` with ``changes`` applied (None when it ends up empty)."""
        entries = dict(self.tree(tree)) if tree else {}
        nested: dict[str, dict[tuple[str, ...], bytes | None]] = {}
        for parts, data in changes.items():
            if len(parts) > 1:
                nested.setdefault(parts[0], {})[parts[1:]] = data
            elif data is None:
                entries.pop(parts[0], None)
            else:
                entries[parts[0]] = (BLOB_MODE, self.add("blob", data))
        for name, sub in nested.items():
            old = entries.get(name)
            new = self.edit_tree(old[1] if old and old[0] == TREE_MODE else None, sub)
            if new is None:
                entries.pop(name, None)
            else:
                entries[name] = (TREE_MODE, new)
        if not entries:
            return None
        sha = self.add("tree", encode_tree(entries))
        self._remember(sha, entries)
        return sha

    def resolve(self, name: str, tips: Mapping[str, str]) -> str:
        """A commit sha for ``name`` (sha, ref, branch, agent id or tag), batch included.

        Raises:
            LineageError: not a valid name, nothing by that name, or not a commit.
        """
        check_rev(name)
        for ref in (name, branch_ref(name), f"refs/heads/agent/{name}", f"refs/tags/{name}"):
            if ref in tips:
                name = tips[ref]
                break
        if name in self.pending:
            kind = self.pending[name][0]
            sha = name
        else:
            sha, kind, _ = self._cat.lookup(name)
        if kind == "tag":
            sha, kind, _ = self._cat.lookup(f"{sha}^{{commit}}")
        if kind != "commit":
            raise LineageError(f"{name!r} is not a commit")
        return sha
