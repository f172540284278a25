"""``swarm lineage gc`` on real lineages: what no ref reaches goes (with --delete), nothing else."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from swarm.adapters.store import AdapterStore
from swarm.cli.main import main
from swarm.errors import LineageError
from swarm.lineage.gc import collect_garbage
from swarm.lineage.gitstore import GitLineageStore
from tests.support import tiny_lora


@dataclass
class Swarm:
    path: Path
    store: AdapterStore
    sha: dict[str, str]


def _put(lineage: GitLineageStore, tmp: Path, name: str) -> dict[str, object]:
    seed = int.from_bytes(name.encode(), "big") % 10_000
    return lineage.put_adapter(tiny_lora(tmp / "src" / name, seed=seed, dim=256))


@pytest.fixture()
def swarm(tmp_path: Path) -> Iterator[Swarm]:
    """A lineage whose history holds live, merged-in, promoted and pruned adapters, plus garbage."""
    path = tmp_path / "run" / "lineage"
    with GitLineageStore.open(path, create=True) as lineage:
        p = {n: _put(lineage, tmp_path, n) for n in ("a1", "a2", "b1", "c1", "t1", "p0", "x", "y")}
        sha = {n: str(ptr["sha256"]) for n, ptr in p.items()}

        def commit(agent: str, name: str, **kw: object) -> None:
            pointer = lineage.pointer(sha[name], kw.pop("meta", None))  # type: ignore[arg-type]
            lineage.commit(f"agent/{agent}", {f"agents/{agent}/adapter.json": pointer},
                           f"{agent}: {name}", **kw)  # type: ignore[arg-type]

        commit("a", "a1")
        commit("b", "b1")
        commit("c", "c1")
        commit("t", "t1")
        lineage.promote("agent/t", "best")
        commit("a", "a2", meta={"parents": [sha["a1"], sha["p0"]]},
               parents=["agent/a", "agent/c"])  # a learnt from c
        lineage.commit("swarm", {"rounds/latest.json": {"round": 0}}, "round 0")
        for agent in ("b", "c", "t"):
            lineage.prune(f"agent/{agent}", "retired")
        store = lineage.adapters
    (store.root / sha["y"] / "notes.txt").write_text("a person's notes\n")
    (store.root / "README").write_text("a person's file\n")
    dead = store.root / ".put-dead"
    dead.mkdir()
    (dead / "adapter_model.safetensors").write_bytes(b"half" * 100)
    old = time.time() - 7200
    os.utime(dead / "adapter_model.safetensors", (old, old))
    os.utime(dead, (old, old))
    (store.root / ".put-fresh").mkdir()  # a put that is running now
    yield Swarm(path, store, sha)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _gc(swarm: Swarm, capsys: pytest.CaptureFixture[str], *flags: str) -> list[str]:
    assert main(["lineage", "gc", "-C", str(swarm.path), *flags]) == 0
    return [" ".join(ln.split()) for ln in capsys.readouterr().out.splitlines()]


def test_dry_run_removes_nothing_and_lists_what_it_would_with_sizes(
        swarm: Swarm, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    before = _files(swarm.store.root)
    # Execute
    out = _gc(swarm, capsys)
    # Assert: x (never committed) and the dead put, each with its size; nothing removed.
    size = swarm.store.entry_size(swarm.sha["x"])
    assert f"would remove {swarm.sha['x']} {size / 1024:.1f} KiB no commit references it" in out
    assert any(ln.startswith("would remove .put-dead") and "put that died" in ln for ln in out)
    assert sum(ln.startswith("would remove") for ln in out) == 2, out
    assert any("notes.txt" in ln and swarm.sha["y"] in ln for ln in out), out
    assert any(ln.startswith("kept 1 adapter(s)") and "--pruned" in ln for ln in out), out
    assert out[-1].startswith("dry run: 2 entries") and "add --delete" in out[-1]
    assert _files(swarm.store.root) == before


def test_delete_removes_only_what_no_live_ref_reaches(
        swarm: Swarm, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute: without --pruned, then with it.
    first = _gc(swarm, capsys, "--delete")
    after_first = set(swarm.store.list())
    second = _gc(swarm, capsys, "--delete", "--pruned")
    # Assert
    live = {swarm.sha[n] for n in ("a1", "a2", "c1", "t1", "p0")}  # history, merge, tag, parent
    assert after_first == live | {swarm.sha["b1"], swarm.sha["y"]}
    assert f"removed {swarm.sha['b1']}" in "\n".join(second)
    assert set(swarm.store.list()) == live | {swarm.sha["y"]}
    assert any(ln.startswith("freed ") for ln in first) and first[0].startswith("removed")
    names = {p.name for p in swarm.store.root.iterdir()}
    assert {"README", ".put-fresh", ".users"} <= names and ".put-dead" not in names
    assert not any(n.startswith(".gc-") for n in names)
    assert (swarm.store.root / swarm.sha["y"] / "notes.txt").is_file()
    with GitLineageStore.open(swarm.path) as lineage:
        assert lineage.fsck() == []  # every adapter a tip points at is still whole
        co = lineage.checkout("refs/pruned/agent/c", swarm.path.parent / "co", adapters=True)
        assert (co / "agents/c/adapter/adapter_model.safetensors").is_file()
    assert _gc(swarm, capsys, "--delete", "--pruned")[-1].startswith("nothing to remove")


def test_another_lineage_on_the_same_store_keeps_its_adapters(
        swarm: Swarm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a second swarm's lineage keeping its adapters in the same machine store.
    other = tmp_path / "other-run" / "lineage"
    with GitLineageStore.open(other, create=True, adapter_store=swarm.store.root) as lineage:
        z = _put(lineage, tmp_path, "z")
        lineage.commit("agent/z", {"agents/z/adapter.json": z}, "z")
    # Execute / Assert: gc from the first lineage keeps z, and names both lineages.
    out = _gc(swarm, capsys, "--delete", "--pruned")
    assert swarm.store.has(str(z["sha256"])) and "used by 2 lineages" in out[-1]
    # While the other one is being written, gc refuses and removes nothing.
    swarm.store.put(tiny_lora(tmp_path / "src" / "w", seed=99, dim=256))
    before = _files(swarm.store.root)
    with GitLineageStore.open(other), GitLineageStore.open(swarm.path) as mine, \
            pytest.raises(LineageError, match="is being written"):
        collect_garbage(mine, delete=True)
    assert _files(swarm.store.root) == before
    # A lineage that is gone from where it was recorded stops gc with what to do.
    other.rename(tmp_path / "moved")
    assert main(["lineage", "gc", "-C", str(swarm.path), "--delete"]) == 2
    err = capsys.readouterr().err
    assert "not there now" in err and ".users" in err
    assert _files(swarm.store.root) == before
    # Opened for writing in its new place, it records itself there again.
    GitLineageStore.open(tmp_path / "moved").close()
    assert main(["lineage", "gc", "-C", str(swarm.path), "--delete"]) == 0
    assert swarm.store.has(str(z["sha256"]))
