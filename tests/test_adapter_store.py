"""The content-addressed adapter store as the lineage and a transfer use it: put by hash, has,
open, verify, export; durable, deduplicated, symlinks refused."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm.adapters.store import COMPLETE_MARKER, AdapterStore
from swarm.adapters.validate import WEIGHTS_FILE
from swarm.errors import (
    AdapterCorruptError,
    AdapterError,
    AdapterFormatError,
    AdapterNotFound,
    LineageError,
)
from swarm.lineage.gitstore import GitLineageStore
from tests.support import tiny_lora


@pytest.fixture()
def lineage(tmp_path: Path) -> Iterator[GitLineageStore]:
    with GitLineageStore.open(tmp_path / "lineage", create=True) as store:
        yield store


def test_put_twice_stores_once(tmp_path: Path) -> None:
    # Prepare: a 3 MiB adapter, and a copy of it in another folder.
    store = AdapterStore(tmp_path / "store")
    folder = tiny_lora(tmp_path / "a", seed=1, dim=48 * 1024)
    weights = (folder / WEIGHTS_FILE).read_bytes()
    sha = hashlib.sha256(weights).hexdigest()
    # Execute: by folder, by folder and hash, by stream and hash.
    refs = [store.put(folder), store.put(tmp_path / "nowhere", sha=sha),
            store.put_stream(sha, io.BytesIO(weights), (folder / "adapter_config.json").read_bytes())]
    # Assert: one entry, no temp folder left, whole.
    assert {r.sha256 for r in refs} == {sha} and refs[0].size_bytes == len(weights) > 3 << 20
    assert store.list() == [sha]
    assert sorted(p.name for p in store.root.iterdir()) == [sha]
    assert store.verify(sha)


def test_put_by_hash_refuses_bytes_that_are_not_the_named_ones(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path / "store")
    folder = tiny_lora(tmp_path / "a", seed=1)
    config = (folder / "adapter_config.json").read_bytes()
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(AdapterCorruptError, match="hash"):
        store.put(folder, sha=wrong)
    with pytest.raises(AdapterCorruptError, match="hash"):
        store.put_stream(wrong, io.BytesIO((folder / WEIGHTS_FILE).read_bytes()), config)
    with pytest.raises(AdapterFormatError, match="sha256"):
        store.put_stream("../etc", io.BytesIO(b""), config)
    assert store.list() == [] and list(store.root.iterdir()) == []


def test_open_export_and_verify_detects_corruption(tmp_path: Path) -> None:
    store = AdapterStore(tmp_path / "store")
    sha = store.put(tiny_lora(tmp_path / "a", seed=2)).sha256
    with store.open(sha) as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == sha
    out = store.export(sha, tmp_path / "out")
    assert hashlib.sha256((out / WEIGHTS_FILE).read_bytes()).hexdigest() == sha
    assert (out / "adapter_config.json").read_bytes() == \
        (store.path(sha) / "adapter_config.json").read_bytes()
    with pytest.raises(AdapterFormatError, match="an entry holds"):
        store.open(sha, COMPLETE_MARKER)
    blob = store.path(sha) / WEIGHTS_FILE
    blob.write_bytes(b"rotten")
    assert not store.verify(sha)
    with pytest.raises(AdapterNotFound):
        store.export("0" * 64, tmp_path / "x")
    with pytest.raises(AdapterNotFound):
        store.path("not-a-hash")


def _secret(tmp_path: Path) -> Path:
    """A file outside any adapter folder, standing in for a system file."""
    secret = tmp_path / "outside" / "shadow"
    secret.parent.mkdir()
    secret.write_bytes(b"root:secret\n")
    return secret


def test_symlinked_files_are_refused_not_followed(tmp_path: Path,
                                                  lineage: GitLineageStore) -> None:
    # Prepare: an adapter folder whose weights, then whose config, link elsewhere.
    secret = _secret(tmp_path)
    folder = tiny_lora(tmp_path / "adapter", seed=3)
    real = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).unlink()
    (folder / WEIGHTS_FILE).symlink_to(secret)
    # Execute / Assert
    with pytest.raises(AdapterFormatError, match="symlink"):
        lineage.adapters.put(folder)
    with pytest.raises(LineageError, match="symlink"):
        lineage.put_adapter(folder)
    (folder / WEIGHTS_FILE).unlink()
    (folder / WEIGHTS_FILE).write_bytes(real)
    config = folder / "adapter_config.json"
    config.unlink()
    config.symlink_to(secret)
    with pytest.raises(LineageError, match="symlink"):
        lineage.put_adapter(folder)
    linked = tmp_path / "linked-adapter"
    linked.symlink_to(folder, target_is_directory=True)
    with pytest.raises(LineageError, match="symlink"):
        lineage.put_adapter(linked)
    # Nothing of the linked file reached the store.
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in set(lineage.adapters.list())
    assert lineage.adapters.list() == []


def test_bad_adapter_config_is_a_lineage_error(tmp_path: Path, lineage: GitLineageStore) -> None:
    folder = tiny_lora(tmp_path / "adapter", seed=4)
    for text in ("{not json", "[1, 2]"):
        (folder / "adapter_config.json").write_text(text)
        with pytest.raises(LineageError, match="adapter_config.json"):
            lineage.put_adapter(folder)


def test_every_directory_a_put_creates_is_made_durable(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: record which folders are fsynced (the real fsync still runs).
    import swarm.adapters.files
    import swarm.adapters.store

    synced: list[Path] = []
    real = swarm.adapters.store.fsync_dir

    def record(path: Path) -> None:
        synced.append(Path(path))
        real(path)

    for module in (swarm.adapters.store, swarm.adapters.files):
        monkeypatch.setattr(module, "fsync_dir", record)
    root = tmp_path / "run" / "adapters"
    folder = tiny_lora(tmp_path / "a", seed=5)
    # Execute: the first put into a store that does not exist yet.
    sha = AdapterStore(root).put(folder).sha256
    # Assert: the root (the rename of the entry into it), and the parent of each folder created.
    for path in (root, root.parent, tmp_path):
        assert path in synced, f"{path} was not fsynced ({synced})"
    assert synced[-1] == root and (root / sha / COMPLETE_MARKER).is_file()


def test_adapter_parents_must_be_sha256(tmp_path: Path, lineage: GitLineageStore) -> None:
    sha = lineage.put_adapter(tiny_lora(tmp_path / "a", seed=6))["sha256"]
    good = hashlib.sha256(b"parent").hexdigest()
    assert lineage.pointer(sha, {"parents": [good]})["parents"] == [good]
    for bad in ("agent/b\nagent/a", "../../etc", 5, good.upper()):
        with pytest.raises(LineageError, match="sha256"):
            lineage.pointer(sha, {"parents": [good, bad]})
        with pytest.raises(LineageError, match="sha256"):
            lineage.put_adapter(tmp_path / "a", {"parents": [good, bad]})


def test_remove_takes_only_whole_entries_the_store_wrote(tmp_path: Path) -> None:
    # Prepare: three entries; a person's file in one, the marker gone from another.
    store = AdapterStore(tmp_path / "store")
    shas = [store.put(tiny_lora(tmp_path / f"a{i}", seed=10 + i)).sha256 for i in range(3)]
    (store.root / shas[1] / "notes.txt").write_text("mine\n")
    (store.root / shas[2] / COMPLETE_MARKER).write_text("0" * 64)
    (store.root / "README").write_text("mine too\n")
    # Execute / Assert
    assert store.remove(shas[0]) > os.path.getsize(tmp_path / "a0" / WEIGHTS_FILE)
    for sha, why in ((shas[1], "notes.txt"), (shas[2], "marker"), (shas[0], "no such entry")):
        with pytest.raises(AdapterError, match=why):
            store.remove(sha)
    assert sorted(p.name for p in store.root.iterdir()) == sorted(["README", *shas[1:]])
    assert (store.root / shas[1] / "notes.txt").read_text() == "mine\n"
