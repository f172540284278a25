"""The swarm's phylogeny: the lineage history as a graph, and a picture of it.

``build`` reads every commit reachable from agent branches, the swarm branch,
promoted tags and pruned lines (notes commits are left out) with one plain
``git log`` and returns a ``networkx.DiGraph`` with an edge from each parent to
each child. ``draw`` renders it with matplotlib: one lane per branch, forks and
merges as curves between lanes, promoted versions as stars, pruned lines faded
and crossed out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import networkx as nx

from swarm.errors import LineageError

__all__ = ["GitRepository", "build", "draw", "generations", "newest", "picture_path",
           "read_blobs", "read_notes"]


class GitRepository(Protocol):
    """What the phylogeny reads a lineage through (a ``LineageReader`` is one, and a store)."""

    @property
    def path(self) -> Path:
        """The lineage directory."""
        ...

    def git(self, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
        """Run one plain git command on the repository and return its stdout."""
        ...

_FORMAT = "%H%x1f%P%x1f%at%x1f%an%x1f%s%x1f%(trailers:key=Lineage-Branch,valueonly,separator=%x2c)"
_SOURCES = ("--branches", "--tags", "--glob=refs/pruned")
_REFS = ("refs/heads", "refs/tags", "refs/pruned")


def _ref_table(reader: GitRepository, patterns: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(ref, commit, subject)`` for the refs ``patterns`` match (tags peeled)."""
    fmt = "%(refname)%1f%(objectname)%1f%(*objectname)%1f%(contents:subject)"
    out = reader.git("for-each-ref", f"--format={fmt}", *patterns)
    rows = []
    for line in out.decode(errors="replace").splitlines():
        ref, obj, peeled, subject = line.split("\x1f")
        rows.append((ref, peeled or obj, subject))
    return rows


def read_blobs(reader: GitRepository, blobs: Sequence[str], what: str = "blob") -> list[bytes]:
    """The bytes of each git blob in ``blobs``, in order, read with one ``cat-file --batch``.

    Raises:
        LineageError: one is missing (naming ``what`` it is).
    """
    if not blobs:
        return []
    raw = reader.git("cat-file", "--batch", input="".join(f"{b}\n" for b in blobs).encode())
    out: list[bytes] = []
    pos = 0
    for blob in blobs:
        end = raw.index(b"\n", pos)
        header = raw[pos:end].split()
        if len(header) != 3 or header[0].decode(errors="replace") != blob:
            raise LineageError(f"{what} {blob} is missing from {reader.path} "
                               "(run swarm lineage fsck)")
        size = int(header[2])
        out.append(raw[end + 1 : end + 1 + size])
        pos = end + 2 + size
    return out


def read_notes(reader: GitRepository, namespace: str = "commits") -> dict[str, Any]:
    """Every note in ``refs/notes/<namespace>``: ``{annotated sha: decoded JSON or text}``."""
    listing = reader.git("notes", f"--ref=refs/notes/{namespace}", "list", check=False).decode()
    pairs = [ln.split() for ln in listing.splitlines() if ln.strip()]
    bodies = read_blobs(reader, [blob for blob, _ in pairs], f"refs/notes/{namespace} note")
    notes: dict[str, Any] = {}
    for (_, target), body in zip(pairs, bodies, strict=True):
        try:
            notes[target] = json.loads(body)
        except ValueError:
            notes[target] = body.decode(errors="replace")
    return notes


def build(
    reader: GitRepository, notes: str | None = "commits", *,
    refs: Sequence[str] = _REFS, sources: Sequence[str] = _SOURCES,
) -> nx.DiGraph:
    """The phylogeny of the lineage store ``reader`` reads.

    By default every commit that branches, tags and pruned lines reach; ``sources``
    (``git log`` revisions) and ``refs`` (``for-each-ref`` patterns naming the
    refs that decorate the graph) narrow it, as ``swarm.lineage.artifactview``
    does for one artifact.

    Node attributes: ``branch`` (the lane), ``time``, ``author``, ``subject``,
    ``merge`` (two or more parents), ``tags`` (promoted names), ``heads``
    (branches whose tip it is), ``pruned`` (on a retired line), ``note`` (the
    decoded git note in ``refs/notes/<notes>``, or None). Edge attribute
    ``kind``: ``line`` (same branch), ``fork`` (first parent on another branch)
    or ``merge`` (a further parent). Graph attributes: ``lanes`` (branches in
    order of first appearance), ``promoted`` ``{tag: sha}``, ``pruned``
    ``{ref: {"sha", "branch", "reason"}}``, ``branches`` ``{branch: sha}``.
    A commit without a ``Lineage-Branch`` trailer is on the lane of a ref outside
    heads, tags and pruned lines that names it (``artifacts/x/seed`` for
    ``refs/artifacts/x/seed``), else on that of the first branch reaching it.
    """
    table = _ref_table(reader, refs)
    graph = nx.DiGraph(lanes=[], promoted={}, pruned={}, branches={})
    if not table:
        return graph
    out = reader.git("log", "--topo-order", "--reverse", f"--format={_FORMAT}", *sources, "--")
    note_map = read_notes(reader, notes) if notes else {}
    for line in out.decode(errors="replace").splitlines():
        sha, parents, when, author, subject, lane = line.split("\x1f")
        plist = parents.split()
        graph.add_node(
            sha, branch=lane.split(",")[0] or None, time=int(when), author=author,
            subject=subject, merge=len(plist) > 1, tags=[], heads=[], pruned=False,
            note=note_map.get(sha), order=graph.number_of_nodes(),
        )
        for i, parent in enumerate(plist):
            graph.add_edge(parent, sha, index=i)
    _decorate(graph, table)
    return graph


