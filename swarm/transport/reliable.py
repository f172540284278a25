"""Conversations on top of an ``Endpoint``: replies, requests, acks, retries, de-duplication.

A message with ``ack=True`` is acknowledged by the receiving transport with an
``Ack`` and delivered at most once: its ``msg_id`` is remembered (the last
``dedup_window`` ids) and a duplicate is re-acknowledged and answered with the
reply cached for it, never delivered again. ``send_reliable`` and
``request(reliable=True)`` resend the same message every liveness period, and
across reconnects, until it is acknowledged or answered.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import msgspec
import zmq

from swarm.errors import PeerUnavailable, RemoteError, WireError
from swarm.transport.socket import (
    _EVENTS,
    _POLLIN,
    Endpoint,
    Hook,
    Incoming,
    TransportOptions,
    open_endpoints,
)
from swarm.wire.codec import Ack, Error, Frame, Heartbeat, Message, encode, error_reply

__all__ = ["Messenger", "DOWN", "down_signal"]

#: ``Error.code`` of the local signal that the peer died or the endpoint closed.
DOWN = "transport.down"


def down_signal(reason: str) -> Incoming:
    """What pending requests receive when the peer is declared dead or the endpoint closes."""
    return Incoming(Error(code=DOWN, reason=reason), [], b"")


class Messenger(Endpoint):
    """An endpoint that can reply, request, acknowledge and de-duplicate."""

    def __init__(
        self, name: str, address: str, options: TransportOptions | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        super().__init__(name, address, options, context)
        self._pending: dict[str, Hook] = {}  # msg_id -> hook taking its replies
        self._acks: dict[str, Hook] = {}  # msg_id -> hook taking its Ack
        self._answered: OrderedDict[str, None] = OrderedDict()  # reliable requests done
        self._seen: OrderedDict[str, list[Frame] | None] = OrderedDict()  # ack=True ids
        self._routes: dict[str, bytes] | None = None  # sender -> peer, learnt by a Server
        self._answer_s = 0.0  # moving average of how long lone requests wait for their answer

    def expect(self, msg_id: str, hook: Hook | None) -> None:
        """Route replies whose ``correlation_id`` is ``msg_id`` to ``hook`` (``None`` stops)."""
        if hook is None:
            self._pending.pop(msg_id, None)
        else:
            self._pending[msg_id] = hook

    def _dispatch(self, peer: bytes, msg: Message, payload: list[Frame]) -> None:
        kind = type(msg)
        if kind is Heartbeat:
            return
        if self._routes is not None and msg.sender:
            self._claim(msg.sender, peer)
        if msg.ack and self._duplicate(peer, msg):
            return
        corr = msg.correlation_id
        if corr is not None:
            if kind is Ack:  # only ever consumed by send_reliable
                hook = self._acks.get(corr)
                if hook is not None:
                    hook(Incoming(msg, payload, peer))
                return
            hook = self._pending.get(corr)
            if hook is not None:
                hook(Incoming(msg, payload, peer))
                return
            if corr in self._answered:
                return  # a late copy of an answer already taken (reliable request resent)
        hook = self._hooks.get(kind)
        if hook is not None:
            hook(Incoming(msg, payload, peer))
        else:
            self._inbox.append(Incoming(msg, payload, peer))

    def _claim(self, sender: str, peer: bytes) -> bool:
        """Learn the route ``sender -> peer``; ``Server`` keeps a name with its first live peer."""
        assert self._routes is not None
        self._routes[sender] = peer
        return True

    def _duplicate(self, peer: bytes, msg: Message) -> bool:
        """Ack a must-not-lose message; True (and resend the cached reply) if seen before."""
        ack = Ack(sender=msg.recipient or self.name, recipient=msg.sender,
                  correlation_id=msg.msg_id, round=msg.round)
        self._send_now(peer, encode(ack))
        if msg.msg_id in self._seen:
            cached = self._seen[msg.msg_id]
            if cached is not None:
                self._send_now(peer, cached)
            return True
        self._seen[msg.msg_id] = None
        if len(self._seen) > self.options.dedup_window:
            self._seen.popitem(last=False)
        return False

    def _answer_error(self, peer: bytes, exc: WireError, to: Message | None) -> None:
        """Refuse a message; if it was the answer a request here waits for, fail that request.

        A peer's unreadable answer (a ``StepDone`` with a NaN score, say) then
        raises ``RemoteError`` in the request at once instead of a timeout later.
        """
        super()._answer_error(peer, exc, to)
        corr = to.correlation_id if to is not None else None
        hook = self._pending.get(corr) if corr is not None else None
        if hook is not None and to is not None:
            hook(Incoming(error_reply(exc, to, sender=to.sender), [], peer))

    def _sent(self, msg: Message, frames: list[Frame] | None) -> None:
        corr = msg.correlation_id
        if corr is not None and corr in self._seen:  # the cached answer to a must-not-lose request
            self._seen[corr] = frames if frames is not None else encode(msg)

    def _fail_pending(self, reason: str) -> None:
        for hook in [*self._pending.values(), *self._acks.values()]:
            hook(down_signal(reason))

    def _on_closed(self) -> None:
        self._fail_pending("closed")

    async def reply(self, to: Incoming, msg: Message, payload: Sequence[Frame] = ()) -> None:
        """Answer ``to``: fills ``correlation_id``, ``recipient``, ``sender`` and ``round``."""
        msg = msgspec.structs.replace(
            msg, correlation_id=to.msg.msg_id, recipient=msg.recipient or to.msg.sender,
            sender=msg.sender or to.msg.recipient,
            round=to.msg.round if msg.round < 0 else msg.round,
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

    def _busy_poll(self, fut: asyncio.Future[Incoming | None]) -> None:
        """Poll the socket for up to ``busy_poll_us`` before the loop sleeps (one request in flight).

        A fast answer is then taken while the process is still running, instead of
        after the loop's sleep and wake-up, which is most of a short round trip.
        ``_exchange`` only polls while lone answers have been arriving within three
        budgets on average, so a peer that answers slowly (a model generating
        text) soon costs no polling at all. The poll stops as soon as another
        endpoint on this loop has input, so it never holds up the process's
        other sockets (timers and non-swarm descriptors still wait up to the budget).
        """
        sock = self._sock
        if sock is None:
            return
        assert self._loop is not None
        others = [ep._check_readable for ep in open_endpoints(self._loop) if ep is not self]
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

    async def _exchange(
        self, msg: Message, payload: Sequence[Frame], peer: bytes | None, timeout: float,
        retry: bool, ack_only: bool,
    ) -> Incoming:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiting = self._acks if ack_only else self._pending
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise PeerUnavailable(f"{self.name}: no answer to {type(msg).__name__} "
                                      f"within {timeout} s")
            fut: asyncio.Future[Incoming | None] = loop.create_future()
            waiting[msg.msg_id] = lambda inc, f=fut: _settle(f, inc)  # type: ignore[misc]
            timer = loop.call_later(min(left, self.options.timeout_s) if retry else left,
                                    _settle, fut, None)
            sent, lone = time.perf_counter(), False
            try:
                try:
                    await self.send(msg, payload, peer)
                except PeerUnavailable:
                    if not retry:
                        raise
                if not ack_only and self.options.busy_poll_us > 0:
                    await asyncio.sleep(0)  # requests made in the same loop pass go out first
                    lone = len(waiting) == 1
                    if lone and self._answer_s <= 3e-6 * self.options.busy_poll_us:
                        self._busy_poll(fut)  # returns at once if the answer is in
                inc = await fut
            finally:
                timer.cancel()
                waiting.pop(msg.msg_id, None)
            if lone and inc is not None:  # clamped: one stray slow answer must not stop polling
                waited = min(time.perf_counter() - sent, 10e-6 * self.options.busy_poll_us)
                self._answer_s += 0.1 * (waited - self._answer_s)
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


def _is_down(inc: Incoming) -> bool:
    return inc.peer == b"" and isinstance(inc.msg, Error) and inc.msg.code == DOWN


def _settle(fut: asyncio.Future[Incoming | None], inc: Incoming | None) -> None:
    if not fut.done():
        fut.set_result(inc)


def _unwrap(inc: Incoming) -> Incoming:
    if isinstance(inc.msg, Error):
        raise RemoteError(inc.msg.code, inc.msg.reason)
    return inc
