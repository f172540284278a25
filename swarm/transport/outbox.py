"""The write queue of one socket (see ``swarm.transport.socket``, "Writing").

An ``Outbox`` is handed exactly what it needs by the socket that owns it: its
limits and name at construction, the zmq socket and event loop once the socket
is open (``attach``), and one callback to run after each send (the owner
re-checks its input there, because a send may swallow libzmq's edge-triggered
read signal). It never sees the owner itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
import zmq

from swarm.errors import PeerUnavailable, WireError
from swarm.wire.codec import Frame, Message

__all__ = ["Outbox", "QUIET_S"]

log = logging.getLogger("swarm.transport.socket")  # one logger for the socket and its queue
#: A payload-free send this soon after a direct one is coalesced (a Nagle-like window).
QUIET_S = 50e-6
_ZERO_COPY_MIN = 1 << 20
_clock = time.perf_counter
_LAST, _MORE = int(zmq.NOBLOCK), int(zmq.NOBLOCK | zmq.SNDMORE)  # ints: enum flags are slow to combine
_ENCODER = msgspec.msgpack.Encoder()
_ENCODE, _ENCODE_INTO = _ENCODER.encode, _ENCODER.encode_into
_HEAD = b"\xdd\0\0\0\0"  # a batch frame starts as a msgpack array32; the count is set at flush


class Outbox:
    """Sends for one socket: direct when quiet, coalesced in bursts, stalled when full.

    Args:
        name: the owner's name, for logs and errors.
        routed: whether each ZeroMQ message starts with a destination frame
            (a ROUTER's routing id, a PUB's topic).
        max_bytes: the biggest message (envelope, or batch frame) that may go out.
        max_batch: messages queued in all before the queue is flushed.
        max_batch_bytes: bytes of one peer's batch before the queue is flushed.
        timeout_s: how long a send waits for room before it gives up.
        after_send: called after each send that reached the socket.
    """

    def __init__(
        self, name: str, *, routed: bool, max_bytes: int, max_batch: int, max_batch_bytes: int,
        timeout_s: float, after_send: Callable[[], object],
    ) -> None:
        self.name = name
        self._routed = routed
        self._limit = max_bytes
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._timeout_s = timeout_s
        self._after_send = after_send
        self._sock: zmq.Socket[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # per peer: [the batch frame, messages in it]; messages are encoded straight into it
        self._out: dict[bytes, list[Any]] = {}
        self._out_n = 0
        self._flush_handle: asyncio.Handle | None = None
        self._last_direct = 0.0
        #: Frames that found no room, in order; sends wait (or refuse) while any are here.
        self.stalled: deque[list[Frame]] = deque()
        self._unstalled = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        """Messages waiting in a batch for the end of the loop pass."""
        return self._out_n

    def attach(self, sock: zmq.Socket[bytes], loop: asyncio.AbstractEventLoop) -> None:
        """Send through ``sock`` from now on (a freshly opened or reconnected socket)."""
        self._sock, self._loop = sock, loop

    def detach(self) -> None:
        """The socket closed: sends find no room until the next ``attach``."""
        self._sock = None

    def close(self) -> None:
        """Stop retrying stalled frames and waiting for room (``wait_closed`` awaits that)."""
        self._closed = True
        for task in self._tasks:
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the tasks ``close`` cancelled have ended."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def write(self, dest: bytes, msg: Message) -> None:
        """Send ``msg`` (payload-free) to ``dest``: at once when quiet, else into its batch.

        Raises:
            WireError: ``msg`` encodes to more than ``max_bytes`` (nothing is sent).
        """
        batch = self._out.get(dest) or self._new_batch(dest)
        if batch is None:
            data = _ENCODE(msg)
            if len(data) > self._limit:
                raise WireError("envelope over max_message_bytes", kind="oversize")
            self._send_direct(dest, data)
            return
        buf, limit = batch[0], self._limit
        start = len(buf)
        try:
            _ENCODE_INTO(msg, buf, -1)  # on an error it leaves what it wrote: cut that out
            if len(buf) - start > limit:
                raise WireError("envelope over max_message_bytes", kind="oversize")
        except BaseException:
            del buf[start:]
            if not batch[1]:
                del self._out[dest]
            raise
        if batch[1] and len(buf) > limit:  # the receiver would refuse the batch: it goes first
            data = bytes(buf[start:])
            del buf[start:]
            self.flush()
            self.enqueue(dest, data)
            return
        self._queued(batch)

    def enqueue(self, dest: bytes, data: bytes) -> None:
        """Like ``write``, for a message already encoded (``data``)."""
        batch = self._out.get(dest) or self._new_batch(dest)
        if batch is None:
            self._send_direct(dest, data)
            return
        if batch[1] and len(batch[0]) + len(data) > self._limit:
            self.flush()  # the batch first: with this message it would be over the limit
            self.enqueue(dest, data)
            return
        batch[0] += data
        self._queued(batch)

    def _new_batch(self, dest: bytes) -> list[Any] | None:
        """A batch for ``dest``, which has none; or ``None``: send the message at once.

        Nothing queued and nothing sent just now: a message goes at once (no
        added latency); messages that follow within ``QUIET_S`` queue up and
        leave as one frame per peer.
        """
        if not self._out and not self.stalled and _clock() - self._last_direct > QUIET_S:
            return None
        batch = self._out[dest] = [bytearray(_HEAD), 0]
        return batch

    def _send_direct(self, dest: bytes, data: bytes) -> None:
        self._last_direct = _clock()
        frames = [dest, data] if self._routed else [data]
        if self.try_send(frames) is False:
            self._stall(frames)
        self._after_send()

    def _queued(self, batch: list[Any]) -> None:
        """Count a message added to ``batch``; flush when full, else at the end of the loop pass."""
        batch[1] += 1
        self._out_n += 1
        if self._out_n >= self._max_batch or len(batch[0]) >= self._max_batch_bytes:
            self.flush()
        elif self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send every queued message, one frame per peer (a batch when there are several)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._out:
            return
        out, self._out = self._out, {}
        self._out_n = 0
        routed = self._routed
        for dest, (buf, count) in out.items():
            if count == 1:
                frame: Frame = bytes(memoryview(buf)[len(_HEAD):])  # a lone message goes as itself
            else:
                buf[1:len(_HEAD)] = count.to_bytes(4, "big")
                frame = buf
            frames = [dest, frame] if routed else [frame]
            if self.stalled or self.try_send(frames) is False:
                self._stall(frames)
        self._after_send()

    def try_send(self, frames: list[Frame]) -> bool | None:
        """True sent, False no room (retry later), None undeliverable (dropped, logged)."""
        sock = self._sock
        if sock is None:
            return False
        last = len(frames) - 1
        try:
            for i, frame in enumerate(frames):
                # zero-copy only pays for big frames (pyzmq frees them through a gc thread)
                sock.send(frame, _MORE if i < last else _LAST, copy=len(frame) < _ZERO_COPY_MIN)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.ENOTSOCK:
                return False
            log.warning("%s: dropped a message to %r: %s", self.name, frames[0][:64], exc)
            return None
        return True

    def _stall(self, frames: list[Frame]) -> None:
        self.stalled.append(frames)
        if len(self.stalled) == 1:
            self._unstalled.clear()
            task = asyncio.ensure_future(self._unstall())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _unstall(self) -> None:
        """Send stalled frames in order as room appears; drop them after the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        delay = 1e-4
        while self.stalled:
            if self.try_send(self.stalled[0]) is not False:
                self.stalled.popleft()
                deadline = loop.time() + self._timeout_s
                continue
            if loop.time() > deadline:
                log.warning("%s: dropped %d queued message(s): no room for %.1f s",
                            self.name, len(self.stalled), self._timeout_s)
                self.stalled.clear()
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)
        self._unstalled.set()
        self._after_send()

    async def wait_unstalled(self) -> None:
        """Wait until the stalled frames went out (or were dropped).

        Raises:
            PeerUnavailable: still stalled after the timeout.
        """
        try:
            await asyncio.wait_for(self._unstalled.wait(), self._timeout_s)
        except TimeoutError:
            raise PeerUnavailable(f"{self.name}: no room to send for "
                                  f"{self._timeout_s} s") from None

    async def send_frames(self, frames: list[Frame]) -> None:
        """Send a multipart message now, waiting for room up to the timeout.

        Raises:
            PeerUnavailable: undeliverable, closed, or no room for the timeout.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        delay = 1e-4
        while True:
            result = self.try_send(frames)
            if result:
                self._after_send()
                return
            if result is None:
                raise PeerUnavailable(f"{self.name}: peer {frames[0][:64]!r} is unreachable")
            if self._closed or loop.time() > deadline:
                raise PeerUnavailable(f"{self.name}: no room to send for {self._timeout_s} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)
