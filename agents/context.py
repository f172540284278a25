"""The agent context: what a role's hooks and handlers reach the swarm through.

Every hook (``local_update``, ``learn_from``, ``evaluate``, a handler) gets the
agent's ``AgentContext``: its model (generate, train, merge), its peers (send,
ask, publish, subscribe), its knowledge graph and its settings. The context is
a thin, per-agent view of its host (``AgentRuntime``): the host does the work,
the context fills in who is asking and logs what the agent says.

    async def local_update(self, ctx: AgentContext) -> AgentReport:
        answer = await ctx.generate("What is 2 + 2?", max_tokens=8)
        reply = await ctx.ask("agent-3", Question(text="what do you know of Zorbia?"))
        ctx.kg.add("zorbia", "fact", parent="geography", text=reply.text)
        ...
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

import msgspec

from swarm.agents.talk import LOG_BODY_BYTES, decode_body, delivery_of, encode_body
from swarm.agents.tools import Toolbox, run_tools, tools_of
from swarm.errors import RequestError, WireError
from swarm.serving.client import ChatInput, as_turns
from swarm.serving.structured import decode_output, schema_for
from swarm.wire.messages import (
    MAX_BODY,
    AgentMsg,
    Choose,
    GenOutput,
    GenRequest,
    KGDelta,
    LogEntry,
    Message,
    Pairing,
    Profile,
    Reward,
)

if TYPE_CHECKING:
    from swarm.skills import Example, Skill

__all__ = ["AgentContext", "AgentRuntime", "OWN", "LOG_BODY_BYTES"]

T = TypeVar("T")


class _Own:
    def __repr__(self) -> str:
        return "OWN"


#: ``adapter=OWN``: the agent's own adapter (the default of every model call).
OWN: Any = _Own()


class AgentView(Protocol):
    """What the context reads of its agent (``swarm.agents.base.Agent``)."""

    @property
    def id(self) -> str: ...

    @property
    def adapter(self) -> str | None: ...

    @property
    def kg(self) -> Any: ...

    @property
    def spec(self) -> Any: ...

    @property
    def settings(self) -> Any: ...


class AgentRuntime(Protocol):
    """What a host offers its agents' contexts (``swarm.runtime.host.Host``)."""

    @property
    def round(self) -> int: ...

    @property
    def swarm_agents(self) -> list[str]: ...

    @property
    def swarm_skills(self) -> Mapping[str, Skill]: ...

    async def generate_requests(self, requests: Sequence[GenRequest]) -> list[GenOutput]: ...

    async def train(self, agent_id: str, base_adapter: str | None,
                    examples: Sequence[Example], hyper: dict[str, Any]) -> str: ...

    async def merge(self, adapters: Sequence[str], weights: Sequence[float],
                    method: str = "svd", density: float = 0.5) -> str: ...

    async def fetch_adapter(self, sha: str, owner: str) -> None: ...

    async def deliver(self, msg: AgentMsg, *, ask: bool, timeout: float) -> AgentMsg | None: ...

    async def publish_msg(self, msg: AgentMsg) -> int: ...

    def subscribe(self, agent_id: str, topic: str) -> None: ...

    def unsubscribe(self, agent_id: str, topic: str) -> None: ...

    def record(self, entry: LogEntry) -> None: ...

    async def to_coordinator(self, msg: Message, answer: bool,
                             timeout: float | None = None) -> Message | None: ...


