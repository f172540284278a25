"""The conversing roles of the ZeroMQ transport: ``Server`` (ROUTER) and ``Client`` (DEALER).

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
                await srv.reply(inc, Generated(outputs=run(inc.msg.requests)))

    # adapters, host to host (swarm.transport.transfer): verified by sha256, handed on once
    AdapterReceiver(host_server, on_adapter=lambda a: cas.put(a.sha256, a.data))
    await AdapterSender(client_to_peer_host).send(data, sha256, sender="a1", recipient="b7")

A ``Client``'s name is its ZeroMQ routing id: unique among the clients of
one server, stable across reconnects so the server's routes survive them,
and hard to guess where it matters (a host uses its name plus 64 secret
random bits, ``swarm.transport.topology.new_routing_id``): libzmq hands a connection over to
whoever connects with the same routing id.

Roles: ``Server`` is a ROUTER that binds (coordinator, hosts, model servers),
``Client`` a DEALER that connects to one server; ``Publisher``/``Subscriber``
(``swarm.transport.pubsub``) carry best-effort events. Adapter bytes go through
``swarm.transport.transfer``.

Reliability. ``Client`` runs the Paranoid Pirate pattern: it heartbeats every
``heartbeat_ms``, counts down ``liveness`` for each silent period, declares the
server dead at zero (pending requests fail with ``PeerUnavailable``) and
reconnects on a fresh socket with exponential backoff. ``Server`` heartbeats
every peer it knows and forgets peers silent for ``liveness`` periods; a send
to an agent or peer it has no live route to raises ``PeerUnavailable``, and
the socket is ``ROUTER_MANDATORY`` so a peer that vanishes between that check
and the flush is logged as a drop instead of vanishing silently. Silence is
counted only while this process runs: a heartbeat loop that wakes more than a
period late (the process was descheduled, the machine paused) moves its peers'
last-heard times on by the delay, because its timers run before its sockets are
read and the peers' traffic of that time is still unread. ``send_reliable`` and
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

Hot path (batched reads, coalesced writes, the busy poll of a lone request):
``swarm.transport.socket``. Processes run on uvloop (``swarm.transport.loop``).

Structure. ``Endpoint`` (``swarm.transport.socket``) is the socket with its
reader, inbox and write queue (``swarm.transport.outbox.Outbox``); every role
here is an ``Endpoint`` one level down that sets its ``socket_type`` and
overrides the endpoint's hooks (``configure_socket``, ``intercept``,
``on_traffic``, ``destination``, ...), never its private state. ``Client`` and
``Server`` each hold a ``Conversations`` (``swarm.transport.reliable``) for
replies, requests, acks, retries and de-duplication, and expose its methods; a
``Server`` holds its ``Routes`` (``swarm.transport.routes``): the peers it
hears and the names routed to them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import zmq

from swarm.errors import PeerUnavailable, WireError
from swarm.transport.options import TransportOptions
from swarm.transport.reliable import DOWN, Conversations, down_signal
from swarm.transport.routes import Routes
from swarm.transport.security import warn_if_exposed
from swarm.transport.socket import Endpoint, Hook, Incoming
from swarm.wire.codec import Frame, Heartbeat, Message, encode

__all__ = [
    "TransportOptions",
    "Incoming",
    "Endpoint",
    "Conversations",
    "Server",
    "Client",
    "down_signal",
    "DOWN",
]

log = logging.getLogger(__name__)


class Conversing:
    """The request/reply calls of ``Client`` and ``Server``: each delegates to its ``Conversations``."""

    conversations: Conversations

    def expect(self, msg_id: str, hook: Hook | None) -> None:
        """Route replies whose ``correlation_id`` is ``msg_id`` to ``hook`` (``None`` stops)."""
        self.conversations.expect(msg_id, hook)

    # reply and request hand back the Conversations coroutine itself (one frame less per call)

    def reply(self, to: Incoming, msg: Message,
              payload: Sequence[Frame] = ()) -> Coroutine[Any, Any, None]:
        """Answer ``to`` (``Conversations.reply``; await it)."""
        return self.conversations.reply(to, msg, payload)

    def reply_now(self, to: Incoming, msg: Message) -> bool:
        """Answer ``to`` if that needs no wait (``Conversations.reply_now``); False: ``reply``."""
        return self.conversations.reply_now(to, msg)

    def request(
        self, msg: Message, payload: Sequence[Frame] = (), peer: bytes | None = None,
        timeout: float = 30.0, reliable: bool = False,
    ) -> Coroutine[Any, Any, Incoming]:
        """Send ``msg`` and wait for its answer (``Conversations.request``; await it)."""
        return self.conversations.request(msg, payload, peer, timeout, reliable)

    async def send_reliable(
        self, msg: Message, payload: Sequence[Frame] = (), peer: bytes | None = None,
        timeout: float = 60.0,
    ) -> None:
        """Send until acknowledged (``Conversations.send_reliable``)."""
        await self.conversations.send_reliable(msg, payload, peer, timeout)

    def acked_by_reply(self, when: Callable[[Message], bool]) -> None:
        """No ``Ack`` for arriving requests that are always answered (``Conversations.acked_by_reply``)."""
        self.conversations.acked_by_reply(when)


class Server(Endpoint, Conversing):
    """A ROUTER that binds: answers requests and routes by agent id.

    Every message received teaches the route ``msg.sender -> peer``, unless
    the sender is already routed to another live peer (``swarm.transport.routes``):
    a message from another socket that claims the name (a forged ``Chat``) is
    still delivered, and answered to its own peer, but moves no route. Under
    CURVE a message on a peer's routing id under another key than the one it
    authenticated with is dropped. ``send(msg)`` without ``peer`` routes by
    ``msg.recipient``. ``on_peer_lost(peer)`` is called when a peer misses
    ``liveness`` heartbeats. Replies, requests and acks go through ``conversations``.
    """

    socket_type = zmq.ROUTER

    def __init__(
        self, name: str, address: str, options: TransportOptions | None = None,
        context: zmq.Context[Any] | None = None,
        on_peer_lost: Callable[[bytes], None] | None = None,
    ) -> None:
        keyed = options is not None and options.security is not None
        super().__init__(name, address, options, context,
                         admit=self._bind_key if keyed else None)
        self.conversations = Conversations(self)
        self._routes = Routes(name)
        self._on_peer_lost = on_peer_lost

    async def start(self) -> None:
        """Bind and start the heartbeat loop."""
        await super().start()
        self.background(self._heartbeat_loop())

    # -- routes (``swarm.transport.routes.Routes``) -------------------------------------

    @property
    def peers(self) -> Mapping[bytes, float]:
        """The live peers and the loop time each was last heard."""
        return self._routes.live

    @property
    def routes(self) -> Mapping[str, bytes]:
        """Each name (agent, host) and the peer it is routed to."""
        return self._routes.names

    def route(self, agent_id: str, peer: bytes) -> None:
        """Route messages for ``agent_id`` to ``peer``."""
        self._routes.route(agent_id, peer)

    def key_of(self, peer: bytes) -> bytes:
        """The CURVE public key ``peer`` authenticated with (``b""`` without security)."""
        return self._routes.key_of(peer)

    def holds(self, peer: bytes) -> bool:
        """Whether ``peer`` still holds its names: live, or forgotten under ``silence_s`` ago."""
        return self._routes.holds(peer)

    # -- the endpoint's hooks -------------------------------------------------------

    def intercept(self, peer: bytes, msg: Message, payload: list[Frame]) -> bool:
        """Learn the sender's route; take heartbeats, acks and answers (``conversations``)."""
        if type(msg) is Heartbeat:
            return True
        if msg.sender:
            self._routes.claim(msg.sender, peer)
        if msg.ack or msg.correlation_id is not None:
            return self.conversations.take(peer, msg, payload)
        return False

    def on_refused(self, peer: bytes, exc: WireError, to: Message | None) -> None:
        """A refused answer fails the request waiting for it."""
        self.conversations.refused(peer, exc, to)

    def on_sent(self, msg: Message, frames: list[Frame] | None) -> None:
        """Cache the reply to a must-not-lose request."""
        self.conversations.sent(msg, frames)

    def on_closed(self) -> None:
        """Pending requests fail."""
        self.conversations.fail_pending("closed")

    def _bind_key(self, peer: bytes, frames: list[Frame]) -> bool:
        """Under CURVE: take a message only under the key its peer authenticated with."""
        if not frames or not isinstance(frames[0], zmq.Frame):
            return True
        if not self._routes.bind_key(peer, str(frames[0].get("User-Id") or "").encode()):
            return False
        frames[0] = frames[0].bytes
        return True

    def configure_socket(self, sock: zmq.Socket[bytes]) -> None:
        """Mandatory routing, handover, security, then bind."""
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.ROUTING_ID, self.name.encode())
        if self.options.security is not None:
            self.options.security.server_socket(sock, self.context)
        warn_if_exposed(self.address, self.options.security)
        sock.bind(self.address)

    def destination(self, msg: Message, peer: bytes | None) -> bytes:
        """``peer`` if it is live, else the live peer ``msg.recipient`` is routed to."""
        routes = self._routes
        if peer is None:
            peer = routes.names.get(msg.recipient)
            if peer is None:
                raise PeerUnavailable(f"{self.name}: no route to {msg.recipient!r}")
        if peer not in routes.live:
            raise PeerUnavailable(f"{self.name}: peer {peer!r} is not connected")
        return peer

    def on_traffic(self, peer: bytes, now: float) -> None:
        """Mark ``peer`` live; a new one is heartbeaten at once, so it sees this server."""
        if self._routes.heard(peer, now):
            self.send_encoded(peer, encode(Heartbeat(sender=self.name)))

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        period, routes = self.options.heartbeat_ms / 1000.0, self._routes
        while True:
            due = loop.time() + period
            await asyncio.sleep(period)
            now = loop.time()
            if now - due > period:  # this process stalled: its peers' silence meanwhile is not theirs
                log.info("%s: the event loop stalled for %.1f s: peers are not blamed for it",
                         self.name, now - due)
                routes.excuse(now - due)
            for peer in routes.silent(now, self.options.timeout_s):
                log.info("%s: peer %r silent for %.1f s: no more sends to it", self.name, peer,
                         now - routes.live[peer])
                routes.forget(peer, now)
                if self._on_peer_lost is not None:
                    self._on_peer_lost(peer)
            beat = encode(Heartbeat(sender=self.name))
            for peer in list(routes.live):
                self.send_encoded(peer, beat)
            routes.release_expired(now, self.options.silence_s)
            self.check_readable()


