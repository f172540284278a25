"""ZeroMQ transport: one socket per role per process, typed messages, reliable delivery.

Usage (the coordinator, a host and a model server of issue 7 look like this)::

    opts = TransportOptions.from_config(cfg.transport, security=CurveSecurity.load(...))
    # coordinator: one ROUTER for control, one PUB for events
    async with Server("coordinator", endpoint(cfg.transport, 0), opts) as ctl, \\
               Publisher("coordinator", endpoint(cfg.transport, 1), opts) as events:
        for inc in await ctl.recv_batch():            # Join, Profile, Reward, Commit, ...
            if isinstance(inc.msg, Join):
                await ctl.reply(inc, Welcome(swarm="demo", peers=book))
        await events.publish("round", Pairing(round=3, pairs=[("a1", "b7")]))

    # agent host: thousands of agents share one Client per remote process;
    # sender/recipient name agents, the transport never opens a socket per agent
    async with Client("host-0", endpoint(cfg.transport, 0), opts) as coord, \\
               Client("host-0", model_server_ep, opts) as model:
        await coord.send_reliable(Reward(sender="b7", teacher="a1", student="b7", value=0.4))
        out = await model.request(Generate(sender="b7", requests=[GenRequest(prompt="2+2=")]))
        inc = await coord.recv()                      # inc.msg.recipient says which agent

        async with Subscriber("host-0", endpoint(cfg.transport, 1), ["round"], opts) as ev:
            pairing = (await ev.recv()).msg                   # Incoming.peer is the topic

    # model server: batches naturally, answers each request with reply()
    async with Server("model-0", model_server_ep, opts) as srv:
        while True:
            batch = await srv.recv_batch(max_items=256)
            for inc in batch:
                await srv.reply(inc, Generated(texts=run(inc.msg.requests)))

    # adapters, host to host (swarm.transport.transfer): verified by sha256, handed on once
    AdapterReceiver(host_server, on_adapter=lambda a: cas.put(a.sha256, a.data))
    await AdapterSender(client_to_peer_host).send(data, sha256, sender="a1", recipient="b7")

A ``Client``'s name is its ZeroMQ routing id: unique among the clients of
one server, stable across reconnects so the server's routes survive them,
and hard to guess where it matters (a host uses its name plus 64 secret
random bits, ``swarm.transport.topology.new_routing_id``): libzmq hands a connection over to
whoever connects with the same routing id.

Roles: ``Server`` is a ROUTER that binds (coordinator, hosts, model servers),
``Client`` a DEALER that connects to one server, ``Publisher``/``Subscriber``
carry best-effort events. Adapter bytes go through ``swarm.transport.transfer``.

Reliability. ``Client`` runs the Paranoid Pirate pattern: it heartbeats every
``heartbeat_ms``, counts down ``liveness`` for each silent period, declares the
server dead at zero (pending requests fail with ``PeerUnavailable``) and
reconnects on a fresh socket with exponential backoff. ``Server`` heartbeats
every peer it knows and forgets peers silent for ``liveness`` periods; a send
to an agent or peer it has no live route to raises ``PeerUnavailable``, and
the socket is ``ROUTER_MANDATORY`` so a peer that vanishes between that check
and the flush is logged as a drop instead of vanishing silently. ``send_reliable`` and
``request(reliable=True)`` set ``ack`` on the envelope: the receiver
acknowledges, de-duplicates by ``msg_id`` (and answers a duplicate request with
its cached reply); the sender retries until acknowledged.

Limits. ``MAXMSGSIZE`` is always set (libzmq drops the connection of a peer
sending a bigger frame) and a multipart message whose frames add up to more
than ``max_message_bytes`` gets an ``Error(code="wire.oversize")`` reply.
High-water marks are 100,000 ZeroMQ messages each way (each a frame of up to
``max_batch`` coalesced messages or ``max_batch_bytes``): a burst from
thousands of agents fits, and past the mark ``send`` waits for room (up to the
liveness timeout, then ``PeerUnavailable``) instead of dropping; ``Publisher``
drops past its mark because events are best effort. Adapter chunks are bounded
by credit, not by the HWM.

Hot path. The socket's descriptor is registered with the event loop once;
when it fires, a callback drains up to ``drain_batch`` messages with
non-blocking receives and decodes each with msgspec (awaiting each ``recv()``
is 7x slower, see DESIGN.md section 4). Payload-free messages sent to one
peer in the same loop pass are coalesced into one frame. A request that is
the only one in flight polls the socket for up to ``busy_poll_us`` before the
loop sleeps (``swarm.transport.reliable``), which takes most of the loop's sleep and
wake-up out of a short round trip. Processes run on uvloop (``swarm.transport.loop``).
Details in ``swarm.transport.socket``; replies, acks and retries in ``swarm.transport.reliable``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from swarm.errors import PeerUnavailable
from swarm.transport.reliable import DOWN, Messenger, down_signal
from swarm.transport.security import warn_if_exposed
from swarm.transport.socket import Endpoint, Incoming, TransportOptions
from swarm.wire.codec import Frame, Heartbeat, Message, encode

__all__ = [
    "TransportOptions",
    "Incoming",
    "Endpoint",
    "Messenger",
    "Server",
    "Client",
    "Publisher",
    "Subscriber",
    "down_signal",
    "DOWN",
]

log = logging.getLogger(__name__)


class Server(Messenger):
    """A ROUTER that binds: answers requests and routes by agent id.

    Every message received teaches the route ``msg.sender -> peer``, unless
    the sender is already routed to another live peer: a name's route stays
    with the peer that used it first until that peer is forgotten, so a
    message from another socket that claims the name (a forged ``Chat``) is
    still delivered, and answered to its own peer, but moves no route. Under
    CURVE each peer is also bound to the public key it authenticated with
    (``keys``); a message on the same routing id under another key is dropped. ``send(msg)`` without ``peer`` routes by
    ``msg.recipient``. ``on_peer_lost(peer)`` is called when a peer misses
    ``liveness`` heartbeats.
    """

    _kind = zmq.ROUTER
    _prefix = 1

    def __init__(
        self, name: str, address: str, options: TransportOptions | None = None,
        context: zmq.Context[Any] | None = None,
        on_peer_lost: Callable[[bytes], None] | None = None,
    ) -> None:
        super().__init__(name, address, options, context)
        self.peers: dict[bytes, float] = {}
        self.routes: dict[str, bytes] = {}
        self.keys: dict[bytes, bytes] = {}  # peer -> CURVE public key (Z85), under CURVE
        self._warned: set[bytes] = set()  # peers already logged for a refused claim
        self.lapsed: dict[bytes, float] = {}  # forgotten peer -> when; its names held silence_s
        self._routes = self.routes  # the messenger learns sender -> peer as messages arrive
        self._on_peer_lost = on_peer_lost
        self._copy_envelope = self.options.security is None

    async def start(self) -> None:
        """Bind and start the heartbeat loop."""
        await super().start()
        self._tasks.append(asyncio.ensure_future(self._heartbeat_loop()))

    def route(self, agent_id: str, peer: bytes) -> None:
        """Route messages for ``agent_id`` to ``peer``."""
        self.routes[agent_id] = peer

    def key_of(self, peer: bytes) -> bytes:
        """The CURVE public key ``peer`` authenticated with (``b""`` without security)."""
        return self.keys.get(peer, b"")

    def holds(self, peer: bytes) -> bool:
        """Whether ``peer`` still holds its names: live, or forgotten under ``silence_s`` ago."""
        return peer in self.peers or peer in self.lapsed

    def _claim(self, sender: str, peer: bytes) -> bool:
        """Route ``sender`` to ``peer`` unless another peer holds it (then keep that)."""
        held = self.routes.get(sender)
        if held is None or held == peer or not self.holds(held):
            self.routes[sender] = peer
            return True
        if self._warn_once(peer):
            log.warning("%s: %r sent as %r, which %r holds: the route stays (further "
                        "claims from this peer are not logged)", self.name, peer, sender, held)
        return False

    def _warn_once(self, peer: bytes) -> bool:
        """True the first time ``peer`` is warned about (a flood of forgeries logs one line)."""
        if peer in self._warned or len(self._warned) >= 10_000:
            return False
        self._warned.add(peer)
        return True

    def _admit(self, peer: bytes, frames: list[Frame]) -> bool:
        if not frames or not isinstance(frames[0], zmq.Frame):
            return True
        key = str(frames[0].get("User-Id") or "").encode()
        known = self.keys.setdefault(peer, key)
        if known == key:
            frames[0] = frames[0].bytes
            return True
        if self._warn_once(peer):
            log.warning("%s: dropped a message from %r under another key (%s, bound to %s)",
                        self.name, peer, key[:8].decode(), known[:8].decode())
        return False

    def _configure(self, sock: zmq.Socket[bytes]) -> None:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.ROUTING_ID, self.name.encode())
        if self.options.security is not None:
            self.options.security.server_socket(sock, self._ctx)
        warn_if_exposed(self.address, self.options.security)
        sock.bind(self.address)

    def _dest(self, msg: Message, peer: bytes | None) -> bytes:
        if peer is None:
            peer = self.routes.get(msg.recipient)
            if peer is None:
                raise PeerUnavailable(f"{self.name}: no route to {msg.recipient!r}")
        if peer not in self.peers:
            raise PeerUnavailable(f"{self.name}: peer {peer!r} is not connected")
        return peer

    def _on_traffic(self, peer: bytes) -> None:
        if peer not in self.peers:  # let a new client see us at once
            self.lapsed.pop(peer, None)
            self.peers[peer] = self._now
            self._send_now(peer, encode(Heartbeat(sender=self.name)))
        self.peers[peer] = self._now

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.options.heartbeat_ms / 1000.0
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            beat = encode(Heartbeat(sender=self.name))
            for peer, seen in list(self.peers.items()):
                if now - seen > self.options.timeout_s:
                    self._forget(peer, now)
                else:
                    self._send_now(peer, beat)
            for peer, since in list(self.lapsed.items()):
                if now - since > self.options.silence_s:
                    self._release(peer)
            self._check_readable()

    def _forget(self, peer: bytes, now: float) -> None:
        """A peer missed its heartbeats: no more sends to it, but its names stay held."""
        del self.peers[peer]
        self.lapsed[peer] = now
        if self._on_peer_lost is not None:
            self._on_peer_lost(peer)

    def _release(self, peer: bytes) -> None:
        """A peer silent for ``silence_s``: its routes and key are free for others."""
        del self.lapsed[peer]
        self.keys.pop(peer, None)
        self._warned.discard(peer)
        for agent in [a for a, p in self.routes.items() if p == peer]:
            del self.routes[agent]


class Client(Messenger):
    """A DEALER connected to one server, kept alive by the Paranoid Pirate pattern.

    ``up`` is true once the server has been heard since the last (re)connect.
    Listeners added with ``on_down`` run when the server is declared dead.
    """

    _kind = zmq.DEALER

    def __init__(
        self, name: str, address: str, options: TransportOptions | None = None,
        context: zmq.Context[Any] | None = None, server_key: bytes | None = None,
    ) -> None:
        super().__init__(name, address, options, context)
        self.server_key = server_key
        self._up = asyncio.Event()
        self._last_heard = 0.0
        self._down_listeners: list[Callable[[], None]] = []
        self.reconnects = 0

    @property
    def up(self) -> bool:
        """Whether the server answered since the last (re)connect."""
        return self._up.is_set()

    async def start(self) -> None:
        """Connect and start the heartbeat loop."""
        await super().start()
        self._tasks.append(asyncio.ensure_future(self._heartbeat_loop()))

    async def wait_up(self, timeout: float | None = None) -> None:
        """Wait until the server is heard. Raises ``PeerUnavailable`` after ``timeout``."""
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except TimeoutError:
            raise PeerUnavailable(f"{self.name}: {self.address} not reachable") from None

    def on_down(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` each time the server is declared dead."""
        self._down_listeners.append(listener)

    def _configure(self, sock: zmq.Socket[bytes]) -> None:
        sock.setsockopt(zmq.ROUTING_ID, self.name.encode())
        sock.setsockopt(zmq.IMMEDIATE, 1)  # no queueing towards a server that is not there
        sock.setsockopt(zmq.RECONNECT_IVL, self.options.heartbeat_ms)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, self.options.backoff_max_ms)
        if self.options.security is not None:
            self.options.security.client_socket(sock, self.server_key)
        sock.connect(self.address)

    def _on_traffic(self, peer: bytes) -> None:
        self._last_heard = self._now
        if not self._up.is_set():
            self._up.set()

    @property
    def liveness(self) -> int:
        """Heartbeat periods left before the server is declared dead (Paranoid Pirate)."""
        silent = asyncio.get_running_loop().time() - self._last_heard
        return max(self.options.liveness - int(silent * 1000 // self.options.heartbeat_ms), 0)

    async def _heartbeat_loop(self) -> None:
        """Heartbeat every period; dead after ``liveness`` silent periods; reconnect with backoff."""
        loop = asyncio.get_running_loop()
        period = self.options.heartbeat_ms / 1000.0
        backoff = period
        self._last_heard = next_beat = loop.time()
        while True:
            now = loop.time()
            if now >= next_beat:
                self._send_now(b"", encode(Heartbeat(sender=self.name)))
                self._check_readable()
                next_beat = now + period
            if self.liveness > 0:
                deadline = self._last_heard + self.options.timeout_s
                if self._up.is_set():
                    backoff = period
                await asyncio.sleep(max(min(next_beat, deadline) - now, 0.001))
                continue
            self._declare_down()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.options.backoff_max_ms / 1000.0)
            self._reconnect()
            self._last_heard = next_beat = loop.time()

    def _declare_down(self) -> None:
        was_up = self._up.is_set()
        self._up.clear()
        self._fail_pending("peer down")
        if was_up:
            for listener in list(self._down_listeners):
                listener()

    def _reconnect(self) -> None:
        """Drop the socket (and whatever libzmq queued in it) and connect a fresh one."""
        self.reconnects += 1
        self._close_socket()
        self._open()
        self._send_now(b"", encode(Heartbeat(sender=self.name)))


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

    def _send_now(self, dest: bytes, frames: list[Frame]) -> bool:
        return False  # a SUB socket cannot answer
