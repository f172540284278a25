"""Adapter transfer: chunked zero-copy frames, credit flow control, sha256 before hand-over.

Protocol (sender S, receiver R; every reply carries the offer's id as
``correlation_id``)::

    S -> R  AdapterOffer(sha256, size)
    R -> S  AdapterRequest(offset, credit, chunk_bytes)   or AdapterAck(done) if R has it
    S -> R  AdapterChunk(offset) + [bytes]                 one per credit
    R -> S  AdapterAck(received, credit=k)                 per k = window // 4 chunks taken
    R -> S  AdapterAck(done=True, ok=sha256 matched)       after the last chunk

The receiver keeps the chunk frames it receives, in order and zero-copy (no
second copy and no fresh pages to fault in: peak memory is the adapter plus
the frames in flight, whatever the size), hashes them on a worker thread as
they arrive and hands the adapter on only when the sha256 matches; a mismatch
or a broken transfer never yields bytes. If the sender loses the
receiver (heartbeat timeout) it waits for the reconnect and offers again: a
receiver that still holds the partial buffer answers with its offset (resume),
a restarted one with offset 0 (retry). An adapter the receiver already has
(``have(sha)``) or completed before is acknowledged and not handed on again,
so the application sees each adapter once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec

from swarm.errors import PeerUnavailable, RemoteError, TransferError
from swarm.transport.peers import Client, Server
from swarm.transport.reliable import DOWN
from swarm.transport.socket import Incoming
from swarm.wire.codec import AdapterAck, AdapterChunk, AdapterOffer, AdapterRequest, Error, Message

__all__ = ["AdapterSender", "AdapterReceiver", "ReceivedAdapter"]

log = logging.getLogger(__name__)


class ReceivedAdapter:
    """A complete, sha256-verified adapter.

    ``chunks`` are the received frames, zero-copy and in order (write them to a
    file with ``writelines``); ``data`` joins them into one buffer on first use.
    """

    def __init__(self, sha256: str, chunks: list[memoryview], sender: str, agent_id: str,
                 meta: dict[str, str]) -> None:
        self.sha256 = sha256
        self.chunks = chunks
        self.sender = sender
        self.agent_id = agent_id
        self.meta = meta
        self.size = sum(len(c) for c in chunks)
        self._data: bytes | None = None

    @property
    def data(self) -> bytes:
        """The adapter's bytes in one piece (joined, and cached, on first access)."""
        if self._data is None:
            self._data = b"".join(self.chunks)
        return self._data


