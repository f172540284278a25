"""Deadlines of many waiting requests on one loop timer (``Conversations`` uses one per endpoint).

A timer per request (``loop.call_later``, then ``cancel`` when the answer
comes first) costs a few microseconds each on uvloop, a large part of a fast
round trip when thousands of requests are in flight. Here each waiting future
goes into the bucket of the time slot its deadline falls in (``RESOLUTION_S``
wide); one loop timer is armed at a time, for the earliest slot, and settles
the futures left in it with ``None``. An answered request leaves its bucket with
a dict deletion. A deadline is met up to one slot late (and at most a
millisecond early: libuv's timers count milliseconds).
"""

from __future__ import annotations

import asyncio
import heapq
import math
from typing import Any

__all__ = ["Deadlines", "RESOLUTION_S"]

#: Width of one time slot: how late a deadline may be met.
RESOLUTION_S = 0.005


class Deadlines:
    """Futures to settle with ``None`` when their wait runs out, on one timer of ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._slots: dict[int, dict[Any, asyncio.Future[Any]]] = {}
        self._heap: list[int] = []  # slots that have a bucket, earliest first
        self._armed: int | None = None  # the slot the timer is armed for
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """Futures waiting for their deadline."""
        return sum(len(b) for b in self._slots.values())

    def add(self, key: Any, fut: asyncio.Future[Any], wait: float) -> int:
        """Settle ``fut`` with ``None`` in ``wait`` seconds unless it is done or removed first.

        ``key`` names it within its slot (unique among the futures waiting);
        returns the slot, for ``remove``.
        """
        slot = math.ceil((self.loop.time() + wait) / RESOLUTION_S)
        bucket = self._slots.get(slot)
        if bucket is None:
            bucket = self._slots[slot] = {}
            heapq.heappush(self._heap, slot)
            if self._armed is None or slot < self._armed:
                self._arm(slot)
        bucket[key] = fut
        return slot

    def remove(self, key: Any, slot: int) -> None:
        """Forget the future added under ``key`` in ``slot`` (its request was answered)."""
        bucket = self._slots.get(slot)
        if bucket is not None:
            bucket.pop(key, None)

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = slot
        self._timer = self.loop.call_at(slot * RESOLUTION_S, self._fire)

    def _fire(self) -> None:
        self._timer = self._armed = None
        now = self.loop.time() + 0.001  # a libuv timer may fire up to its millisecond early
        heap = self._heap
        while heap and heap[0] * RESOLUTION_S <= now:
            for fut in self._slots.pop(heapq.heappop(heap)).values():
                if not fut.done():
                    fut.set_result(None)
        if heap:
            self._arm(heap[0])

    def close(self) -> None:
        """Stop the timer (the futures left are not settled)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._armed = None
