"""The ``Agent`` base class and the host services an agent may call.

An agent is a plain object living in a host process: no model copy, no
socket, no thread of its own, so a host can hold thousands. It owns its
identity, its adapter (by content hash), its local data, its scores and its
knowledge graph; everything heavy (training, generation, adapter transfer,
merging) goes through the host's ``HostServices``.

A role is a subclass registered by name (``@role("name")``); it overrides the
hooks it cares about: ``on_chat`` for messages, ``local_update`` for the local
step of a round, ``learn_from`` for taking knowledge from a teacher,
``accepts`` for deciding whether to keep what it learnt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from swarm.knowledge import KnowledgeGraph
from swarm.skills import Example, exact_match
from swarm.wire.messages import AgentReport, PairOutcome

__all__ = ["Agent", "AgentSpec", "HostServices", "AgentReport", "PairOutcome"]


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """What a host needs to build an agent: identity, role, data recipe and training settings."""

    agent_id: str
    role: str = "learner"
    group: str = ""
    skills: tuple[str, ...] = ()
    train: tuple[Example, ...] = ()
    heldout: tuple[Example, ...] = ()
    hyper: dict[str, Any] = field(default_factory=dict)


class HostServices(Protocol):
    """What a host offers its agents; implemented by ``swarm.runtime.host`` (and by test doubles)."""

    async def train(
        self, agent_id: str, base_adapter: str | None, examples: Sequence[Example], hyper: dict[str, Any]
    ) -> str:
        """Fine-tune (or continue) a LoRA adapter; returns the new adapter's sha256."""
        ...

    async def generate(
        self, prompts: Sequence[str], adapter: str | None, max_tokens: int
    ) -> list[str]:
        """Greedy completions of ``prompts`` with ``adapter`` (None: the base model)."""
        ...

    async def fetch_adapter(self, sha: str, owner: str) -> None:
        """Make adapter ``sha`` (held by agent ``owner``) available locally, verified."""
        ...

    async def merge(self, student_adapter: str, teacher_adapter: str, weight: float) -> str:
        """Student's adapter plus ``weight`` times the teacher's (both by sha256); the new sha256."""
        ...


class Agent:
    """An agent in a swarm. Subclass it and register the subclass with ``@role``."""

    role: ClassVar[str] = ""
    #: whether the role fine-tunes its adapter on its local data each round
    trains: ClassVar[bool] = True
    #: whether the role takes knowledge from teachers
    learns: ClassVar[bool] = True

    __slots__ = ("spec", "adapter", "score", "history", "kg", "messages_received")

    def __init__(self, spec: AgentSpec, adapter: str | None = None) -> None:
        self.spec = spec
        self.adapter = adapter
        self.score = 0.0
        self.history: list[float] = []
        self.kg = KnowledgeGraph(spec.agent_id)
        self.messages_received = 0  # chat messages handled (``on_chat`` counts them)

    @property
    def id(self) -> str:
        """The agent's id, unique in the swarm."""
        return self.spec.agent_id

    async def on_chat(self, sender: str, content: str) -> str | None:
        """Handle a chat message; return a reply, or None for no reply."""
        self.messages_received += 1
        return None

    async def evaluate(self, host: HostServices, adapter: str | None = None) -> float:
        """Exact-match accuracy on the held-out set with ``adapter`` (default: the agent's own)."""
        heldout = self.spec.heldout
        if not heldout:
            return 0.0
        use = self.adapter if adapter is None else adapter
        width = max(len(s.completion) for s in heldout)
        outputs = await host.generate([s.prompt for s in heldout], use, max_tokens=width + 2)
        hits = sum(
            exact_match(_first_line(out), s.completion)
            for out, s in zip(outputs, heldout, strict=True)
        )
        return hits / len(heldout)

    async def local_update(self, host: HostServices) -> AgentReport:
        """The local step of a round: train on local data (if the role trains), then evaluate."""
        if self.trains and self.spec.train:
            self.adapter = await host.train(self.id, self.adapter, self.spec.train, self.spec.hyper)
        self.score = await self.evaluate(host)
        self.history.append(self.score)
        return AgentReport(agent_id=self.id, adapter=self.adapter, score=self.score,
                           metrics={"score": self.score})

    async def learn_from(
        self, teacher: str, teacher_adapter: str | None, host: HostServices, *, weight: float = 1.0
    ) -> PairOutcome:
        """Merge the teacher's adapter into ours, keep it if ``accepts`` says so."""
        before = self.score
        if not self.learns or teacher_adapter is None or teacher_adapter == self.adapter:
            return PairOutcome(student=self.id, teacher=teacher, before=before, after=before,
                               adapter=self.adapter)
        await host.fetch_adapter(teacher_adapter, teacher)
        if self.adapter is None:
            candidate = teacher_adapter
        else:
            candidate = await host.merge(self.adapter, teacher_adapter, weight)
        after = await self.evaluate(host, candidate)
        keep = self.accepts(before, after)
        parents = tuple(p for p in (self.adapter, teacher_adapter) if p)
        if keep:
            self.adapter, self.score = candidate, after
        return PairOutcome(student=self.id, teacher=teacher, before=before, after=after,
                           adapter=candidate if keep else self.adapter, accepted=keep,
                           parents=parents)

    def accepts(self, before: float, after: float) -> bool:
        """Keep a learnt adapter only if the held-out score did not drop."""
        return after >= before


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]
