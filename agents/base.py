"""The ``Agent`` base class: an LLM agent's identity, adapter, knowledge and hooks.

An agent is a plain object living in a host process: no model copy, no
socket, no thread of its own, so a host can hold thousands. It owns its
identity, its adapter (by content hash), its local data, its scores, its
knowledge graph and whatever state its role keeps; everything heavy
(generation, training, merging, messages to other agents) goes through the
``AgentContext`` (``swarm.agents.context``) that its host hands every hook.

A role is a subclass registered by name (``@role("name")``); it overrides the
hooks it cares about, each taking the context first:

- ``local_update(ctx)``: the local step of a round (default: train, then evaluate);
- ``learn_from(teacher, teacher_adapter, ctx, weight=)``: take knowledge from a teacher;
- ``accepts(before, after)``: keep what it learnt or not;
- ``on_chat(ctx, sender, content)``: a chat message (``swarm chat``), the reply
  (default: the agent's LLM answers it);
- handlers of typed messages, marked ``@handles(MsgType)`` (``swarm.agents.talk``);
- ``save_state()`` / ``load_state(state)``: the role's own state as JSON data,
  committed to the lineage with each round and restored on a host restart.

A role declares its settings as ``settings_schema`` (a ``msgspec.Struct``
class); the config's ``agents[*].settings`` are checked against it by
``config check`` and handed to the agent as ``self.settings``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from swarm.agents.talk import handlers_of
from swarm.errors import HandlerError, RegistryError
from swarm.knowledge import KnowledgeGraph
from swarm.skills import Example, exact_match
from swarm.wire.messages import AgentReport, ChatTurn, PairOutcome

if TYPE_CHECKING:
    from swarm.agents.context import AgentContext

__all__ = ["Agent", "AgentSpec", "AgentReport", "PairOutcome", "CHAT_MAX_TOKENS", "check_hooks"]

#: Tokens of the default ``on_chat``'s reply.
CHAT_MAX_TOKENS = 128

#: The hooks that take the agent context first, and their old (host) parameter.
HOOKS = ("local_update", "learn_from", "evaluate", "on_chat")


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """What a host needs to build an agent: identity, role, data recipe, training and role settings."""

    agent_id: str
    role: str = "learner"
    group: str = ""
    skills: tuple[str, ...] = ()
    train: tuple[Example, ...] = ()
    heldout: tuple[Example, ...] = ()
    hyper: dict[str, Any] = field(default_factory=dict)
    settings: Any = None


class Agent:
    """An agent in a swarm. Subclass it and register the subclass with ``@role``."""

    role: ClassVar[str] = ""
    #: whether the role fine-tunes its adapter on its local data each round
    trains: ClassVar[bool] = True
    #: whether the role takes knowledge from teachers
    learns: ClassVar[bool] = True
    #: the schema of the role's settings (the config's ``agents[*].settings``)
    settings_schema: ClassVar[type[msgspec.Struct] | None] = None
    #: message type -> name of the method that handles it (``@handles``), per class
    handlers: ClassVar[dict[type[msgspec.Struct], str]] = {}

    __slots__ = ("spec", "adapter", "score", "history", "kg", "messages_received", "skill_scores",
                 "last_skills")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.handlers = handlers_of(cls)

    def __init__(self, spec: AgentSpec, adapter: str | None = None) -> None:
        self.spec = spec
        self.adapter = adapter
        self.score = 0.0
        self.history: list[float] = []
        self.kg = KnowledgeGraph(spec.agent_id)
        self.messages_received = 0  # messages its handlers and ``on_chat`` took
        self.skill_scores: dict[str, float] = {}  # held-out score per skill of ``adapter``
        self.last_skills: dict[str, float] = {}  # per skill, of the last adapter evaluated

    @property
    def id(self) -> str:
        """The agent's id, unique in the swarm."""
        return self.spec.agent_id

    @property
    def settings(self) -> Any:
        """The role's settings (an instance of ``settings_schema``, or None)."""
        return self.spec.settings

    # -- messages --------------------------------------------------------------------

    async def on_chat(self, ctx: AgentContext, sender: str, content: str) -> str | None:
        """Answer a chat message (``swarm chat``); the reply, or None for no reply.

        Default: the agent's LLM with its own adapter answers ``chat_turns(sender,
        content)``, greedy, in up to ``CHAT_MAX_TOKENS`` tokens. Override it for a
        role that answers otherwise.
        """
        self.messages_received += 1
        return await ctx.generate(self.chat_turns(sender, content), max_tokens=CHAT_MAX_TOKENS)

    def chat_turns(self, sender: str, content: str) -> list[ChatTurn]:
        """What the default ``on_chat`` asks the model: who the agent is, then the message."""
        skills = f", skilled in {', '.join(self.spec.skills)}" if self.spec.skills else ""
        who = (f"You are {self.id}, an agent of role {self.role or 'agent'}{skills} in a swarm "
               f"of LLM agents. {sender} writes to you; answer briefly.")
        return [ChatTurn(role="system", content=who), ChatTurn(role="user", content=content)]

    async def handle(self, ctx: AgentContext, sender: str, msg: msgspec.Struct) -> Any:
        """Run the ``@handles`` method for ``msg``'s type; its return is the answer.

        Raises:
            HandlerError: the role has no handler for the type.
        """
        self.messages_received += 1
        name = self.handlers.get(type(msg))
        if name is None:
            if type(msg).__name__ == "KGDelta":  # merged by the host already; nothing else to do
                return None
            raise HandlerError(f"role {self.role!r} of {self.id} has no handler for "
                               f"{type(msg).__name__} (mark one with @handles)")
        return await getattr(self, name)(ctx, sender, msg)

    # -- state -----------------------------------------------------------------------

    def save_state(self) -> Any:
        """The role's own state as JSON data (dicts, lists, str, numbers; or a Struct).

        Committed to the lineage (``agents/<id>/state.json``) after each step where
        it changed, and handed to ``load_state`` when a host restarts. Default: none.
        """
        return None

    def load_state(self, state: Any) -> None:
        """Take back what ``save_state`` returned (as decoded JSON data)."""

    # -- the round ---------------------------------------------------------------------

    async def evaluate(self, ctx: AgentContext, adapter: str | None = None) -> float:
        """Exact-match accuracy on the held-out set with ``adapter`` (default: the agent's own).

        The accuracy per skill is left in ``last_skills``.
        """
        heldout = self.spec.heldout
        if not heldout:
            self.last_skills = {}
            return 0.0
        use = self.adapter if adapter is None else adapter
        width = max(len(s.completion) for s in heldout)
        outputs = await ctx.complete_many([s.prompt for s in heldout], adapter=use,
                                          max_tokens=width + 2)
        hits: dict[str, list[bool]] = {}
        for out, s in zip(outputs, heldout, strict=True):
            hits.setdefault(s.skill, []).append(exact_match(_first_line(out), s.completion))
        self.last_skills = {k: sum(v) / len(v) for k, v in sorted(hits.items())}
        return sum(sum(v) for v in hits.values()) / len(heldout)

    def skill_metrics(self) -> dict[str, float]:
        """``skill.<name>``: the held-out score per skill of the agent's adapter (report metrics)."""
        return {f"skill.{k}": v for k, v in self.skill_scores.items()}

    async def local_update(self, ctx: AgentContext) -> AgentReport:
        """The local step of a round: train on local data (if the role trains), then evaluate."""
        if self.trains and self.spec.train:
            self.adapter = await ctx.train(self.spec.train)
        self.score = await self.evaluate(ctx)
        self.skill_scores = dict(self.last_skills)
        self.history.append(self.score)
        return AgentReport(agent_id=self.id, adapter=self.adapter, score=self.score,
                           metrics={"score": self.score, **self.skill_metrics()})

    async def learn_from(
        self, teacher: str, teacher_adapter: str | None, ctx: AgentContext, *, weight: float = 1.0
    ) -> PairOutcome:
        """Merge the teacher's adapter into ours, keep it if ``accepts`` says so."""
        before = self.score
        if not self.learns or teacher_adapter is None or teacher_adapter == self.adapter:
            return PairOutcome(student=self.id, teacher=teacher, before=before, after=before,
                               adapter=self.adapter)
        await ctx.fetch_adapter(teacher_adapter, teacher)
        if self.adapter is None:
            candidate = teacher_adapter
        else:
            candidate = await ctx.merge(self.adapter, teacher_adapter, weight)
        after = await self.evaluate(ctx, candidate)
        keep = self.accepts(before, after)
        parents = tuple(p for p in (self.adapter, teacher_adapter) if p)
        if keep:
            self.adapter, self.score, self.skill_scores = candidate, after, self.last_skills
        return PairOutcome(student=self.id, teacher=teacher, before=before, after=after,
                           adapter=candidate if keep else self.adapter, accepted=keep,
                           parents=parents, skills=self.skill_scores)

    def accepts(self, before: float, after: float) -> bool:
        """Keep a learnt adapter only if the held-out score did not drop."""
        return after >= before


def check_hooks(cls: type[Agent]) -> None:
    """Refuse a role written against the hooks before the agent context (CHANGELOG.md).

    Raises:
        RegistryError: a hook takes ``host`` (the old ``HostServices``) instead of ``ctx``,
            or ``on_chat`` lacks the context.
    """
    for name in HOOKS:
        fn = getattr(cls, name, None)
        if fn is None or fn is getattr(Agent, name):
            continue
        params = list(inspect.signature(fn).parameters)
        old = "host" in params or (name == "on_chat" and params[1:2] == ["sender"])
        if old:
            new = {"local_update": "local_update(self, ctx)",
                   "learn_from": "learn_from(self, teacher, teacher_adapter, ctx, *, weight=1.0)",
                   "evaluate": "evaluate(self, ctx, adapter=None)",
                   "on_chat": "on_chat(self, ctx, sender, content)"}[name]
            raise RegistryError(
                f"role {cls.__qualname__}: {name}{inspect.signature(fn)} is the old hook; hooks "
                f"now take the agent context instead of the host: {new}, and call "
                f"ctx.train/ctx.generate/ctx.merge where they called host.* (see CHANGELOG.md)")


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]
