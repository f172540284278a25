"""Conversations over one ``Client`` or ``Server``: replies, requests, acks, retries, de-duplication.

``Client`` and ``Server`` each hold one ``Conversations`` (composition: it is
handed the endpoint and uses its public methods only). The endpoint's read
path hands it every message that asks for an ack or answers something
(``take``); everything else never reaches it.

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
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import msgspec

from swarm.errors import PeerUnavailable, RemoteError, WireError
from swarm.transport.deadlines import Deadlines
from swarm.transport.socket import Endpoint, Hook, Incoming
from swarm.wire.codec import Ack, Error, Frame, Message, encode, error_reply

__all__ = ["Conversations", "DOWN", "down_signal"]

#: ``Error.code`` of the local signal that the peer died or the endpoint closed.
DOWN = "transport.down"


def down_signal(reason: str) -> Incoming:
    """What pending requests receive when the peer is declared dead or the endpoint closes."""
    return Incoming(Error(code=DOWN, reason=reason), [], b"")


class Conversations:
    """The requests, replies and acks of one endpoint, and the ids it has seen."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._pending: dict[str, Hook] = {}  # msg_id -> hook taking its replies (``expect``)
        self._answered: OrderedDict[str, None] = OrderedDict()  # reliable requests done
        # ack=True ids -> the reply sent to it (its frames, or the payload-free message)
        self._seen: OrderedDict[str, list[Frame] | Message | None] = OrderedDict()
        self._answer_s = 0.0  # moving average of how long lone requests wait for their answer
        self._deadlines: Deadlines | None = None  # the waits of attempts, on one loop timer
        self._futures: dict[str, asyncio.Future[Incoming | None]] = {}  # attempts' replies
        self._ack_futures: dict[str, asyncio.Future[Incoming | None]] = {}  # attempts' acks
        self._by_reply: Callable[[Message], bool] | None = None  # see acked_by_reply

    # -- what the endpoint hands over ------------------------------------------------

    def take(self, peer: bytes, msg: Message, payload: list[Frame]) -> bool:
        """Handle a message that asks for an ack or has a ``correlation_id``.

        Acks it (a duplicate is answered with its cached reply), hands an answer
        to the request waiting for it. Returns True if the message is consumed,
        False if it is to be delivered as usual.
        """
        if msg.ack and self._duplicate(peer, msg):
            return True
        corr = msg.correlation_id
        if corr is None:
            return False
        if type(msg) is Ack:  # only ever consumed by send_reliable
            fut = self._ack_futures.get(corr)
            if fut is not None:
                _settle(fut, Incoming(msg, payload, peer))
            return True
        fut = self._futures.get(corr)
        if fut is not None:
            _settle(fut, Incoming(msg, payload, peer))
            return True
        hook = self._pending.get(corr)
        if hook is not None:
            hook(Incoming(msg, payload, peer))
            return True
        return corr in self._answered  # a late copy of an answer already taken

    def _duplicate(self, peer: bytes, msg: Message) -> bool:
        """Ack a must-not-lose message; True (and resend the cached reply) if seen before."""
        ep = self.endpoint
        if self._by_reply is None or not self._by_reply(msg):
            ack = Ack(sender=msg.recipient or ep.name, recipient=msg.sender,
                      correlation_id=msg.msg_id, round=msg.round)
            ep.send_encoded(peer, encode(ack))
        if msg.msg_id in self._seen:
            cached = self._seen[msg.msg_id]
            if cached is not None:
                ep.send_encoded(peer, cached if isinstance(cached, list) else encode(cached))
            return True
        self._seen[msg.msg_id] = None
        if len(self._seen) > ep.options.dedup_window:
            self._seen.popitem(last=False)
        return False

    def refused(self, peer: bytes, exc: WireError, to: Message | None) -> None:
        """A message was refused; if it was the answer a request waits for, fail that request.

        A peer's unreadable answer (a ``StepDone`` with a NaN score, say) then
        raises ``RemoteError`` in the request at once instead of a timeout later.
        """
        corr = to.correlation_id if to is not None else None
        if corr is None or to is None:
            return
        answer = Incoming(error_reply(exc, to, sender=to.sender), [], peer)
        fut = self._futures.get(corr)
        if fut is not None:
            _settle(fut, answer)
            return
        hook = self._pending.get(corr)
        if hook is not None:
            hook(answer)

    def sent(self, msg: Message, frames: list[Frame] | None) -> None:
        """``msg`` went out: if it answers a must-not-lose request, cache it for duplicates."""
        corr = msg.correlation_id
        if corr is not None and corr in self._seen:  # encoded again only for a duplicate
            self._seen[corr] = frames if frames is not None else msg

    def fail_pending(self, reason: str) -> None:
        """Every waiting request and reliable send receives ``down_signal(reason)``."""
        for fut in [*self._futures.values(), *self._ack_futures.values()]:
            _settle(fut, down_signal(reason))
        for hook in list(self._pending.values()):
            hook(down_signal(reason))

    def acked_by_reply(self, when: Callable[[Message], bool]) -> None:
        """Send no ``Ack`` for an arriving ``ack=True`` message for which ``when`` is true.

        For messages the application always answers: their sender is a
        reliable ``request``, which waits for the reply and resends until it
        comes, and never reads an ``Ack``. They are still de-duplicated and a
        resend still gets the cached reply.
        """
        self._by_reply = when

    # -- what the application asks ---------------------------------------------------

    def expect(self, msg_id: str, hook: Hook | None) -> None:
        """Route replies whose ``correlation_id`` is ``msg_id`` to ``hook`` (``None`` stops)."""
        if hook is None:
            self._pending.pop(msg_id, None)
        else:
            self._pending[msg_id] = hook

    async def reply(self, to: Incoming, msg: Message, payload: Sequence[Frame] = ()) -> None:
        """Answer ``to``: fills ``correlation_id``, ``recipient``, ``sender`` and ``round``."""
        msg = _answer_to(to.msg, msg)
        if payload or not self.endpoint.post_now(msg, to.peer):
            await self.endpoint.send(msg, payload, peer=to.peer)

    def reply_now(self, to: Incoming, msg: Message) -> bool:
        """``reply`` with a payload-free ``msg`` if that needs no wait; False: await ``reply``.

        Raises:
            PeerUnavailable, WireError: as ``reply``.
        """
        return self.endpoint.post_now(_answer_to(to.msg, msg), to.peer)

    def request(
        self, msg: Message, payload: Sequence[Frame] = (), peer: bytes | None = None,
        timeout: float = 30.0, reliable: bool = False,
    ) -> Coroutine[Any, Any, Incoming]:
        """Send ``msg`` and wait for the message that answers it.

        With ``reliable`` the envelope asks for an ack and the request is resent
        (same ``msg_id``) every liveness period, across reconnects, until
        answered; the receiver answers a duplicate with its cached reply and
        never delivers it twice.

        Raises:
            RemoteError: the answer is an ``Error``.
            PeerUnavailable: no answer within ``timeout``, or (unless reliable) the peer died.
        """
        if reliable and not msg.ack:
            msg = msgspec.structs.replace(msg, ack=True)
        return self._exchange(msg, payload, peer, timeout, reliable, ack_only=False)

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
        """Send until answered (or acked): one attempt per liveness period when ``retry``.

        Each attempt waits on a future kept by ``msg_id`` (``take`` settles it with
        the answer, ``Deadlines`` with ``None`` when the attempt's wait is over).
        """
        ep, opts = self.endpoint, self.endpoint.options
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:  # made on the loop it serves
            deadlines = self._deadlines = Deadlines(loop)
        waiting = self._ack_futures if ack_only else self._futures
        key, attempts = msg.msg_id, 0
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise PeerUnavailable(f"{ep.name}: no answer to {type(msg).__name__} "
                                      f"within {timeout} s")
            fut: asyncio.Future[Incoming | None] = loop.create_future()
            waiting[key] = fut
            slot = deadlines.add(key, fut, min(left, opts.timeout_s) if retry else left)
            attempts += 1
            try:
                try:
                    if payload or not ep.post_now(msg, peer):
                        await ep.send(msg, payload, peer)
                except PeerUnavailable:
                    if not retry:
                        raise
                alone = None
                if not ack_only and len(waiting) + len(self._pending) == 1:
                    alone = await self._poll_alone(fut)
                inc = await fut
            finally:
                deadlines.remove(key, slot)
                waiting.pop(key, None)
            if alone is not None and inc is not None:
                self._answered_alone(time.perf_counter() - alone)
            if inc is not None and not _is_down(inc):
                if attempts > 1 and not ack_only:  # a copy of an earlier attempt may answer late
                    self._remember_answered(key)
                return _unwrap(inc)
            if not retry:
                reason = "peer down" if inc is not None else f"no answer within {timeout} s"
                raise PeerUnavailable(f"{ep.name}: {type(msg).__name__}: {reason}")
            if inc is not None:  # down: give the reconnect a heartbeat before resending
                await asyncio.sleep(min(opts.heartbeat_ms / 1000.0, max(left, 0.0)))

    def _remember_answered(self, msg_id: str) -> None:
        self._answered[msg_id] = None
        if len(self._answered) > 1024:
            self._answered.popitem(last=False)

    def _answered_alone(self, waited: float) -> None:
        """A lone request was answered after ``waited`` seconds: the moving average moves."""
        waited = min(waited, 10e-6 * self.endpoint.options.busy_poll_us)  # clamped: one stray
        self._answer_s += 0.1 * (waited - self._answer_s)  # slow answer must not stop polling

    async def _poll_alone(self, fut: asyncio.Future[Incoming | None]) -> float | None:
        """Busy-poll for ``fut``'s answer if its request is the only one waiting; when it was sent.

        A lone request polls the socket (``Endpoint.busy_poll``) while lone
        answers have been arriving within three budgets on average, so a peer
        that answers slowly (a model generating text) soon costs no polling at
        all. One among others in flight never polls and needs no loop pass to
        find out; this pass lets requests made in the same pass go out first.
        Returns the send time of a lone request (``None``: not alone).
        """
        budget_us = self.endpoint.options.busy_poll_us
        if budget_us <= 0:
            return None
        sent = time.perf_counter()
        await asyncio.sleep(0)
        if len(self._futures) + len(self._pending) != 1:
            return None
        if self._answer_s <= 3e-6 * budget_us:
            self.endpoint.busy_poll(fut)  # returns at once if the answer is in
        return sent


def _answer_to(asked: Message, msg: Message) -> Message:
    """``msg`` as the answer to ``asked`` (its correlation id, ends and round filled in)."""
    if (msg.correlation_id == asked.msg_id and msg.recipient and msg.sender
            and (msg.round >= 0 or asked.round < 0)):
        return msg  # filled in already
    return msgspec.structs.replace(
        msg, correlation_id=asked.msg_id, recipient=msg.recipient or asked.sender,
        sender=msg.sender or asked.recipient, round=asked.round if msg.round < 0 else msg.round)


def _is_down(inc: Incoming) -> bool:
    return inc.peer == b"" and isinstance(inc.msg, Error) and inc.msg.code == DOWN


def _settle(fut: asyncio.Future[Incoming | None], inc: Incoming | None) -> None:
    if not fut.done():
        fut.set_result(inc)


def _unwrap(inc: Incoming) -> Incoming:
    if isinstance(inc.msg, Error):
        raise RemoteError(inc.msg.code, inc.msg.reason)
    return inc
