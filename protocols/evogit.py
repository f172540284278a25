"""``evogit``: LLM agents evolving a shared artifact through a git phylogeny, a person steering.

After EvoGit. The population is one individual per agent, each a branch of the
lineage (``swarm.lineage.artifacts``) forked from the artifact's seed commit.
Every round each ``evolver`` agent **mutates** its individual: the
coordinator's evolution service (``swarm.protocols.evolution``) shows it one
random section of one mutable file (``section_lines`` long at most, marked,
with ``context_lines`` around it and its parent's evaluation), the agent's LLM
answers with the edited section and a commit message as structured output
(``Edit``), and the service commits the child, evaluates it (an evaluator
registered by name, cached per tree in git notes) and keeps it only if it is
fitter than its parent ((1+1) selection). A malformed or oversize answer is
counted and never committed.

Every ``crossover_every`` rounds the protocol pairs individuals (the
matchmaker's choice, rewarded with the child's fitness gain, or at random)
and each pair's student **crosses over** with its teacher: a real three-way
git merge, each conflicting hunk resolved by a seeded coin; the child replaces
the student's individual only if it beats both parents.

``human_every: N`` pauses the run after every N rounds until a person answers
(``swarm artifact promote RUN REF``, ``continue``, ``prune``) or, with
``human_policy: promote_best``, promotes the fittest version itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import numpy as np

from swarm.agents.base import Agent
from swarm.agents.registry import role
from swarm.protocols.base import Protocol, ServiceContext, orient
from swarm.protocols.evotypes import (
    Crossover,
    Edit,
    EvogitSettings,
    Mutation,
    MutationTask,
    Section,
    Selected,
    Steer,
    Steered,
)
from swarm.protocols.registry import protocol
from swarm.settings import Settings
from swarm.wire.messages import AgentReport, PairOutcome

if TYPE_CHECKING:
    from swarm.agents.context import AgentContext
    from swarm.protocols.evolution import Evolution

__all__ = ["Crossover", "Edit", "Evogit", "EvogitSettings", "Evolver", "EvolverSettings",
           "Mutation",
           "MutationTask", "Section", "Selected", "Steer", "Steered"]

log = logging.getLogger(__name__)


class EvolverSettings(Settings, frozen=True):
    """The ``evolver`` role's settings (``agents[*].settings``): how its LLM samples an edit."""

    max_tokens: Annotated[int, msgspec.Meta(ge=8, le=8192)] = 256
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] = 0.8


@protocol("evogit")
class Evogit(Protocol):
    """Mutations in the local step, crossovers in the exchange; the service keeps the lineage."""

    settings_schema = EvogitSettings

    def service(self, ctx: ServiceContext) -> Evolution:
        from swarm.protocols.evolution import Evolution

        return Evolution(self.settings, ctx)

    def pairs(self, round: int, reports: Mapping[str, AgentReport],
              profiles: Mapping[str, np.ndarray], matchmaker: Any,
              max_pairs: int) -> list[tuple[str, str]]:
        every = self.settings.crossover_every
        if not every or (round + 1) % every or len(reports) < 2:
            return []
        if self.settings.crossover == "matchmaker":
            chosen = matchmaker.select(profiles, max_pairs, round)
            return [orient(pair, reports) for pair in chosen]
        rng = np.random.default_rng([round, len(reports)])
        agents = sorted(reports)
        order = [agents[i] for i in rng.permutation(len(agents))]
        return [(order[i], order[i + 1]) for i in range(0, 2 * min(max_pairs, len(order) // 2), 2)]

    async def exchange(self, student: Agent, teacher: str, teacher_adapter: str | None,
                       teacher_skills: Sequence[str], ctx: AgentContext) -> PairOutcome:
        done = await ctx.ask_protocol(Crossover(theirs=teacher), timeout=_ASK_S)
        before = done.parent_fitness if done.parent_fitness is not None else 0.0
        after = done.fitness if done.fitness is not None else before
        return PairOutcome(student=student.id, teacher=teacher, before=_unit(before),
                           after=_unit(after), accepted=done.accepted)


_ASK_S = 3600.0  # an evaluation may queue behind others


def _unit(x: float) -> float:
    """A fitness as a round score (the rounds' scores are in [0, 1])."""
    return float(min(max(x, 0.0), 1.0))


@role("evolver")
class Evolver(Agent):
    """Mutates its individual of the artifact with its LLM, each round."""

    settings_schema = EvolverSettings
    trains = False
    learns = False

    async def local_update(self, ctx: AgentContext) -> AgentReport:
        task = await ctx.ask_protocol(MutationTask(), timeout=_ASK_S)
        metrics: dict[str, float] = {"invalid": 0.0, "accepted": 0.0}
        if task.parent:
            edit = await self.propose(ctx, task)
            if edit is None:
                metrics["invalid"] = 1.0
            else:
                done = await ctx.ask_protocol(Mutation(
                    parent=task.parent, path=task.path, start=task.start, end=task.end,
                    section="".join(f"{line}\n" for line in edit.lines),
                    message=edit.message), timeout=_ASK_S)
                metrics["invalid"] = float(done.status == "invalid")
                metrics["accepted"] = float(done.accepted)
                fitness = done.fitness if done.accepted else done.parent_fitness
                if fitness is not None:
                    self.score = _unit(fitness)
                    metrics["fitness"] = float(fitness)
        self.history.append(self.score)
        return AgentReport(agent_id=self.id, score=self.score, metrics=metrics)

    async def propose(self, ctx: AgentContext, task: Section) -> Edit | None:
        """The mutation: the LLM's edit of ``task``'s section, or None (a malformed answer).

        A subclass may propose otherwise (tests use a scripted operator).
        """
        from swarm.errors import SwarmError

        settings: EvolverSettings = self.settings or EvolverSettings()
        notes = f"Its evaluation: fitness {task.fitness}. {task.notes}".strip()
        chat = [{"role": "system", "content": (
                    "You improve one section of a file. Answer with JSON: {\"lines\": the "
                    "section's lines rewritten, \"message\": a one-line commit message}.")},
                {"role": "user", "content": (
                    f"File {task.path}, lines {task.start}-{task.end}.\n{notes}\n\n"
                    f"{task.before}<<<SECTION\n{task.lines}SECTION>>>\n{task.after}\n"
                    "Rewrite the section so that the file scores higher.")}]
        try:
            edit: Edit = await ctx.generate(chat, schema=edit_schema(task),
                                            max_tokens=settings.max_tokens,
                                            temperature=settings.temperature)
        except SwarmError as exc:  # malformed or cut off: counted (the report's "invalid")
            log.info("%s: no edit from the LLM: %s", self.id, str(exc)[:200])
            return None
        return Edit(lines=list(edit.lines), message=edit.message)


def edit_schema(task: Section) -> Any:
    """The structured output a mutation answers with: lines (each held to the task's pattern,
    at most ``max_lines``) and a message; no other keys."""
    pattern = f"^(?:{task.pattern})$" if task.pattern else None  # JSON Schema's are unanchored
    line = Annotated[str, msgspec.Meta(max_length=min(task.max_bytes, 4096), pattern=pattern)]
    return msgspec.defstruct(
        "Edit", [("lines", Annotated[list[line], msgspec.Meta(max_length=task.max_lines)]),
                 ("message", Annotated[str, msgspec.Meta(max_length=200)])],
        forbid_unknown_fields=True)
