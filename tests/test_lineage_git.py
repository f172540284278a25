"""Object encoding, pack writing and the persistent git processes, checked by plain git."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from swarm.errors import LineageError
from swarm.lineage.git import (
    BLOB_MODE,
    TREE_MODE,
    CatFile,
    RefUpdater,
    encode_commit,
    encode_tag,
    encode_tree,
    object_id,
    parse_commit_tree,
    parse_tree,
    signature,
    write_pack,
)


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], input=input, capture_output=True, check=True
    ).stdout.decode()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return path


def test_object_id_matches_git_hash_object(repo: Path) -> None:
    data = os.urandom(5000)
    assert object_id("blob", data) == git(repo, "hash-object", "--stdin", input=data).strip()


def test_tree_order_and_roundtrip_pass_strict_fsck(repo: Path) -> None:
    objects: dict[str, tuple[str, bytes]] = {}

    def add(kind: str, data: bytes) -> str:
        sha = object_id(kind, data)
        objects[sha] = (kind, data)
        return sha

    blob = add("blob", b"x" * 70000)  # bigger than one pack-header size byte
    sub = add("tree", encode_tree({"f": (BLOB_MODE, blob)}))
    # "a" as a tree sorts as "a/", after "a.txt" and "a-b": fsck --strict checks this.
    entries = {"a": (TREE_MODE, sub), "a.txt": (BLOB_MODE, blob), "a-b": (BLOB_MODE, blob),
               "ab": (BLOB_MODE, blob)}
    tree_body = encode_tree(entries)
    tree = add("tree", tree_body)
    assert parse_tree(tree_body) == entries
    sig = signature("alice", 1_700_000_000)
    commit_body = encode_commit(tree, [], sig, sig, "first\n")
    commit = add("commit", commit_body)
    assert parse_commit_tree(commit_body) == tree
    tag = add("tag", encode_tag(commit, "commit", "v1", sig, "release\n"))

    pack = write_pack(repo, objects)
    assert pack is not None and pack.with_suffix(".idx").is_file()
    updater = RefUpdater(repo)
    updater.apply({"refs/heads/main": (None, commit), "refs/tags/v1": (None, tag)})
    updater.close()
    fsck = subprocess.run(["git", "--git-dir", str(repo), "fsck", "--strict"],
                          capture_output=True, check=False)
    assert fsck.returncode == 0, fsck.stderr
    assert b"error" not in fsck.stdout + fsck.stderr
    verify = git(repo, "verify-pack", "-v", str(pack.with_suffix(".idx")))
    assert "non delta: 5 objects" in verify  # blob, 2 trees, commit, tag
    assert git(repo, "ls-tree", "--name-only", "main").split() == ["a-b", "a.txt", "a", "ab"]
    assert git(repo, "cat-file", "-p", "main:a/f") == "x" * 70000
    assert list(repo.glob("objects/pack/tmp_*")) == []


def test_signature_validation() -> None:
    assert signature("Ann Lee <ann@x.org>", 5) == "Ann Lee <ann@x.org> 5 +0000"
    assert signature("bot 7", 5).startswith("bot 7 <bot-7@swarm.local> 5")
    with pytest.raises(LineageError):
        signature("evil\nname", 5)
    with pytest.raises(LineageError):
        signature("<>", 5)


def test_ref_updater_compare_and_swap(repo: Path) -> None:
    objects: dict[str, tuple[str, bytes]] = {}
    sig = signature("swarm", 1)
    tree = object_id("tree", b"")
    objects[tree] = ("tree", b"")
    shas = []
    for i in range(2):
        body = encode_commit(tree, shas[-1:], sig, sig, f"c{i}\n")
        shas.append(object_id("commit", body))
        objects[shas[-1]] = ("commit", body)
    write_pack(repo, objects)
    updater = RefUpdater(repo)
    try:
        updater.apply({"refs/heads/x": (None, shas[0])})
        with pytest.raises(LineageError, match="refused"):
            updater.apply({"refs/heads/x": (None, shas[1])})  # expects x absent: lost CAS
        with pytest.raises(LineageError):
            updater.apply({"refs/heads/x": (shas[1], shas[0])})  # wrong old value
        assert git(repo, "rev-parse", "refs/heads/x").strip() == shas[0]
        # The process restarts after a refusal; an atomic two-ref update either all lands.
        updater.apply({"refs/heads/x": (shas[0], shas[1]), "refs/heads/y": (None, shas[0])})
        assert git(repo, "rev-parse", "x", "y").split() == [shas[1], shas[0]]
        updater.apply({"refs/heads/y": (shas[0], None)})
        assert "refs/heads/y" not in git(repo, "for-each-ref")
    finally:
        updater.close()


def test_cat_file_reads_and_reports_missing(repo: Path) -> None:
    blob = b"hello\n"
    sha = git(repo, "hash-object", "-w", "--stdin", input=blob).strip()
    cat = CatFile(repo)
    try:
        assert cat.read(sha) == ("blob", blob)
        with pytest.raises(LineageError, match="no object"):
            cat.read("0" * 40)
        assert cat.lookup(sha)[0] == sha  # still alive after a miss
    finally:
        cat.close()
