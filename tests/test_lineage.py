"""The lineage store on real git repositories: writes, reads, crash safety, concurrency, leaks."""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from swarm.errors import LineageError
from swarm.lineage.gitstore import GitLineageStore
from swarm.lineage.reader import LineageReader
from swarm.lineage.writer import CommitSpec
from tests.support import tiny_lora


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, check=True
    ).stdout.decode()


def assert_fsck_clean(repo: Path) -> None:
    proc = subprocess.run(
        ["git", "--git-dir", str(repo), "fsck", "--strict", "--no-progress"],
        capture_output=True, check=False,
    )
    out = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 0, out
    bad = [ln for ln in out.splitlines() if ln.split(" ")[0] in ("error:", "warning:", "missing", "broken")]
    assert not bad, out


def wait_for_writer_tree_to_exit(repo: Path) -> None:
    """Block until no process of a dead writer still holds the writer lock.

    The writer's git helpers inherit the lock; a ``git repack`` it started runs to
    its end after the writer is killed, and ``git fsck`` itself misreports packs
    that a running repack is renaming.
    """
    if not (repo / "lineage.lock").exists():
        return  # killed before it ever opened the store
    fd = os.open(repo / "lineage.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[GitLineageStore]:
    s = GitLineageStore.open(tmp_path / "lineage", create=True)
    yield s
    s.close()


def test_commit_show_log_diff_checkout(store: GitLineageStore, tmp_path: Path) -> None:
    a1 = store.commit("agent/a", {"agents/a/profile.json": {"skill": 1},
                                  "agents/a/kg.json": "{}"}, "a joins", author="alice")
    a2 = store.commit("agent/a", {"agents/a/profile.json": {"skill": 2},
                                  "agents/a/kg.json": None, "artifacts/x/code.py": b"print(1)\n"},
                      "a learns")
    assert store.show_json("a", "agents/a/profile.json") == {"skill": 2}
    assert store.show(a1, "agents/a/kg.json") == b"{}"
    with pytest.raises(LineageError, match="no file"):
        store.show(a2, "agents/a/kg.json")
    log = store.log("a")
    assert [e.commit for e in log] == [a2, a1]
    assert log[1].author == "alice <alice@swarm.local>" and log[0].branch == "agent/a"
    assert log[0].message == "a learns" and log[0].parents == (a1,)
    assert store.ancestry("agent/a") == [a2, a1]
    changes = {(d.status, d.path) for d in store.diff(a1, a2)}
    assert changes == {("M", "agents/a/profile.json"), ("D", "agents/a/kg.json"),
                       ("A", "artifacts/x/code.py")}
    assert "+print(1)" in store.patch(a1, a2)
    out = store.checkout("a", tmp_path / "co")
    assert (out / "artifacts/x/code.py").read_bytes() == b"print(1)\n"
    assert not (out / "agents/a/kg.json").exists()
    # Plain git reads the same thing.
    assert git(store.git_dir, "show", "agent/a:agents/a/profile.json") == '{\n  "skill": 2\n}\n'
    assert "Lineage-Branch: agent/a" in git(store.git_dir, "log", "-1", "--format=%B", "agent/a")
    assert_fsck_clean(store.git_dir)


def test_bad_inputs_are_refused(store: GitLineageStore) -> None:
    for path in ("a/../b", ".git/config", "a//b", "x/.gitmodules"):
        with pytest.raises(LineageError):
            store.commit("agent/a", {path: b"x"}, "bad")
    with pytest.raises(LineageError, match="both a file and a folder"):
        store.commit("agent/a", {"a": b"1", "a/b": b"2"}, "bad")
    with pytest.raises(LineageError, match="ref name"):
        store.commit("agent/a b", {"f": b"x"}, "bad")
    with pytest.raises(LineageError):
        store.commit("agent/a", {"f": b"x"}, "bad", parents=["no-such-thing"])
    with pytest.raises(LineageError, match="no commit"):
        store.log("ghost")
    assert store.refs("refs/heads") == {}  # nothing half-written


def test_merge_notes_promote_prune(store: GitLineageStore) -> None:
    a = store.commit("agent/a", {"agents/a/adapter.json": {"v": "a"}}, "a")
    b = store.commit("agent/b", {"agents/b/adapter.json": {"v": "b"}}, "b")
    m = store.merge("agent/a", ["agent/b"], {"agents/a/adapter.json": {"v": "ab"}}, "merge")
    assert git(store.git_dir, "rev-list", "--parents", "-1", m).split() == [m, a, b]
    store.note(m, {"score": 0.75})
    assert json.loads(git(store.git_dir, "notes", "show", m)) == {"score": 0.75}
    assert json.loads(store.get_note(m) or b"") == {"score": 0.75}
    store.note_many({a: {"score": 0.1}, m: {"score": 0.8}})
    assert json.loads(git(store.git_dir, "notes", "show", m)) == {"score": 0.8}
    assert store.promote("agent/a", "best-1", "top of round 1") == m
    with pytest.raises(LineageError, match="exists"):
        store.promote("agent/b", "best-1")
    assert git(store.git_dir, "rev-parse", "best-1^{commit}").strip() == m
    pruned = store.prune("agent/b", "weak")
    assert pruned == "refs/pruned/agent/b"
    refs = store.refs()
    assert "refs/heads/agent/b" not in refs and pruned in refs
    assert git(store.git_dir, "rev-parse", f"{pruned}^{{commit}}").strip() == b
    assert "weak" in git(store.git_dir, "cat-file", "-p", pruned)
    assert store.resolve("b") == b  # a pruned line can still be read
    # A new agent b can start over; pruning it again keeps both records.
    store.commit("agent/b", {"agents/b/adapter.json": {"v": "b2"}}, "b again")
    assert store.prune("agent/b", "weak again") == "refs/pruned/agent/b.2"
    assert_fsck_clean(store.git_dir)


def test_artifact_root_commit_tree_note_and_prune(store: GitLineageStore) -> None:
    # Prepare: an artifact's seed as a root commit on a non-branch ref, an individual forked from it.
    seed = store.commit("refs/artifacts/x/seed", {"artifacts/x/f.txt": "0"}, "seed x", parents=[])
    one = store.commit("artifact/x/a", {"artifacts/x/f.txt": "1"}, "round 1: mutate a: one",
                       parents=[seed])
    tree = git(store.git_dir, "rev-parse", f"{one}^{{tree}}").strip()
    # Execute: an evaluation noted on the tree (by its full sha), then the individual retired.
    store.note_many({tree: {"fitness": 0.5}, one: {"fitness": 0.5}}, "evals")
    pruned = store.prune("artifact/x/a", "weak")
    # Assert
    assert git(store.git_dir, "rev-list", "--parents", "-n1", seed).split() == [seed]
    assert json.loads(git(store.git_dir, "notes", "--ref=evals", "show", tree)) == {"fitness": 0.5}
    assert pruned == "refs/pruned/artifact/x/a" and "refs/heads/artifact/x/a" not in store.refs()
    assert git(store.git_dir, "rev-parse", f"{pruned}^{{commit}}").strip() == one
    blob = git(store.git_dir, "rev-parse", f"{one}:artifacts/x/f.txt").strip()
    with pytest.raises(LineageError, match="is not a commit"):
        store.note(blob, {"fitness": 0.5})  # a commit or a tree, nothing else
    assert_fsck_clean(store.git_dir)


def test_batch_is_atomic_and_sees_its_own_commits(store: GitLineageStore) -> None:
    shas = store.commit_many([
        CommitSpec("agent/a", {"f": b"1"}, "a1"),
        CommitSpec("agent/b", {"g": b"1"}, "b fork", parents=["agent/a"]),
        CommitSpec("agent/a", {"f": b"2"}, "a2"),
    ])
    assert store.ancestry("b") == [shas[1], shas[0]]
    assert store.show("a", "f") == b"2" and store.show("b", "f") == b"1"
    before = store.refs()
    with pytest.raises(LineageError):
        store.commit_many([CommitSpec("agent/a", {"f": b"3"}, "ok"),
                           CommitSpec("agent/a", {"../x": b"3"}, "bad")])
    assert store.refs() == before


def test_lost_compare_and_swap_is_reported_then_recovered(store: GitLineageStore) -> None:
    a1 = store.commit("agent/a", {"f": b"1"}, "a1")
    a2 = store.commit("agent/a", {"f": b"2"}, "a2")
    git(store.git_dir, "update-ref", "refs/heads/agent/a", a1)  # someone moved the ref
    with pytest.raises(LineageError, match="refused"):
        store.commit("agent/a", {"f": b"3"}, "a3")
    a3 = store.commit("agent/a", {"f": b"3"}, "a3 retried")
    assert store.ancestry("a") == [a3, a1] and a2 not in store.ancestry("a")


def test_one_writer_many_readers(store: GitLineageStore, tmp_path: Path) -> None:
    with pytest.raises(LineageError, match="another writer"):
        GitLineageStore.open(store.path, lock_timeout=0.2)
    reader = GitLineageStore.open(store.path, writer=False)
    with pytest.raises(LineageError, match="read-only"):
        reader.commit("agent/a", {"f": b"1"}, "x")
    with pytest.raises(LineageError, match="not a lineage"):
        GitLineageStore.open(tmp_path / "nowhere")


def test_adapter_stored_twice_is_stored_once(store: GitLineageStore, tmp_path: Path) -> None:
    one = tiny_lora(tmp_path / "one", seed=7, dim=16 * 1024)  # 1 MiB of weights
    two = Path(shutil.copytree(one, tmp_path / "two"))
    payload = (one / "adapter_model.safetensors").read_bytes()
    p1 = store.put_adapter(one, {"parents": ["f" * 64]})
    p2 = store.put_adapter(two)
    p3 = store.pointer(p1["sha256"], {"rank": 8, "base_model": "tiny"})
    assert p1["sha256"] == p2["sha256"] == p3["sha256"]
    assert (p1["rank"], p1["base_model"], p1["parents"]) == (8, "tiny", ["f" * 64])
    assert p1["config_sha256"] == p2["config_sha256"] == p3["config_sha256"]
    assert store.adapters.list() == [p1["sha256"]]  # weights and config once, in one entry
    stored = sum(f.stat().st_size for f in store.adapters.root.rglob("*") if f.is_file())
    assert stored < len(payload) + 4096
    store.commit("agent/a", {"agents/a/adapter.json": p1}, "a trains")
    store.commit("agent/b", {"agents/b/adapter.json": p2}, "b gets the same weights")
    assert store.referenced("b") == [p1["sha256"]]
    out = store.get_adapter(store.show_json("b", "agents/b/adapter.json"), tmp_path / "got")
    assert (out / "adapter_model.safetensors").read_bytes() == payload
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8
    co = store.checkout("a", tmp_path / "co", adapters=True)
    assert (co / "agents/a/adapter/adapter_model.safetensors").read_bytes() == payload
    assert store.fsck() == []
    blob = store.adapters.path(p1["sha256"]) / "adapter_model.safetensors"
    blob.write_bytes(b"corrupt")
    assert any("missing or corrupt" in p for p in store.fsck())


_READER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from swarm.lineage.reader import LineageReader
    repo, stop = Path(sys.argv[1]), Path(sys.argv[2])
    r = LineageReader(repo)
    checks, last = 0, -1
    while not stop.exists():
        if "refs/heads/agent/w" not in r.refs("refs/heads"):
            continue
        tip = r.resolve("w")
        a = r.show_json(tip, "agents/w/a.json")["n"]
        b = r.show_json(tip, "agents/w/b.json")["n"]
        assert a == b, ("torn commit", a, b)
        assert a >= last, ("went back in time", a, last)
        log = r.log("w", limit=3)
        assert log[0].commit != tip or log[0].message == f"n={a}", log[0]
        assert len(r.ancestry(tip)) == a + 1, "ancestry does not match the counter"
        last = a
        checks += 1
    print(checks)
""")


def test_readers_never_see_torn_state_or_locks(tmp_path: Path) -> None:
    repo, stop = tmp_path / "lineage", tmp_path / "stop"
    store = GitLineageStore.open(repo, create=True, maintain_every=8)
    readers = [
        subprocess.Popen([sys.executable, "-c", _READER, str(repo), str(stop)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    try:
        n = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            batch = [CommitSpec("agent/w", {"agents/w/a.json": {"n": n + i},
                                            "agents/w/b.json": {"n": n + i}}, f"n={n + i}")
                     for i in range(random.randint(1, 5))]
            store.commit_many(batch)
            n += len(batch)
    finally:
        stop.touch()
        outs = [p.communicate(timeout=60) for p in readers]
        store.close()
    for proc, (out, err) in zip(readers, outs, strict=True):
        assert proc.returncode == 0, err.decode()
        assert int(out) > 10  # the readers really overlapped the writer
    assert len(LineageReader(repo).ancestry("w")) == n


_CRASH_CHILD = textwrap.dedent("""
    import random, sys
    from swarm.lineage.gitstore import GitLineageStore
    from swarm.lineage.writer import CommitSpec
    repo, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    store = GitLineageStore.open(repo, create=True, maintain_every=6)
    done = 0
    while done < 1000:
        specs = []
        for _ in range(rng.randint(1, 8)):
            agent = f"agent/{rng.randrange(5)}"
            files = {f"agents/{agent[6:]}/adapter.json": {"seed": seed, "i": done + len(specs)},
                     f"rounds/{done + len(specs)}.json": b"x" * rng.randrange(200)}
            specs.append(CommitSpec(agent, files, f"{seed}:{done + len(specs)}"))
        if rng.random() < 0.1 and len(store.refs("refs/heads")) > 1:
            a, b = rng.sample(sorted(store.refs("refs/heads")), 2)
            sha = store.merge(a, [b], {"merged": b"1"}, "merge")
            print(sha, a, flush=True)
            done += 1
            continue
        for spec, sha in zip(specs, store.commit_many(specs)):
            print(sha, "refs/heads/" + spec.branch, flush=True)
        done += len(specs)
    store.close()
""")


@pytest.mark.slow
def test_sigkill_at_random_instants_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    repo = tmp_path / "lineage"
    rng = random.Random(1234)
    acked: dict[str, str] = {}
    kills = mid_stream = 0
    run = -1
    while kills < 22:
        run += 1
        assert run < 40, "the writer finished before the kill too often"
        child = subprocess.Popen([sys.executable, "-c", _CRASH_CHILD, str(repo), str(run)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 start_new_session=True, bufsize=0)  # readline must not read ahead
        assert child.stdout is not None
        # Most kills land while commits stream; every 4th may land in start-up and recovery.
        first = b"" if run % 4 == 0 else child.stdout.readline()
        time.sleep(rng.uniform(0.0, 0.8) if run % 4 == 0 else rng.uniform(0.0, 1.5))
        if child.poll() is None:
            if run % 3 == 2:  # the whole process tree at once: git helpers die mid-write too
                os.killpg(child.pid, signal.SIGKILL)
            else:
                child.send_signal(signal.SIGKILL)
            kills += 1
        rest, err = child.communicate(timeout=60)
        assert child.returncode in (0, -signal.SIGKILL), err.decode()
        out = first + rest
        mid_stream += bool(first) and child.returncode == -signal.SIGKILL
        lines = out.decode().splitlines()
        complete = lines if out.endswith(b"\n") else lines[:-1]  # a torn last line is no ack
        last_per_branch = {}
        for line in complete:
            sha, ref = line.split()
            acked[sha] = ref
            last_per_branch[ref] = sha
        wait_for_writer_tree_to_exit(repo)
        if not repo.exists():
            assert not complete  # killed before the store existed: nothing acknowledged
            continue
        assert_fsck_clean(repo)
        reachable = set(git(repo, "rev-list", "--all").split())
        missing = set(acked) - reachable
        assert not missing, f"run {run}: {len(missing)} acknowledged commits lost"
        for ref, sha in last_per_branch.items():
            assert sha in set(git(repo, "rev-list", ref).split()), f"run {run}: {ref} went back"
    assert mid_stream >= 15
    assert len(acked) > 200  # the kills did interrupt real work


def test_fds_and_children_stay_bounded_over_10k_commits(store: GitLineageStore) -> None:
    me = psutil.Process()
    for i in range(2):  # warm up: both git helpers running, a maintenance done
        store.commit_many([CommitSpec("agent/a", {"agents/a/kg.json": {"i": i}}, f"{i}")])
    store.maintain()
    total = 2
    fds, kids = me.num_fds(), len(me.children(recursive=True))
    peak_fds, peak_kids = fds, kids
    for batch in range(90):
        specs = [CommitSpec(f"agent/{(batch + i) % 7}", {f"agents/{i % 7}/kg.json": {"i": i}},
                            f"{batch}:{i}") for i in range(100)]
        store.commit_many(specs)
        total += len(specs)
        peak_fds = max(peak_fds, me.num_fds())
        peak_kids = max(peak_kids, len(me.children(recursive=True)))
    for i in range(998):
        store.commit(f"agent/{i % 3}", {"rounds/last.json": {"i": i}}, f"single {i}")
        total += 1
        if i % 50 == 0:
            peak_fds = max(peak_fds, me.num_fds())
            peak_kids = max(peak_kids, len(me.children(recursive=True)))
    assert total == 10_000
    assert peak_fds <= fds and me.num_fds() <= fds
    assert peak_kids <= kids and len(me.children(recursive=True)) <= kids
    count = int(git(store.git_dir, "rev-list", "--count", "--branches"))
    assert count == total
    assert len(list((store.git_dir / "objects/pack").glob("*.pack"))) < 64  # maintenance ran


def test_writer_cleans_what_a_dead_writer_left(tmp_path: Path) -> None:
    repo = tmp_path / "lineage"
    with GitLineageStore.open(repo, create=True) as store:
        store.commit("agent/a", {"f": b"1"}, "a1")
    leftovers = [repo / "refs/heads/agent/a.lock", repo / "packed-refs.lock",
                 repo / "objects/pack/tmp_pack_dead", repo / "objects/pack/pack-dead.pack",
                 repo / "objects/info/commit-graphs/commit-graph-chain.lock"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    with GitLineageStore.open(repo) as store:
        assert not any(p.exists() for p in leftovers)
        store.commit("agent/a", {"f": b"2"}, "a2")
        store.maintain()
    assert LineageReader(repo).show("a", "f") == b"2"
    assert_fsck_clean(repo)


def test_a_store_that_cannot_be_created_is_a_lineage_error(tmp_path: Path) -> None:
    # Prepare: a file where the store's parent folder should be.
    (tmp_path / "file").write_text("mine\n")
    # Execute / Assert
    with pytest.raises(LineageError, match="cannot create a lineage store at .*file"):
        GitLineageStore.open(tmp_path / "file" / "lineage", create=True)
    assert (tmp_path / "file").read_text() == "mine\n"


def test_a_pointer_sha_that_is_not_a_string_is_a_lineage_error(store: GitLineageStore,
                                                               tmp_path: Path) -> None:
    for bad in (5, None, ["0" * 64]):
        with pytest.raises(LineageError, match="sha256"):
            store.pointer(bad)  # type: ignore[arg-type]
        with pytest.raises(LineageError, match="sha256"):
            store.get_adapter({"sha256": bad}, tmp_path / "out")


def test_batch_and_its_notes_are_one_transaction(store: GitLineageStore) -> None:
    # Prepare
    a0 = store.commit("agent/a", {"f": b"0"}, "a0")
    store.note(a0, {"score": 0.1})
    git(store.git_dir, "update-ref", "refs/notes/commits", a0)  # someone moved the notes
    before = store.refs()
    # Execute: a batch whose notes lose their compare-and-swap.
    with pytest.raises(LineageError, match="refused"):
        store.commit_many([CommitSpec("agent/a", {"f": b"1"}, "a1")], notes={0: {"score": 1}})
    # Assert: the commit did not land without its note; a retry lands both.
    assert store.refs() == before
    (a1,) = store.commit_many([CommitSpec("agent/a", {"f": b"1"}, "a1")],
                              notes={0: {"score": 1}})
    assert store.resolve("agent/a") == a1
    assert json.loads(store.get_note(a1) or b"null") == {"score": 1}
