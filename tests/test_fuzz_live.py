"""A live server process under 100,000 random and mutated multipart messages.

The target is ``tests/transport_peer.py echo``: a real ``Server`` on a real
ZeroMQ socket in its own process. The fuzz goes in chunks, each closed by a
marker ``Chat`` whose echo says every message before it was handled. What is
checked: the only errors the server makes are ``wire.*`` refusals (and the
echo's own ``unknown_recipient``), nothing else is logged as an exception, its
resident memory stays bounded, and afterwards a real client's request gets its
answer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import pytest
import zmq

from swarm.transport.peers import Client, TransportOptions
from swarm.wire.codec import Chat, Error, decode_envelope, encode
from tests.fuzzing import multipart
from tests.transport_peer import Peer

MAX = 1 << 20
TOTAL = 100_000
CHUNK = 500
NAME = "fuzz-target"


def _drain_to(sock: zmq.Socket[bytes], marker: str, codes: Counter[str]) -> int:
    """Read replies until the echo of ``marker``; count the server's own error codes."""
    replies = 0
    while True:
        env = decode_envelope(sock.recv_multipart()[0])  # the server's replies must decode
        for msg in env if isinstance(env, list) else [env]:
            replies += 1
            if isinstance(msg, Chat) and msg.content == marker:
                return replies
            if isinstance(msg, Error) and msg.sender == NAME:
                codes[msg.code] += 1


def _fuzz(sock: zmq.Socket[bytes], rng: random.Random, count: int, codes: Counter[str]) -> int:
    gen = multipart(rng, MAX)
    replies = sent = 0
    while sent < count:
        for _ in range(min(CHUNK, count - sent)):
            sock.send_multipart(next(gen))
            sent += 1
        marker = f"marker-{sent}"
        sock.send_multipart(encode(Chat(sender="a1", recipient="b2", content=marker)))
        replies += _drain_to(sock, marker, codes)
    return replies


@pytest.mark.slow
def test_a_live_server_survives_100k_fuzzed_multipart_messages(tmp_path: Path) -> None:
    address, log = f"ipc://{tmp_path}/fuzz.ipc", tmp_path / "stderr.txt"
    with Peer("echo", address, "--name", NAME, "--agents", "b2", "--max-bytes", str(MAX),
              "--hb", "1000", "--liveness", "10", stderr=log) as peer:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.linger, sock.rcvtimeo, sock.rcvhwm = 0, 30_000, 0  # never stall the server on us
        sock.connect(address)
        rng, codes = random.Random(20261201), Counter[str]()
        try:
            _fuzz(sock, rng, 5_000, Counter())  # warm-up: allocator pools, dedup window filling
            before = peer.memory()
            start = time.monotonic()
            replies = _fuzz(sock, rng, TOTAL, codes)
            seconds = time.monotonic() - start
            after = peer.memory()
        finally:
            sock.close(0)
        print(f"fuzz: {TOTAL} messages in {seconds:.1f} s, {replies} replies, codes {dict(codes)}; "
              f"RSS {before['VmRSS'] >> 20} -> {after['VmRSS'] >> 20} MiB, "
              f"peak {after['VmHWM'] >> 20} MiB")

        async def still_serving() -> str:
            async with Client("after-fuzz", address, TransportOptions(max_message_bytes=MAX)) as cli:
                inc = await cli.request(Chat(sender="a1", recipient="b2", content="alive?"),
                                        timeout=30)
                assert isinstance(inc.msg, Chat)
                return inc.msg.content

        assert asyncio.run(asyncio.wait_for(still_serving(), 60)) == "alive?"
        assert peer.alive
    assert set(codes) <= {"wire.garbage", "wire.truncated", "wire.unknown_type",
                          "wire.bad_version", "wire.invalid", "wire.frames", "wire.oversize",
                          "unknown_recipient"}, codes
    for kind in ("wire.garbage", "wire.invalid", "wire.frames", "wire.oversize"):
        assert codes[kind] > 0, kind  # every refusal path really ran
    assert sum(codes.values()) > TOTAL // 3 and replies > TOTAL // 2
    assert after["VmRSS"] - before["VmRSS"] < 64 << 20
    assert after["VmHWM"] - before["VmRSS"] < 128 << 20
    errors = log.read_text()
    assert "Traceback" not in errors and "Exception" not in errors, errors[-2000:]
