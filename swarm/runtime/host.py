"""An agent host: one process holding many agents as plain objects.

The host connects to the coordinator (control) and to the machine's model
server, both through one ``Client`` each: thousands of agents share these two
sockets, the envelope's ``sender``/``recipient`` name the agent. It answers
the coordinator's ``Step`` requests by running the phase for each of its
agents concurrently, and is the ``AgentRuntime`` behind their contexts
(``swarm.agents.context``): generation, training and merging on the model
server, adapter fetch on the machine's adapter store, and agent messages host
to host (``swarm.runtime.messaging``), served on its own peer ROUTER.

With each ``StepDone`` the host ships what its agents said during the step
(the message log) and the knowledge graphs and role states that changed; a
``Step`` carries back, once per host incarnation, what the lineage holds of
them (``restore``), so a restarted host goes on where the last round left off.

Slow is not dead here either: a request to the model server has no deadline
of its own. The host waits for the answer as long as the server is heard
(heartbeats), so a long queue of training jobs on a loaded machine fails no
agent; only a server silent for ``silence_s`` fails the requests waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import msgspec

from swarm.agents.base import Agent, AgentSpec
from swarm.agents.context import AgentContext
from swarm.config.rules import agent_ids
from swarm.config.schema import SwarmConfig
from swarm.errors import (
    AdapterError,
    HandlerError,
    PeerUnavailable,
    RemoteError,
    SwarmError,
    error_for_code,
)
from swarm.knowledge import KnowledgeGraph
from swarm.protocols.base import Lesson
from swarm.runtime.messaging import PeerMessaging
from swarm.serving.client import ModelClient
from swarm.skills import Example
from swarm.transport.loop import start_eagerly
from swarm.transport.peers import Client, Incoming, Server, TransportOptions
from swarm.transport.topology import address_book, new_routing_id
from swarm.wire.codec import (
    AgentMsg,
    AgentReport,
    AgentState,
    Assignment,
    Chat,
    Error,
    GenOutput,
    GenRequest,
    Join,
    Locate,
    Located,
    LogEntry,
    Merge,
    Merged,
    Message,
    PairOutcome,
    Step,
    StepDone,
    Train,
    Trained,
    Welcome,
)

__all__ = ["Host"]

log = logging.getLogger(__name__)

#: Agent-message handlers that wait (ask, generate) at once on a host; then it reads no more.
MAX_HANDLING = 1024



class Host:
    """Holds agents, runs their steps, and offers them ``HostServices``."""

    def __init__(
        self,
        host_id: str,
        config: SwarmConfig,
        specs: Sequence[AgentSpec],
        store_root: Path,
        options: TransportOptions | None = None,
        peer_address: str | None = None,
        routing_id: str | None = None,
        silence_s: float | None = None,
    ) -> None:
        from swarm.agents.registry import get_role
        from swarm.protocols.registry import get_protocol
        from swarm.runtime.population import agent_skills, resolve_skills

        self.host_id = host_id
        self.config = config
        self.options = options or TransportOptions.from_config(config.transport)
        self.agents: dict[str, Agent] = {s.agent_id: get_role(s.role)(s) for s in specs}
        # Any agent's skills (a teacher's, to distil from) come from the config, as the
        # coordinator's do: both sides derive them, so no message carries them.
        self.skills = agent_skills(config)
        # What a protocol draws fresh prompts from (a file skill: its training share only).
        self.swarm_skills = resolve_skills(config)
        self.protocol = get_protocol(config.protocol.name)(config.protocol.settings,
                                                             config.swarm.rounds)
        self.store_root = store_root
        self.peer_address = peer_address
        # The socket identity of this process towards the coordinator and the model
        # server: the host's name plus a secret part, so that no other peer can take
        # over its connection (ZeroMQ hands a routing id to whoever connects with it).
        self.routing_id = routing_id or new_routing_id(host_id)
        # the model server may hold its loop longer than a host (engine start): 120 s at least
        self.silence_s = max(120.0, self.options.silence_s) if silence_s is None else silence_s
        self.messages = 0  # sent and received since the last StepDone (for messages/s)
        self.round = -1  # the round of the last step
        self.swarm_agents = [a for g in config.agents for a in agent_ids(g.name, g.count)]
        self._model: Client | None = None
        self._coord: Client | None = None
        self.messaging = PeerMessaging(host_id, self.routing_id, self.agents, self.options,
                                       self.context, locate=self._locate)
        self._shipped: dict[str, tuple[str, str]] = {}  # agent -> hashes of kg, state shipped

    def context(self, agent: Agent) -> AgentContext:
        """The agent context handed to ``agent``'s hooks and handlers."""
        return AgentContext(agent, self)

    async def run(self) -> None:
        """Join the swarm and answer steps until the coordinator goes away or a stop."""
        config = self.config
        book = address_book(config.transport, config.launcher.hosts, config.model.server)
        control, model = book.control, book.model
        async with Client(self.routing_id, control, self.options) as coord, Client(
            self.routing_id, model, self.options
        ) as self._model:
            self._coord = coord
            welcome = await coord.request(Join(sender=self.host_id, agent_ids=list(self.agents),
                                               process="host", endpoint=self.peer_address or ""),
                                          timeout=120.0, reliable=True)
            if isinstance(welcome.msg, Welcome):
                self.messaging.directory.update(welcome.msg.placement, welcome.msg.peers)
            log.info("host %s: joined with %d agents", self.host_id, len(self.agents))
            pending: set[asyncio.Task[None]] = set()
            if self.peer_address is not None:
                pending.add(asyncio.ensure_future(self.serve_peers(self.peer_address)))
            try:
                while True:
                    for inc in await coord.recv_batch():
                        task = asyncio.ensure_future(self._answer(coord, inc))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
            finally:
                for task in pending:
                    task.cancel()
                await self.messaging.close()

    async def _answer(self, coord: Client, inc: Incoming) -> None:
        msg = inc.msg
        if isinstance(msg, Step):
            try:
                done = await self.step(msg)
            except Exception as exc:  # the coordinator waits while we are heard: always answer
                log.exception("host %s: %s step failed", self.host_id, msg.phase)
                code = exc.code if isinstance(exc, SwarmError) else "host"
                await coord.reply(inc, Error(sender=self.host_id, code=code,
                                             reason=f"{type(exc).__name__}: {exc}"[:300]))
                return
            done = msgspec.structs.replace(done, messages=self.messages + 2)
            self.messages = 0
            await coord.reply(inc, done)
        elif isinstance(msg, Chat) and msg.recipient in self.agents:
            agent = self.agents[msg.recipient]
            reply = await agent.on_chat(self.context(agent), msg.sender, msg.content)
            if reply is not None:
                await coord.reply(inc, Chat(sender=msg.recipient, content=reply,
                                            in_reply_to=msg.msg_id))
        elif isinstance(msg, Located):
            self.messaging.directory.update(msg.placement, msg.peers)

    async def _locate(self, agent_ids: list[str]) -> Located:
        """Ask the coordinator where agents live (an agent not in the ``Welcome``)."""
        if self._coord is None:
            return Located()
        reply = await self._coord.request(Locate(sender=self.host_id, agent_ids=agent_ids),
                                          timeout=self.options.timeout_s, reliable=True)
        return reply.msg if isinstance(reply.msg, Located) else Located()

    async def serve_peers(self, address: str) -> None:
        """Answer direct peer messages until cancelled: ``Chat`` and typed ``AgentMsg``.

        The hot path: a batch of incoming chats is handled together, in a task
        of its own (an ``on_chat`` may call the model: the loop goes on
        receiving meanwhile), and the replies to each peer leave coalesced in
        one frame (``send_batch``). An agent message runs its recipient's
        handler at once (``start_eagerly``): one that answers without waiting
        costs no task; one that waits (it asks other agents, calls the model)
        goes on in a task of its own, up to ``MAX_HANDLING`` at once, then the
        next batch waits (backpressure into the transport's bounded inbox). A
        message for an agent this host does not hold, or an ``on_chat`` that
        raises, gets an ``Error`` reply.
        """
        async with Server(self.host_id, address, self.options) as server:
            server.acked_by_reply(_is_ask)  # an ask is always answered: the answer acks it
            tasks: set[asyncio.Task[None]] = set()
            while True:
                batch = await server.recv_batch(max_items=4096)
                self.messages += len(batch)
                chats = []
                for inc in batch:
                    if isinstance(inc.msg, AgentMsg):
                        task = start_eagerly(self._agent_message(server, inc))
                        if task is not None:
                            tasks.add(task)
                            task.add_done_callback(tasks.discard)
                            if len(tasks) >= MAX_HANDLING:
                                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    chats.append(inc)
                if chats:
                    task = asyncio.ensure_future(self._chats(server, chats))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

    async def _chats(self, server: Server, chats: list[Incoming]) -> None:
        """Answer a batch of chats, the replies to each peer coalesced in one frame."""
        replies: dict[bytes, list[Message]] = {}
        for inc in chats:
            answer = await self._peer_message(inc)
            if answer is not None:
                replies.setdefault(inc.peer, []).append(answer)
        for peer, msgs in replies.items():
            self.messages += len(msgs)
            try:
                await server.send_batch(msgs, peer=peer)
            except SwarmError as exc:  # the peer left: its agents ask again or give up
                log.warning("host %s: %d repl(ies) to %r not sent: %s",
                            self.host_id, len(msgs), peer, exc)

    async def _agent_message(self, server: Server, inc: Incoming) -> None:
        msg = inc.msg
        assert isinstance(msg, AgentMsg)
        try:
            via = inc.peer.decode(errors="replace").rpartition(".")[0]
            answer = await self.messaging.handle(msg, via)
            if isinstance(answer, Error) and not msg.asks:
                log.warning("host %s: %s from %s to %s failed: %s", self.host_id, msg.kind,
                            msg.sender, msg.recipient or msg.topic, answer.reason[:300])
            elif msg.asks:
                self.messages += 1
                if answer is None:
                    answer = AgentMsg(sender=msg.recipient, kind="", in_reply_to=msg.msg_id)
                if not server.reply_now(inc, answer):
                    await server.reply(inc, answer)
        except SwarmError as exc:  # the asker left: it hears of nothing
            log.warning("host %s: answer to %s not sent: %s", self.host_id, msg.sender, exc)

    async def _peer_message(self, inc: Incoming) -> Message | None:
        msg = inc.msg
        if not isinstance(msg, Chat):
            return None
        agent = self.agents.get(msg.recipient)
        if agent is None:
            return Error(sender=self.host_id, recipient=msg.sender, code=PeerUnavailable.code,
                         reason=f"no agent {msg.recipient!r} on {self.host_id}",
                         in_reply_to=msg.msg_id, correlation_id=msg.msg_id)
        try:
            text = await agent.on_chat(self.context(agent), msg.sender, msg.content)
        except Exception as exc:  # a role's bug or a failed model call: the sender hears of it
            log.warning("host %s: on_chat of %s raised %s: %s", self.host_id, agent.id,
                        type(exc).__name__, str(exc)[:300])
            code = exc.code if isinstance(exc, SwarmError) else HandlerError.code
            return Error(sender=agent.id, recipient=msg.sender, code=code,
                         reason=f"{agent.id}'s on_chat raised {type(exc).__name__}: "
                                f"{str(exc)[:300]}", in_reply_to=msg.msg_id,
                         correlation_id=msg.msg_id)
        if text is None:
            return None
        return Chat(sender=agent.id, recipient=msg.sender, role="assistant", content=text,
                    in_reply_to=msg.msg_id, correlation_id=msg.msg_id)

    async def step(self, step: Step) -> StepDone:
        """Run one phase of a round for the agents it names.

        The answer carries the step's message log and the agents' changed states.
        """
        self.round = step.round
        self._restore(step.restore)
        if step.phase == "local":
            done = await self._local(step)
        elif step.phase == "exchange":
            done = await self._exchange(step)
        else:
            raise SwarmError(f"unknown step phase {step.phase!r}")
        return msgspec.structs.replace(done, log=self.messaging.take_log(),
                                       states=self._changed_states())

    def _restore(self, restore: dict[str, AgentState]) -> None:
        """Load what the lineage holds of agents this incarnation has not run yet."""
        for agent_id, state in restore.items():
            agent = self.agents.get(agent_id)
            if agent is None or agent_id in self._shipped:
                continue
            if state.kg:
                agent.kg = KnowledgeGraph.from_json(state.kg)
            if state.state:
                agent.load_state(json.loads(state.state))
            self._shipped[agent_id] = (_digest(state.kg), _digest(state.state))

    def _changed_states(self) -> dict[str, AgentState]:
        """Each agent's graph and role state that changed since they were last shipped."""
        out: dict[str, AgentState] = {}
        for agent_id, agent in self.agents.items():
            kg = agent.kg.to_json() if len(agent.kg.graph) or agent.kg.pending else None
            saved = agent.save_state()
            state = None if saved is None else msgspec.json.encode(saved).decode()
            digests = (_digest(kg), _digest(state))
            if digests != self._shipped.get(agent_id, ("", "")):
                self._shipped[agent_id] = digests
                out[agent_id] = AgentState(kg=kg, state=state)
        return out

    async def _local(self, step: Step) -> StepDone:
        for agent_id, sha in step.adapters.items():
            agent = self.agents.get(agent_id)
            if agent is not None and agent.adapter is None:
                agent.adapter = sha  # resume from the last committed adapter
        ids = [a for a in step.agent_ids if a in self.agents]
        results = await asyncio.gather(
            *(self.agents[a].local_update(self.context(self.agents[a])) for a in ids),
            return_exceptions=True)
        reports: list[AgentReport] = []
        failed: dict[str, str] = {}
        for agent_id, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException):
                failed[agent_id] = f"{type(result).__name__}: {result}"
                continue
            if result.agent_id != agent_id:  # a role's report speaks for its own agent only
                result = msgspec.structs.replace(result, agent_id=agent_id)
            reports.append(result)
        return StepDone(sender=self.host_id, phase="local", reports=reports, failed=failed)

    async def _exchange(self, step: Step) -> StepDone:
        groups: dict[str, list[Assignment]] = {}
        for item in step.assignments:
            if item.student in self.agents:
                groups.setdefault(item.student, []).append(item)
        students = list(groups)
        results = await asyncio.gather(
            *(self._learn(s, groups[s], step.round) for s in students), return_exceptions=True)
        outcomes: list[PairOutcome] = []
        failed = {}
        for student, result in zip(students, results, strict=True):
            if isinstance(result, BaseException):
                failed[student] = f"{type(result).__name__}: {result}"
            else:
                outcomes.extend(result)
        return StepDone(sender=self.host_id, phase="exchange", outcomes=outcomes, failed=failed)

    async def _learn(self, student_id: str, items: list[Assignment],
                     rnd: int) -> list[PairOutcome]:
        """One student's lessons of the round, all its teachers at once (``exchange_group``)."""
        student = self.agents[student_id]
        lessons = [Lesson(a.teacher, a.teacher_adapter, tuple(self.skills.get(a.teacher, ())))
                   for a in items]
        outcomes = await self.protocol.exchange_group(student, lessons, self.context(student),
                                                      rnd)
        given = {a.teacher for a in items}
        stray = [o.teacher for o in outcomes if o.teacher not in given or o.student != student_id]
        if stray or len(outcomes) != len(items):
            raise SwarmError(f"the protocol answered {len(outcomes)} outcomes for "
                             f"{len(items)} lessons of {student_id} (stray: {stray[:3]})")
        return outcomes

    # -- AgentRuntime (what the agents' contexts call) ------------------------------------

    async def generate_requests(self, requests: Sequence[GenRequest]) -> list[GenOutput]:
        """One output per request, from the model server."""
        if self._model is None:
            raise SwarmError("host is not connected to a model server")
        self.messages += 2  # the request and its answer
        client = ModelClient(self._model, self.host_id, self.silence_s)
        return await client.generate(requests)

    async def train(self, agent_id: str, base_adapter: str | None,
                    examples: Sequence[Example], hyper: dict[str, Any]) -> str:
        """Train on the model server; returns the new adapter's sha256."""
        msg = Train(sender=agent_id, agent_id=agent_id, base_adapter=base_adapter,
                    examples=list(examples), hyper=hyper)
        reply = await self._ask(msg)
        if not isinstance(reply.msg, Trained):
            raise SwarmError(f"model server answered Train with {type(reply.msg).__name__}")
        return reply.msg.adapter

    async def fetch_adapter(self, sha: str, owner: str) -> None:
        """Adapters of one machine live in its shared store; check it holds ``sha``."""
        from swarm.adapters.store import AdapterStore

        if not AdapterStore(self.store_root).has(sha):
            raise AdapterError(f"adapter {sha[:12]} of {owner} is not in this machine's store")

    async def merge(self, adapters: Sequence[str], weights: Sequence[float],
                    method: str = "svd", density: float = 0.5) -> str:
        """Merge on the model server (it holds the base model); returns the merged sha256."""
        msg = Merge(sender=self.host_id, adapters=tuple(adapters), weights=tuple(weights),
                    method=method, density=density)
        reply = await self._ask(msg)
        if not isinstance(reply.msg, Merged):
            raise SwarmError(f"model server answered Merge with {type(reply.msg).__name__}")
        return reply.msg.adapter

    def deliver(self, msg: AgentMsg, *, ask: bool,
                timeout: float) -> Coroutine[Any, Any, AgentMsg | None]:
        """Send an agent message (``PeerMessaging.deliver``'s coroutine: await it)."""
        self.messages += 2 if ask else 1
        return self.messaging.deliver(msg, ask=ask, timeout=timeout)

    async def publish_msg(self, msg: AgentMsg) -> int:
        """Publish an agent message to a topic on every host."""
        sent = await self.messaging.publish(msg)
        self.messages += sent
        return sent

    def subscribe(self, agent_id: str, topic: str) -> None:
        self.messaging.subscribe(agent_id, topic)

    def unsubscribe(self, agent_id: str, topic: str) -> None:
        self.messaging.unsubscribe(agent_id, topic)

    def record(self, entry: LogEntry) -> None:
        self.messaging.log.append(entry)  # PeerMessaging.record, one call less per message

    async def to_coordinator(self, msg: Message, answer: bool,
                             timeout: float | None = None) -> Message | None:
        """A matchmaking message for the coordinator (``Profile``, ``Choose``, ``Reward``).

        Raises:
            SwarmError: not connected, or the typed error of an ``Error`` answer.
        """
        if self._coord is None:
            raise SwarmError("host is not connected to a coordinator")
        self.messages += 2 if answer else 1
        try:
            if answer:
                reply = await self._coord.request(msg, timeout=timeout or self.options.silence_s,
                                                  reliable=True)
                return reply.msg
            await self._coord.send_reliable(msg, timeout=self.options.silence_s)
        except RemoteError as exc:
            raise error_for_code(exc.remote_code, str(exc)) from None
        return None

    async def _ask(self, msg: Message) -> Incoming:
        """Request from the model server, waiting as long as it is heard (``ModelClient.ask``).

        Raises:
            PeerUnavailable: the server was not heard for ``silence_s``.
            SwarmError: the typed error of its ``Error`` answer.
        """
        if self._model is None:
            raise SwarmError("host is not connected to a model server")
        self.messages += 2  # the request and its answer
        return await ModelClient(self._model, self.host_id, self.silence_s).ask(msg)


def _is_ask(msg: Message) -> bool:
    return type(msg) is AgentMsg and msg.asks


def _digest(text: str | None) -> str:
    return "" if text is None else hashlib.sha256(text.encode()).hexdigest()


async def run_host(host: Host) -> None:
    """Run a host until cancelled (the process entry point wraps this)."""
    with contextlib.suppress(asyncio.CancelledError):
        await host.run()
