"""The machinery every transport role shares: socket options, reader, dispatch, acks.

``swarm.transport`` builds the roles (``Server``, ``Client``, ``Publisher``,
``Subscriber``) on ``Endpoint``; read its docstring first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
import zmq
import zmq.asyncio

from swarm.config import TransportSection
from swarm.errors import PeerUnavailable, RemoteError, TransportError, WireError
from swarm.security import CurveSecurity
from swarm.wire import (
    Ack,
    Error,
    Frame,
    Heartbeat,
    Message,
    decode_envelope,
    encode,
    encode_batch,
    error_reply,
    payload_frames,
)

__all__ = ["TransportOptions", "Incoming", "Endpoint", "endpoint", "down_signal", "DOWN"]

log = logging.getLogger(__name__)
Hook = Callable[["Incoming"], None]


@dataclass(frozen=True)
class TransportOptions:
    """Limits and timing shared by every socket of a process."""

    max_message_bytes: int = 256 * 1024 * 1024
    heartbeat_ms: int = 1000
    liveness: int = 3
    hwm: int = 100_000
    drain_batch: int = 1024
    inbox_max: int = 100_000
    dedup_window: int = 100_000
    backoff_max_ms: int = 32_000
    security: CurveSecurity | None = None

    @classmethod
    def from_config(
        cls, section: TransportSection, security: CurveSecurity | None = None
    ) -> TransportOptions:
        """Options from the config's ``transport`` section (keys are loaded by the caller)."""
        return cls(
            max_message_bytes=section.max_message_bytes,
            heartbeat_ms=section.heartbeat_ms,
            liveness=section.liveness,
            security=security,
        )

    @property
    def timeout_s(self) -> float:
        """How long a silent peer is considered alive: ``heartbeat_ms * liveness``."""
        return self.heartbeat_ms * self.liveness / 1000.0


def endpoint(section: TransportSection, offset: int) -> str:
    """The TCP endpoint ``tcp://host:(base_port + offset)`` of one role."""
    return f"tcp://{section.host}:{section.base_port + offset}"


class Incoming(NamedTuple):
    """A received message, its payload frames and the peer it came from (routing id or topic)."""

    msg: Message
    payload: list[Frame]
    peer: bytes