class AdapterSender:
    """Pushes adapters through a ``Client`` (or a ``Server`` with ``peer``)."""

    def __init__(self, endpoint: Client | Server, retries: int = 5) -> None:
        self.endpoint = endpoint
        self.retries = retries
        self.acked = 0  # bytes the receiver acknowledged in the current attempt (progress)

    async def send(
        self, data: bytes | bytearray | memoryview, sha256: str | None = None, *,
        sender: str = "", recipient: str = "", agent_id: str = "",
        meta: dict[str, str] | None = None, peer: bytes | None = None,
    ) -> None:
        """Transfer ``data`` and return once the receiver verified its sha256.

        Raises:
            TransferError: the receiver refused it, or it failed ``retries`` times.
        """
        view = memoryview(data).cast("B")
        sha = sha256 or hashlib.sha256(view).hexdigest()
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                offer = AdapterOffer(sha256=sha, size=len(view), agent_id=agent_id,
                                     meta=meta or {}, sender=sender, recipient=recipient)
                await self._attempt(view, offer, peer)
                return
            except (PeerUnavailable, _Mismatch) as exc:
                last = exc
                log.info("transfer %s attempt %d failed: %s", sha[:12], attempt, exc)
                await self._wait_peer()
        raise TransferError(f"adapter {sha[:12]} not delivered after {self.retries + 1} "
                            f"attempts: {last}")

    async def _wait_peer(self) -> None:
        ep = self.endpoint
        if isinstance(ep, Client):
            await ep.wait_up(timeout=max(60.0, ep.options.timeout_s * 10))

    async def _attempt(self, view: memoryview, offer: AdapterOffer, peer: bytes | None) -> None:
        ep = self.endpoint
        events: asyncio.Queue[Incoming] = asyncio.Queue()
        ep.expect(offer.msg_id, events.put_nowait)
        self.acked = 0
        try:
            await ep.send(offer, peer=peer)
            offset, credit, chunk = 0, 0, 1 << 20
            while True:
                msg = await self._next(events)
                if isinstance(msg, AdapterRequest):
                    offset, credit, chunk = msg.offset, msg.credit, msg.chunk_bytes
                elif isinstance(msg, AdapterAck):
                    self.acked = msg.received
                    if msg.done:
                        if not msg.ok:
                            raise _Mismatch("receiver found a sha256 mismatch")
                        return
                    credit += msg.credit
                while credit > 0 and offset < len(view):
                    end = min(offset + chunk, len(view))
                    head = AdapterChunk(sha256=offer.sha256, offset=offset, sender=offer.sender,
                                        recipient=offer.recipient, correlation_id=offer.msg_id)
                    await ep.send(head, [view[offset:end]], peer=peer)
                    offset, credit = end, credit - 1
        finally:
            ep.expect(offer.msg_id, None)

    async def _next(self, events: asyncio.Queue[Incoming]) -> Message:
        try:
            inc = await asyncio.wait_for(events.get(), self.endpoint.options.timeout_s * 2)
        except TimeoutError:
            raise PeerUnavailable("receiver went silent") from None
        if isinstance(inc.msg, Error):
            if inc.msg.code == DOWN:
                raise PeerUnavailable(inc.msg.reason)
            raise TransferError(str(RemoteError(inc.msg.code, inc.msg.reason)))
        return inc.msg


class _Mismatch(Exception):
    pass


@dataclass
class _Partial:
    offer: AdapterOffer
    peer: bytes
    chunks: list[memoryview] = field(default_factory=list)
    hasher: Any = field(default_factory=hashlib.sha256)
    received: int = 0
    unacked: int = 0  # chunks taken since the last credit went back
    verifying: bool = False


