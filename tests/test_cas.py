"""The content-addressed blob store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from swarm.cas import ContentStore, sha256_file
from swarm.errors import LineageError


def test_put_twice_stores_once(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "cas")
    data = os.urandom(3 << 20)
    src = tmp_path / "w.bin"
    src.write_bytes(data)
    sha, size = store.put_file(src)
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert store.put_bytes(data) == (sha, size)
    assert store.put_file(src) == (sha, size)
    assert list(store) == [sha]
    assert list((tmp_path / "cas" / "tmp").iterdir()) == []
    assert store.verify(sha)


def test_get_copies_and_verify_detects_corruption(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "cas")
    sha, _ = store.put_bytes(b"weights")
    out = store.get(sha, tmp_path / "out" / "adapter_model.safetensors")
    assert out.read_bytes() == b"weights" and sha256_file(out) == sha
    blob = store.path(sha)
    blob.chmod(0o644)
    blob.write_bytes(b"rotten")
    assert not store.verify(sha)
    with pytest.raises(LineageError):
        store.get("0" * 64, tmp_path / "x")
    with pytest.raises(LineageError, match="sha256"):
        store.path("not-a-hash")
