"""A round's agent messages as the lineage keeps them (``messages/<nnnnn>.json`` on ``swarm``).

The recorder writes ``{"round", "total", "kept", "policy", "messages": [...]}``
(each message a ``LogEntry``) unless ``lineage.messages`` is ``none``.
``read_messages`` reads and checks one round's file, ``select`` keeps the
messages of an agent (either side), a kind or one exchange, and ``threaded``
puts each answer under the message it answers (its ``correlation_id``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgspec

from swarm.errors import LineageError
from swarm.lineage.repo import SWARM_BRANCH, messages_path, round_path
from swarm.lineage.rounds import check_round
from swarm.lineage.store import LineageView
from swarm.wire.messages import LogEntry

__all__ = ["MessageLog", "read_messages", "select", "threaded"]


class MessageLog(msgspec.Struct, frozen=True, kw_only=True):
    """One round's kept messages: ``kept`` of ``total``, chosen by ``policy``."""

    round: int
    total: int
    kept: int
    policy: str
    messages: list[LogEntry] = []


def read_messages(view: LineageView, rnd: int) -> MessageLog:
    """Round ``rnd``'s message log.

    Raises:
        LineageError: no such round, a round that kept no log (``lineage.messages:
            none``), or a file that is not a message log.
    """
    check_round(view, rnd)
    path = messages_path(rnd)
    try:
        raw = view.show(SWARM_BRANCH, path)
    except LineageError:
        raise LineageError(f"round {rnd} kept no message log in {view.path} (no {path}: "
                           f"lineage.messages: none{_counted(view, rnd)})") from None
    try:
        return msgspec.json.decode(raw, type=MessageLog)
    except msgspec.DecodeError as exc:
        raise LineageError(f"{path} in {view.path} is not a message log ({exc})") from None


def _counted(view: LineageView, rnd: int) -> str:
    try:
        record = view.show_json(SWARM_BRANCH, round_path(rnd))
    except (LineageError, ValueError):
        return ""
    count = record.get("agent_messages") if isinstance(record, dict) else None
    return f"; the round's record counts {count} agent message(s)" if count is not None else ""


def select(messages: Sequence[LogEntry], agent: str | None = None, kind: str | None = None,
           correlation: str | None = None) -> list[LogEntry]:
    """The messages sent or received by ``agent``, of ``kind``, and of the exchange ``correlation``.

    An exchange is the message whose id is ``correlation`` and every message
    that names it as its ``correlation_id`` (the answers).
    """
    return [m for m in messages
            if (agent is None or agent in (m.sender, m.recipient))
            and (kind is None or m.kind == kind)
            and (correlation is None or correlation in (m.msg_id, m.correlation_id))]


def threaded(messages: Sequence[LogEntry]) -> Iterator[tuple[int, LogEntry]]:
    """``(depth, message)`` in time order, each answer right under what it answers.

    An answer whose question is not among ``messages`` stands at depth 0.
    """
    order = sorted(range(len(messages)), key=lambda i: (messages[i].at, i))
    ids = {messages[i].msg_id for i in order}
    answers: dict[str, list[int]] = {}
    roots = []
    for i in order:
        parent = messages[i].correlation_id
        if parent is not None and parent in ids and parent != messages[i].msg_id:
            answers.setdefault(parent, []).append(i)
        else:
            roots.append(i)
    done: set[int] = set()
    for start in [*roots, *order]:  # then what a cycle of answers left out
        stack = [(0, start)]
        while stack:
            depth, i = stack.pop()
            if i in done:
                continue
            done.add(i)
            yield depth, messages[i]
            stack.extend((depth + 1, k) for k in reversed(answers.get(messages[i].msg_id, [])))
