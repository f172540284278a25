"""Best-effort events: a ``Publisher`` that binds and the ``Subscriber``s that connect to it.

Events (``Pairing``, round progress) are dropped past the publisher's
high-water mark for a slow subscriber: nothing waits for them, nothing acks
them. ``Incoming.peer`` of a received event is its topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zmq

from swarm.transport.options import TransportOptions
from swarm.transport.security import warn_if_exposed
from swarm.transport.socket import Endpoint
from swarm.wire.codec import Frame, Message

__all__ = ["Publisher", "Subscriber"]


class Publisher(Endpoint):
    """A PUB that binds: best-effort events, dropped past the HWM for slow subscribers."""

    socket_type = zmq.PUB

    def configure_socket(self, sock: zmq.Socket[bytes]) -> None:
        """Security, then bind."""
        if self.options.security is not None:
            self.options.security.server_socket(sock, self.context)
        warn_if_exposed(self.address, self.options.security)
        sock.bind(self.address)

    async def publish(self, topic: str, msg: Message, payload: Sequence[Frame] = ()) -> None:
        """Publish ``msg`` under ``topic`` (subscribers filter by topic prefix)."""
        await self.send(msg, payload, peer=topic.encode())

    def destination(self, msg: Message, peer: bytes | None) -> bytes:
        """The topic ``publish`` gives as ``peer``."""
        return peer or b""


class Subscriber(Endpoint):
    """A SUB that connects to a publisher; ``Incoming.peer`` is the topic."""

    socket_type = zmq.SUB

    def __init__(
        self, name: str, address: str, topics: Sequence[str] = ("",),
        options: TransportOptions | None = None, context: zmq.Context[Any] | None = None,
        server_key: bytes | None = None,
    ) -> None:
        super().__init__(name, address, options, context)
        self.topics = list(topics)
        self.server_key = server_key

    def configure_socket(self, sock: zmq.Socket[bytes]) -> None:
        """Subscribe to the topics, set security, connect."""
        for topic in self.topics:
            sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        if self.options.security is not None:
            self.options.security.client_socket(sock, self.server_key)
        sock.connect(self.address)

    def send_encoded(self, dest: bytes, frames: list[Frame]) -> bool:
        """A SUB socket cannot answer: nothing is sent (False)."""
        return False
