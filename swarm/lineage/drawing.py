"""Matplotlib rendering of a phylogeny graph (see ``swarm.lineage.phylogeny.draw``).

Lanes are branches (one row each, coloured), columns are generations. Commits
on a lane are joined by a thick line; forks and merges are curves from the
parent's lane; merges are diamonds, promoted versions gold stars with their tag
name, pruned lines faded and ended with a red cross. ``frame`` lays a graph out
and ``plot`` draws it on any matplotlib ``Axes`` (``face`` recolours the
commits, as the artifact picture does by fitness); ``render`` makes the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath

__all__ = ["Frame", "add_legend", "frame", "plot", "render"]

_PALETTE = [
    "#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3",
    "#8C8C8C", "#CCB974", "#64B5CD", "#2F4B7C", "#A05195", "#F95D6A", "#00A6A6",
]
_SWARM_COLOR = "#555555"


def _lane_color(lane: str, index: int) -> str:
    return _SWARM_COLOR if lane == "swarm" else _PALETTE[index % len(_PALETTE)]


def _curve(x0: float, y0: float, x1: float, y1: float) -> MplPath:
    mid = x0 + max(0.5, (x1 - x0) * 0.5)
    verts = [(x0, y0), (mid, y0), (mid, y1), (x1, y1)]
    codes = [MplPath.MOVETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4]
    return MplPath(verts, codes)


@dataclass(frozen=True)
class Frame:
    """Where each commit sits: ``lanes`` top to bottom, ``pos`` ``{sha: (x, y)}``, ``span`` columns."""

    lanes: list[str]
    pos: dict[str, tuple[float, float]]
    span: int
    first: int

    def size(self) -> tuple[float, float]:
        """A figure size (inches) that fits the columns and lanes."""
        width = min(max(8.0, 3.2 + self.span * 0.42), 60.0)
        return width, min(max(2.8, 1.4 + len(self.lanes) * 0.55), 40.0)

    def scale(self) -> float:
        """How much smaller than full size markers and lines are drawn (many columns: smaller)."""
        return max(0.35, min(1.0, 40.0 / max(self.span, 1)))


def frame(graph: nx.DiGraph, gen: dict[str, int]) -> Frame:
    """Lay out ``graph``'s commits: one row per lane that holds one, a column per generation."""
    nodes = list(graph.nodes)
    lanes = [ln for ln in graph.graph["lanes"] if any(graph.nodes[n]["branch"] == ln for n in nodes)]
    row = {lane: i for i, lane in enumerate(lanes)}
    x0 = min(gen[n] for n in nodes)
    pos: dict[str, tuple[float, float]] = {
        n: (gen[n] - x0, -row[graph.nodes[n]["branch"]]) for n in nodes
    }
    return Frame(lanes, pos, int(max(x for x, _ in pos.values())) + 1, x0)


