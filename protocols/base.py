"""The protocol hooks. The coordinator owns the round loop; a protocol answers its hooks.

A round is: every agent's local step (``Agent.local_update``), then the
protocol's ``pairs`` hook chooses ``(teacher, student)`` pairs from the
reports (``AgentReport``, usually through the matchmaker; a student may have
several teachers), then each student runs the protocol's ``exchange_group``
hook on its host with all its teachers (default: ``exchange`` with each in
turn), and each outcome's reward (``PairOutcome.reward``) goes back to the
matchmaker. A protocol that exchanges nothing returns no pairs.

A protocol's settings are the config's ``protocol`` keys other than ``name``:
it declares their schema as ``settings_schema`` (a ``msgspec.Struct`` class,
or ``None`` for none), the config validates them against it, and the
protocol gets them as ``self.settings``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from typing import Protocol as Interface

import msgspec
import numpy as np

if TYPE_CHECKING:
    from swarm.agents.base import Agent, AgentReport, PairOutcome
    from swarm.agents.context import AgentContext
    from swarm.lineage.store import LineageStore
    from swarm.wire.messages import GenOutput, GenRequest

__all__ = ["Lesson", "Protocol", "ProtocolService", "ServiceContext", "orient"]


@dataclass(frozen=True)
class Lesson:
    """One teacher of a student in a round: its id, its adapter, its skills (from the config)."""

    teacher: str
    adapter: str | None
    skills: tuple[str, ...] = ()


@dataclass
class ServiceContext:
    """What the coordinator hands a protocol's service: the lineage (it is its one writer),
    the swarm's agents, the seed, the rounds, and the model (``generate``: requests to the
    swarm's model server, as ``ModelClient.generate``; ``None`` where there is none)."""

    store: LineageStore
    agents: list[str]
    seed: int
    rounds: int
    generate: Callable[[Sequence[GenRequest]], Awaitable[list[GenOutput]]] | None = None


class ProtocolService(Interface):
    """A protocol's coordinator-side part, which agents reach with ``ctx.ask_protocol``.

    The coordinator calls ``start`` before the first round, ``handle`` for each
    message an agent (or a person: a sender ``user:<name>``) sends it (each in
    a task of its own: a slow answer holds up nothing), ``after_round`` after
    each committed round (it may wait, for a person) and ``close`` at the end.
    """

    async def start(self, round: int) -> None: ...

    async def handle(self, sender: str, msg: msgspec.Struct) -> msgspec.Struct | None: ...

    def round_record(self, round: int) -> dict[str, Any]: ...

    async def after_round(self, round: int) -> None: ...

    def close(self) -> None: ...


class Protocol:
    """Base of round protocols; subclasses override ``pairs`` and ``exchange``."""

    name: ClassVar[str] = ""
    settings_schema: ClassVar[type[msgspec.Struct] | None] = None

    def __init__(self, settings: Any, rounds: int = 0) -> None:
        """``settings``: an instance of ``settings_schema`` (the config's ``protocol.settings``);
        ``rounds``: the run's number of rounds (``swarm.rounds``; 0: not known)."""
        self.settings = settings
        self.rounds = rounds

    def service(self, ctx: ServiceContext) -> ProtocolService | None:
        """The protocol's coordinator-side service, or ``None`` (the default: it has none)."""
        return None

    def profile_dim(self) -> int | None:
        """The length of the profiles agents publish themselves (``ctx.set_profile``), or
        ``None`` (the default): the coordinator builds them from the round reports."""
        return None

    def pairs(
        self,
        round: int,
        reports: Mapping[str, AgentReport],
        profiles: Mapping[str, np.ndarray],
        matchmaker: Any,
        max_pairs: int,
    ) -> list[tuple[str, str]]:
        """Return ``(teacher, student)`` pairs for this round (default: none)."""
        return []

    async def exchange(
        self,
        student: Agent,
        teacher: str,
        teacher_adapter: str | None,
        teacher_skills: Sequence[str],
        ctx: AgentContext,
    ) -> PairOutcome:
        """Let ``student`` take knowledge from ``teacher`` on the student's host.

        ``ctx`` is the student's agent context (its model, its peers, its graph).

        ``teacher_skills`` are the teacher's skills as the config gives them (the
        host derives them, as the coordinator does: no message carries them).
        """
        return await student.learn_from(teacher, teacher_adapter, ctx)

    async def exchange_group(
        self, student: Agent, lessons: Sequence[Lesson], ctx: AgentContext, round: int
    ) -> list[PairOutcome]:
        """Let ``student`` learn from all its teachers of ``round`` (the pairs naming it).

        One ``PairOutcome`` per lesson. Default: ``exchange`` with each teacher in
        turn, each from what the one before left.
        """
        return [await self.exchange(student, lesson.teacher, lesson.adapter, lesson.skills, ctx)
                for lesson in lessons]


def orient(pair: tuple[str, str], reports: Mapping[str, AgentReport]) -> tuple[str, str]:
    """The teacher/student rule (``swarm.matching.matchmaker.orient_by_score``) over round reports."""
    from swarm.matching.matchmaker import orient_by_score

    return orient_by_score(pair, {agent: reports[agent].score for agent in pair})
