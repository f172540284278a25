"""The content-addressed blob store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from swarm.errors import LineageError
from swarm.lineage.cas import ContentStore, sha256_file


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


def _secret(tmp_path: Path) -> Path:
    """A file outside any adapter folder, standing in for a system file."""
    secret = tmp_path / "outside" / "shadow"
    secret.parent.mkdir()
    secret.write_bytes(b"root:secret\n")
    return secret


def test_symlinked_files_are_refused_not_followed(tmp_path: Path) -> None:
    # Prepare: an adapter folder whose weights, then whose config, link elsewhere.
    store = ContentStore(tmp_path / "cas")
    secret = _secret(tmp_path)
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_model.safetensors").symlink_to(secret)
    # Execute / Assert
    with pytest.raises(LineageError, match="symlink"):
        store.put_file(folder / "adapter_model.safetensors")
    with pytest.raises(LineageError, match="symlink"):
        store.put_adapter(folder)
    (folder / "adapter_model.safetensors").unlink()
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "adapter_config.json").symlink_to(secret)
    with pytest.raises(LineageError, match="symlink"):
        store.put_adapter(folder)
    linked = tmp_path / "linked-adapter"
    linked.symlink_to(folder, target_is_directory=True)
    with pytest.raises(LineageError, match="symlink"):
        store.put_adapter(linked)
    # Nothing of the linked file reached the store.
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in set(store)


def test_bad_adapter_config_is_a_lineage_error(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "cas")
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    for text in ("{not json", "[1, 2]"):
        (folder / "adapter_config.json").write_text(text)
        with pytest.raises(LineageError, match="adapter_config.json"):
            store.put_adapter(folder)


def test_every_directory_a_put_creates_is_made_durable(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: record which folders are fsynced (the real fsync still runs).
    import swarm.lineage.cas

    synced: list[Path] = []
    real = swarm.lineage.cas.fsync_dir

    def record(path: Path) -> None:
        synced.append(Path(path))
        real(path)

    monkeypatch.setattr(swarm.lineage.cas, "fsync_dir", record)
    root = tmp_path / "lineage" / "cas"
    store = ContentStore(root)
    # Execute: the first put into a store that does not exist yet.
    sha, _ = store.put_bytes(b"weights")
    # Assert: the blob's folder, and the parent of each folder the put created.
    blob_dir = store.path(sha).parent
    for folder in (blob_dir, blob_dir.parent, root, root.parent, tmp_path):
        assert folder in synced, f"{folder} was not fsynced ({synced})"


def test_adapter_parents_must_be_sha256(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "cas")
    good = hashlib.sha256(b"parent").hexdigest()
    assert store.put_adapter(b"weights", {"parents": [good]})["parents"] == [good]
    for bad in ("agent/b\nagent/a", "../../etc", 5, good.upper()):
        with pytest.raises(LineageError, match="sha256"):
            store.put_adapter(b"weights", {"parents": [good, bad]})