class AdapterReceiver:
    """Takes adapters offered to a ``Server``; verified ones go to ``recv()`` or ``on_adapter``.

    Args:
        endpoint: the server the offers arrive at (its hooks are taken for adapter messages).
        on_adapter: called with each verified adapter; if ``None`` they queue for ``recv()``.
        have: tells whether the application already holds a sha256 (e.g. its CAS).
        window: chunks in flight per transfer (the credit); credit goes back every
            ``window // 4`` chunks.
        chunk_bytes: chunk size asked of senders (4 MiB: per-chunk costs, not bytes,
            bound the rate of smaller chunks, ``bench/transport.py``).
        max_bytes: biggest adapter accepted.
    """

    def __init__(
        self, endpoint: Client | Server, on_adapter: Callable[[ReceivedAdapter], None] | None = None,
        have: Callable[[str], bool] | None = None, window: int = 16,
        chunk_bytes: int = 4 << 20, max_bytes: int = 4 << 30, remember: int = 4096,
    ) -> None:
        self.endpoint = endpoint
        self.window = window
        self.ack_every = max(1, window // 4)
        self.chunk_bytes = min(chunk_bytes, endpoint.options.max_message_bytes - 4096)
        self.max_bytes = max_bytes
        self._have = have or (lambda sha: False)
        self._on_adapter = on_adapter
        self._queue: asyncio.Queue[ReceivedAdapter] = asyncio.Queue()
        self._partial: dict[str, _Partial] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swarm-sha256")
        endpoint.add_hook(AdapterOffer, self._on_offer)
        endpoint.add_hook(AdapterChunk, self._on_chunk)

    async def recv(self, timeout: float | None = None) -> ReceivedAdapter:
        """The next verified adapter (when no ``on_adapter`` callback was given)."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    def progress(self, sha256: str) -> int:
        """Bytes held of a transfer in progress (0 if none)."""
        part = self._partial.get(sha256)
        return part.received if part else 0

    def _answer(self, offer: AdapterOffer, peer: bytes, msg: Message) -> None:
        """Reply to the transfer of ``offer``; best effort (a lost reply is retried by the sender)."""
        msg = msgspec.structs.replace(msg, correlation_id=offer.msg_id, sender=offer.recipient,
                                      recipient=offer.sender, round=offer.round)
        self.endpoint.send_nowait(msg, peer=peer)

    def _on_offer(self, inc: Incoming) -> None:
        offer = inc.msg
        assert isinstance(offer, AdapterOffer)
        sha = offer.sha256
        if sha in self._done or self._have(sha):
            self._answer(offer, inc.peer, AdapterAck(sha256=sha, received=offer.size, done=True))
            return
        if offer.size > self.max_bytes:
            self._answer(offer, inc.peer, Error(
                code=TransferError.code, in_reply_to=offer.msg_id,
                reason=f"adapter of {offer.size} bytes is over the limit of {self.max_bytes}"))
            return
        part = self._partial.get(sha)
        if part is None or part.offer.size != offer.size:
            part = _Partial(offer, inc.peer)
            self._partial[sha] = part
        part.offer, part.peer = offer, inc.peer  # replies go to the latest offer
        part.unacked = 0  # the new offer gets a full window of fresh credit
        if part.verifying:
            return  # the verdict goes to this offer once the hash is done
        if offer.size == 0:
            self._verdict(part, part.hasher.hexdigest())
            return
        self._answer(offer, inc.peer, AdapterRequest(
            sha256=sha, offset=part.received, credit=self.window, chunk_bytes=self.chunk_bytes))

    def _on_chunk(self, inc: Incoming) -> None:
        head = inc.msg
        assert isinstance(head, AdapterChunk)
        part = self._partial.get(head.sha256)
        if part is None or part.verifying or head.correlation_id != part.offer.msg_id \
                or head.offset != part.received:
            return  # stale chunk of an earlier attempt
        data = memoryview(inc.payload[0])  # the frame itself: received once, never copied
        end = part.received + len(data)
        if end > part.offer.size:
            del self._partial[head.sha256]
            self._answer(part.offer, inc.peer, AdapterAck(sha256=head.sha256, done=True, ok=False))
            return
        part.chunks.append(data)
        part.received = end
        # hashing runs on a worker thread (hashlib drops the GIL), in chunk order
        self._hasher.submit(part.hasher.update, data)
        if end < part.offer.size:
            part.unacked += 1
            if part.unacked >= self.ack_every:  # credit back in batches: fewer wake-ups per byte
                self._answer(part.offer, inc.peer, AdapterAck(sha256=head.sha256, received=end,
                                                              credit=part.unacked))
                part.unacked = 0
            return
        part.verifying = True
        digest = asyncio.wrap_future(self._hasher.submit(part.hasher.hexdigest))
        digest.add_done_callback(lambda fut: self._verdict(part, fut.result()))

    def _verdict(self, part: _Partial, digest: str) -> None:
        sha = part.offer.sha256
        self._partial.pop(sha, None)
        ok = digest == sha
        if ok:
            self._complete(part)
        self._answer(part.offer, part.peer, AdapterAck(sha256=sha, received=part.received,
                                                       done=True, ok=ok))

    def _complete(self, part: _Partial) -> None:
        offer = part.offer
        self._done[offer.sha256] = None
        if len(self._done) > self._remember:
            self._done.popitem(last=False)
        adapter = ReceivedAdapter(offer.sha256, part.chunks, offer.sender,
                                  offer.agent_id, dict(offer.meta))
        if self._on_adapter is not None:
            self._on_adapter(adapter)
        else:
            self._queue.put_nowait(adapter)

    def close(self) -> None:
        """Stop the hashing thread (transfers in progress are dropped)."""
        self._hasher.shutdown(wait=False, cancel_futures=True)
        self._partial.clear()
