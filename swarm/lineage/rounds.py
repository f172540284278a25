"""Which commit of a line holds its files "as of round ``n``".

The recorder (``swarm.runtime.recorder``) starts the subject of every commit it
makes with ``round <n>: `` (``round 3: a trained on its local data ...``), on
agent branches and on ``swarm`` alike. A line is walked along its first
parents (its line of descent: a merge's other parents are the partners' lines),
and the commit as of round ``n`` is the newest one whose round is at most
``n``: a round in which the agent committed nothing leaves its files as the
round before left them. Commits whose subject names no round (made by hand or
by another tool) cannot be placed in time and are passed over.

The newest round of the lineage is ``rounds/latest.json`` on ``swarm``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from swarm.errors import LineageError
from swarm.lineage.repo import LATEST_ROUND_PATH, SWARM_BRANCH
from swarm.lineage.store import LineageView

__all__ = ["RoundCommit", "round_of", "line_rounds", "commit_at_round", "first_with",
           "newest_round", "check_round"]

_ROUND = re.compile(r"round (\d+): ")


@dataclass(frozen=True)
class RoundCommit:
    """A commit of a line and the round its subject names."""

    round: int
    commit: str
    subject: str


def round_of(message: str) -> int | None:
    """The round a recorder commit's message names (``round 3: ...`` -> 3), or None."""
    match = _ROUND.match(message)
    return int(match.group(1)) if match else None


def line_rounds(view: LineageView, ref: str) -> list[RoundCommit]:
    """The commits of ``ref``'s line of descent that name a round, newest first."""
    out = []
    for entry in view.log(ref):
        subject = entry.message.splitlines()[0] if entry.message else ""
        rnd = round_of(subject)
        if rnd is not None:
            out.append(RoundCommit(rnd, entry.commit, subject))
    return out


def commit_at_round(line: Sequence[RoundCommit], n: int | None) -> RoundCommit | None:
    """The newest commit of ``line`` (newest first) of round ``n`` or before; None: none yet.

    ``n`` None means the newest commit.
    """
    for commit in line:
        if n is None or commit.round <= n:
            return commit
    return None


def first_with(view: LineageView, line: Sequence[RoundCommit], path: str) -> RoundCommit | None:
    """The oldest commit of ``line`` (newest first) whose tree holds ``path``, or None.

    A file a line once holds stays in its later trees (each commit's tree is its
    first parent's with the round's files on top), so a binary search finds it.
    """
    oldest_first = list(reversed(line))
    lo, hi = 0, len(oldest_first)
    while lo < hi:
        mid = (lo + hi) // 2
        if _has(view, oldest_first[mid].commit, path):
            hi = mid
        else:
            lo = mid + 1
    return oldest_first[lo] if lo < len(oldest_first) else None


def newest_round(view: LineageView) -> int | None:
    """The newest committed round (``rounds/latest.json`` on ``swarm``), or None: no round yet."""
    if f"refs/heads/{SWARM_BRANCH}" not in view.refs(f"refs/heads/{SWARM_BRANCH}"):
        return None
    try:
        record = view.show_json(SWARM_BRANCH, LATEST_ROUND_PATH)
    except (LineageError, ValueError):
        return None
    rnd = record.get("round") if isinstance(record, dict) else None
    return rnd if isinstance(rnd, int) else None


def check_round(view: LineageView, n: int | None) -> int | None:
    """The newest round; ``n`` is refused when it lies past it.

    Raises:
        LineageError: ``n`` is negative or past the newest round (or there is no round).
    """
    newest = newest_round(view)
    if n is None:
        return newest
    if n < 0:
        raise LineageError(f"round {n} is not a round (rounds count from 0)")
    if newest is None:
        raise LineageError(f"{view.path} holds no rounds yet (no {LATEST_ROUND_PATH} on "
                           f"{SWARM_BRANCH})")
    if n > newest:
        raise LineageError(f"round {n} is past the newest round of {view.path} ({newest})")
    return newest


def _has(view: LineageView, commit: str, path: str) -> bool:
    try:
        view.show(commit, path)
    except LineageError:
        return False
    return True
