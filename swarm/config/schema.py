"""The one schema of a swarm config: ``SwarmConfig`` and its sections.

A config is YAML with the sections ``swarm``, ``model``, ``agents``,
``skills``, ``matchmaker``, ``protocol``, ``transport``, ``launcher`` and
``lineage``; ``swarm.config.loader`` reads and validates it into a frozen
``SwarmConfig``.

Each part declares its own section next to its code (``model`` and ``lora``
in ``swarm.serving.settings``, ``transport`` in ``swarm.transport.settings``,
``matchmaker`` in ``swarm.matching.settings``, ``protocol`` in
``swarm.protocols.settings``, ``skills`` in ``swarm.skills.settings``); this
module assembles them with the sections only a whole swarm has. ``model.backend``, ``matchmaker.kind`` and
``protocol.name`` name registered entries whose own settings schemas check
the rest of their section (``swarm.config.choices``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from swarm.agents.byzantine import ByzantineSettings
from swarm.matching.settings import BanditSettings, MatchmakerSection
from swarm.protocols.settings import ExchangeSettings, ProtocolSection
from swarm.serving.settings import EngineSettings, LoraSection, ModelSection, TinyModelSection
from swarm.settings import ModuleName, Name, PathText, PosInt, Seed, Settings
from swarm.skills.settings import MAX_FILE_SKILLS, SkillFileSection
from swarm.transport.settings import TransportSection

__all__ = [
    "SwarmConfig",
    "SwarmSection",
    "ModelSection",
    "EngineSettings",
    "TinyModelSection",
    "AgentGroup",
    "LoraSection",
    "MatchmakerSection",
    "BanditSettings",
    "ProtocolSection",
    "ExchangeSettings",
    "TransportSection",
    "LauncherSection",
    "LineageSection",
    "SkillFileSection",
    "ModuleName",
    "Name",
]


class SwarmSection(Settings, frozen=True):
    """What the swarm is called, how long it runs and where its history goes."""

    name: Name
    seed: Seed = 0
    rounds: PosInt = 5
    lineage: PathText = "runs/{name}/lineage"
    heldout: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64


class LineageSection(Settings, frozen=True):
    """What of the agents' conversations each round's commit keeps.

    ``messages``: ``all`` (every agent message of the round, up to ``max_messages``),
    ``sample`` (a ``sample_fraction`` of them chosen by message id, up to
    ``max_messages``) or ``none``. The round record counts them all either way.
    """

    messages: Literal["all", "sample", "none"] = "all"
    max_messages: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 100_000
    sample_fraction: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.1


class AgentGroup(Settings, frozen=True):
    """A group of ``count`` agents sharing a role, a data recipe and LoRA settings."""

    name: Name
    count: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1
    role: Name = "learner"
    skills: Annotated[list[Name], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    examples: PosInt = 256
    lora: LoraSection = msgspec.field(default_factory=LoraSection)
    # the role's own settings, checked against its ``settings_schema`` (config rules)
    settings: dict[str, Any] = msgspec.field(default_factory=dict)


class LauncherSection(Settings, frozen=True):
    """Where the processes run and how failures are handled."""

    kind: Literal["local", "inline"] = "local"
    hosts: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1
    restart: bool = True
    max_restarts: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 3


class ByzantineSection(Settings, frozen=True):
    """Attacking agents placed in the swarm (for robustness benches): ``count`` of them.

    They are spread over the groups, one per group in the config's order (the
    group's last agents first), each taking the ``byzantine`` role with
    ``settings`` (``swarm.agents.byzantine``: attack, scale, inflate, lie).
    """

    count: Annotated[int, msgspec.Meta(ge=0, le=4096)] = 0
    settings: ByzantineSettings = msgspec.field(default_factory=ByzantineSettings)


class SwarmConfig(Settings, frozen=True):
    """A whole swarm config."""

    swarm: SwarmSection
    agents: Annotated[list[AgentGroup], msgspec.Meta(min_length=1)]
    # the config's own skills, read from JSONL files (agents[*].skills name them)
    skills: Annotated[list[SkillFileSection], msgspec.Meta(max_length=MAX_FILE_SKILLS)] = (
        msgspec.field(default_factory=list))
    model: ModelSection = msgspec.field(default_factory=ModelSection)
    matchmaker: MatchmakerSection = msgspec.field(default_factory=MatchmakerSection)
    protocol: ProtocolSection = msgspec.field(default_factory=ProtocolSection)
    transport: TransportSection = msgspec.field(default_factory=TransportSection)
    launcher: LauncherSection = msgspec.field(default_factory=LauncherSection)
    lineage: LineageSection = msgspec.field(default_factory=LineageSection)
    byzantine: ByzantineSection = msgspec.field(default_factory=lambda: ByzantineSection())

    @property
    def agent_count(self) -> int:
        """Total number of agents over all groups."""
        return sum(group.count for group in self.agents)

    @property
    def lineage_dir(self) -> Path:
        """The lineage directory with ``{name}`` filled in."""
        return Path(self.swarm.lineage.format(name=self.swarm.name)).expanduser()

    @property
    def run_dir(self) -> Path:
        """Where a run keeps its processes' files: the lineage directory's parent."""
        return self.lineage_dir.parent

    @property
    def adapter_store(self) -> Path:
        """The content-addressed adapter store shared by the model server and the hosts."""
        if self.model.adapter_store is not None:
            return Path(self.model.adapter_store.format(name=self.swarm.name)).expanduser()
        return self.run_dir / "adapters"
