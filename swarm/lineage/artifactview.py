"""One shared artifact as the lineage holds it: its files at any version, its phylogeny, its best.

The layout (docs/DESIGN.md section 7): artifact ``NAME``'s files live at
``artifacts/NAME/...`` in commits that hold nothing else; its seed is a root
commit at ``refs/artifacts/NAME/seed``; each agent's individual is the branch
``artifact/NAME/AGENT`` forked from it (mutations one parent, crossovers and
promotions two); a promoted version is tagged ``NAME-promoted-<n>``; a retired
individual's line is kept at ``refs/pruned/artifact/NAME/AGENT``; an evaluation
is a JSON note in ``refs/notes/commits`` (``{"artifact", "fitness", "status",
...}``). ``swarm lineage checkout`` and ``swarm lineage graph --artifact`` are
built on these functions; they only read, so they are safe while a swarm runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, overload

import networkx as nx

from swarm.errors import LineageError
from swarm.lineage.names import check_id, check_rev, check_tree_path, is_sha
from swarm.lineage.phylogeny import (
    GitRepository,
    build,
    generations,
    newest,
    picture_path,
    read_blobs,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from swarm.lineage.drawing import Frame

__all__ = [
    "ArtifactLineage",
    "artifact_names",
    "artifact_version",
    "artifact_files",
    "checkout_artifact",
    "artifact_phylogeny",
    "best_version",
    "fittest",
    "draw_artifact",
]

_SUBJECT = re.compile(r"round (\d+): (mutate|merge|promote)\b")
_UNSCORED = "#C8C8C8"  # a version without a usable fitness


class ArtifactLineage(GitRepository, Protocol):
    """What the artifact views read a lineage through (a ``LineageReader`` or a ``GitLineageStore``)."""

    def refs(self, prefix: str = "refs/") -> dict[str, str]:
        """A snapshot of every ref under ``prefix``: ``{ref: sha}``."""
        ...

    def resolve(self, name: str) -> str:
        """The commit sha that ``name`` names (raising ``LineageError`` when none)."""
        ...


def artifact_names(reader: ArtifactLineage) -> list[str]:
    """The artifacts the lineage holds (a seed ref or an individual's branch), sorted."""
    out = reader.git("for-each-ref", "--format=%(refname)", "refs/artifacts", "refs/heads/artifact")
    names = set()
    for ref in out.decode(errors="replace").split():
        parts = ref.split("/")
        if parts[1] == "artifacts" and len(parts) == 4 and parts[3] == "seed":
            names.add(parts[2])  # refs/artifacts/NAME/seed
        elif parts[1] == "heads" and len(parts) == 5:
            names.add(parts[3])  # refs/heads/artifact/NAME/AGENT
    return sorted(names)


def _known(reader: ArtifactLineage, name: str) -> str:
    check_id("artifact name", name)
    names = artifact_names(reader)
    if name not in names:
        known = f"known: {', '.join(names)}" if names else "it holds no artifacts"
        raise LineageError(f"no artifact named {name!r} in {reader.path} ({known})")
    return name


def _resolve(reader: ArtifactLineage, ref: str, name: str | None) -> str:
    """``ref``'s commit; with ``name``, an agent id first names that artifact's individual."""
    check_rev(ref)
    if name is not None and not is_sha(ref) and not ref.startswith("refs/"):
        for cand in (f"refs/heads/artifact/{name}/{ref}", f"refs/pruned/artifact/{name}/{ref}"):
            if cand in reader.refs(cand):
                return reader.resolve(cand)
    return reader.resolve(ref)


def _held(reader: ArtifactLineage, sha: str, ref: str) -> dict[str, list[tuple[str, str]]]:
    """``{artifact: [(blob, relative path), ...]}`` for each ``artifacts/NAME/`` in ``sha``'s tree."""
    listing = reader.git("ls-tree", "-r", "-z", "--full-tree", sha, "--", "artifacts")
    held: dict[str, list[tuple[str, str]]] = {}
    for row in listing.decode(errors="replace").split("\0"):
        if not row:
            continue
        meta, path = row.split("\t", 1)
        mode, _, blob = meta.split()
        parts = check_tree_path(path)
        if len(parts) < 3:
            continue  # a file directly in artifacts/ belongs to no artifact
        if mode not in ("100644", "100755"):
            raise LineageError(f"{path} at {ref} ({sha[:12]}) is not a regular file (mode "
                               f"{mode}); an artifact holds regular files only")
        held.setdefault(parts[1], []).append((blob, "/".join(parts[2:])))
    return held


def artifact_version(reader: ArtifactLineage, ref: str, name: str | None = None) -> tuple[str, str]:
    """``(commit sha, artifact name)`` of the artifact version ``ref`` names.

    ``ref`` is a commit, tag or branch; with ``name``, also an agent id (its
    individual, ``artifact/NAME/AGENT``, live or pruned). Without ``name`` the
    commit must hold exactly one artifact.

    Raises:
        LineageError: an unknown artifact ``name`` (naming the known ones), an
            unknown ref, or a commit that holds no artifact, not that one, or several.
    """
    if name is not None:
        _known(reader, name)
    sha = _resolve(reader, ref, name)
    held = sorted(_held(reader, sha, ref))
    if name is not None and name not in held:
        also = f" (it holds {', '.join(held)})" if held else ""
        raise LineageError(f"{ref} ({sha[:12]}) holds no artifact {name!r}{also}")
    if name is None and len(held) != 1:
        if not held:
            raise LineageError(f"{ref} ({sha[:12]}) holds no artifact (no artifacts/<name>/ "
                               f"in its tree)")
        raise LineageError(f"{ref} ({sha[:12]}) holds several artifacts ({', '.join(held)}); "
                           f"name one (--artifact NAME)")
    return sha, name or held[0]


def artifact_files(reader: ArtifactLineage, ref: str, name: str | None = None) -> dict[str, bytes]:
    """The files of the artifact at ``ref``: ``{path relative to artifacts/NAME/: bytes}``.

    See ``artifact_version`` for ``ref``, ``name`` and the errors.
    """
    sha, name = artifact_version(reader, ref, name)
    entries = _held(reader, sha, ref)[name]
    bodies = read_blobs(reader, [blob for blob, _ in entries], f"a file of {ref}:")
    return {rel: body for (_, rel), body in zip(entries, bodies, strict=True)}


def checkout_artifact(
    reader: ArtifactLineage, ref: str, dest: Path | str, name: str | None = None
) -> Path:
    """Write the artifact's files at ``ref`` under ``dest`` and return ``dest``.

    ``dest`` must not exist or be an empty directory; nothing is written outside
    it. If writing fails, what this call created (files, folders, ``dest``
    itself when it made it) is removed again.

    Raises:
        LineageError: see ``artifact_version``; ``dest`` is in the way; or a
            file or folder could not be written (naming it).
    """
    files = artifact_files(reader, ref, name)
    dest = Path(dest)
    if dest.is_symlink() or (dest.exists() and not (dest.is_dir() and not any(dest.iterdir()))):
        raise LineageError(f"{dest} exists and is not an empty directory; the checkout "
                           f"writes into a new or empty one")
    made: list[Path] = []
    target = dest
    try:
        _make_dirs(dest, made)
        for rel, data in sorted(files.items()):
            target = dest.joinpath(*check_tree_path(rel))
            _make_dirs(target.parent, made)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(target, flags, 0o644)
            made.append(target)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
    except BaseException as exc:
        _remove(made)
        if isinstance(exc, OSError):
            raise LineageError(f"cannot write {exc.filename or target}: "
                               f"{exc.strerror or exc}") from None
        raise
    return dest


def _remove(made: list[Path]) -> None:
    """Undo a checkout: remove what it made, newest first."""
    for path in reversed(made):
        # leave what cannot be removed: the error that stopped the checkout is what matters
        with contextlib.suppress(OSError):
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()


def _make_dirs(folder: Path, made: list[Path]) -> None:
    """Create ``folder`` and its missing parents, recording each one made in ``made``."""
    missing = []
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
        made.append(path)


def artifact_phylogeny(reader: ArtifactLineage, name: str) -> nx.DiGraph:
    """The family tree of artifact ``name``: every version, an edge from each parent to child.

    Versions are the commits the seed ref, the individuals' branches, the
    artifact's promoted tags and its pruned lines reach. Lanes are individuals
    (agent ids) and ``seed``. Besides ``swarm.lineage.phylogeny.build``'s
    attributes each node has ``agent`` (None for the seed), ``round`` (from the
    ``round <n>:`` subject; the seed 0), ``kind`` (``seed``, ``mutate``,
    ``merge`` or ``promote``), ``fitness`` (a float or None) and ``status``
    (from the ``commits`` note), ``promoted`` and ``pruned``. Graph attributes
    add ``artifact`` and ``seed`` (its sha, or None).

    Raises:
        LineageError: no artifact by that name (naming the known ones).
    """
    _known(reader, name)
    refs = (f"refs/artifacts/{name}", f"refs/heads/artifact/{name}",
            f"refs/pruned/artifact/{name}", f"refs/tags/{name}-promoted-*")
    graph = build(reader, "commits", refs=refs, sources=[f"--glob={r}" for r in refs])
    prefix = f"artifact/{name}/"
    for attrs in graph.nodes.values():
        lane = attrs["branch"]
        attrs["agent"] = lane[len(prefix) :] if lane.startswith(prefix) else None
    _classify(graph, name)
    seed = reader.refs(f"refs/artifacts/{name}/seed").get(f"refs/artifacts/{name}/seed")
    graph.graph.update(artifact=name, seed=seed)
    _short_lanes(graph, {f"artifacts/{name}/seed": "seed"}, prefix)
    return graph


def _classify(graph: nx.DiGraph, name: str) -> None:
    """Fill each version's ``kind``, ``round``, ``fitness``, ``status`` and ``promoted``."""
    for node, attrs in graph.nodes(data=True):
        found = _SUBJECT.match(attrs["subject"])
        parents = graph.in_degree(node)
        fallback = "seed" if parents == 0 else "merge" if parents > 1 else "mutate"
        attrs["kind"] = found.group(2) if found else fallback
        attrs["round"] = int(found.group(1)) if found else (0 if parents == 0 else None)
        attrs["fitness"], attrs["status"] = _evaluation(attrs["note"], name)
        attrs["promoted"] = bool(attrs["tags"])


def _evaluation(note: Any, name: str) -> tuple[float | None, str | None]:
    """``(fitness, status)`` from a ``commits`` note of artifact ``name``; Nones otherwise."""
    if not isinstance(note, Mapping) or note.get("artifact", name) != name:
        return None, None
    fitness, status = note.get("fitness"), note.get("status")
    if isinstance(fitness, bool) or not isinstance(fitness, int | float):
        fitness = math.nan
    return (float(fitness) if math.isfinite(fitness) else None,
            status if isinstance(status, str) else None)


def _short_lanes(graph: nx.DiGraph, fixed: Mapping[str, str], prefix: str) -> None:
    """Name lanes by agent id (and the seed's ``seed``) unless two would share a name."""
    lanes = graph.graph["lanes"]
    short = {ln: fixed.get(ln, ln[len(prefix) :] if ln.startswith(prefix) else ln) for ln in lanes}
    if len(set(short.values())) < len(short):
        return
    graph.graph["lanes"] = [short[ln] for ln in lanes]
    for attrs in graph.nodes.values():
        attrs["branch"] = short[attrs["branch"]]
    for info in graph.graph["pruned"].values():
        info["branch"] = short.get(info["branch"], info["branch"])


def fittest(graph: nx.DiGraph) -> tuple[str, float] | None:
    """The version with the highest fitness that a live individual's tip reaches, or None.

    Among equals the oldest wins (a promotion repeats its version's tree).
    """
    reach = set(graph.graph["branches"].values())
    reach |= {graph.graph["seed"]} - {None}
    for tip in list(reach):
        reach |= nx.ancestors(graph, tip)
    scored = [(attrs["fitness"], -attrs["order"], node) for node, attrs in graph.nodes(data=True)
              if node in reach and attrs["fitness"] is not None
              and attrs["status"] in ("ok", None)]
    if not scored:
        return None
    fitness, _, node = max(scored)
    return str(node), float(fitness)


def best_version(reader: ArtifactLineage, name: str) -> tuple[str, float] | None:
    """``(commit, fitness)`` of artifact ``name``'s fittest version (see ``fittest``), or None."""
    return fittest(artifact_phylogeny(reader, name))


@overload
def draw_artifact(graph: nx.DiGraph, out: Path | str, title: str | None = None, *,
                  max_commits: int = 400) -> Path: ...
@overload
def draw_artifact(graph: nx.DiGraph, out: Axes, title: str | None = None, *,
                  max_commits: int = 400) -> Axes: ...
def draw_artifact(graph: nx.DiGraph, out: Path | str | Axes, title: str | None = None, *,
                  max_commits: int = 400) -> Path | Axes:
    """Draw an ``artifact_phylogeny`` into a picture file (.png, .svg, .pdf) or onto ``Axes``.

    One lane per individual, merges as curves, each version coloured by its
    fitness (a colour bar beside; grey: none) with the value written beside it,
    promoted versions as stars, pruned lines faded. Only the newest
    ``max_commits`` generations are drawn when there are more.

    Returns the picture's path, or the ``Axes`` drawn on.

    Raises:
        LineageError: nothing to draw, a bad suffix, or the file cannot be written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from swarm.lineage.drawing import frame

    if graph.number_of_nodes() == 0:
        raise LineageError("the artifact has no versions to draw")
    gen = generations(graph)
    shown = newest(graph, gen, max_commits)
    where = frame(shown, gen)
    if not isinstance(out, str | os.PathLike):
        _draw_on(out, graph, shown, where, title)
        return out
    dest = picture_path(out)
    width, height = where.size()
    fig = Figure(figsize=(width + 1.4, height + 0.4), dpi=110)
    FigureCanvasAgg(fig)
    _draw_on(fig.add_subplot(), graph, shown, where, title)
    fig.tight_layout()
    try:
        fig.savefig(dest)
    except OSError as exc:
        raise LineageError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return dest


def _draw_on(
    ax: Any, graph: nx.DiGraph, shown: nx.DiGraph, where: Frame, title: str | None
) -> None:
    """Fitness colours, values and colour bar, title and legend on ``ax``."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from swarm.lineage.drawing import add_legend, plot

    values = [a["fitness"] for a in shown.nodes.values() if a["fitness"] is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = 0.0 if high > low else max(abs(high) * 0.05, 0.5)
    mappable = ScalarMappable(Normalize(low - pad, high + pad), "viridis")
    face = {n: _UNSCORED if a["fitness"] is None else mappable.to_rgba(a["fitness"])
            for n, a in shown.nodes(data=True)}
    plot(ax, shown, where, face)
    for node, attrs in shown.nodes(data=True):
        text = f"{attrs['fitness']:.3g}" if attrs["fitness"] is not None else attrs["status"]
        if text:
            x, y = where.pos[node]
            ax.text(x, y - 0.2, text, ha="center", va="top", fontsize=7, color="#333333",
                    alpha=0.5 if attrs["pruned"] else 1.0, zorder=5)
    ax.figure.colorbar(mappable, ax=ax, label="fitness", fraction=0.035, pad=0.01)
    best = fittest(graph)
    agents = {a["agent"] for a in graph.nodes.values()} - {None}
    where_best = f"best {best[1]:.4g} at {best[0][:10]}" if best else "no version scored yet"
    ax.set_title(title or f"artifact {graph.graph['artifact']}: {graph.number_of_nodes()} "
                          f"versions, {len(agents)} individuals, {where_best}",
                 loc="left", fontsize=12, fontweight="bold", color="#333333")
    add_legend(ax)