class Endpoint:
    """Reader, dispatch, request/ack bookkeeping and send path shared by every role."""

    _kind: int = zmq.DEALER
    _prefix = 0  # frames before the envelope: routing id (ROUTER) or topic (SUB)

    def __init__(
        self, name: str, address: str, options: TransportOptions | None = None,
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        self.name = name
        self.address = address
        self.options = options or TransportOptions()
        self._ctx = context or zmq.asyncio.Context.instance()
        self._sock: zmq.asyncio.Socket | None = None
        self._sync: zmq.Socket[bytes] | None = None
        self._inbox: deque[Incoming] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._room = asyncio.Event()
        self._pending: dict[str, Hook] = {}  # msg_id -> hook taking its replies
        self._acks: dict[str, Hook] = {}  # msg_id -> hook taking its Ack
        self._answered: OrderedDict[str, None] = OrderedDict()  # reliable requests done
        self._hooks: dict[type[Message], Hook] = {}
        self._seen: OrderedDict[str, list[Frame] | None] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        self._reader: asyncio.Task[None] | None = None
        self._now = 0.0  # loop time of the current drain, stamped on traffic
        self._closed = False

    async def __aenter__(self) -> Any:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the socket and start the background reader."""
        self._open()
        self._reader = asyncio.ensure_future(self._read_loop())

    async def close(self) -> None:
        """Stop background tasks and close the socket with ``linger=0``."""
        self._closed = True
        if self._reader is not None:
            self._tasks.append(self._reader)
            self._reader = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = self._sync = None
        for hook in [*self._pending.values(), *self._acks.values()]:
            hook(down_signal("closed"))

    def add_hook(self, msg_type: type[Message], hook: Hook) -> None:
        """Route every incoming message of ``msg_type`` to ``hook`` instead of the inbox."""
        self._hooks[msg_type] = hook

    def expect(self, msg_id: str, hook: Hook | None) -> None:
        """Route replies whose ``correlation_id`` is ``msg_id`` to ``hook`` (``None`` stops)."""
        if hook is None:
            self._pending.pop(msg_id, None)
        else:
            self._pending[msg_id] = hook

    # -- receiving ---------------------------------------------------------------

    async def recv(self, timeout: float | None = None) -> Incoming:
        """The next delivered message. Raises ``TimeoutError`` after ``timeout`` seconds."""
        while not self._inbox:
            await self._wait_inbox(timeout)
        item = self._inbox.popleft()
        self._room.set()
        return item

    async def recv_batch(self, max_items: int = 1024, timeout: float | None = None) -> list[Incoming]:
        """Every delivered message waiting (at least one, at most ``max_items``)."""
        while not self._inbox:
            await self._wait_inbox(timeout)
        n = min(max_items, len(self._inbox))
        items = [self._inbox.popleft() for _ in range(n)]
        self._room.set()
        return items

    async def _wait_inbox(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        try:
            await asyncio.wait_for(self._waiter, timeout)
        finally:
            self._waiter = None

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            sock = self._sock
            assert sock is not None
            if len(self._inbox) >= self.options.inbox_max:
                self._room.clear()
                await self._room.wait()
            await sock.poll(self.options.heartbeat_ms, zmq.POLLIN)  # type: ignore[call-arg]
            self._now = loop.time()
            if self._drain() and self._inbox and self._waiter and not self._waiter.done():
                self._waiter.set_result(None)

    def _drain(self) -> int:
        """Receive and dispatch up to ``drain_batch`` messages without blocking."""
        sock = self._sync
        assert sock is not None
        n = 0
        prefix = self._prefix
        while n < self.options.drain_batch:
            try:
                first = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            n += 1
            frames: list[Frame] = [first]
            while sock.rcvmore:
                frames.append(sock.recv() if len(frames) <= prefix else sock.recv(copy=False))
            self._on_frames(frames[0] if prefix else b"", frames[prefix:])
        return n

    def _on_frames(self, peer: bytes, frames: list[Frame]) -> None:
        if not frames:
            return
        try:
            if len(frames) > 1 and sum(len(f) for f in frames) > self.options.max_message_bytes:
                raise WireError(
                    f"message of {sum(len(f) for f in frames)} bytes is over the limit of "
                    f"{self.options.max_message_bytes}", kind="oversize",
                )
            env = decode_envelope(frames[0])
        except WireError as exc:
            self._answer_error(peer, exc, None)
            return
        if isinstance(env, list):
            for msg in env:
                self._dispatch(peer, msg, [])
            return
        payload = frames[1:]
        if len(payload) != payload_frames(env):
            self._answer_error(peer, WireError(
                f"{type(env).__name__} needs {payload_frames(env)} payload frame(s), "
                f"got {len(payload)}", kind="frames"), env)
            return
        self._dispatch(peer, env, payload)

    def _dispatch(self, peer: bytes, msg: Message, payload: list[Frame]) -> None:
        self._on_traffic(peer, msg)
        kind = type(msg)
        if kind is Heartbeat:
            return
        if msg.ack and self._duplicate(peer, msg):
            return
        inc = Incoming(msg, payload, peer)
        corr = msg.correlation_id
        if kind is Ack:  # only ever consumed by send_reliable
            hook = self._acks.get(corr or "")
            if hook is not None:
                hook(inc)
            return
        if corr is not None:
            if corr in self._pending:
                self._pending[corr](inc)
                return
            if corr in self._answered:
                return  # a late copy of an answer already taken (reliable request resent)
        hook = self._hooks.get(kind)
        if hook is not None:
            hook(inc)
        else:
            self._inbox.append(inc)

    def _duplicate(self, peer: bytes, msg: Message) -> bool:
        """Ack a must-not-lose message; True (and resend the cached reply) if seen before."""
        self._send_now(peer, encode(self._ack_for(msg)))
        if msg.msg_id in self._seen:
            cached = self._seen[msg.msg_id]
            if cached is not None:
                self._send_now(peer, cached)
            return True
        self._seen[msg.msg_id] = None
        if len(self._seen) > self.options.dedup_window:
            self._seen.popitem(last=False)
        return False

    def _ack_for(self, msg: Message) -> Ack:
        return Ack(sender=msg.recipient or self.name, recipient=msg.sender,
                   correlation_id=msg.msg_id, round=msg.round)

    def _answer_error(self, peer: bytes, exc: WireError, to: Message | None) -> None:
        log.warning("%s: refused a message from %r: %s", self.name, peer, exc)
        self._send_now(peer, encode(error_reply(exc, to, sender=self.name)))

    def _on_traffic(self, peer: bytes, msg: Message) -> None:
        """Liveness and routing bookkeeping; roles override."""

    # -- sending ------------------------------------------------------------------

    def _route(self, msg: Message, peer: bytes | None) -> list[Frame]:
        return []

    def _send_now(self, peer: bytes, frames: list[Frame]) -> bool:
        """Best-effort non-blocking send (acks, errors, heartbeats); False if it could not go."""
        if self._sync is None:
            return False
        head = [peer] if self._kind == zmq.ROUTER else []
        try:
            self._sync.send_multipart(head + frames, zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:
            return False
        return True

    def send_nowait(
        self, msg: Message, payload: Sequence[Frame] = (), peer: bytes | None = None
    ) -> bool:
        """Send without waiting, best effort: False if there is no room or no such peer."""
        try:
            head = self._route(msg, peer)
        except PeerUnavailable:
            return False
        return self._send_now(head[0] if head else b"", encode(msg, payload))

    async def send(
        self, msg: Message, payload: Sequence[Frame] = (), peer: bytes | None = None
    ) -> None:
        """Send one message now (no ack).

        Raises:
            WireError: the message is over ``max_message_bytes`` or has the wrong frames.
            PeerUnavailable: the peer is unknown, gone, or had no room for the timeout.
        """
        frames = encode(msg, payload)
        if len(payload) and sum(len(f) for f in frames) > self.options.max_message_bytes:
            raise WireError("message over max_message_bytes", kind="oversize")
        if len(frames[0]) > self.options.max_message_bytes:
            raise WireError("envelope over max_message_bytes", kind="oversize")
        await self._send_frames(self._route(msg, peer) + frames)
        self._cache_reply(msg, frames)

    async def send_batch(self, msgs: Sequence[Message], peer: bytes | None = None) -> None:
        """Send payload-free messages for one peer coalesced in one envelope frame."""
        if msgs:
            await self._send_frames(self._route(msgs[0], peer) + [encode_batch(msgs)])

    def _cache_reply(self, msg: Message, frames: list[Frame]) -> bool:
        corr = msg.correlation_id
        if corr is not None and corr in self._seen:
            self._seen[corr] = frames
            return True
        return False

    async def _send_frames(self, frames: list[Frame]) -> None:
        sock = self._sync
        if sock is not None:  # the fast path: room in the pipe
            try:
                sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:
                pass
            except zmq.ZMQError as exc:
                self._raise_send_error(exc, frames)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.timeout_s
        while True:
            left = deadline - loop.time()
            if self._closed or left <= 0:
                raise PeerUnavailable(f"{self.name}: no room to send for {self.options.timeout_s} s")
            await self._writable(min(left, self.options.heartbeat_ms / 1000.0))
            sock = self._sync
            if sock is None:
                continue
            try:
                sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:
                pass
            except zmq.ZMQError as exc:
                self._raise_send_error(exc, frames)

    def _raise_send_error(self, exc: zmq.ZMQError, frames: list[Frame]) -> None:
        if exc.errno == zmq.EHOSTUNREACH:
            raise PeerUnavailable(f"{self.name}: peer {frames[0]!r} is unreachable") from None
        if exc.errno == zmq.ENOTSOCK:
            return  # closed under us by a reconnect: the caller retries on the new socket
        raise TransportError(f"{self.name}: send failed: {exc}") from None

    async def _writable(self, timeout_s: float) -> None:
        """Wait until the socket may take a message; a reconnect ends the wait early."""
        sock = self._sock
        if sock is None:
            await asyncio.sleep(timeout_s)
            return
        try:
            await sock.poll(timeout_s * 1000, zmq.POLLOUT)  # type: ignore[call-arg]
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        except zmq.ZMQError:
            pass  # socket closed by a reconnect

    async def reply(self, to: Incoming, msg: Message, payload: Sequence[Frame] = ()) -> None:
        """Answer ``to``: fills ``correlation_id``, ``recipient`` and ``round`` from it."""
        msg = msgspec.structs.replace(
            msg, correlation_id=to.msg.msg_id, recipient=msg.recipient or to.msg.sender,
            sender=msg.sender or to.msg.recipient, round=to.msg.round if msg.round < 0 else msg.round,
        )
        await self.send(msg, payload, peer=to.peer)

    async def request(
        self, msg: Message, payload: Sequence[Frame] = (), peer: bytes | None = None,
        timeout: float = 30.0, reliable: bool = False,
    ) -> Incoming:
        """Send ``msg`` and wait for the message that answers it.

        With ``reliable`` the envelope asks for an ack and the request is resent
        (same ``msg_id``) every liveness period, across reconnects, until
        answered; the receiver answers a duplicate with its cached reply and
        never delivers it twice.

        Raises:
            RemoteError: the answer is an ``Error``.
            PeerUnavailable: no answer within ``timeout``, or (unless reliable) the peer died.
        """
        if reliable:
            msg = msgspec.structs.replace(msg, ack=True)
        return await self._exchange(msg, payload, peer, timeout, reliable, ack_only=False)

    async def send_reliable(
        self, msg: Message, payload: Sequence[Frame] = (), peer: bytes | None = None,
        timeout: float = 60.0,
    ) -> None:
        """Send a must-not-lose message: resent, across reconnects, until acknowledged.

        Raises:
            PeerUnavailable: not acknowledged within ``timeout``.
        """
        msg = msgspec.structs.replace(msg, ack=True)
        await self._exchange(msg, payload, peer, timeout, retry=True, ack_only=True)

    async def _exchange(
        self, msg: Message, payload: Sequence[Frame], peer: bytes | None, timeout: float,
        retry: bool, ack_only: bool,
    ) -> Incoming:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise PeerUnavailable(f"{self.name}: no answer to {type(msg).__name__} "
                                      f"within {timeout} s")
            fut: asyncio.Future[Incoming | None] = loop.create_future()
            waiting = self._acks if ack_only else self._pending
            waiting[msg.msg_id] = lambda inc, f=fut: _settle(f, inc)  # type: ignore[misc]
            timer = loop.call_later(min(left, self.options.timeout_s) if retry else left,
                                    _settle, fut, None)
            try:
                try:
                    await self.send(msg, payload, peer)
                except PeerUnavailable:
                    if not retry:
                        raise
                inc = await fut
            finally:
                timer.cancel()
                waiting.pop(msg.msg_id, None)
            if inc is not None and not _is_down(inc):
                if retry and not ack_only:
                    self._answered[msg.msg_id] = None
                    if len(self._answered) > 1024:
                        self._answered.popitem(last=False)
                return _unwrap(inc)
            if not retry:
                reason = "peer down" if inc is not None else f"no answer within {timeout} s"
                raise PeerUnavailable(f"{self.name}: {type(msg).__name__}: {reason}")
            if inc is not None:  # down: give the reconnect a heartbeat before resending
                await asyncio.sleep(min(self.options.heartbeat_ms / 1000.0, max(left, 0.0)))

    # -- sockets --------------------------------------------------------------------

    def _open(self) -> None:
        sock = self._ctx.socket(self._kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.options.max_message_bytes)
        sock.setsockopt(zmq.SNDHWM, self.options.hwm)
        sock.setsockopt(zmq.RCVHWM, self.options.hwm)
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        self._configure(sock)
        self._sock = sock
        self._sync = zmq.Socket.shadow(sock.underlying)

    def _configure(self, sock: zmq.asyncio.Socket) -> None:
        """Role-specific options, security and bind/connect."""


DOWN = "transport.down"


def down_signal(reason: str) -> Incoming:
    """What pending requests receive when the peer is declared dead or the endpoint closes."""
    return Incoming(Error(code=DOWN, reason=reason), [], b"")


def _is_down(inc: Incoming) -> bool:
    return inc.peer == b"" and isinstance(inc.msg, Error) and inc.msg.code == DOWN


def _settle(fut: asyncio.Future[Incoming | None], inc: Incoming | None) -> None:
    if fut.done():
        return
    fut.set_result(inc)


def _unwrap(inc: Incoming) -> Incoming:
    if isinstance(inc.msg, Error):
        raise RemoteError(inc.msg.code, inc.msg.reason)
    return inc
