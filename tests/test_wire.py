"""Wire format: round trips of every message type, typed errors, fuzzing (in memory and live)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm.errors import RemoteError, WireError
from swarm.transport import Client, TransportOptions
from swarm.wire import (
    MESSAGE_TYPES,
    AdapterChunk,
    Chat,
    Commit,
    Error,
    Example,
    Generate,
    GenRequest,
    KGDelta,
    KGEdge,
    KGNode,
    Message,
    Pairing,
    Profile,
    Train,
    decode,
    decode_envelope,
    encode,
    encode_batch,
    payload_frames,
)
from tests.transport_peer import Peer, RawInbox

MAX = 1 << 20


def sample(kind: type[Message]) -> tuple[Message, list[bytes]]:
    """A message of ``kind`` with a non-default body, and its payload frames."""
    env = dict(sender="a1", recipient="b2", round=3)
    special: dict[type[Message], Message] = {
        Generate: Generate(**env, requests=[GenRequest(prompt="2+2=", adapter="ab" * 32,
                                                       max_tokens=8, temperature=0.5)]),
        Train: Train(**env, agent_id="a1", base_adapter=None, hyper={"lr": 0.002, "steps": 4},
                     examples=[Example(prompt="q", completion="a")]),
        Profile: Profile(**env, agent_id="a1", vector=[0.5, -1.25], metrics={"acc": 0.75}),
        Pairing: Pairing(**env, pairs=[("a1", "b2"), ("c3", "d4")]),
        KGDelta: KGDelta(**env, agent_id="a1", nodes=[KGNode(id="g", kind="goal")],
                         edges=[KGEdge(src="g", dst="s")]),
        Commit: Commit(**env, branch="agent/a1", paths=["x.txt", "y.bin"], message="m"),
        AdapterChunk: AdapterChunk(**env, sha256="cd" * 32, offset=4096),
        Chat: Chat(**env, role="assistant", content="héllo", in_reply_to="x"),
        Error: Error(**env, code="c", reason="r", in_reply_to="y"),
    }
    msg = special.get(kind) or kind(**env)
    payload = [f"payload-{i}".encode() * 10 for i in range(payload_frames(msg))]
    return msg, payload


@pytest.mark.parametrize("kind", MESSAGE_TYPES, ids=lambda k: k.__name__)
def test_every_type_roundtrips_in_memory(kind: type[Message]) -> None:
    msg, payload = sample(kind)
    decoded, frames = decode(encode(msg, payload))
    assert decoded == msg and type(decoded) is kind
    assert [bytes(f) for f in frames] == payload


def test_batch_roundtrips() -> None:
    msgs = [Chat(content=str(i)) for i in range(5)]
    assert decode_envelope(encode_batch(msgs)) == msgs


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[str]:
    address = f"ipc://{tmp_path}/echo.ipc"
    with Peer("echo", address, "--agents", "b2", "--max-bytes", str(MAX)):
        yield address


def test_every_type_roundtrips_through_a_process(echo: str) -> None:
    async def run() -> None:
        async with Client("t-roundtrip", echo, TransportOptions(max_message_bytes=MAX)) as cli:
            for kind in MESSAGE_TYPES:
                if kind.__name__ in ("Heartbeat", "Ack", "Error"):
                    continue  # handled by the transport, never delivered
                msg, payload = sample(kind)
                reply = await cli.request(msg, payload, timeout=10)
                assert type(reply.msg) is kind
                body = {f: getattr(msg, f) for f in msg.__struct_fields__ if f not in _ENVELOPE}
                assert {f: getattr(reply.msg, f) for f in body} == body
                assert (reply.msg.sender, reply.msg.recipient) == ("b2", "a1")
                assert reply.msg.correlation_id == msg.msg_id
                assert [bytes(p) for p in reply.payload] == payload

    asyncio.run(asyncio.wait_for(run(), 60))


_ENVELOPE = {"msg_id", "sent_at", "sender", "recipient", "correlation_id", "ack", "version"}


def _raw_bad_requests() -> list[tuple[str, list[bytes]]]:
    chat = msgspec.msgpack.encode({"type": "Chat", "content": "x"})
    return [
        ("wire.garbage", [b"\xc1\xc1\xc1"]),
        ("wire.truncated", [chat[:-3]]),
        ("wire.unknown_type", [msgspec.msgpack.encode({"type": "Teleport"})]),
        ("wire.bad_version", [msgspec.msgpack.encode({"type": "Chat", "version": 99})]),
        ("wire.invalid", [msgspec.msgpack.encode({"type": "Chat", "content": 5})]),
        ("wire.frames", [msgspec.msgpack.encode({"type": "AdapterChunk", "sha256": "x"})]),
        ("wire.oversize", encode(Commit(paths=["a", "b"]), [b"x" * (MAX - 100), b"y" * 200])),
        ("unknown_recipient", [encode(Chat(sender="a1", recipient="nobody"))[0]]),
    ]


def _raw_dealer(address: str) -> zmq.Socket[bytes]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = 10_000
    sock.connect(address)
    return sock


def _next_reply(inbox: RawInbox) -> Message:
    msg: Message = inbox.next()
    return msg


def test_each_kind_of_bad_request_gets_an_error_reply(echo: str) -> None:
    sock = _raw_dealer(echo)
    inbox = RawInbox(sock)
    try:
        for code, frames in _raw_bad_requests():
            sock.send_multipart(frames)
            reply = _next_reply(inbox)
            assert isinstance(reply, Error), code
            assert reply.code == code
        good = Chat(sender="a1", recipient="b2", content="still there?")
        sock.send_multipart(encode(good))
        reply = _next_reply(inbox)
        assert isinstance(reply, Chat) and reply.content == "still there?"
    finally:
        sock.close(0)


def test_client_request_raises_remote_error(echo: str) -> None:
    async def run() -> None:
        async with Client("t-remote", echo) as cli:
            with pytest.raises(RemoteError) as info:
                await cli.request(Chat(sender="a1", recipient="ghost"), timeout=10)
            assert info.value.remote_code == "unknown_recipient"

    asyncio.run(asyncio.wait_for(run(), 30))


def _mutations(rng: random.Random) -> Iterator[bytes]:
    seeds = [encode(*sample(k))[0] for k in MESSAGE_TYPES]
    seeds.append(encode_batch([Chat(content="a"), Chat(content="b")]))
    while True:
        base = bytearray(rng.choice(seeds))
        op = rng.randrange(6)
        if op == 0:
            yield rng.randbytes(rng.randrange(0, 64))
        elif op == 1:
            yield bytes(base[: rng.randrange(len(base))])
        elif op == 2:
            for _ in range(rng.randrange(1, 8)):
                base[rng.randrange(len(base))] = rng.randrange(256)
            yield bytes(base)
        elif op == 3:
            i = rng.randrange(len(base))
            yield bytes(base[:i] + rng.randbytes(rng.randrange(1, 16)) + base[i:])
        elif op == 4:
            other = rng.choice(seeds)
            yield bytes(base[: rng.randrange(len(base))] + other[rng.randrange(len(other)):])
        else:
            i = rng.randrange(len(base))
            yield bytes(base[:i] + bytes([rng.choice([0xC0, 0xDC, 0xDD, 0xDE, 0xDF, 0xC4])]) + b"\xff" * 4)


def test_fuzz_decoder_100k_only_wire_error_escapes() -> None:
    rng = random.Random(1234)
    gen = _mutations(rng)
    decoded = refused = 0
    for _ in range(100_000):
        data = next(gen)
        try:
            decode([data])
            decoded += 1
        except WireError as exc:
            assert exc.kind in {"garbage", "truncated", "unknown_type", "bad_version",
                                "invalid", "frames"}
            refused += 1
    assert decoded + refused == 100_000
    assert refused > 50_000 and decoded > 100  # both paths really exercised


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=256) | st.builds(
    lambda d: msgspec.msgpack.encode(d),
    st.dictionaries(st.sampled_from(["type", "version", "content", "offset", "msg_id", "paths"]),
                    st.sampled_from(["Chat", "Commit", "AdapterChunk", 1, -1, 2**63, None, [],
                                     "x", 1.5, {"a": 1}]))))
def test_hypothesis_decoder_raises_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        decode([data])


def test_fuzz_a_live_process_keeps_serving(echo: str) -> None:
    sock = _raw_dealer(echo)
    inbox = RawInbox(sock)
    rng = random.Random(99)
    gen = _mutations(rng)
    try:
        sent = 3000
        for _ in range(sent):
            sock.send(next(gen))
        sock.send_multipart(encode(Chat(sender="a1", recipient="b2", content="alive")))
        errors = 0
        while True:  # replies come in order: every fuzz answer, then the marker
            reply = _next_reply(inbox)
            if isinstance(reply, Chat) and reply.content == "alive":
                break
            errors += isinstance(reply, Error) and reply.code.startswith("wire.")
        assert errors > sent // 2
    finally:
        sock.close(0)
