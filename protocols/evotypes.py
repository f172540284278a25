"""The evogit protocol's messages (agent <-> its coordinator-side service) and settings.

``swarm.protocols.evogit`` (the protocol and its ``evolver`` role) and
``swarm.protocols.evolution`` (the service) both use them; both re-export them.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from swarm.agents.talk import message
from swarm.sandbox import SandboxLimits
from swarm.settings import Name, Settings

__all__ = ["Crossover", "Edit", "EvogitSettings", "Mutation", "MutationTask", "Section",
           "Selected", "Steer", "Steered"]

_Text = Annotated[str, msgspec.Meta(max_length=1 << 20)]


@message("EvogitMutationTask")
class MutationTask(msgspec.Struct, frozen=True):
    """Agent -> service: what should I mutate?"""


@message("EvogitSection")
class Section(msgspec.Struct, frozen=True):
    """The section to mutate: ``lines`` of ``path`` (1-based, ``start`` to ``end``)."""

    parent: str = ""  # empty: nothing to mutate (no individual, or the run is over)
    path: str = ""
    start: int = 0
    end: int = 0
    before: _Text = ""  # the context lines above the section
    lines: _Text = ""
    after: _Text = ""  # and below it
    fitness: float | None = None  # the parent's
    notes: _Text = ""  # the parent's evaluation detail
    pattern: str = ""  # a regex each line of the rewritten section must match (empty: any)
    max_bytes: int = 16384  # the rewritten section's size at most
    max_lines: int = 512  # and its lines


@message("EvogitEdit")
class Edit(msgspec.Struct, frozen=True):
    """What the LLM answers: the section's lines rewritten and a one-line commit message."""

    lines: list[str]
    message: str


@message("EvogitMutation")
class Mutation(msgspec.Struct, frozen=True):
    """Agent -> service: ``section`` replaces lines ``start`` to ``end`` of ``path`` at ``parent``."""

    parent: str
    path: str
    start: int
    end: int
    section: _Text
    message: Annotated[str, msgspec.Meta(max_length=4096)]


@message("EvogitCrossover")
class Crossover(msgspec.Struct, frozen=True):
    """Agent -> service: merge ``theirs``' individual into mine."""

    theirs: str


@message("EvogitSelected")
class Selected(msgspec.Struct, frozen=True):
    """Service -> agent: the child, its fitness and whether selection kept it."""

    status: str  # ok | failed | timeout | invalid
    child: str = ""
    fitness: float | None = None
    parent_fitness: float | None = None
    accepted: bool = False
    individual: str = ""  # the agent's individual after selection
    detail: str = ""


@message("EvogitSteer")
class Steer(msgspec.Struct, frozen=True):
    """A person -> service: ``promote`` a version to everyone, ``prune`` one, ``continue``."""

    action: Literal["promote", "prune", "continue", "status"]
    ref: str = ""  # promote: a commit or an agent's individual; prune: an agent
    reason: str = ""


@message("EvogitSteered")
class Steered(msgspec.Struct, frozen=True):
    """The service's answer to a ``Steer``: what it did, and the population (JSON text)."""

    done: str
    paused: bool = False
    json: str = "{}"


class EvogitSettings(Settings, frozen=True):
    """The ``evogit`` protocol's settings (the config's ``protocol`` section)."""

    artifact: Name = "artifact"
    seed: str = ""  # the folder the seed commit is made from (relative: to the working dir)
    mutable: list[Annotated[str, msgspec.Meta(max_length=256)]] = []  # globs; empty: every file
    evaluator: Name = "command"
    command: list[Annotated[str, msgspec.Meta(max_length=4096)]] = []  # argv run in a copy
    limits: SandboxLimits = msgspec.field(default_factory=SandboxLimits)
    section_lines: Annotated[int, msgspec.Meta(ge=1, le=512)] = 128
    context_lines: Annotated[int, msgspec.Meta(ge=0, le=256)] = 8
    max_edit_bytes: Annotated[int, msgspec.Meta(ge=16, le=1 << 20)] = 16384
    line_pattern: Annotated[str, msgspec.Meta(max_length=1024)] = ""  # regex each new line obeys
    extra_lines: Annotated[int, msgspec.Meta(ge=0, le=512)] = 8  # an edit may add this many
    crossover_every: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 3  # 0: mutation only
    crossover: Literal["matchmaker", "random"] = "random"
    resolve: Literal["random", "llm"] = "random"  # who takes each conflicting hunk's side
    human_every: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 0  # 0: never pause
    human_policy: Literal["wait", "promote_best", "continue"] = "wait"
    parallel_evals: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
