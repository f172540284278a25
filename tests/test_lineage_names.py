"""Names entering the lineage are checked where they enter; git's answers are checked too."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm.errors import LineageError
from swarm.lineage.git import CatFile
from swarm.lineage.gitstore import GitLineageStore
from swarm.lineage.names import check_id, check_ref_name
from swarm.lineage.repo import adapter_path, agent_branch, artifact_path
from swarm.lineage.writer import CommitSpec

BAD_IDS = ["", ".", "..", "a..b", "x.lock", "-rf", ".hidden", "a/b", "a\nb", "a b", "a\tb",
           "a\x00b", "a\x7fb", "a:b", "a~1", "a^", "a?", "a*", "a[", "a\\b", "a@{1}", "x" * 200]


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[GitLineageStore]:
    s = GitLineageStore.open(tmp_path / "lineage", create=True)
    yield s
    s.close()


def _head_tree(store: GitLineageStore, ref: str) -> str:
    return subprocess.run(["git", "--git-dir", str(store.git_dir), "ls-tree", "-r",
                           "--name-only", ref], capture_output=True, check=True, text=True).stdout


def test_a_parent_with_a_newline_is_refused_and_later_commits_keep_their_trees(
        store: GitLineageStore) -> None:
    # Prepare: two agents with their own files.
    store.commit("agent/a", {"agents/a/adapter.json": {"v": "a"}}, "a")
    store.commit("agent/b", {"agents/b/adapter.json": {"v": "b"}}, "b")
    before = store.refs()
    # Execute: a parent name that is two cat-file requests, then ordinary commits.
    with pytest.raises(LineageError, match="not a valid git ref name"):
        store.commit("agent/c", {"agents/c/x": b"1"}, "c", parents=["agent/a\nagent/b"])
    store.commit("agent/a", {"agents/a/profile.json": {"s": 1}}, "a again")
    store.commit("agent/b", {"agents/b/profile.json": {"s": 2}}, "b again")
    # Assert: nothing landed for the bad commit; each branch kept its own files only.
    assert "refs/heads/agent/c" not in store.refs() and len(before) == 2
    assert _head_tree(store, "agent/a").split() == ["agents/a/adapter.json",
                                                    "agents/a/profile.json"]
    assert _head_tree(store, "agent/b").split() == ["agents/b/adapter.json",
                                                    "agents/b/profile.json"]


def test_cat_file_refuses_a_two_line_request_and_stays_in_step(store: GitLineageStore) -> None:
    # Prepare
    a = store.commit("agent/a", {"f": b"a"}, "a")
    b = store.commit("agent/b", {"f": b"b"}, "b")
    cat = CatFile(store.git_dir)
    try:
        # Execute / Assert: the request is refused before git sees it ...
        with pytest.raises(LineageError, match="not an object name"):
            cat.lookup(f"{a}\n{b}")
        # ... so the next answer is the one asked for.
        assert cat.lookup(b)[0] == b and cat.lookup(a)[0] == a
    finally:
        cat.close()


def test_cat_file_out_of_step_answer_is_refused_and_the_reader_restarts(
        store: GitLineageStore) -> None:
    # Prepare: push a stray request into git's input behind the reader's back.
    a = store.commit("agent/a", {"f": b"a"}, "a")
    b = store.commit("agent/b", {"f": b"b"}, "b")
    cat = CatFile(store.git_dir)
    try:
        stdin, _ = cat.pipes()
        stdin.write(f"{a} stray\n".encode())
        stdin.flush()
        # Execute / Assert: the answer to the stray request is not taken for b's.
        with pytest.raises(LineageError, match="reader restarted"):
            cat.lookup(b)
        assert cat.lookup(b)[0] == b  # a fresh child answers in step
    finally:
        cat.close()


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_agent_ids_are_refused_where_they_enter(store: GitLineageStore, bad: str) -> None:
    # Execute / Assert: every helper that turns an id into a ref or a path refuses it.
    for make in (agent_branch, adapter_path, lambda x: artifact_path(x, "f")):
        with pytest.raises(LineageError, match="is not allowed"):
            make(bad)
    with pytest.raises(LineageError, match="is not allowed"):
        store.promote("agent/a", bad)
    assert store.refs() == {}


def test_good_names_pass() -> None:
    for name in ("coder-0", "a.b", "A_1", "x" * 128):
        assert check_id("agent id", name) == name
    for ref in ("refs/heads/agent/coder-0", "agent/a", "swarm", "refs/notes/commits"):
        check_ref_name(ref)


@pytest.mark.parametrize("bad", ["agent/a\nagent/b", "-n", "agent/..", "agent/x.lock", "",
                                 "agent/a b", "HEAD~1", "agent//a", "agent/.a", "@"])
def test_bad_revisions_are_refused_by_writer_and_reader(store: GitLineageStore, bad: str) -> None:
    # Prepare
    store.commit("agent/a", {"f": b"a"}, "a")
    before = store.refs()
    # Execute / Assert
    with pytest.raises(LineageError, match="not a valid git ref name"):
        store.commit("agent/b", {"f": b"b"}, "b", parents=[bad])
    with pytest.raises(LineageError, match="not a valid git ref name"):
        store.merge("agent/a", [bad], {"f": b"m"}, "m")
    with pytest.raises(LineageError, match="not a valid git ref name"):
        store.note(bad, {"x": 1})
    for read in (store.log, store.ancestry, store.get_note, store.resolve):
        with pytest.raises(LineageError, match="not a valid git ref name"):
            read(bad)
    with pytest.raises(LineageError, match="not a valid git ref name"):
        store.commit(bad, {"f": b"b"}, "b")
    assert store.refs() == before


@pytest.mark.parametrize("bad", ["a/../b", "a\nb", "a/\x01", "../x", ".git/config", "x" * 300])
def test_bad_tree_paths_are_refused(store: GitLineageStore, bad: str) -> None:
    store.commit("agent/a", {"f": b"a"}, "a")
    with pytest.raises(LineageError, match="path"):
        store.commit("agent/a", {bad: b"x"}, "bad")
    with pytest.raises(LineageError, match="path"):
        store.show("agent/a", bad)
    assert store.show("agent/a", "f") == b"a"


def test_promote_refuses_a_tag_that_looks_like_a_branch(store: GitLineageStore) -> None:
    # Prepare
    store.commit("agent/a", {"f": b"a"}, "a")
    # Execute / Assert
    for name in ("refs/heads/main", "heads/main", "a/b"):
        with pytest.raises(LineageError, match="tag name .* is not allowed"):
            store.promote("agent/a", name)
    assert not [r for r in store.refs() if r.startswith("refs/tags/")]
    store.promote("agent/a", "best-1")
    assert "refs/tags/best-1" in store.refs()


def test_prune_refuses_the_swarm_branch(store: GitLineageStore) -> None:
    # Prepare: a swarm branch with a round, an agent branch.
    store.commit_many([CommitSpec("swarm", {"rounds/latest.json": {"round": 3}}, "r3"),
                       CommitSpec("agent/a", {"f": b"a"}, "a")])
    before = store.refs()
    # Execute / Assert
    for name in ("swarm", "refs/heads/swarm"):
        with pytest.raises(LineageError, match="swarm's own branch"):
            store.prune(name, "oops")
    with pytest.raises(LineageError, match="only agent branches"):
        store.prune("refs/notes/commits", "oops")
    assert store.refs() == before
    assert store.show_json("swarm", "rounds/latest.json") == {"round": 3}
    assert store.prune("agent/a", "weak") == "refs/pruned/agent/a"
