"""The coalescing writer of an ``Endpoint`` (see ``swarm.transport.socket``, "Writing")."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec
import zmq

from swarm.errors import PeerUnavailable, WireError
from swarm.wire.codec import Frame, Message

if TYPE_CHECKING:
    from swarm.transport.socket import Endpoint

__all__ = ["Writer"]

log = logging.getLogger("swarm.transport.socket")
_ZERO_COPY_MIN = 1 << 20
_QUIET = 50e-6  # a send this soon after a direct one is coalesced (Nagle-like window)
_clock = time.perf_counter
_LAST, _MORE = int(zmq.NOBLOCK), int(zmq.NOBLOCK | zmq.SNDMORE)  # ints: enum flags are slow to combine
_ENCODER = msgspec.msgpack.Encoder()
_ENCODE, _ENCODE_INTO = _ENCODER.encode, _ENCODER.encode_into
_HEAD = b"\xdd\0\0\0\0"  # a batch frame starts as a msgpack array32; the count is set at flush


class Writer:
    """Sends for one endpoint: direct when quiet, coalesced in bursts, stalled when full."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._ep = endpoint
        # per peer: [the batch frame, messages in it]; messages are encoded straight into it
        self._out: dict[bytes, list[Any]] = {}
        self._out_n = 0
        self._max_batch = endpoint.options.max_batch
        self._max_batch_bytes = endpoint.options.max_batch_bytes
        self._flush_handle: asyncio.Handle | None = None
        self._last_direct = 0.0
        self.stalled: deque[list[Frame]] = deque()
        self._unstalled = asyncio.Event()

    def write(self, dest: bytes, msg: Message, limit: int) -> None:
        """Send ``msg`` (payload-free) to ``dest``: at once when quiet, else into its batch.

        Raises:
            WireError: ``msg`` encodes to more than ``limit`` bytes (nothing is sent).
        """
        batch = self._out.get(dest) or self._new_batch(dest)
        if batch is None:
            data = _ENCODE(msg)
            if len(data) > limit:
                raise WireError("envelope over max_message_bytes", kind="oversize")
            self._send_direct(dest, data)
            return
        buf = batch[0]
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
        if batch[1] and len(batch[0]) + len(data) > self._ep._max_bytes:
            self.flush()  # the batch first: with this message it would be over the limit
            self.enqueue(dest, data)
            return
        batch[0] += data
        self._queued(batch)

    def _new_batch(self, dest: bytes) -> list[Any] | None:
        """A batch for ``dest``, which has none; or ``None``: send the message at once.

        Nothing queued and nothing sent just now: a message goes at once (no
        added latency); messages that follow within _QUIET queue up and leave
        as one frame per peer.
        """
        if not self._out and not self.stalled and _clock() - self._last_direct > _QUIET:
            return None
        batch = self._out[dest] = [bytearray(_HEAD), 0]
        return batch

    def _send_direct(self, dest: bytes, data: bytes) -> None:
        self._last_direct = _clock()
        frames = self._ep._head(dest) + [data]
        if self.try_send(frames) is False:
            self._stall(frames)
        self._ep._check_readable()

    def _queued(self, batch: list[Any]) -> None:
        """Count a message added to ``batch``; flush when full, else at the end of the loop pass."""
        batch[1] += 1
        self._out_n += 1
        if self._out_n >= self._max_batch or len(batch[0]) >= self._max_batch_bytes:
            self.flush()
        elif self._flush_handle is None and self._ep._loop is not None:
            self._flush_handle = self._ep._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send every queued message, one frame per peer (a batch when there are several)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._out:
            return
        out, self._out = self._out, {}
        self._out_n = 0
        for dest, (buf, count) in out.items():
            if count == 1:
                frame: Frame = bytes(memoryview(buf)[len(_HEAD):])  # a lone message goes as itself
            else:
                buf[1:len(_HEAD)] = count.to_bytes(4, "big")
                frame = buf
            frames = self._ep._head(dest) + [frame]
            if self.stalled or self.try_send(frames) is False:
                self._stall(frames)
        self._ep._check_readable()

    def try_send(self, frames: list[Frame]) -> bool | None:
        """True sent, False no room (retry later), None undeliverable (dropped, logged)."""
        sock = self._ep._sock
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
            log.warning("%s: dropped a message to %r: %s", self._ep.name, frames[0][:64], exc)
            return None
        return True

    def _stall(self, frames: list[Frame]) -> None:
        self.stalled.append(frames)
        if len(self.stalled) == 1:
            self._unstalled.clear()
            self._ep._tasks.append(asyncio.ensure_future(self._unstall()))

    async def _unstall(self) -> None:
        """Send stalled frames in order as room appears; drop them after the liveness timeout."""
        assert self._ep._loop is not None
        deadline = self._ep._loop.time() + self._ep.options.timeout_s
        delay = 1e-4
        while self.stalled:
            if self.try_send(self.stalled[0]) is not False:
                self.stalled.popleft()
                deadline = self._ep._loop.time() + self._ep.options.timeout_s
                continue
            if self._ep._loop.time() > deadline:
                log.warning("%s: dropped %d queued message(s): no room for %.1f s",
                            self._ep.name, len(self.stalled), self._ep.options.timeout_s)
                self.stalled.clear()
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)
        self._unstalled.set()
        self._ep._check_readable()

    async def wait_unstalled(self) -> None:
        try:
            await asyncio.wait_for(self._unstalled.wait(), self._ep.options.timeout_s)
        except TimeoutError:
            raise PeerUnavailable(f"{self._ep.name}: no room to send for "
                                  f"{self._ep.options.timeout_s} s") from None

    async def send_frames(self, frames: list[Frame]) -> None:
        """Send a multipart message now, waiting for room up to the liveness timeout."""
        assert self._ep._loop is not None
        deadline = self._ep._loop.time() + self._ep.options.timeout_s
        delay = 1e-4
        while True:
            result = self.try_send(frames)
            if result:
                self._ep._check_readable()
                return
            if result is None:
                raise PeerUnavailable(f"{self._ep.name}: peer {frames[0][:64]!r} is unreachable")
            if self._ep._closed or self._ep._loop.time() > deadline:
                raise PeerUnavailable(f"{self._ep.name}: no room to send for "
                                      f"{self._ep.options.timeout_s} s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)
