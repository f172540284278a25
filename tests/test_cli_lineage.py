"""``swarm lineage ...`` on bad input: one line naming the problem, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from swarm.cli.main import main
from swarm.lineage.gitstore import GitLineageStore
from swarm.lineage.writer import CommitSpec


def _lineage(tmp_path: Path) -> Path:
    path = tmp_path / "lineage"
    with GitLineageStore.open(path, create=True) as store:
        store.commit_many([CommitSpec("swarm", {"rounds/latest.json": {"round": 0}}, "r0"),
                           CommitSpec("agent/a", {"agents/a/profile.json": {"s": 1}}, "a")])
    return path


def _one_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("swarm: error: "), err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def _run_cli(argv: list[str], *, sandbox: str = "") -> subprocess.CompletedProcess[str]:
    """``swarm ARGV`` in a child; ``sandbox`` is shell run first in a private mount namespace."""
    cmd = [sys.executable, "-m", "swarm", *argv]
    if sandbox:
        script = f"{sandbox} && exec {shlex.join(cmd)}"
        cmd = ["unshare", "-m", "sh", "-c", script] if os.geteuid() == 0 else \
            ["unshare", "-rm", "sh", "-c", script]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _assert_one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode != 0 and len(err) == 1, proc.stderr
    assert err[0].startswith("swarm: error: ") and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in err[0], err[0]


def _read_only(path: Path) -> str:
    return f"mount --bind {path} {path} && mount -o remount,bind,ro {path}"


def test_fsck_reports_malformed_pointers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: pointer files that are JSON of the wrong shape, or not JSON at all.
    path = tmp_path / "lineage"
    with GitLineageStore.open(path, create=True) as store:
        store.commit("agent/a", {"agents/a/adapter.json": {"sha256": 5},
                                 "agents/b/adapter.json": b"[1, 2]",
                                 "agents/c/adapter.json": b"\xff not json",
                                 "agents/d/adapter.json": {"sha256": "0" * 64}}, "bad")
    # Execute
    code = main(["lineage", "fsck", "-C", str(path)])
    # Assert: each bad pointer is one problem line; no exception escaped.
    out = capsys.readouterr().out.splitlines()
    assert code == 1 and out[-1] == "4 problem(s)"
    for agent in "abc":
        assert any(f"agents/{agent}/adapter.json: not a valid adapter pointer" in ln
                   for ln in out), out
    assert any("agents/d/adapter.json: adapter blob" in ln for ln in out), out


def test_graph_to_a_missing_or_full_destination(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    path = _lineage(tmp_path)
    full = tmp_path / "full.png"
    full.symlink_to("/dev/full")  # every write there fails with ENOSPC
    # Execute / Assert
    assert main(["lineage", "graph", "-C", str(path), "-o", str(tmp_path / "no" / "x.png")]) == 2
    _one_line(capsys, "cannot write", str(tmp_path / "no" / "x.png"))
    assert main(["lineage", "graph", "-C", str(path), "-o", str(full)]) == 2
    _one_line(capsys, "cannot write", "No space left on device")


def test_graph_to_a_read_only_destination(tmp_path: Path) -> None:
    path = _lineage(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    proc = _run_cli(["lineage", "graph", "-C", str(path), "-o", str(out / "x.png")],
                    sandbox=_read_only(out))
    _assert_one_line(proc, "cannot write", "Read-only file system")
    assert not (out / "x.png").exists()


def test_promote_and_prune_on_a_read_only_lineage(tmp_path: Path) -> None:
    path = _lineage(tmp_path)
    before = sorted(p.name for p in (path / "refs" / "tags").iterdir())
    for argv in (["promote", "agent/a", "best"], ["prune", "agent/a", "--reason", "x"]):
        proc = _run_cli(["lineage", *argv, "-C", str(path)], sandbox=_read_only(path))
        _assert_one_line(proc, str(path), "Read-only file system")
    assert sorted(p.name for p in (path / "refs" / "tags").iterdir()) == before


def test_promote_on_a_full_disk(tmp_path: Path) -> None:
    # Prepare: the lineage on a tiny filesystem, filled up after the copy.
    path = _lineage(tmp_path)
    disk = tmp_path / "disk"
    disk.mkdir()
    sandbox = (f"mount -t tmpfs -o size=2m tmpfs {disk} && cp -a {path} {disk}/lineage && "
               f"(dd if=/dev/zero of={disk}/filler bs=4k 2>/dev/null || true)")
    # Execute
    proc = _run_cli(["lineage", "promote", "agent/a", "best", "-C", str(disk / "lineage")],
                    sandbox=sandbox)
    # Assert
    _assert_one_line(proc, "No space left on device")


def test_corrupt_repository_gives_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: overwrite the middle of every pack with garbage.
    path = _lineage(tmp_path)
    for pack in (path / "objects" / "pack").glob("*.pack"):
        pack.chmod(0o644)
        data = bytearray(pack.read_bytes())
        data[12:-20] = b"\x00" * (len(data) - 32)
        pack.write_bytes(bytes(data))
    # Execute / Assert
    for argv in (["log", "a"], ["show", "agent/a", "agents/a/profile.json"], ["graph"],
                 ["promote", "agent/a", "best"], ["diff", "agent/a", "swarm"]):
        code = main(["lineage", *argv, "-C", str(path), *(["-o", str(tmp_path / "g.png")]
                                                           if argv == ["graph"] else [])])
        assert code == 2, argv
        line = _one_line(capsys, str(path))
        assert argv != ["log", "a"] or "damaged; run swarm lineage fsck" in line, line
    assert main(["lineage", "fsck", "-C", str(path)]) == 1
    assert capsys.readouterr().out.splitlines()[-1].endswith("problem(s)")


def test_not_a_lineage_and_refused_names(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = _lineage(tmp_path)
    assert main(["lineage", "log", "a", "-C", str(tmp_path / "nowhere")]) == 2
    _one_line(capsys, "is not a lineage directory")
    assert main(["lineage", "promote", "agent/a", "refs/heads/main", "-C", str(path)]) == 2
    _one_line(capsys, "tag name 'refs/heads/main' is not allowed")
    assert main(["lineage", "prune", "swarm", "--reason", "x", "-C", str(path)]) == 2
    _one_line(capsys, "swarm's own branch")
    assert main(["lineage", "log", "a\nb", "-C", str(path)]) == 2
    _one_line(capsys, "not a valid git ref name")
