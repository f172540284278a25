"""Socket I/O every transport role shares: options, the reader, the inbox, the write queue.

``swarm.transport.peers`` builds the roles on ``Endpoint``; read its docstring first.

Reading: the socket's file descriptor is registered once with the event loop
(``loop.add_reader``); its callback drains up to ``drain_batch`` messages with
non-blocking receives and dispatches them, with no task switch per message.
libzmq's descriptor is edge-triggered and a send may swallow the edge, so
after every send and on every heartbeat tick the endpoint re-checks
``EVENTS`` and schedules a drain if input is waiting.

Limits while reading: a drain counts messages, each message of a batch frame
too, and stops once the inbox holds ``inbox_max``. Payload frames are received
one by one under ``max_message_bytes`` (all frames together) and
``MAX_PAYLOAD_FRAMES``: past either, the rest of that message is taken off the
socket and dropped frame by frame, and the sender gets
``Error(code="wire.oversize")`` or ``"wire.frames"``. This code never holds
more of a message than the limit; libzmq, below it, holds a multipart message
whole before it hands over the first frame and bounds only each frame
(``MAXMSGSIZE``): 200 frames of 1 MiB raise the receiver's peak RSS by 200 MiB
until they are refused and freed, whatever this code does.
A refused message is answered with an ``Error`` naming it when its envelope
fields are readable.

Writing: a payload-free message goes out at once unless another one went out
less than 50 us ago; then it queues, and the queue leaves at the end of the
event-loop pass (``call_soon``), or when ``max_batch`` messages are queued or
one peer's batch reaches ``max_batch_bytes``, as one frame per peer: a
msgpack array the messages are encoded straight into (``Outbox.write``, in
``swarm.transport.outbox``: each endpoint owns one), with no copy per message.
A lone request pays no latency; a burst from many agents costs one ZeroMQ
message per peer instead of one per agent message. When the socket is full the
outbox stalls: queued frames keep their order and ``send`` waits
(backpressure) until there is room again or the liveness timeout passes
(``PeerUnavailable``).

Busy poll: ``Endpoint.busy_poll`` reads the socket for a short budget before
the loop sleeps, for a request that is the only one in flight
(``swarm.transport.reliable`` decides when).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ClassVar

import msgspec
import zmq

from swarm.errors import PeerUnavailable, WireError
from swarm.transport.options import TransportOptions
from swarm.transport.outbox import Outbox
from swarm.wire.codec import (
    MAX_PAYLOAD_FRAMES,
    PAYLOAD_TYPES,
    Frame,
    Message,
    decode_envelope,
    encode,
    envelope_of,
    error_reply,
    payload_frames,
)

__all__ = ["Incoming", "Endpoint", "Hook", "open_endpoints"]

log = logging.getLogger(__name__)
_EVENTS, _POLLIN, _RCVMORE, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.RCVMORE), int(zmq.NOBLOCK)
# Per event loop, its endpoints with an open socket: a client's busy poll
# (``Endpoint.busy_poll``) gives the loop back as soon as another one has input. Each set
# is only changed on its loop's thread, so iterating it there is safe.
_OPEN: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.WeakSet[Endpoint]] = (
    weakref.WeakKeyDictionary())


def open_endpoints(loop: asyncio.AbstractEventLoop) -> weakref.WeakSet[Endpoint]:
    """The endpoints with an open socket on ``loop``."""
    found = _OPEN.get(loop)
    if found is None:
        found = _OPEN[loop] = weakref.WeakSet()
    return found


Hook = Callable[["Incoming"], None]


class Incoming(msgspec.Struct, frozen=True, gc=False):
    """A received message, its payload frames and the peer it came from (routing id or topic)."""

    msg: Message
    payload: list[Frame]
    peer: bytes


class Endpoint:
    """One ZeroMQ socket with a batched reader, an inbox and its own write queue (``Outbox``).

    A role (``Server``, ``Client``, ``Publisher``, ``Subscriber``) is a subclass
    that sets ``socket_type`` and overrides the hooks it needs, each a no-op
    here: ``configure_socket`` (options, security, bind or connect),
    ``intercept`` (take a decoded message before delivery), ``on_traffic``,
    ``on_refused``, ``on_sent``, ``on_closed`` and ``destination``. It may use
    ``context``, ``background``, ``check_readable`` and ``reopen``; everything
    else here is the endpoint's own.

    ``admit``, when given, receives each message's envelope frame uncopied (a
    ``zmq.Frame``, with its ``User-Id`` under CURVE) and decides whether the
    message is taken; it must leave ``frames[0]`` as bytes.
    """

    #: The ZeroMQ socket type. A ROUTER's messages arrive after a routing-id
    #: frame and a SUB's after a topic frame; ROUTER and PUB send one ahead.
    socket_type: ClassVar[int] = zmq.DEALER

    def __init__(
        self, name: str, address: str, options: TransportOptions | None = None,
        context: zmq.Context[Any] | None = None,
        admit: Callable[[bytes, list[Frame]], bool] | None = None,
    ) -> None:
        self.name = name
        self.address = address
        self.options = options or TransportOptions()
        kind = self.socket_type
        self._prefix = kind in (zmq.ROUTER, zmq.SUB)  # frames before the envelope
        self._routed = self._prefix or kind == zmq.PUB  # a frame before what is sent
        self._admit = admit
        self._max_bytes = self.options.max_message_bytes  # hot-path copies of the limits
        self._ctx: zmq.Context[Any] = context or zmq.Context.instance()
        self._sock: zmq.Socket[bytes] | None = None
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: deque[Incoming] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._drain_due = False
        self._hooks: dict[type[Message], Hook] = {}
        opts = self.options
        self._outbox = Outbox(
            name, routed=self._routed, max_bytes=self._max_bytes,
            max_batch=opts.max_batch, max_batch_bytes=opts.max_batch_bytes,
            timeout_s=opts.timeout_s, after_send=self.check_readable)
        self._tasks: list[asyncio.Task[None]] = []
        self._now = 0.0  # loop time of the current drain, stamped on traffic
        self._closed = False

    async def __aenter__(self) -> Any:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the socket and register its reader with the running loop."""
        self._loop = asyncio.get_running_loop()
        self._open()

    async def close(self, linger_ms: int = 0) -> None:
        """Flush what is queued, stop background tasks and close the socket.

        Args:
            linger_ms: how long libzmq may keep delivering messages already sent
                (0 drops them: must-not-lose messages rely on acks, not on linger).
        """
        if self._closed:
            return
        self._outbox.flush()
        self._closed = True
        self._outbox.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, self._outbox.wait_closed(), return_exceptions=True)
        self._tasks.clear()
        self._close_socket(linger_ms)
        self.on_closed()

    @property
    def context(self) -> zmq.Context[Any]:
        """The ZeroMQ context the socket is made in (a CURVE server installs its ZAP handler there)."""
        return self._ctx

    def background(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task of this endpoint: ``close`` cancels it and waits for it."""
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        return task

    def add_hook(self, msg_type: type[Message], hook: Hook) -> Hook | None:
        """Route every incoming message of ``msg_type`` to ``hook`` instead of the inbox.

        Returns the hook it replaces (``None`` if there was none), so a caller can wrap it.
        """
        previous = self._hooks.get(msg_type)
        self._hooks[msg_type] = hook
        return previous

    @property
    def waiting(self) -> int:
        """Delivered messages waiting in the inbox for ``recv``."""
        return len(self._inbox)

    @property
    def paused(self) -> bool:
        """Whether reading is paused because the inbox holds ``inbox_max`` messages."""
        return self._paused

    @property
    def queued(self) -> int:
        """Payload-free messages in the write queue, waiting for the end of the loop pass."""
        return self._outbox.queued

    # -- receiving ---------------------------------------------------------------

    async def recv(self, timeout: float | None = None) -> Incoming:
        """The next delivered message. Raises ``TimeoutError`` after ``timeout`` seconds."""
        while not self._inbox:
            await self._wait_inbox(timeout)
        item = self._inbox.popleft()
        self._resume_if_room()
        return item

    async def recv_batch(
        self, max_items: int = 1024, timeout: float | None = None
    ) -> list[Incoming]:
        """Every delivered message waiting (at least one, at most ``max_items``)."""
        while not self._inbox:
            await self._wait_inbox(timeout)
        return self.recv_nowait(max_items)

    def recv_nowait(self, max_items: int = 1024) -> list[Incoming]:
        """The delivered messages waiting now, at most ``max_items`` (maybe none)."""
        n = min(max_items, len(self._inbox))
        items = [self._inbox.popleft() for _ in range(n)]
        self._resume_if_room()
        return items

    async def _wait_inbox(self, timeout: float | None) -> None:
        assert self._loop is not None
        self._waiter = self._loop.create_future()
        try:
            await asyncio.wait_for(self._waiter, timeout)
        finally:
            self._waiter = None

    def _resume_if_room(self) -> None:
        if self._paused and len(self._inbox) < self.options.inbox_max // 2:
            self._paused = False
            self._schedule_drain()

    def _on_readable(self) -> None:
        """Loop callback: drain a batch, wake the inbox reader, come back if more is waiting."""
        self._drain_due = False
        sock = self._sock
        if sock is None or self._paused:
            return
        assert self._loop is not None
        self._now = self._loop.time()
        full = self._drain(sock) >= self.options.drain_batch
        if self._inbox and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if len(self._inbox) >= self.options.inbox_max:
            self._paused = True  # backpressure: libzmq queues, then the HWM stops the sender
        elif full:
            self._schedule_drain()
        self._outbox.flush()

    def _schedule_drain(self) -> None:
        if not self._drain_due and self._loop is not None:
            self._drain_due = True
            self._loop.call_soon(self._on_readable)

    def check_readable(self) -> bool:
        """Whether input waits that the loop should take; if so, schedule its drain.

        A send, or a busy poll reading this socket's ``EVENTS``, may have consumed
        the descriptor's edge, so ``EVENTS`` is read directly; a role calls this
        after what it sends on a timer (heartbeats). A paused endpoint (inbox
        full) takes nothing until it resumes.
        """
        sock = self._sock
        if sock is None or self._paused or not sock.getsockopt(_EVENTS) & _POLLIN:  # type: ignore[operator]
            return False
        self._schedule_drain()
        return True

    def busy_poll(self, fut: asyncio.Future[Any]) -> None:
        """Read the socket for up to ``busy_poll_us``, or until ``fut`` is done, before the loop sleeps.

        For a request that is the only one in flight: a fast answer is then
        taken while the process is still running, instead of after the loop's
        sleep and wake-up, which is most of a short round trip. The poll stops
        as soon as another endpoint on this loop has input, so it never holds up
        the process's other sockets (timers and non-swarm descriptors still wait
        up to the budget).
        """
        sock = self._sock
        if sock is None:
            return
        assert self._loop is not None
        others = [ep.check_readable for ep in open_endpoints(self._loop) if ep is not self]
        opt, clock = sock.getsockopt, time.perf_counter
        end = clock() + self.options.busy_poll_us * 1e-6
        while not fut.done() and clock() < end:
            if others and any(waiting() for waiting in others):
                return  # the loop takes that input (a drain is scheduled) and our answer later
            if opt(_EVENTS) & _POLLIN:  # type: ignore[operator]
                try:
                    self._on_readable()
                except Exception as exc:  # a hook's error is not this request's: report it as
                    # the loop would for its reader callback, and let the loop drain the rest
                    self._loop.call_exception_handler({
                        "message": f"{self.name}: message hook failed", "exception": exc})
                    self._schedule_drain()  # _on_readable cleared _drain_due on entry
                    return

    def _drain(self, sock: zmq.Socket[bytes]) -> int:
        # The first two receives are guarded by EVENTS (libzmq's documented loop
        # for its edge-triggered descriptor): a lone message, the request/reply
        # case, then costs no zmq.Again exception. When a second message is
        # waiting it is a burst: receive until zmq.Again, one exception per
        # burst instead of an EVENTS call per message. Options are plain ints:
        # or-ing pyzmq's enum flags builds enum members on the hot path.
        #
        # ``n`` counts messages, a batch frame for each message it holds, and the
        # drain also stops once the inbox is full: the inbox limit holds however
        # the messages were framed.
        #
        # A PUB socket receives nothing, but its descriptor still signals
        # send-side events: the first EVENTS read re-arms it (else the loop
        # would spin on a readable descriptor) and the drain ends there.
        n = 0
        inbox, room = self._inbox, self.options.inbox_max
        prefix = self._prefix
        limit = self.options.drain_batch
        opt, recv = sock.getsockopt, sock.recv
        copy_env, feed = self._admit is None, self.feed
        while n < limit and (n > 1 or opt(_EVENTS) & _POLLIN):  # type: ignore[operator]
            try:
                first = recv(_NOBLOCK)
            except zmq.ZMQError:  # zmq.Again: the burst is drained
                break
            frames: list[Frame]
            if prefix:
                peer, frames = first, [recv(copy=copy_env)] if opt(_RCVMORE) else []
            else:
                peer, frames = b"", [first]
            # payload frames are read one by one, under the limits
            refused = self._read_payload(sock, frames) if opt(_RCVMORE) else None
            n += feed(peer, frames, refused)
            if len(inbox) >= room:
                break
        return n

    def _read_payload(self, sock: zmq.Socket[bytes], frames: list[Frame]) -> WireError | None:
        """Receive the rest of a multipart message into ``frames``, within the limits.

        At most ``MAX_PAYLOAD_FRAMES`` frames after the envelope and
        ``max_message_bytes`` in all: past either, the rest of the message is
        received and dropped frame by frame (libzmq delivers a message whole, so
        it must be taken off the socket), and the refusal is returned.
        """
        opt, recv = sock.getsockopt, sock.recv
        size, most, cap = len(frames[0]) if frames else 0, self._max_bytes, MAX_PAYLOAD_FRAMES + 1
        while opt(_RCVMORE):
            frame = recv(copy=False)
            size += len(frame)
            frames.append(frame)
            if size > most or len(frames) > cap:
                while opt(_RCVMORE):
                    size += len(recv(copy=False))
                count, frames[1:] = len(frames), []
                if size > most:
                    return WireError(f"message of {size} bytes or more is over the limit "
                                     f"of {most}", kind="oversize")
                return WireError(f"message of {count} frames or more is over the limit of "
                                 f"{cap}", kind="frames")
        return None

    def feed(self, peer: bytes, frames: list[Frame], refused: WireError | None = None) -> int:
        """Decode and deliver one received multipart message (or answer its refusal).

        The reader calls this for each message it takes off the socket; a test
        or a fuzzer may feed frames directly. Each decoded message goes to
        ``intercept``, then to its hook (``add_hook``) or the inbox; this is
        written out here, with no call per message but ``intercept``. Returns
        how many messages it held (a batch holds several).
        """
        admit = self._admit
        if admit is not None and not admit(peer, frames):
            return 1
        self.on_traffic(peer, self._now)
        if not frames:
            return 1
        if refused is not None:
            self._answer_error(peer, refused, envelope_of(frames[0]))
            return 1
        try:
            env = decode_envelope(frames[0])
        except WireError as exc:
            self._answer_error(peer, exc, envelope_of(frames[0]))
            return 1
        if isinstance(env, list):  # a batch: its messages carry no payload frames
            intercept, hooks, inbox = self.intercept, self._hooks, self._inbox
            for msg in env:
                if not intercept(peer, msg, []):
                    hook = hooks.get(type(msg))
                    if hook is None:
                        inbox.append(Incoming(msg, [], peer))
                    else:
                        hook(Incoming(msg, [], peer))
            return len(env)
        payload = frames[1:]
        if len(payload) != payload_frames(env):
            self._answer_error(peer, WireError(
                f"{type(env).__name__} needs {payload_frames(env)} payload frame(s), "
                f"got {len(payload)}", kind="frames"), env)
        elif not self.intercept(peer, env, payload):  # the same as for a batch, written out
            hook = self._hooks.get(type(env))
            if hook is None:
                self._inbox.append(Incoming(env, payload, peer))
            else:
                hook(Incoming(env, payload, peer))
        return 1

    def _answer_error(self, peer: bytes, exc: WireError, to: Message | None) -> None:
        log.info("%s: refused a message from %r: %s", self.name, peer, exc)
        self.send_encoded(peer, encode(error_reply(exc, to, sender=self.name)))
        self.on_refused(peer, exc, to)

    # -- sending ------------------------------------------------------------------

    def _head(self, dest: bytes) -> list[Frame]:
        return [dest] if self._routed else []

    async def send(
        self, msg: Message, payload: Sequence[Frame] = (), peer: bytes | None = None
    ) -> None:
        """Queue one message for sending (no ack); it leaves in this loop pass.

        Waits (up to the liveness timeout) while the socket has no room.

        Raises:
            WireError: the message is over ``max_message_bytes`` or has the wrong frames.
            PeerUnavailable: the peer is unknown, gone, or had no room for the timeout.
        """
        if payload or type(msg) in PAYLOAD_TYPES:
            dest = self.destination(msg, peer)
            frames = encode(msg, payload)
            if sum(len(f) for f in frames) > self.options.max_message_bytes:
                raise WireError("message over max_message_bytes", kind="oversize")
            self._outbox.flush()
            await self._outbox.send_frames(self._head(dest) + frames)
            self.on_sent(msg, frames)
            return
        outbox = self._outbox
        if outbox.stalled:
            await outbox.wait_unstalled()
        outbox.write(self.destination(msg, peer), msg)
        if msg.correlation_id is not None:
            self.on_sent(msg, None)

    def post(self, msg: Message, peer: bytes | None = None) -> None:
        """Queue a payload-free message without waiting (the hot path for many agents).

        Raises:
            WireError: the message is over ``max_message_bytes`` or carries payload frames.
            PeerUnavailable: no route to the peer, or the socket is stalled (no room).
        """
        dest = self.destination(msg, peer)
        if type(msg) in PAYLOAD_TYPES:
            raise WireError(f"{type(msg).__name__} carries payload frames: use send()",
                            kind="frames")
        if self._outbox.stalled:
            raise PeerUnavailable(f"{self.name}: no room to send (stalled)")
        self._outbox.write(dest, msg)
        if msg.correlation_id is not None:
            self.on_sent(msg, None)

    def post_now(self, msg: Message, peer: bytes | None = None) -> bool:
        """Queue a payload-free message if that needs no wait; False: ``send`` it instead.

        The hot path of requests and replies: no coroutine when the socket has
        room. False for a message with payload frames or a stalled socket.

        Raises:
            WireError: the message is over ``max_message_bytes``.
            PeerUnavailable: the peer is unknown or gone.
        """
        if type(msg) in PAYLOAD_TYPES or self._outbox.stalled:
            return False
        self._outbox.write(self.destination(msg, peer), msg)
        if msg.correlation_id is not None:
            self.on_sent(msg, None)
        return True

    async def send_batch(self, msgs: Sequence[Message], peer: bytes | None = None) -> None:
        """Send payload-free messages (for one peer) back to back; they share frames."""
        for msg in msgs:
            await self.send(msg, peer=peer)

    def send_nowait(
        self, msg: Message, payload: Sequence[Frame] = (), peer: bytes | None = None
    ) -> bool:
        """Send without waiting, best effort: False if there is no such peer or no room."""
        try:
            dest = self.destination(msg, peer)
        except PeerUnavailable:
            return False
        return self.send_encoded(dest, encode(msg, payload))

    def send_encoded(self, dest: bytes, frames: list[Frame]) -> bool:
        """Send encoded frames without waiting, to a routing id (``b""`` on a DEALER).

        For control traffic: acks, errors, heartbeats, cached replies, transfer
        replies. False if there is no socket, or no room for a multipart message.
        """
        if self._sock is None:
            return False
        if len(frames) == 1:
            self._outbox.enqueue(dest, frames[0])
            return True
        self._outbox.flush()
        return self._outbox.try_send(self._head(dest) + frames) is True

    # -- sockets --------------------------------------------------------------------

    def _open(self) -> None:
        assert self._loop is not None
        sock: zmq.Socket[bytes] = self._ctx.socket(self.socket_type)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.options.max_message_bytes)
        sock.setsockopt(zmq.SNDHWM, self.options.hwm)
        sock.setsockopt(zmq.RCVHWM, self.options.hwm)
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        self.configure_socket(sock)
        self._sock = sock
        self._outbox.attach(sock, self._loop)
        self._fd = int(sock.getsockopt(zmq.FD))
        self._loop.add_reader(self._fd, self._on_readable)
        open_endpoints(self._loop).add(self)
        self._schedule_drain()

    def _close_socket(self, linger_ms: int = 0) -> None:
        if self._sock is not None:
            assert self._loop is not None
            open_endpoints(self._loop).discard(self)
            self._loop.remove_reader(self._fd)
            self._outbox.detach()
            self._sock.close(linger=linger_ms)
            self._sock = None

    def reopen(self) -> None:
        """Close the socket, dropping whatever libzmq queued in it, and open a fresh one.

        ``configure_socket`` runs again on the new socket (a client reconnecting).
        """
        self._close_socket()
        self._open()

    # -- hooks: what a role overrides (each is a no-op here) -----------------------

    def configure_socket(self, sock: zmq.Socket[bytes]) -> None:
        """Set the role's options and security on a new socket, then bind or connect it."""

    def intercept(self, peer: bytes, msg: Message, payload: list[Frame]) -> bool:
        """Whether the role takes a decoded message itself instead of delivering it.

        Runs for every message received (keep it short): heartbeats, acks and
        answers stop here; False lets ``msg`` go on to its hook or the inbox.
        """
        return False

    def on_traffic(self, peer: bytes, now: float) -> None:
        """Liveness bookkeeping: a message came from ``peer`` at loop time ``now``."""

    def on_refused(self, peer: bytes, exc: WireError, to: Message | None) -> None:
        """A message from ``peer`` was refused (and answered with an ``Error``).

        ``to`` is its envelope where that was readable.
        """

    def destination(self, msg: Message, peer: bytes | None) -> bytes:
        """Where ``msg`` goes: a routing id (ROUTER), a topic (PUB) or ``b""``.

        Raises:
            PeerUnavailable: there is no live route for it.
        """
        return b""

    def on_sent(self, msg: Message, frames: list[Frame] | None) -> None:
        """A message was handed to the outbox (roles cache replies here).

        ``frames`` are the message's frames if it had payload, else ``None``
        (it was encoded straight into a batch; ``encode(msg)`` gives its frame).
        """

    def on_closed(self) -> None:
        """The endpoint closed (fail pending requests)."""
