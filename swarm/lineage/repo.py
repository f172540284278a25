"""The lineage's tree layout and setting up its directory: create, configure, lock, recover.

A lineage directory is a bare git repository (readable with plain ``git -C
DIR log --graph --all``) plus ``lineage.json`` (its layout version and adapter
store, ``swarm.lineage.layout``) and ``lineage.lock`` (the writer's flock).
The writer's git children inherit the lock, so a new writer waits until every
process of a dead writer is gone before it cleans up.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

from swarm.durable import fsync_dir, write_durably
from swarm.errors import LineageError
from swarm.lineage.layout import LAYOUT_FILE, layout_bytes
from swarm.lineage.names import check_id, check_tree_path

__all__ = [
    "TRAILER",
    "split_trailer",
    "GIT_CONFIG",
    "SWARM_BRANCH",
    "MATCHMAKER_PATH",
    "LATEST_ROUND_PATH",
    "agent_branch",
    "adapter_path",
    "profile_path",
    "kg_path",
    "state_path",
    "messages_path",
    "round_path",
    "artifact_path",
    "init_repo",
    "ensure_config",
    "take_lock",
    "recover",
]

SWARM_BRANCH = "swarm"
TRAILER = "Lineage-Branch"  # every commit message ends with ``Lineage-Branch: <branch>``
MATCHMAKER_PATH = "matchmaker/state.json"


def agent_branch(agent_id: str) -> str:
    """The branch of an agent: ``agent/<agent_id>``.

    Raises:
        LineageError: ``agent_id`` is not one valid ref component (``check_id``).
    """
    return f"agent/{check_id('agent id', agent_id)}"


def adapter_path(agent_id: str) -> str:
    """Where an agent's adapter pointer lives: ``agents/<id>/adapter.json``."""
    return f"agents/{check_id('agent id', agent_id)}/adapter.json"


def profile_path(agent_id: str) -> str:
    """Where an agent's profile lives: ``agents/<id>/profile.json``."""
    return f"agents/{check_id('agent id', agent_id)}/profile.json"


def kg_path(agent_id: str) -> str:
    """Where an agent's knowledge graph (node-link JSON) lives: ``agents/<id>/kg.json``."""
    return f"agents/{check_id('agent id', agent_id)}/kg.json"


def state_path(agent_id: str) -> str:
    """Where an agent's role state (``Agent.save_state``, JSON) lives: ``agents/<id>/state.json``."""
    return f"agents/{check_id('agent id', agent_id)}/state.json"


def messages_path(n: int) -> str:
    """Where round ``n``'s agent messages live on the swarm branch: ``messages/<n>.json``."""
    return f"messages/{int(n):05d}.json"


LATEST_ROUND_PATH = "rounds/latest.json"  # a copy of the newest round's record


def round_path(n: int) -> str:
    """Where round ``n``'s record lives on the swarm branch: ``rounds/<n, 5 digits>.json``
    (zero-padded so that ``ls`` and ``git ls-tree`` list the rounds in order)."""
    return f"rounds/{int(n):05d}.json"


def artifact_path(name: str, relpath: str) -> str:
    """Where a file of a shared artifact lives: ``artifacts/<name>/<relpath>``."""
    rel = "/".join(check_tree_path(relpath))
    return f"artifacts/{check_id('artifact name', name)}/{rel}"


def split_trailer(body: str) -> tuple[str, str | None]:
    """Split a commit message into (message, branch named by its ``Lineage-Branch`` trailer)."""
    text = body.rstrip("\n")
    head, sep, last = text.rpartition("\n")
    prefix = f"{TRAILER}: "
    if last.startswith(prefix):
        return head.rstrip("\n"), last[len(prefix) :].strip()
    return body.rstrip("\n"), None