class Client(Endpoint, Conversing):
    """A DEALER connected to one server, kept alive by the Paranoid Pirate pattern.

    ``up`` is true once the server has been heard since the last (re)connect.
    Listeners added with ``on_down`` run when the server is declared dead.
    Replies, requests and acks go through ``conversations``.
    """

    socket_type = zmq.DEALER

    def __init__(
        self, name: str, address: str, options: TransportOptions | None = None,
        context: zmq.Context[Any] | None = None, server_key: bytes | None = None,
    ) -> None:
        super().__init__(name, address, options, context)
        self.conversations = Conversations(self)
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
        self.background(self._heartbeat_loop())

    async def wait_up(self, timeout: float | None = None) -> None:
        """Wait until the server is heard. Raises ``PeerUnavailable`` after ``timeout``."""
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except TimeoutError:
            raise PeerUnavailable(f"{self.name}: {self.address} not reachable") from None

    def on_down(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` each time the server is declared dead."""
        self._down_listeners.append(listener)

    # -- the endpoint's hooks -------------------------------------------------------

    def intercept(self, peer: bytes, msg: Message, payload: list[Frame]) -> bool:
        """Take heartbeats, acks and answers (``conversations``)."""
        if type(msg) is Heartbeat:
            return True
        if msg.ack or msg.correlation_id is not None:
            return self.conversations.take(peer, msg, payload)
        return False

    def on_refused(self, peer: bytes, exc: WireError, to: Message | None) -> None:
        """A refused answer fails the request waiting for it."""
        self.conversations.refused(peer, exc, to)

    def on_sent(self, msg: Message, frames: list[Frame] | None) -> None:
        """Cache the reply to a must-not-lose request."""
        self.conversations.sent(msg, frames)

    def on_closed(self) -> None:
        """Pending requests fail."""
        self.conversations.fail_pending("closed")

    def configure_socket(self, sock: zmq.Socket[bytes]) -> None:
        """Routing id, no queueing towards an absent server, reconnect backoff, security, connect."""
        sock.setsockopt(zmq.ROUTING_ID, self.name.encode())
        sock.setsockopt(zmq.IMMEDIATE, 1)  # no queueing towards a server that is not there
        sock.setsockopt(zmq.RECONNECT_IVL, self.options.heartbeat_ms)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, self.options.backoff_max_ms)
        if self.options.security is not None:
            self.options.security.client_socket(sock, self.server_key)
        sock.connect(self.address)

    def on_traffic(self, peer: bytes, now: float) -> None:
        """The server was heard: liveness restarts, and it is up."""
        self._last_heard = now
        if not self._up.is_set():
            self._up.set()

    # -- liveness ---------------------------------------------------------------------

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
                self.send_encoded(b"", encode(Heartbeat(sender=self.name)))
                self.check_readable()
                next_beat = now + period
            if self.liveness > 0:
                deadline = self._last_heard + self.options.timeout_s
                if self._up.is_set():
                    backoff = period
                wait = max(min(next_beat, deadline) - now, 0.001)
                await asyncio.sleep(wait)
                late = loop.time() - now - wait
                if late > period:  # this process stalled: the server's silence meanwhile is not its own
                    self._last_heard += late
                continue
            self._declare_down()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.options.backoff_max_ms / 1000.0)
            self.reconnect()
            self._last_heard = next_beat = loop.time()

    def _declare_down(self) -> None:
        was_up = self._up.is_set()
        if was_up:
            log.warning("%s: %s silent for %.1f s: declared down, reconnecting", self.name,
                        self.address, asyncio.get_running_loop().time() - self._last_heard)
        self._up.clear()
        self.conversations.fail_pending("peer down")
        if was_up:
            for listener in list(self._down_listeners):
                listener()

    def reconnect(self) -> None:
        """Drop the socket (and whatever libzmq queued in it) and connect a fresh one."""
        self.reconnects += 1
        self.reopen()
        self.send_encoded(b"", encode(Heartbeat(sender=self.name)))
