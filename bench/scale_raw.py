"""The raw baseline of bench/scale.py's typed asks: a bare pyzmq DEALER/ROUTER echo.

``python bench/scale_raw.py ADDRESS`` is the echo server (a ROUTER that sends
every request back as it came, frame by frame); ``raw_client`` and
``raw_pump`` are its client: ``window`` requests in flight, one ZeroMQ
message each, a sequence number first so that each answer's latency is known.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import zmq

HWM = 100_000  # the raw sockets' high-water marks, as the transport's (a ROUTER drops past it)


def percentiles(latency_s: np.ndarray) -> dict[str, float]:
    """p50 and p99 in microseconds."""
    p50, p99 = np.percentile(latency_s, [50, 99]) * 1e6
    return {"p50_us": float(p50), "p99_us": float(p99)}


def raw_echo(address: str) -> None:
    """The baseline server: a pyzmq ROUTER echoing every request back as it came."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.bind(address)
    recv, send, more = sock.recv, sock.send, zmq.SNDMORE
    while True:  # frame by frame, copied: the fastest echo of small messages in pyzmq
        peer = recv()
        send(peer, more)
        send(recv())


@contextmanager
def raw_client(address: str) -> Iterator[zmq.Socket[bytes]]:
    """A plain pyzmq DEALER connected to the echo at ``address``, once it answers."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.RCVTIMEO, 60_000)
    sock.connect(address)
    try:
        sock.send(b"up?")
        sock.recv()
        yield sock
    finally:
        sock.close(linger=0)
        ctx.term()


def raw_pump(sock: zmq.Socket[bytes], total: int, window: int, frame_bytes: int) -> dict[str, Any]:
    """``total`` requests of ``frame_bytes`` (a sequence number first), ``window`` in flight."""
    pad = bytes(max(frame_bytes - 8, 0))
    sent_at = np.zeros(total)
    latency = np.zeros(total)
    clock, send, recv = time.perf_counter, sock.send, sock.recv
    sent = received = 0
    start = clock()
    while received < total:
        while sent < total and sent - received < window:
            sent_at[sent] = clock()
            send(sent.to_bytes(8, "little") + pad)
            sent += 1
        i = int.from_bytes(recv()[:8], "little")
        latency[i] = clock() - sent_at[i]
        received += 1
    return {"asks": total, "seconds": clock() - start, **percentiles(latency)}


if __name__ == "__main__":
    raw_echo(sys.argv[1])
