"""Agent messages, host to host: the directory, the peer clients, delivery and topics.

A host's ``PeerMessaging`` carries its agents' typed messages (``AgentMsg``)
straight to the host of the recipient, never through the coordinator:

- where an agent lives comes from the coordinator's ``Welcome`` (``placement``
  agent -> host, ``peers`` host -> peer endpoint), and from a ``Locate`` request
  for an agent it has not heard of (one that joined later);
- a message for an agent of this host is handed over in process (decoded from
  its wire bytes all the same, so both paths check the same things); one for
  another host goes over one DEALER per remote host to that host's peer ROUTER;
- ``ask`` is a reliable request (at-least-once, de-duplicated by ``msg_id`` on
  the receiving side, which answers a resend with its cached answer); ``send``
  and ``publish`` follow the message kind's delivery (``swarm.agents.talk``);
- a topic is published to every host of the swarm, and each host hands it to
  its own agents subscribed to that topic.

The receiving side (``handle``) decodes the body by its registered kind, merges
a ``KGDelta`` into the recipient's graph, runs the recipient's handler and
answers: the handler's return, or an ``Error`` whose code says what went wrong
(``agent.unknown``, ``agent.type``, ``agent.handler``, ``security``). A message
whose sender is an agent placed on another host than the connection it came
over is refused as an impersonation.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from swarm.agents.talk import decode_body, encode_body
from swarm.errors import (
    AskTimeout,
    HandlerError,
    PeerUnavailable,
    RemoteError,
    SecurityError,
    SwarmError,
    UnknownAgent,
    error_for_code,
)
from swarm.transport.peers import Client, TransportOptions
from swarm.wire.messages import AgentMsg, Error, KGDelta, Located, LogEntry, Message

if TYPE_CHECKING:
    from swarm.agents.base import Agent
    from swarm.agents.context import AgentContext

__all__ = ["PeerMessaging", "Directory"]

log = logging.getLogger(__name__)


class Directory:
    """Where agents live: agent -> host and host -> peer endpoint."""

    def __init__(self) -> None:
        self.placement: dict[str, str] = {}
        self.peers: dict[str, str] = {}

    def update(self, placement: Mapping[str, str], peers: Mapping[str, str]) -> None:
        """Learn (or correct) placements and endpoints."""
        self.placement.update(placement)
        self.peers.update(peers)

    def host_of(self, agent_id: str) -> str | None:
        return self.placement.get(agent_id)


class PeerMessaging:
    """One host's side of agent messaging (module docstring)."""

    def __init__(
        self,
        host_id: str,
        routing_id: str,
        agents: Mapping[str, Agent],
        options: TransportOptions,
        context_of: Callable[[Agent], AgentContext],
        locate: Callable[[list[str]], Awaitable[Located]] | None = None,
    ) -> None:
        self.host_id = host_id
        self.routing_id = routing_id
        self.agents = agents
        self.options = options
        self.context_of = context_of
        self.locate = locate
        self.directory = Directory()
        self.topics: dict[str, set[str]] = {}  # topic -> this host's subscribed agents
        self.log: list[LogEntry] = []
        self.sent = 0
        self._clients: dict[str, Client] = {}

    async def close(self) -> None:
        """Close the clients to other hosts."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()

    # -- sending ---------------------------------------------------------------------

    async def deliver(self, msg: AgentMsg, *, ask: bool, timeout: float) -> AgentMsg | None:
        """Send ``msg`` to its recipient; with ``ask`` wait for and return the answer.

        Raises:
            UnknownAgent: no such agent in the swarm, or its host is unreachable.
            AskTimeout: no answer within ``timeout``.
            AgentError and others: the error the recipient's host answered with.
        """
        recipient = msg.recipient
        # the lookups that need no coordinator and no new client are not awaited (hot path)
        host = (self.host_id if recipient in self.agents else self.directory.placement.get(
            recipient)) or await self._host_of(recipient)
        self.sent += 1
        if host == self.host_id:
            answer = await self.handle(msg, self.host_id)
            if isinstance(answer, Error):
                raise error_for_code(answer.code, answer.reason)
            return answer if ask else None
        client = self._clients.get(host) or await self._client(host)
        try:
            if ask:
                inc = await client.request(msg if msg.asks else msgspec.structs.replace(
                    msg, asks=True), timeout=timeout, reliable=True)
            elif msg.ack:
                await client.send_reliable(msg, timeout=timeout)
                return None
            else:
                await client.send(msg)
                return None
        except RemoteError as exc:
            raise error_for_code(exc.remote_code, str(exc)) from None
        except PeerUnavailable:
            if ask:
                raise AskTimeout(f"{msg.recipient} (on {host}) did not answer a {msg.kind} "
                                 f"within {timeout:g} s") from None
            raise UnknownAgent(f"{msg.recipient}'s host {host} is unreachable") from None
        if not isinstance(inc.msg, AgentMsg):
            raise HandlerError(f"{msg.recipient} answered a {msg.kind} with "
                               f"{type(inc.msg).__name__}")
        return inc.msg

    async def publish(self, msg: AgentMsg) -> int:
        """Send a topic message to every host (this one included); how many took it."""
        hosts = sorted(set(self.directory.peers) | {self.host_id})
        sent = 0
        for host in hosts:
            if host == self.host_id:
                await self.handle(msg, self.host_id)
                sent += 1
                continue
            try:
                client = await self._client(host)
                if msg.ack:
                    await client.send_reliable(msg)
                else:
                    await client.send(msg)
                sent += 1
            except SwarmError as exc:  # a host that is down misses the topic; the others get it
                log.warning("host %s: topic %s not sent to %s: %s", self.host_id, msg.topic,
                            host, exc)
        self.sent += sent
        return sent

    def subscribe(self, agent_id: str, topic: str) -> None:
        self.topics.setdefault(topic, set()).add(agent_id)

    def unsubscribe(self, agent_id: str, topic: str) -> None:
        self.topics.get(topic, set()).discard(agent_id)

    def record(self, entry: LogEntry) -> None:
        self.log.append(entry)

    def take_log(self) -> list[LogEntry]:
        """The log since the last call (shipped with a ``StepDone``)."""
        taken, self.log = self.log, []
        return taken

    async def _host_of(self, agent_id: str) -> str:
        if agent_id in self.agents:
            return self.host_id
        host = self.directory.host_of(agent_id)
        if host is None and self.locate is not None:
            found = await self.locate([agent_id])
            self.directory.update(found.placement, found.peers)
            host = self.directory.host_of(agent_id)
        if host is None:
            raise UnknownAgent(f"no agent {agent_id[:80]!r} on any live host of the swarm")
        return host

    async def _client(self, host: str) -> Client:
        client = self._clients.get(host)
        if client is not None:
            return client
        address = self.directory.peers.get(host)
        if not address:
            raise UnknownAgent(f"host {host} has no peer address")
        client = Client(self.routing_id, address, self.options)
        await client.start()
        self._clients[host] = client
        return client

    # -- receiving -------------------------------------------------------------------

    async def handle(self, msg: AgentMsg, via: str) -> AgentMsg | Error | None:
        """Deliver ``msg`` (arrived from host ``via``) to this host's agents; the answer.

        Never raises: a failure is the ``Error`` answer.
        """
        try:
            return await self._handle(msg, via)
        except SwarmError as exc:  # AgentError, SecurityError, WireError...: typed answers
            return _error(exc, msg, self.host_id)
        except Exception as exc:  # a role's bug: the asker hears of it, the host keeps serving
            log.warning("host %s: handler for %s to %s raised %s: %s", self.host_id, msg.kind,
                        msg.recipient, type(exc).__name__, str(exc)[:300])
            return _error(HandlerError(f"{msg.recipient}'s handler for {msg.kind} raised "
                                       f"{type(exc).__name__}: {str(exc)[:300]}"), msg,
                          self.host_id)

    async def _handle(self, msg: AgentMsg, via: str) -> AgentMsg | None:
        placed = self.directory.placement.get(msg.sender)
        if via != self.host_id and placed is not None and placed != via:
            raise SecurityError(f"a message from {via} claims to be from {msg.sender}, "
                                f"an agent of {placed}: refused")
        body = decode_body(msg.kind, msg.body)
        if msg.topic:
            for agent_id in sorted(self.topics.get(msg.topic, ())):
                agent = self.agents.get(agent_id)
                if agent is not None and agent_id != msg.sender:
                    _checked(agent, msg, await self._run(agent, msg, body))
            return None
        agent = self.agents.get(msg.recipient)
        if agent is None:
            raise UnknownAgent(f"no agent {msg.recipient[:80]!r} on host {self.host_id}")
        answer = _checked(agent, msg, await self._run(agent, msg, body))
        if answer is None:
            return None
        kind, data = encode_body(answer)
        return AgentMsg(sender=agent.id, recipient=msg.sender, kind=kind, body=data,
                        in_reply_to=msg.msg_id, correlation_id=msg.msg_id, round=msg.round)

    def _run(self, agent: Agent, msg: AgentMsg, body: msgspec.Struct) -> Coroutine[Any, Any, Any]:
        """The handler's coroutine for ``body`` (a ``KGDelta`` merged into the graph first)."""
        if isinstance(body, KGDelta):
            agent.kg.apply(body)
        return agent.handle(self.context_of(agent), msg.sender, body)


def _checked(agent: Agent, msg: AgentMsg, answer: Any) -> Any:
    """A handler's answer: a registered message or ``None``.

    Raises:
        HandlerError: it returned something else.
    """
    if answer is not None and not isinstance(answer, msgspec.Struct):
        raise HandlerError(f"{agent.id}'s handler for {msg.kind} returned "
                           f"{type(answer).__name__}, not a registered message")
    return answer


def _error(exc: SwarmError, to: Message, sender: str) -> Error:
    return Error(sender=sender, recipient=to.sender, code=exc.code, reason=str(exc)[:2000],
                 in_reply_to=to.msg_id, correlation_id=to.msg_id)

