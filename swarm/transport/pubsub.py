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

    _kind = zmq.PUB

    def _configure(self, sock: zmq.Socket[bytes]) -> None:
        if self.options.security is not None:
            self.options.security.server_socket(sock, self._ctx)
        warn_if_exposed(self.address, self.options.security)
        sock.bind(self.address)

    async def publish(self, topic: str, msg: Message, payload: Sequence[Frame] = ()) -> None:
        """Publish ``msg`` under ``topic`` (subscribers filter by topic prefix)."""
        await self.send(msg, payload, peer=topic.encode())

    def _dest(self, msg: Message, peer: bytes | None) -> bytes:
        return peer or b""

    def _drain(self, sock: zmq.Socket[bytes]) -> int:
        # A PUB socket receives nothing, but its descriptor still signals send-side
        # events: reading EVENTS re-arms it, else the loop spins on a readable fd.
        sock.getsockopt(zmq.EVENTS)
        return 0


class Subscriber(Endpoint):
    """A SUB that connects to a publisher; ``Incoming.peer`` is the topic."""

    _kind = zmq.SUB
    _prefix = 1

    def __init__(
        self, name: str, address: str, topics: Sequence[str] = ("",),
        options: TransportOptions | None = None, context: zmq.Context[Any] | None = None,
        server_key: bytes | None = None,
    ) -> None:
        super().__init__(name, address, options, context)
        self.topics = list(topics)
        self.server_key = server_key

    def _configure(self, sock: zmq.Socket[bytes]) -> None:
        for topic in self.topics:
            sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        if self.options.security is not None:
            self.options.security.client_socket(sock, self.server_key)
        sock.connect(self.address)

    def send_encoded(self, dest: bytes, frames: list[Frame]) -> bool:
        """A SUB socket cannot answer: nothing is sent (False)."""
        return False