def plot(ax: Any, graph: nx.DiGraph, where: Frame, face: dict[str, Any] | None = None) -> None:
    """Draw lanes, edges and commits of ``graph`` on ``ax``; ``face`` overrides commits' colours."""
    lanes, span = where.lanes, where.span
    color = {lane: _lane_color(lane, i) for i, lane in enumerate(lanes)}
    pruned_lanes = {p["branch"]: p["reason"] for p in graph.graph["pruned"].values()}
    _draw_lanes(ax, lanes, color, pruned_lanes)
    _draw_edges(ax, graph, where.pos, color, where.scale())
    _draw_nodes(ax, graph, where.pos, face or {n: color[graph.nodes[n]["branch"]]
                                             for n in graph.nodes}, where.scale())
    ax.set_xlim(-0.7, span + 0.8)
    ax.set_ylim(-len(lanes) + 0.4, 0.9)
    step = max(1, span // 12)
    ax.set_xticks(range(0, span, step), [str(where.first + t) for t in range(0, span, step)])
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("generation", color="#666666")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def render(
    graph: nx.DiGraph, gen: dict[str, int], dest: Path, title: str | None, total: int
) -> None:
    """Draw ``graph`` (commits to show) with columns ``gen`` into ``dest``."""
    where = frame(graph, gen)
    fig = Figure(figsize=where.size(), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    plot(ax, graph, where)
    merges = sum(1 for n in graph.nodes if graph.nodes[n]["merge"])
    n = graph.number_of_nodes()
    shown = f"{total}" if total == n else f"newest {n} of {total}"
    ax.set_title(
        title or f"swarm lineage: {shown} commits, {len(where.lanes)} lanes, {merges} merges",
        loc="left", fontsize=12, fontweight="bold", color="#333333",
    )
    add_legend(ax)
    fig.tight_layout()
    fig.savefig(dest)


def _draw_lanes(ax: Any, lanes: list[str], color: dict[str, str], pruned: dict[str, str]) -> None:
    for i in range(0, len(lanes), 2):
        ax.axhspan(-i - 0.5, -i + 0.5, color="#F4F5F7", zorder=0, lw=0)
    labels = [ln if ln not in pruned else f"{ln}\npruned: {pruned[ln]}" for ln in lanes]
    ax.set_yticks([-i for i in range(len(lanes))], labels, fontsize=9, fontweight="bold")
    for tick, lane in zip(ax.get_yticklabels(), lanes, strict=True):
        tick.set_color(color[lane])
        if lane in pruned:
            tick.set_alpha(0.5)
            tick.set_fontstyle("italic")


def _draw_edges(
    ax: Any, graph: nx.DiGraph, pos: dict[str, tuple[float, float]], color: dict[str, str],
    scale: float,
) -> None:
    for parent, child, data in graph.edges(data=True):
        (xa, ya), (xb, yb) = pos[parent], pos[child]
        lane = graph.nodes[parent]["branch"]
        faded = graph.nodes[child]["pruned"]
        alpha = 0.3 if faded else 0.85
        if data["kind"] == "line":
            ax.plot([xa, xb], [ya, yb], color=color[lane], lw=3.2 * scale + 0.8, alpha=alpha,
                    solid_capstyle="round", zorder=1, ls="--" if faded else "-")
        else:
            style = (0, (3, 2)) if data["kind"] == "merge" else "-"
            ax.add_patch(PathPatch(_curve(xa, ya, xb, yb), fill=False, edgecolor=color[lane],
                                   lw=2.0 * scale + 0.5, alpha=alpha, ls=style, zorder=1))


def _draw_nodes(
    ax: Any, graph: nx.DiGraph, pos: dict[str, tuple[float, float]], face: dict[str, Any],
    scale: float,
) -> None:
    for node, attrs in graph.nodes(data=True):
        x, y = pos[node]
        c = [face[node]]
        alpha = 0.4 if attrs["pruned"] else 1.0
        if attrs["merge"]:
            ax.scatter([x], [y], s=150 * scale, marker="D", c=c, edgecolors="#222222",
                       linewidths=1.4, zorder=3, alpha=alpha)
        else:
            ax.scatter([x], [y], s=90 * scale, marker="o", c=c, edgecolors="white",
                       linewidths=1.3, zorder=3, alpha=alpha)
        if attrs["tags"]:
            ax.scatter([x], [y], s=520 * scale, marker="*", c="#F2C12E", edgecolors="#7A5C00",
                       linewidths=1.0, zorder=4)
            _label(ax, x, y + 0.3, ", ".join(attrs["tags"]))
    for info in graph.graph["pruned"].values():
        if info["sha"] in pos:
            x, y = pos[info["sha"]]
            ax.scatter([x + 0.45], [y], s=110 * scale, marker="X", c="#D62728", zorder=4)


def _label(ax: Any, x: float, y: float, text: str) -> None:
    t = ax.text(x, y, text, ha="center", va="bottom", fontsize=8, color="#5A4300", zorder=5)
    t.set_bbox({"boxstyle": "round,pad=0.25", "fc": "#FFF6D5", "ec": "#E0B400", "lw": 0.8})


def add_legend(ax: Any) -> None:
    """The markers' legend, in one row above the plot's top right corner."""
    ax.legend(handles=_legend(), loc="upper right", bbox_to_anchor=(1.0, 1.18), ncol=6,
              frameon=False, fontsize=8)


def _legend() -> list[Line2D]:
    def mark(marker: str, face: str, edge: str, label: str, size: float = 8) -> Line2D:
        return Line2D([], [], marker=marker, ls="", markerfacecolor=face, markeredgecolor=edge,
                      markersize=size, label=label)

    return [
        mark("o", "#4C72B0", "white", "commit"),
        mark("D", "#4C72B0", "#222222", "merge", 7),
        mark("*", "#F2C12E", "#7A5C00", "promoted", 13),
        mark("X", "#D62728", "#D62728", "pruned"),
        Line2D([], [], color="#777777", lw=2, label="fork"),
        Line2D([], [], color="#777777", lw=2, ls=(0, (3, 2)), label="merged in"),
    ]