class AgentContext:
    """One agent's view of the swarm, handed to each of its hooks and handlers."""

    __slots__ = ("agent", "runtime")

    def __init__(self, agent: AgentView, runtime: AgentRuntime) -> None:
        self.agent = agent
        self.runtime = runtime

    @property
    def id(self) -> str:
        """The agent's id."""
        return self.agent.id

    @property
    def round(self) -> int:
        """The round the swarm is in (-1 before the first)."""
        return self.runtime.round

    @property
    def swarm_agents(self) -> list[str]:
        """Every agent id of the swarm (as the config makes them), this one included."""
        return self.runtime.swarm_agents

    @property
    def swarm_skills(self) -> Mapping[str, Skill]:
        """The skills the swarm's agents name, by name.

        A file skill draws from its training share only: fresh prompts of it are
        never held-out ones.
        """
        return self.runtime.swarm_skills

    @property
    def kg(self) -> Any:
        """The agent's knowledge graph (``swarm.knowledge.KnowledgeGraph``)."""
        return self.agent.kg

    @property
    def settings(self) -> Any:
        """The role's settings from the config (an instance of its ``settings_schema``)."""
        return self.agent.settings

    # -- the model ---------------------------------------------------------------------

    @overload
    async def generate(self, chat: ChatInput | None = None, *, prompt: str | None = None,
                       schema: None = None, adapter: Any = OWN, **sampling: Any) -> str: ...

    @overload
    async def generate(self, chat: ChatInput | None = None, *, prompt: str | None = None,
                       schema: type[T], adapter: Any = OWN, **sampling: Any) -> T: ...

    async def generate(self, chat: ChatInput | None = None, *, prompt: str | None = None,
                       schema: type[T] | None = None, adapter: Any = OWN,
                       **sampling: Any) -> str | T:
        """The model's answer with the agent's adapter (or ``adapter``: a sha256, None = base).

        Args:
            chat: a user message or the turns of a chat (rendered with the chat template).
            prompt: raw text to continue instead of a chat.
            schema: a msgspec type: the answer is generated to its JSON schema and
                returned decoded as that type.
            sampling: ``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop``.

        Raises:
            StructuredOutputError: the answer does not match ``schema``.
            RequestError: bad sampling values, or neither/both of ``chat`` and ``prompt``.
        """
        if (chat is None) == (prompt is None):
            raise RequestError("generate: give a chat or a prompt, not both or neither")
        request = GenRequest(
            prompt=prompt or "", messages=as_turns(chat) if chat is not None else [],
            adapter=self._adapter(adapter), agent_id=self.id,
            json_schema=None if schema is None else schema_for(schema), **sampling)
        text = (await self.runtime.generate_requests([request]))[0].texts[0]
        return text if schema is None else decode_output(text, schema)

    async def complete_many(self, prompts: Sequence[str], *, adapter: Any = OWN,
                            max_tokens: int = 16) -> list[str]:
        """Greedy continuations of raw ``prompts``, in one batch (held-out evaluation)."""
        use = self._adapter(adapter)
        outputs = await self.runtime.generate_requests([
            GenRequest(prompt=p, adapter=use, max_tokens=max_tokens, temperature=0.0,
                       agent_id=self.id) for p in prompts])
        return [out.texts[0] for out in outputs]

    async def train(self, examples: Sequence[Example], hyper: dict[str, Any] | None = None,
                    *, base: Any = OWN) -> str:
        """Fine-tune ``base`` (default: the agent's adapter) on ``examples``; the new sha256."""
        hyper = self.agent.spec.hyper if hyper is None else hyper
        return await self.runtime.train(self.id, self._adapter(base), examples, hyper)

    async def merge(self, student_adapter: str, teacher_adapter: str, weight: float = 1.0, *,
                    method: str = "svd", density: float = 0.5) -> str:
        """``student + weight * teacher`` (adapters by sha256) by ``method``; the merged sha256."""
        return await self.runtime.merge([student_adapter, teacher_adapter], [1.0, weight],
                                        method, density)

    async def merge_many(self, adapters: Sequence[str], weights: Sequence[float] | None = None,
                         *, method: str = "svd", density: float = 0.5) -> str:
        """Merge many adapters (by sha256) into one; the merged sha256.

        ``method``: one of peft's (``linear``, ``cat``, ``svd``, ``ties``, ``dare_ties``,
        ...: ``swarm.serving.merging.PEFT_METHODS``), with ``weights`` (default: equal,
        summing to 1), or a robust rule over the adapters' updates (``mean``,
        ``median``, ``trimmed_mean``, ``clipped_mean``), which takes no weights.
        """
        if weights is None:
            weights = [1.0 / len(adapters)] * len(adapters)
        return await self.runtime.merge(list(adapters), list(weights), method, density)

    async def fetch_adapter(self, sha: str, owner: str) -> None:
        """Make adapter ``sha`` (held by agent ``owner``) available here, verified."""
        await self.runtime.fetch_adapter(sha, owner)

    def _adapter(self, adapter: Any) -> str | None:
        return self.agent.adapter if adapter is OWN else adapter

    # -- tools (swarm.agents.tools) ----------------------------------------------------

    async def use_tools(self, chat: ChatInput, tools: Sequence[Any] | None = None, *,
                        answer: Any = str, max_calls: int = 4, require_call: bool = False,
                        adapter: Any = OWN, **sampling: Any) -> Any:
        """Let the model call ``tools`` until it answers; its answer, of type ``answer``.

        Each call and result is in the round's message log (``ToolCall``/``ToolResult``).

        Args:
            chat: a user message or the turns of a chat.
            tools: ``@tool`` functions or methods (default: the role's ``@tool`` methods).
            answer: the final answer's msgspec type (default: ``str``).
            max_calls: tool calls at most; then the model must answer.
            require_call: the model's first turn must be a tool call.
            sampling: ``max_tokens`` (per turn, default 256), ``temperature``, ``seed``...

        Raises:
            ToolError: a tool cannot be described, or two share a name.
            StructuredOutputError: a turn does not match the schema (``max_tokens`` too low).
        """
        box = Toolbox(tools_of(self.agent) if tools is None else tools, answer=answer)
        return await run_tools(self, chat, box, adapter=self._adapter(adapter),
                               max_calls=max_calls, require_call=require_call, **sampling)

    # -- peers ---------------------------------------------------------------------------

    async def send(self, agent_id: str, msg: msgspec.Struct) -> None:
        """Send a registered message to ``agent_id`` (delivery: its kind's, see ``talk``).

        Raises:
            MessageTypeError: ``msg``'s type is not registered.
            UnknownAgent: no such agent, or its host is unreachable.
            WireError: the message is over ``MAX_BODY`` bytes.
        """
        wire = self._wire(msg, recipient=agent_id)
        try:
            await self.runtime.deliver(wire, ask=False, timeout=60.0)
        except Exception as exc:
            self._log(wire, error=getattr(exc, "code", "error"))
            raise
        self._log(wire)

    async def ask(self, agent_id: str, msg: msgspec.Struct, timeout: float = 30.0) -> Any:
        """Send ``msg`` to ``agent_id`` and return its handler's answer (a registered Struct).

        Raises:
            AskTimeout: no answer within ``timeout`` seconds.
            HandlerError: the handler raised, or the recipient has no handler for it.
            UnknownAgent, MessageTypeError: see ``send``; also any error the answer names.
        """
        wire = self._wire(msg, recipient=agent_id, asks=True)
        try:
            answer = await self.runtime.deliver(wire, ask=True, timeout=timeout)
        except Exception as exc:
            self._log(wire, error=getattr(exc, "code", "error"), at=wire.sent_at, decoded=msg)
            raise
        return self._answered(wire, msg, answer)

    def _answered(self, wire: AgentMsg, msg: msgspec.Struct, answer: AgentMsg | None) -> Any:
        """Log an ask and its answer; the answer's message (``None`` for none)."""
        self._log(wire, at=wire.sent_at, decoded=msg)
        if answer is None:
            return None
        at = time.time()
        reply = decode_body(answer.kind, answer.body)
        self._log(answer, at=at, decoded=reply)
        return reply

    async def publish(self, topic: str, msg: msgspec.Struct) -> int:
        """Send ``msg`` to every agent subscribed to ``topic``; how many hosts it went to."""
        wire = self._wire(msg, topic=topic)
        sent = await self.runtime.publish_msg(wire)
        self._log(wire)
        return sent

    def subscribe(self, topic: str) -> None:
        """Receive what is published to ``topic`` (by the handler of each message's type)."""
        self.runtime.subscribe(self.id, topic)

    def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic``."""
        self.runtime.unsubscribe(self.id, topic)

    async def share(self, delta: KGDelta, to: Sequence[str] = (), topic: str = "") -> None:
        """Ship a knowledge-graph delta (``kg.add``'s return) to agents and/or a topic."""
        for agent_id in to:
            await self.send(agent_id, delta)
        if topic:
            await self.publish(topic, delta)

    async def ask_protocol(self, msg: msgspec.Struct, timeout: float = 600.0) -> Any:
        """Ask the protocol's coordinator-side service (``Protocol.service``); its answer.

        The evogit protocol's agents ask it for a section to mutate and hand it
        their edits. Logged like every message the agent sends.

        Raises:
            SwarmError: the protocol has no service, or the typed error it answered with.
        """
        wire = self._wire(msg, recipient="coordinator", asks=True)
        try:
            answer = await self.runtime.to_coordinator(wire, answer=True, timeout=timeout)
            if not isinstance(answer, AgentMsg):
                raise RequestError(f"the coordinator answered {type(answer).__name__}")
        except Exception as exc:
            self._log(wire, error=getattr(exc, "code", "error"), at=wire.sent_at, decoded=msg)
            raise
        return self._answered(wire, msg, answer)

    # -- the matchmaker ----------------------------------------------------------------

    async def set_profile(self, vector: Sequence[float]) -> None:
        """Publish what the agent knows as a vector, for the matchmaker to choose by.

        Only where the protocol has agents publish profiles (``Protocol.profile_dim``).
        """
        msg = Profile(sender=self.id, agent_id=self.id, vector=[float(v) for v in vector])
        await self.runtime.to_coordinator(msg, answer=False)

    async def choose(self, context: Sequence[float] = (), k: int = 1,
                     candidates: Sequence[str] = ()) -> list[str]:
        """Whom to ask: the matchmaker's ``k`` best answerers for a query (``context``: its
        vector, in the profiles' space), best first.

        Raises:
            MatchmakerError: a bad query (no profile of this agent yet, a wrong length).
        """
        msg = Choose(sender=self.id, asker=self.id, candidates=list(candidates),
                     context=[float(v) for v in context], k=k)
        answer = await self.runtime.to_coordinator(msg, answer=True)
        if not isinstance(answer, Pairing):
            raise RequestError(f"the coordinator answered Choose with {type(answer).__name__}")
        return [answerer for answerer, _ in answer.pairs]

    async def reward(self, partner: str, value: float, context: Sequence[float] = ()) -> None:
        """Tell the matchmaker what ``partner``'s answer (to the query of ``context``), or its
        teaching without a context, was worth to this agent."""
        msg = Reward(sender=self.id, teacher=partner, student=self.id, value=float(value),
                     context=[float(v) for v in context])
        await self.runtime.to_coordinator(msg, answer=False)

    def _wire(self, msg: msgspec.Struct, recipient: str = "", topic: str = "",
              asks: bool = False) -> AgentMsg:
        """The wire message of ``msg``; an ask's is a reliable request (``ack``) already."""
        kind, body = encode_body(msg)
        if len(body) > MAX_BODY:
            raise WireError(f"a {kind} message of {len(body)} bytes is over the {MAX_BODY} "
                            f"bytes an agent message may carry", kind="oversize")
        return AgentMsg(sender=self.agent.id, recipient=recipient, topic=topic, kind=kind,
                        body=body, round=max(self.runtime.round, -1), asks=asks,
                        ack=asks or delivery_of(kind) == "at_least_once")

    def _log(self, wire: AgentMsg, error: str = "", at: float | None = None,
             decoded: msgspec.Struct | None = None) -> None:
        self.runtime.record(log_entry(wire, error=error, at=at, decoded=decoded))


def log_entry(wire: AgentMsg, error: str = "", at: float | None = None,
              decoded: msgspec.Struct | None = None) -> LogEntry:
    """The message log's entry for ``wire`` (its body as JSON, or its hash when large).

    ``decoded`` is the body's message where the caller has it (encoded to JSON
    straight from it, as the same JSON as from the body's bytes).
    """
    body, sha = "", ""
    if len(wire.body) <= LOG_BODY_BYTES:
        try:
            data = msgspec.msgpack.decode(wire.body) if decoded is None else decoded
            body = msgspec.json.encode(data).decode()
        except (msgspec.DecodeError, UnicodeDecodeError, TypeError):
            sha = hashlib.sha256(wire.body).hexdigest()
    else:
        sha = hashlib.sha256(wire.body).hexdigest()
    return LogEntry(msg_id=wire.msg_id, correlation_id=wire.in_reply_to, sender=wire.sender,
                    recipient=wire.recipient, topic=wire.topic, kind=wire.kind, body=body,
                    body_sha256=sha, size=len(wire.body), error=error,
                    at=time.time() if at is None else at)