GIT_CONFIG = {
    # Git fsyncs loose objects, packs, their indexes, commit-graphs and ref files
    # before renaming them into place (git 2.36+ knows these components).
    "core.fsync": "objects,reference,derived-metadata",
    "core.fsyncMethod": "fsync",
    # Nothing may prune or repack behind the writer's back; it maintains explicitly.
    "gc.auto": "0",
    "repack.writeBitmaps": "false",
    "core.logAllRefUpdates": "false",
}


def init_repo(path: Path, adapter_store: Path) -> None:
    """Create the lineage directory ``path`` (bare repo, HEAD -> the swarm branch, ``lineage.json``).

    ``adapter_store`` is the machine's adapter store the lineage keeps its adapters in.

    The repository is built in a temp folder beside ``path`` and renamed into
    place, so a crash while creating it leaves no half-made store behind.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LineageError(f"cannot create a lineage store at {path}: {exc.strerror}") from None
    tmp = path.parent / f".{path.name}.init-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(
        ["git", "init", "-q", "--bare", str(tmp)], capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise LineageError(f"git init {path} failed: {proc.stderr.decode().strip()}")
    subprocess.run(
        ["git", "--git-dir", str(tmp), "symbolic-ref", "HEAD", f"refs/heads/{SWARM_BRANCH}"],
        check=True,
    )
    ensure_config(tmp)
    (tmp / "description").write_text("swarm lineage store\n")
    write_durably(tmp / LAYOUT_FILE, [layout_bytes(path, adapter_store)])
    try:
        os.rename(tmp, path)  # also replaces an empty folder at ``path``
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if (path / "HEAD").is_file():
            return  # another process created it first
        raise LineageError(f"cannot create a lineage store at {path}: {exc}") from None
    fsync_dir(path.parent)  # the store's own entry must survive a power cut


def ensure_config(path: Path) -> None:
    """Set the durability and housekeeping options every writer relies on.

    Raises:
        LineageError: git could not write the config (read-only or full disk).
    """
    current = subprocess.run(
        ["git", "--git-dir", str(path), "config", "--list", "--local"],
        capture_output=True, check=False,
    ).stdout.decode()
    have = dict(ln.partition("=")[::2] for ln in current.splitlines())
    for key, value in GIT_CONFIG.items():
        if have.get(key.lower()) != value:
            proc = subprocess.run(
                ["git", "--git-dir", str(path), "config", key, value],
                check=False, capture_output=True,
            )
            if proc.returncode != 0:
                msg = "; ".join(proc.stderr.decode(errors="replace").strip().splitlines())
                raise LineageError(f"cannot configure the lineage {path}: {msg}")


def take_lock(lock_path: Path, timeout: float) -> int:
    """Take the writer's flock on ``lock_path``; return its fd (close it to release).

    Raises:
        LineageError: the lock cannot be opened (read-only directory), or
            another writer still holds it after ``timeout`` seconds.
    """
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LineageError(f"cannot open the writer lock {lock_path}: {exc.strerror}") from None
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LineageError(f"another writer holds {lock_path}") from None
            time.sleep(0.05)


def recover(git_dir: Path) -> None:
    """Remove what a dead writer left half-done. Call only while holding the writer lock.

    Left-overs are temp files of an unfinished pack or commit-graph, a pack whose
    index was never renamed into place (so no reader ever saw it) and the lock
    files of git commands that died with the writer.
    """
    pack_dir = git_dir / "objects" / "pack"
    leftovers = [*pack_dir.glob("tmp_*"), *pack_dir.glob(".tmp-*")]
    leftovers += [p for p in pack_dir.glob("*.pack") if not p.with_suffix(".idx").exists()]
    leftovers += (git_dir / "objects" / "info").rglob("tmp_*")
    # Lock files of git commands that died with the writer (update-ref, repack, commit-graph).
    for folder in (git_dir / "refs", git_dir / "objects" / "info"):
        leftovers += folder.rglob("*.lock")
    leftovers += git_dir.glob("*.lock")
    for path in leftovers:
        if path.name != "lineage.lock":
            path.unlink(missing_ok=True)