def _decorate(graph: nx.DiGraph, refs: Sequence[tuple[str, str, str]]) -> None:
    for ref, sha, _ in refs:
        if not ref.startswith(("refs/heads/", "refs/tags/", "refs/pruned/")):
            _fill_lane(graph, sha, ref[len("refs/") :])
    for ref, sha, _ in refs:
        if ref.startswith("refs/heads/"):
            name = ref[len("refs/heads/") :]
            graph.graph["branches"][name] = sha
            graph.nodes[sha]["heads"].append(name)
            _fill_lane(graph, sha, name)
        elif ref.startswith("refs/tags/"):
            name = ref[len("refs/tags/") :]
            graph.graph["promoted"][name] = sha
            graph.nodes[sha]["tags"].append(name)
    for ref, sha, subject in refs:
        if ref.startswith("refs/pruned/"):
            lane = ref[len("refs/pruned/") :]
            head, dot, suffix = lane.rpartition(".")
            lane = head if dot and suffix.isdigit() else lane
            _fill_lane(graph, sha, lane)
            graph.graph["pruned"][ref] = {"sha": sha, "branch": lane, "reason": subject}
            node: str | None = sha
            while node is not None and graph.nodes[node]["branch"] == lane:
                graph.nodes[node]["pruned"] = True
                node = _first_parent(graph, node)
    gen = generations(graph)
    first: dict[str, tuple[int, int, str]] = {}
    for node, attrs in graph.nodes(data=True):
        lane = attrs["branch"] = attrs["branch"] or "?"
        key = (0 if lane == "swarm" else 1, gen[node], lane)
        first[lane] = min(first.get(lane, key), key)
    graph.graph["lanes"] = sorted(first, key=first.__getitem__)
    for parent, child, data in graph.edges(data=True):
        same = graph.nodes[parent]["branch"] == graph.nodes[child]["branch"]
        data["kind"] = "merge" if data["index"] > 0 else ("line" if same else "fork")


def _first_parent(graph: nx.DiGraph, node: str) -> str | None:
    for parent in graph.predecessors(node):
        if graph.edges[parent, node]["index"] == 0:
            return str(parent)
    return None


def _fill_lane(graph: nx.DiGraph, tip: str, lane: str) -> None:
    """Give commits without a ``Lineage-Branch`` trailer the lane of the first branch reaching them."""
    node: str | None = tip
    while node is not None and graph.nodes[node]["branch"] is None:
        graph.nodes[node]["branch"] = lane
        node = _first_parent(graph, node)


def generations(graph: nx.DiGraph) -> dict[str, int]:
    """Each commit's column: one more than its latest parent's (roots are 0)."""
    gen: dict[str, int] = {}
    for node in nx.topological_sort(graph):
        gen[node] = 1 + max((gen[p] for p in graph.predecessors(node)), default=-1)
    return gen


def draw(graph: nx.DiGraph, dest: Path, title: str | None = None, max_commits: int = 400) -> Path:
    """Draw the phylogeny to ``dest`` (PNG or SVG by suffix); return ``dest``.

    Only the newest ``max_commits`` generations' commits are drawn when there are more.

    Raises:
        LineageError: a bad suffix, nothing to draw, or ``dest`` cannot be written
            (missing folder, read-only, full).
    """
    from swarm.lineage.drawing import render

    dest = picture_path(dest)
    if graph.number_of_nodes() == 0:
        raise LineageError("the lineage store holds no commits to draw")
    gen = generations(graph)
    try:
        render(newest(graph, gen, max_commits), gen, dest, title, graph.number_of_nodes())
    except OSError as exc:
        raise LineageError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return dest


def picture_path(dest: Path | str) -> Path:
    """``dest`` as a path, checked to name a picture matplotlib writes.

    Raises:
        LineageError: its suffix is not ``.png``, ``.svg`` or ``.pdf``.
    """
    dest = Path(dest)
    if dest.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise LineageError(f"{dest}: the picture must end in .png, .svg or .pdf")
    return dest


def newest(graph: nx.DiGraph, gen: dict[str, int], max_commits: int) -> nx.DiGraph:
    """The subgraph of the newest ``max_commits`` commits by generation (a view)."""
    keep = sorted(graph.nodes, key=lambda n: (gen[n], graph.nodes[n]["order"]))[-max_commits:]
    return graph.subgraph(keep)
