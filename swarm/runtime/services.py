"""Agent messages to the coordinator: a protocol's service (``ctx.ask_protocol``).

A protocol may keep a part of itself in the coordinator (``Protocol.service``:
the evogit protocol's evolution service writes the artifact's lineage, which
only the coordinator may). Agents reach it with an ``AgentMsg`` on the
coordinator's control socket; a person reaches it the same way from the CLI,
as the sender ``user:<name>``. Each message is checked against the peer it
came from (an agent speaks only through the host that joined with it), its
body decoded by its registered kind, and answered from a task of its own, so a
slow answer (an evaluation) holds up neither the coordinator's other messages
nor its heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from swarm.agents.talk import decode_body, encode_body
from swarm.errors import SecurityError, SwarmError
from swarm.protocols.base import ProtocolService
from swarm.serving.client import ModelClient
from swarm.transport.peers import Client, Incoming, Server, TransportOptions
from swarm.transport.topology import new_routing_id
from swarm.wire.codec import AgentMsg, GenOutput, GenRequest, error_reply

__all__ = ["ModelCaller", "ServiceDesk", "USER_PREFIX"]

log = logging.getLogger(__name__)

_MODEL_SILENCE_S = 120.0

#: The sender prefix of a person's messages (``swarm artifact ...``).
USER_PREFIX = "user:"


class ModelCaller:
    """The coordinator's requests to the swarm's model server, for its protocol's service (a
    judge, a merge resolved by the LLM): one client, connected on the first request."""

    def __init__(self, address: str, options: TransportOptions) -> None:
        self.address, self.options = address, options
        self._client: Client | None = None

    async def generate(self, requests: Sequence[GenRequest]) -> list[GenOutput]:
        """``ModelClient.generate`` over the coordinator's client.

        Raises:
            PeerUnavailable: the model server is not heard for ``silence_s``.
        """
        # as hosts do: a model server that is starting (its engine loads) is waited for
        silence = max(_MODEL_SILENCE_S, self.options.silence_s)
        if self._client is None:
            client = Client(new_routing_id("coordinator-model"), self.address, self.options)
            await client.start()
            self._client = client
            await client.wait_up(silence)
        return await ModelClient(self._client, "coordinator", silence).generate(requests)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                await client.close()


class ServiceDesk:
    """Answers ``AgentMsg``s to the coordinator with the protocol's service."""

    def __init__(self, service: ProtocolService | None, protocol: str) -> None:
        self.service = service
        self.protocol = protocol
        self.tasks: set[asyncio.Task[None]] = set()

    def take(self, server: Server, inc: Incoming, agents_of_peer: set[str]) -> None:
        """Answer ``inc`` (an ``AgentMsg``) in a task of its own."""
        task = asyncio.ensure_future(self._answer(server, inc, agents_of_peer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _answer(self, server: Server, inc: Incoming, agents_of_peer: set[str]) -> None:
        msg = inc.msg
        assert isinstance(msg, AgentMsg)
        try:
            answer = await self._handled(msg, agents_of_peer)
            reply: Any = AgentMsg(sender="coordinator", recipient=msg.sender, kind="",
                                  in_reply_to=msg.msg_id, correlation_id=msg.msg_id,
                                  round=msg.round)
            if answer is not None:
                kind, body = encode_body(answer)
                reply = AgentMsg(sender="coordinator", recipient=msg.sender, kind=kind,
                                 body=body, in_reply_to=msg.msg_id, correlation_id=msg.msg_id,
                                 round=msg.round)
        except SwarmError as exc:
            reply = error_reply(exc, msg, sender="coordinator")
        except Exception as exc:  # the service's bug: the asker hears of it, the swarm goes on
            log.exception("coordinator: the %s service failed on %s", self.protocol, msg.kind)
            reply = error_reply(SwarmError(f"the {self.protocol} service failed: "
                                           f"{type(exc).__name__}: {str(exc)[:300]}"),
                                msg, sender="coordinator")
        with contextlib.suppress(SwarmError):
            await server.reply(inc, reply)

    async def _handled(self, msg: AgentMsg, agents_of_peer: set[str]) -> Any:
        if not msg.sender.startswith(USER_PREFIX) and msg.sender not in agents_of_peer:
            raise SecurityError(f"a message from a peer that does not hold {msg.sender!r}: "
                                f"refused")
        if self.service is None:
            raise SwarmError(f"protocol {self.protocol!r} has no coordinator service to ask")
        return await self.service.handle(msg.sender, decode_body(msg.kind, msg.body))
