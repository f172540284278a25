"""Matplotlib rendering of a knowledge graph (see ``swarm.lineage.kgview.draw_graph``).

The hierarchy is drawn in rows, top to bottom (goals, subgoals, then the steps
and facts under them), each level its own colour; a row's nodes are ordered by
where their parents stand, so edges cross little. Like the phylogeny's picture (``swarm.lineage.drawing``), it
draws on a ``Figure`` with the Agg canvas: no pyplot, no global state.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from swarm.knowledge import LEVELS

__all__ = ["render", "layout"]

_COLORS = {"goal": "#C44E52", "subgoal": "#DD8452", "step": "#4C72B0", "fact": "#55A868"}
_OTHER = "#8C8C8C"
_LABELLED = 300  # past this many nodes the picture shows no names


def layout(graph: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """Each node's ``(x, y)``: ``y`` its row (0, -1, ...), ``x`` spread along the row.

    A node stands one row below its lowest parent; a node without a parent in its
    level's row (goals 0, subgoals 1, steps 2, facts 3). Steps and facts under one
    subgoal share a row, so no edge passes through a row between its ends.
    """
    depth: dict[str, int] = {}
    for node in nx.topological_sort(graph):  # edges go down the hierarchy: no cycles
        parents = [depth[p] for p in graph.predecessors(node)]
        level = graph.nodes[node].get("level")
        depth[node] = max(parents) + 1 if parents else (
            LEVELS.index(level) if level in LEVELS else 0)
    rows: dict[int, list[str]] = {}
    for node, d in depth.items():
        rows.setdefault(d, []).append(node)
    width = max(len(r) for r in rows.values())
    pos: dict[str, tuple[float, float]] = {}
    for y, d in enumerate(sorted(rows)):  # rows no node stands in are left out
        ordered = sorted(rows[d], key=lambda n: (_barycentre(graph, n, pos), n))
        step = width / len(ordered)
        for i, node in enumerate(ordered):
            pos[node] = ((i + 0.5) * step - 0.5, -float(y))
    return pos


def _barycentre(graph: nx.DiGraph, node: str, pos: dict[str, tuple[float, float]]) -> float:
    xs = [pos[p][0] for p in graph.predecessors(node) if p in pos]
    return sum(xs) / len(xs) if xs else float("inf")


def render(graph: nx.DiGraph, dest: Path, title: str) -> None:
    """Draw ``graph`` (a ``KnowledgeGraph.graph``) into ``dest``."""
    pos = layout(graph)
    width = max(x for x, _ in pos.values()) + 1
    rows = int(-min(y for _, y in pos.values())) + 1
    fig = Figure(figsize=(min(max(6.0, 2.0 + width * 1.2), 60.0),
                          min(max(3.0, 1.4 + rows * 1.5), 20.0)), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for parent, child in graph.edges():
        (xa, ya), (xb, yb) = pos[parent], pos[child]
        ax.plot([xa, xb], [ya, yb], color="#9A9A9A", lw=1.2, alpha=0.8, zorder=1)
    names = graph.number_of_nodes() <= _LABELLED
    size = 260 if names else 40
    for node, (x, y) in pos.items():
        color = _COLORS.get(str(graph.nodes[node].get("level")), _OTHER)
        ax.scatter([x], [y], s=size, c=color, edgecolors="white", linewidths=1.2, zorder=2)
        if names:
            label = node if len(node) <= 18 else node[:17] + "…"
            ax.text(x, y - 0.18, label, ha="center", va="top", fontsize=8, color="#333333",
                    zorder=3, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                    "alpha": 0.85})
    ax.set_xlim(-0.8, width - 0.2)
    ax.set_ylim(-rows + 0.4, 0.6)
    ax.set_axis_off()
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold", color="#333333")
    shown = {str(a.get("level")) for _, a in graph.nodes(data=True)}
    handles = [Line2D([], [], marker="o", ls="", markerfacecolor=_COLORS[lv],
                      markeredgecolor="white", markersize=9, label=lv)
               for lv in LEVELS if lv in shown]
    ax.legend(handles=handles, loc="upper right", bbox_to_anchor=(1.0, 1.12), ncol=4,
              frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(dest)
