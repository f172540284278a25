"""A shared artifact in a real git lineage: its phylogeny, best version, checkout and CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from swarm.cli.main import main
from swarm.errors import LineageError
from swarm.lineage.artifactview import (
    artifact_files,
    artifact_names,
    artifact_phylogeny,
    artifact_version,
    best_version,
    checkout_artifact,
    draw_artifact,
)
from swarm.lineage.gitstore import GitLineageStore
from swarm.lineage.reader import LineageReader

SEED_FILES = {"solve.py": b"def solve(items):\n    return items\n", "lib/util.py": b"N = 1\n"}


@dataclass
class Lineage:
    path: Path
    sha: dict[str, str]

    def reader(self) -> LineageReader:
        return LineageReader(self.path)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True,
                          check=True).stdout.decode()


def evaluation(fitness: float | None, status: str = "ok") -> dict[str, object]:
    return {"artifact": "x", "fitness": fitness, "status": status, "evaluator": "command",
            "detail": ""}


@pytest.fixture()
def lineage(tmp_path: Path) -> Iterator[Lineage]:
    """Artifact ``x`` in the brief's layout: a seed, three mutations, a merge, a promotion, a prune.

    An agent's own branch (``agent/a``) holds other files. The ``evals`` notes (the cache by
    tree) say 99.0 so that a score read from the wrong namespace shows.
    """
    path = tmp_path / "lineage"
    sha: dict[str, str] = {}
    with GitLineageStore.open(path, create=True) as store:
        store.commit("agent/a", {"agents/a/profile.json": {"skill": 1}}, "round 0: agent a")
        files = {f"artifacts/x/{rel}": data for rel, data in SEED_FILES.items()}
        sha["seed"] = store.commit("refs/artifacts/x/seed", files, "seed artifact x", parents=[])
        for agent, rel in (("a", "solve.py"), ("b", "lib/util.py"), ("c", "solve.py")):
            sha[f"{agent}1"] = store.commit(
                f"artifact/x/{agent}", {f"artifacts/x/{rel}": f"# {agent}1\n"},
                f"round 1: mutate {agent}: edit {rel}", parents=[sha["seed"]])
        sha["m2"] = store.merge("artifact/x/a", [sha["b1"]], {"artifacts/x/lib/util.py": "# b1\n"},
                                "round 2: merge a + b")
        scores = {"seed": 0.1, "a1": 0.4, "b1": 0.3, "m2": 0.6}
        notes = {sha[k]: evaluation(v) for k, v in scores.items()}
        notes[sha["c1"]] = evaluation(None, "failed")
        store.note_many(notes, "commits")
        trees = {git(path, "rev-parse", f"{sha[k]}^{{tree}}").strip(): evaluation(99.0)
                 for k in scores}
        store.note_many(trees, "evals")
        store.promote(sha["m2"], "x-promoted-1", "round 2 best")
        sha["p2"] = store.merge("artifact/x/b", [sha["m2"]], {"artifacts/x/solve.py": "# a1\n"},
                                f"round 2: promote {sha['m2'][:12]}")
        store.prune("artifact/x/c", "failed evaluation")
    yield Lineage(path, sha)


def test_the_lineage_follows_the_layout(lineage: Lineage) -> None:
    # Prepare / Execute: the refs and trees plain git sees.
    refs = git(lineage.path, "for-each-ref", "--format=%(refname)").split()
    # Assert: a root seed, the promotion's tree is the promoted one's, the pruned line kept.
    assert git(lineage.path, "rev-list", "--parents", "-n1", "refs/artifacts/x/seed").split() \
        == [lineage.sha["seed"]]
    assert git(lineage.path, "rev-parse", f"{lineage.sha['p2']}^{{tree}}") \
        == git(lineage.path, "rev-parse", f"{lineage.sha['m2']}^{{tree}}")
    assert "refs/pruned/artifact/x/c" in refs and "refs/heads/artifact/x/c" not in refs
    assert "refs/tags/x-promoted-1" in refs


def test_phylogeny_nodes_edges_and_attributes(lineage: Lineage) -> None:
    # Prepare
    s = lineage.sha
    # Execute
    graph = artifact_phylogeny(lineage.reader(), "x")
    # Assert: only the artifact's commits, parent -> child, with what each version is.
    assert set(graph.nodes) == {s["seed"], s["a1"], s["b1"], s["c1"], s["m2"], s["p2"]}
    assert set(graph.edges) == {(s["seed"], s["a1"]), (s["seed"], s["b1"]), (s["seed"], s["c1"]),
                                (s["a1"], s["m2"]), (s["b1"], s["m2"]), (s["b1"], s["p2"]),
                                (s["m2"], s["p2"])}
    keys = ("branch", "agent", "kind", "round", "fitness", "status", "promoted", "pruned")
    got = {k: tuple(graph.nodes[sha][key] for key in keys) for k, sha in s.items()}
    assert got == {
        "seed": ("seed", None, "seed", 0, 0.1, "ok", False, False),
        "a1": ("a", "a", "mutate", 1, 0.4, "ok", False, False),
        "b1": ("b", "b", "mutate", 1, 0.3, "ok", False, False),
        "c1": ("c", "c", "mutate", 1, None, "failed", False, True),
        "m2": ("a", "a", "merge", 2, 0.6, "ok", True, False),
        "p2": ("b", "b", "promote", 2, None, None, False, False),
    }
    assert graph.graph["lanes"] == ["seed", "a", "b", "c"]
    assert graph.graph["seed"] == s["seed"] and graph.graph["artifact"] == "x"
    assert graph.graph["branches"] == {"artifact/x/a": s["m2"], "artifact/x/b": s["p2"]}


def test_fitness_is_read_from_the_commit_notes(lineage: Lineage) -> None:
    # Prepare: a new evaluation of a1 replaces its note; the tree cache (99.0) is not the score.
    with GitLineageStore.open(lineage.path) as store:
        store.note(lineage.sha["a1"], evaluation(0.9))
    # Execute
    graph = artifact_phylogeny(lineage.reader(), "x")
    # Assert
    assert graph.nodes[lineage.sha["a1"]]["fitness"] == 0.9
    assert graph.nodes[lineage.sha["b1"]]["fitness"] == 0.3
    assert best_version(lineage.reader(), "x") == (lineage.sha["a1"], 0.9)


def test_best_version_ignores_pruned_lines_and_failures(lineage: Lineage, tmp_path: Path) -> None:
    # Prepare: the pruned line's version scored highest of all; a second artifact, only seeded.
    with GitLineageStore.open(lineage.path) as store:
        store.note(lineage.sha["c1"], evaluation(5.0))
        store.commit("refs/artifacts/y/seed", {"artifacts/y/p.txt": "hi"}, "seed y", parents=[])
    reader = lineage.reader()
    # Execute
    best, only_seed = best_version(reader, "x"), best_version(reader, "y")
    # Assert: the best a live individual reaches; none when nothing was evaluated.
    assert best == (lineage.sha["m2"], 0.6)
    assert only_seed is None
    assert artifact_names(reader) == ["x", "y"]


def test_a_store_reads_like_a_reader_and_the_best_diffs_against_the_seed(lineage: Lineage) -> None:
    # Prepare: what a notebook holds, a read-only store.
    store = GitLineageStore.open(lineage.path, writer=False)
    # Execute
    graph = artifact_phylogeny(store, "x")
    best = best_version(store, "x")
    assert best is not None
    patch = store.patch(graph.graph["seed"], best[0])
    # Assert: the diff is the artifact's own change and nothing else.
    changed = [ln for ln in patch.splitlines() if ln.startswith(("+", "-"))]
    assert changed == ["--- a/artifacts/x/lib/util.py", "+++ b/artifacts/x/lib/util.py", "-N = 1",
                       "+# b1", "--- a/artifacts/x/solve.py", "+++ b/artifacts/x/solve.py",
                       "-def solve(items):", "-    return items", "+# a1"]


def test_artifact_files_at_any_version(lineage: Lineage) -> None:
    # Prepare
    reader = lineage.reader()
    # Execute
    seed = artifact_files(reader, "refs/artifacts/x/seed")
    merged = artifact_files(reader, "x-promoted-1")
    by_agent = artifact_files(reader, "b", "x")
    pruned = artifact_files(reader, "c", "x")
    # Assert: paths relative to artifacts/x/; an agent id names the individual (live or pruned).
    assert seed == SEED_FILES
    assert merged == {"solve.py": b"# a1\n", "lib/util.py": b"# b1\n"}
    assert by_agent == merged  # b's tip is the promotion of m2
    assert pruned == {"solve.py": b"# c1\n", "lib/util.py": SEED_FILES["lib/util.py"]}
    assert artifact_version(reader, lineage.sha["a1"]) == (lineage.sha["a1"], "x")


def test_artifact_files_refuses_what_is_not_one_artifact(lineage: Lineage) -> None:
    # Prepare: a commit holding two artifacts.
    with GitLineageStore.open(lineage.path) as store:
        store.commit("refs/artifacts/y/seed", {"artifacts/y/p.txt": "y",
                                               "artifacts/x/p.txt": "x"}, "two", parents=[])
    reader = lineage.reader()
    # Execute / Assert: each error names the ref and the problem.
    with pytest.raises(LineageError, match=r"agent/a \(\w{12}\) holds no artifact"):
        artifact_files(reader, "agent/a")
    with pytest.raises(LineageError, match=r"holds several artifacts \(x, y\)"):
        artifact_files(reader, "refs/artifacts/y/seed")
    with pytest.raises(LineageError, match=r"holds no artifact 'y' \(it holds x\)"):
        artifact_files(reader, "x-promoted-1", "y")
    with pytest.raises(LineageError, match=r"no artifact named 'z' .*\(known: x, y\)"):
        artifact_files(reader, "a", "z")
    with pytest.raises(LineageError, match="no commit, branch, agent or tag named 'nope'"):
        artifact_files(reader, "nope", "x")


def test_checkout_writes_exactly_the_files(lineage: Lineage, tmp_path: Path) -> None:
    # Prepare: a destination two folders deep that does not exist, and an empty one.
    dest, empty = tmp_path / "out" / "v1", tmp_path / "empty"
    empty.mkdir()
    # Execute
    written = checkout_artifact(lineage.reader(), "x-promoted-1", dest)
    checkout_artifact(lineage.reader(), "refs/artifacts/x/seed", empty)
    # Assert
    files = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert written == dest and files == {"solve.py": b"# a1\n", "lib/util.py": b"# b1\n"}
    assert sorted(p.relative_to(empty).as_posix() for p in empty.rglob("*")) \
        == ["lib", "lib/util.py", "solve.py"]


def test_checkout_refuses_a_dest_in_the_way(lineage: Lineage, tmp_path: Path) -> None:
    # Prepare: a folder holding a file, and a plain file.
    full, plain = tmp_path / "full", tmp_path / "plain"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    plain.write_text("a file")
    # Execute / Assert: refused, and neither was touched.
    for dest in (full, plain):
        with pytest.raises(LineageError, match="exists and is not an empty directory"):
            checkout_artifact(lineage.reader(), "x-promoted-1", dest)
    assert [p.name for p in full.iterdir()] == ["keep.txt"] and plain.read_text() == "a file"


def _in_small_tmpfs(lineage: Lineage, mount: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    """``swarm lineage checkout`` of a version too big for a 64 KiB tmpfs at ``mount``."""
    mount.mkdir()
    argv = [sys.executable, "-m", "swarm", "lineage", "checkout", "a", str(dest), "--artifact",
            "x", "-C", str(lineage.path)]
    script = (f"mount -t tmpfs -o size=64k tmpfs {mount} && "
              f"{'mkdir ' + str(dest) + ' && ' if dest.name == 'pre' else ''}"
              f"{' '.join(argv)}; echo rc=$?; find {mount} | sort")
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    return subprocess.run([*unshare, "sh", "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_failed_checkout_removes_what_it_made(lineage: Lineage, tmp_path: Path) -> None:
    # Prepare: a's version gains a file bigger than the destination's filesystem.
    with GitLineageStore.open(lineage.path) as store:
        store.commit("artifact/x/a", {"artifacts/x/z/big.bin": os.urandom(256 * 1024)},
                     "round 3: mutate a: grow")
    mount = tmp_path / "small"
    # Execute: once into a folder the checkout makes, once into an empty one that was there.
    made = _in_small_tmpfs(lineage, mount, mount / "new" / "v")
    kept = _in_small_tmpfs(lineage, tmp_path / "small2", tmp_path / "small2" / "pre")
    # Assert: one error line naming the file; only what was there before is left.
    assert "rc=2" in made.stdout and made.stdout.split("rc=2")[1].split() == [str(mount)]
    assert made.stderr.strip().splitlines() == [
        f"swarm: error: cannot write {mount}/new/v/z/big.bin: No space left on device"]
    assert kept.stdout.split("rc=2")[1].split() == [str(tmp_path / "small2"),
                                                   str(tmp_path / "small2" / "pre")]


def test_draw_to_a_file_and_onto_axes(lineage: Lineage, tmp_path: Path) -> None:
    # Prepare
    from matplotlib.figure import Figure

    graph = artifact_phylogeny(lineage.reader(), "x")
    fig = Figure()
    ax = fig.add_subplot()
    # Execute
    dest = draw_artifact(graph, tmp_path / "x.png")
    drawn = draw_artifact(graph, ax, title="x evolving")
    # Assert: a PNG; on the axes a colour bar beside, each fitness written, the title.
    assert dest.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and dest.stat().st_size > 10_000
    assert drawn is ax and len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "fitness"
    texts = {t.get_text() for t in ax.texts}
    assert {"0.1", "0.4", "0.3", "0.6", "failed", "x-promoted-1"} <= texts
    assert ax.get_title(loc="left") == "x evolving"
    with pytest.raises(LineageError, match="must end in .png, .svg or .pdf"):
        draw_artifact(graph, tmp_path / "x.gif")


def _one_error(capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("swarm: error: "), err
    for needle in needles:
        assert needle in err[0], err[0]


def test_cli_checkout_and_graph(lineage: Lineage, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    where = ["-C", str(lineage.path)]
    dest, picture = tmp_path / "co", tmp_path / "x.png"
    # Execute
    code_checkout = main(["lineage", "checkout", "b", str(dest), "--artifact", "x", *where])
    out_checkout = capsys.readouterr().out
    code_graph = main(["lineage", "graph", "--artifact", "x", "-o", str(picture), *where])
    out_graph = capsys.readouterr().out
    # Assert
    assert code_checkout == 0 and (dest / "solve.py").read_bytes() == b"# a1\n"
    assert out_checkout.strip() == (f"wrote artifact x as of b ({lineage.sha['p2'][:12]}): "
                                    f"2 file(s) in {dest}")
    assert code_graph == 0 and picture.read_bytes()[:4] == b"\x89PNG"
    assert out_graph.strip() == (f"wrote {picture} (6 versions of x, 3 individuals; "
                                 f"best 0.6 at {lineage.sha['m2'][:12]})")


def test_cli_errors_are_one_line(lineage: Lineage, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    where = ["-C", str(lineage.path)]
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_text("x")
    cases = [
        (["checkout", "nope", str(tmp_path / "a"), "--artifact", "x"], "named 'nope'"),
        (["checkout", "agent/a", str(tmp_path / "b")], "holds no artifact"),
        (["checkout", "x-promoted-1", str(full)], f"{full} exists and is not an empty"),
        (["checkout", "a", str(tmp_path / "c"), "--artifact", "q"], "(known: x)"),
        (["graph", "--artifact", "q", "-o", str(tmp_path / "q.png")], "no artifact named 'q'"),
    ]
    for argv, needle in cases:
        # Execute
        code = main(["lineage", *argv, *where])
        # Assert: exit 2, one line; nothing written.
        assert code == 2, argv
        _one_error(capsys, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapters", "full", "lineage"]


def test_cli_through_the_swarm_entry_point(lineage: Lineage, tmp_path: Path) -> None:
    # Prepare
    base = [sys.executable, "-m", "swarm", "lineage"]
    # Execute
    ok = subprocess.run([*base, "checkout", "refs/artifacts/x/seed", str(tmp_path / "seed"),
                         "-C", str(lineage.path)], capture_output=True, text=True, check=False)
    bad = subprocess.run([*base, "graph", "--artifact", "nope", "-C", str(lineage.path)],
                         capture_output=True, text=True, check=False)
    # Assert
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "seed" / "lib" / "util.py").read_bytes() == SEED_FILES["lib/util.py"]
    assert bad.returncode == 2 and bad.stderr.strip() == (
        f"swarm: error: no artifact named 'nope' in {lineage.path} (known: x)")
