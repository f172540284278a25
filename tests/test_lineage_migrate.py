"""The lineage layout carries a version: an old lineage is read, refused for writing with the
command that migrates it, and migrated whole or not at all; a newer one is refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from swarm.cli.main import main
from swarm.errors import LineageError
from swarm.lineage.gitstore import GitLineageStore
from swarm.lineage.layout import LAYOUT_FILE, read_layout
from swarm.lineage.reader import LineageReader
from tests.support import tiny_lora


def _lineage(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A current lineage: agent a trained twice, b once and pruned; returns weights by sha."""
    path = tmp_path / "run" / "lineage"
    weights = {}
    with GitLineageStore.open(path, create=True) as store:
        for i, agent in enumerate(("a", "b", "a")):
            folder = tiny_lora(tmp_path / "src" / str(i), seed=i, dim=512)
            pointer = store.put_adapter(folder, {"agent": agent, "round": i})
            weights[pointer["sha256"]] = (folder / "adapter_model.safetensors").read_bytes()
            store.commit(f"agent/{agent}", {f"agents/{agent}/adapter.json": pointer}, f"r{i}")
        store.commit("swarm", {"rounds/latest.json": {"round": 2}}, "round 2")
        store.prune("agent/b", "retired")
    return path, weights


def _as_layout_1(path: Path) -> None:
    """Rewrite a lineage as swarm wrote it before the layout had a version.

    Every adapter a commit points at goes into ``cas/sha256/<2>/<62>`` (weights and
    config, each its own read-only blob), ``lineage.json`` goes and so does the
    adapter store, and the git config says ``swarm.lineage=1``.
    """
    reader = LineageReader(path)
    store = reader.adapters
    assert store is not None
    for pointer in reader.pointers_reached(reader.refs()).values():
        entry = store.path(pointer["sha256"])
        for sha, name in ((pointer["sha256"], "adapter_model.safetensors"),
                          (pointer["config_sha256"], "adapter_config.json")):
            blob = path / "cas" / "sha256" / sha[:2] / sha[2:]
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(entry / name, blob)
            blob.chmod(0o444)
    (path / "cas" / "tmp").mkdir()
    shutil.rmtree(store.root)
    (path / LAYOUT_FILE).unlink()
    subprocess.run(["git", "--git-dir", str(path), "config", "swarm.lineage", "1"], check=True)


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != "lineage.lock"}


def test_an_old_lineage_is_read_and_refused_for_writing_with_the_command(tmp_path: Path) -> None:
    # Prepare
    path, weights = _lineage(tmp_path)
    _as_layout_1(path)
    before = _tree(path)
    # Execute / Assert: readers read it, adapters included.
    reader = LineageReader(path)
    assert reader.layout.version == 1 and reader.adapters is None
    assert [e.message for e in reader.log("a")] == ["r2", "r0"]
    pointer = reader.show_json("a", "agents/a/adapter.json")
    got = reader.get_adapter(pointer, tmp_path / "got")
    assert (got / "adapter_model.safetensors").read_bytes() == weights[pointer["sha256"]]
    assert reader.fsck() == []
    assert main(["lineage", "fsck", "-C", str(path)]) == 0
    # A writer is refused, with the command that migrates it; nothing changed.
    with pytest.raises(LineageError, match=f"run `swarm lineage migrate {path}` to upgrade"):
        GitLineageStore.open(path)
    with pytest.raises(LineageError, match="swarm lineage migrate"):
        GitLineageStore.open(path, adapter_store=tmp_path / "machine")
    assert _tree(path) == before and not (tmp_path / "machine").exists()


def test_migrate_moves_the_adapters_into_the_machine_store(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: an old lineage; the machine's store already holds one of its adapters.
    path, weights = _lineage(tmp_path)
    _as_layout_1(path)
    machine = tmp_path / "machine"
    with GitLineageStore.open(tmp_path / "scratch", create=True, adapter_store=machine) as s:
        s.put_adapter(tiny_lora(tmp_path / "again", seed=0, dim=512))
    # Execute
    assert main(["lineage", "migrate", str(path), "--adapter-store", str(machine)]) == 0
    out = capsys.readouterr().out
    # Assert: all three adapters in the store (two copied), cas/ gone, a writer opens.
    assert f"migrated {path} from layout 1: 3 adapter(s) now in {machine} (2 copied, " \
           f"1 there already)" in out
    layout = read_layout(path)
    assert layout.version == 2 and layout.adapter_store == machine
    assert not (path / "cas").exists()
    with GitLineageStore.open(path, adapter_store=machine) as store:
        assert set(weights) <= set(store.adapters.list())
        assert store.fsck() == []
        pointer = store.show_json("refs/pruned/agent/b", "agents/b/adapter.json")
        got = store.get_adapter(pointer, tmp_path / "got")
        assert (got / "adapter_model.safetensors").read_bytes() == weights[pointer["sha256"]]
        store.commit("agent/a", {"agents/a/profile.json": {"round": 3}}, "r3")
    assert main(["lineage", "migrate", "-C", str(path)]) == 0
    assert "current layout already" in capsys.readouterr().out


def test_a_migration_that_cannot_move_an_adapter_changes_nothing(tmp_path: Path) -> None:
    # Prepare: an old lineage with one rotten weights blob.
    path, weights = _lineage(tmp_path)
    _as_layout_1(path)
    rotten = sorted(weights)[1]
    blob = path / "cas" / "sha256" / rotten[:2] / rotten[2:]
    blob.chmod(0o644)
    blob.write_bytes(b"rotten")
    before = _tree(path)
    # Execute / Assert
    assert main(["lineage", "migrate", str(path)]) == 2
    assert read_layout(path).version == 1 and _tree(path) == before
    assert any(rotten in p for p in LineageReader(path).fsck())


def test_a_newer_layout_is_refused_by_readers_and_writers(tmp_path: Path) -> None:
    path, _ = _lineage(tmp_path)
    data = json.loads((path / LAYOUT_FILE).read_text())
    (path / LAYOUT_FILE).write_text(json.dumps({**data, "format": "swarm-lineage/3"}))
    for open_it in (lambda: LineageReader(path), lambda: GitLineageStore.open(path),
                    lambda: GitLineageStore.open(path, writer=False)):
        with pytest.raises(LineageError, match="swarm-lineage/3, newer than this swarm knows"):
            open_it()
    (path / LAYOUT_FILE).write_text("{not json")
    with pytest.raises(LineageError, match="not a lineage format file"):
        LineageReader(path)


def test_a_new_lineage_records_its_layout_and_store(tmp_path: Path) -> None:
    # A lineage in a run directory names the store beside it relatively (the run dir moves
    # whole); one elsewhere by absolute path.
    run = tmp_path / "run"
    GitLineageStore.open(run / "lineage", create=True).close()
    shared = tmp_path / "shared" / "adapters"
    GitLineageStore.open(tmp_path / "other" / "lineage", create=True, adapter_store=shared).close()
    mine = json.loads((run / "lineage" / LAYOUT_FILE).read_text())
    theirs = json.loads((tmp_path / "other" / "lineage" / LAYOUT_FILE).read_text())
    assert mine["format"] == theirs["format"] == "swarm-lineage/2"
    assert mine["adapter_store"] == "../adapters" and theirs["adapter_store"] == str(shared)
    os.rename(run, tmp_path / "run.kept")
    assert read_layout(tmp_path / "run.kept" / "lineage").adapter_store == \
        tmp_path / "run.kept" / "adapters"
