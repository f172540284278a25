"""The phylogeny of a scripted history equals the expected graph, and plain git agrees."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from swarm.cli.main import main
from swarm.errors import LineageError
from swarm.lineage.gitstore import GitLineageStore
from swarm.lineage.phylogeny import draw, generations


@dataclass
class History:
    store: GitLineageStore
    sha: dict[str, str]
    edges: set[tuple[str, str]]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], capture_output=True, check=True
    ).stdout.decode()


@pytest.fixture()
def history(tmp_path: Path) -> Iterator[History]:
    """Four agents over three rounds, a fork, two merges (one octopus), promotions, a prune."""
    store = GitLineageStore.open(tmp_path / "lineage", create=True)
    sha: dict[str, str] = {}
    edges: set[tuple[str, str]] = set()

    def commit(key: str, branch: str, parents: list[str] | None = None, **kw: object) -> None:
        before = store.refs().get(f"refs/heads/{branch}")
        sha[key] = store.commit(branch, {f"{branch}/x.json": {"key": key}}, key,
                                parents=[sha[p] for p in parents] if parents else None)
        plist = [sha[p] for p in parents] if parents else ([before] if before else [])
        edges.update((p, sha[key]) for p in plist)

    commit("r0", "swarm")
    for a in "abcd":
        commit(f"{a}0", f"agent/{a}")
    for r in (1, 2):
        for a in "abcd":
            commit(f"{a}{r}", f"agent/{a}")
        commit(f"r{r}", "swarm")
    commit("e0", "agent/e", parents=["c2"])
    sha["m1"] = store.merge("agent/a", ["agent/b"], {"agent/a/x.json": {"key": "m1"}}, "m1")
    edges |= {(sha["a2"], sha["m1"]), (sha["b2"], sha["m1"])}
    store.note(sha["m1"], {"score": 0.9})
    store.promote("agent/a", "best-1")
    store.prune("agent/d", "low reward")
    sha["m2"] = store.merge("agent/b", ["agent/a", "agent/e"], {}, "m2")
    edges |= {(sha["b2"], sha["m2"]), (sha["m1"], sha["m2"]), (sha["e0"], sha["m2"])}
    store.promote(sha["m2"], "best-2")
    yield History(store, sha, edges)
    store.close()


def test_phylogeny_equals_the_scripted_graph(history: History) -> None:
    g = history.store.phylogeny()
    sha = history.sha
    assert set(g.nodes) == set(sha.values())
    assert {(u, v) for u, v in g.edges} == history.edges
    assert g.graph["lanes"] == ["swarm", "agent/a", "agent/b", "agent/c", "agent/d", "agent/e"]
    assert g.graph["promoted"] == {"best-1": sha["m1"], "best-2": sha["m2"]}
    assert g.graph["pruned"]["refs/pruned/agent/d"] == {
        "sha": sha["d2"], "branch": "agent/d", "reason": "low reward"}
    assert {n for n in g if g.nodes[n]["merge"]} == {sha["m1"], sha["m2"]}
    assert {n for n in g if g.nodes[n]["pruned"]} == {sha["d0"], sha["d1"], sha["d2"]}
    assert g.nodes[sha["m1"]]["note"] == {"score": 0.9}
    assert g.nodes[sha["e0"]]["branch"] == "agent/e"
    assert g.edges[sha["c2"], sha["e0"]]["kind"] == "fork"
    assert g.edges[sha["e0"], sha["m2"]]["kind"] == "merge"
    assert g.edges[sha["b1"], sha["b2"]]["kind"] == "line"
    assert generations(g)[sha["m2"]] == 4  # a0 a1 a2 m1 m2 is the longest path


def test_plain_git_log_graph_agrees(history: History) -> None:
    repo = history.store.git_dir
    text = git(repo, "log", "--graph", "--all", "--format=%H %P")
    notes = set(git(repo, "rev-list", "--glob=refs/notes").split())
    edges, nodes = set(), set()
    for line in text.splitlines():
        found = re.findall(r"[0-9a-f]{40}", line)
        if not found or found[0] in notes:
            continue
        nodes.add(found[0])
        edges |= {(p, found[0]) for p in found[1:]}
    g = history.store.phylogeny()
    assert nodes == set(g.nodes) and edges == {(u, v) for u, v in g.edges}
    assert "|\\" in text  # git draws the merges too


def test_draw_png_and_svg(history: History, tmp_path: Path) -> None:
    g = history.store.phylogeny()
    png = draw(g, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    svg = draw(g, tmp_path / "p.svg", max_commits=5).read_text()
    assert "<svg" in svg and "newest 5 of" in svg
    with pytest.raises(LineageError, match=".png"):
        draw(g, tmp_path / "p.txt")


def test_cli_lineage_commands(
    history: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = str(history.store.path)
    sha = history.sha
    history.store.close()  # release the writer lock for promote/prune
    assert main(["lineage", "log", "-C", repo, "b"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(sha["m2"][:12]) and "merge of" in out[0] and len(out) == 4
    assert main(["lineage", "show", "-C", repo, "best-1", "agent/a/x.json"]) == 0
    assert '"key": "m1"' in capsys.readouterr().out
    assert main(["lineage", "diff", "-C", repo, sha["a0"], sha["a1"]]) == 0
    assert capsys.readouterr().out.strip() == "M\tagent/a/x.json"
    assert main(["lineage", "graph", "-C", repo, "-o", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").stat().st_size > 10_000
    assert main(["lineage", "promote", "-C", repo, "c", "best-c", "-m", "nice"]) == 0
    assert main(["lineage", "prune", "-C", repo, "agent/c", "--reason", "old"]) == 0
    assert main(["lineage", "fsck", "-C", repo]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")
    assert main(["lineage", "log", "-C", repo, "nobody"]) == 2
    assert "no commit" in capsys.readouterr().err
