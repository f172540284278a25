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
from swarm.transport.peers import Client, Server, TransportOptions
from swarm.wire.codec import (
    MAX_BATCH,
    MAX_PAYLOAD_FRAMES,
    MESSAGE_TYPES,
    PAYLOAD_TYPES,
    VERSION,
    AdapterChunk,
    Chat,
    Commit,
    Error,
    Generate,
    GenRequest,
    Join,
    Message,
    Train,
    decode,
    decode_envelope,
    encode,
    encode_batch,
    envelope_of,
    payload_frames,
)
from tests.fuzzing import multipart, mutations, sample
from tests.transport_peer import Peer, RawInbox

MAX = 1 << 20


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
        ("wire.invalid", [_raw({"type": "Train", "msg_id": "t1", "hyper": {"steps": 10**12}})]),
        ("wire.invalid", [_raw({"type": "Generate", "requests": [{"prompt": "x",
                                                                 "max_tokens": 2**62}]})]),
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


def test_fuzz_decoder_100k_only_wire_error_escapes() -> None:
    rng = random.Random(1234)
    gen = mutations(rng)
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
    gen = mutations(rng)
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


# -- bounds: every field a peer sends, and the batch ---------------------------


def _raw(body: dict[str, object]) -> bytes:
    return msgspec.msgpack.encode(body)


_UNBOUNDED: dict[str, bytes] = {
    "train steps 10**12": _raw({"type": "Train", "hyper": {"steps": 10**12}}),
    "train steps as text": _raw({"type": "Train", "hyper": {"steps": "many"}}),
    "train rank 0": _raw({"type": "Train", "hyper": {"rank": 0}}),
    "train lr nan": _raw({"type": "Train", "hyper": {"learning_rate": float("nan")}}),
    "max_tokens 2**62": _raw({"type": "Generate", "requests": [{"prompt": "x",
                                                               "max_tokens": 2**62}]}),
    "max_tokens 0": _raw({"type": "Generate", "requests": [{"prompt": "x", "max_tokens": 0}]}),
    "temperature nan": _raw({"type": "Generate", "requests": [{"prompt": "x",
                                                              "temperature": float("nan")}]}),
    "temperature inf": _raw({"type": "Generate", "requests": [{"prompt": "x",
                                                              "temperature": float("inf")}]}),
    "too many requests": _raw({"type": "Generate", "requests": [{"prompt": ""}] * 65_537}),
    "reward nan": _raw({"type": "Reward", "value": float("nan")}),
    "score inf": _raw({"type": "StepDone", "reports": [{"agent_id": "a",
                                                         "score": float("inf")}]}),
    "outcome nan": _raw({"type": "StepDone", "outcomes": [{"teacher": "a", "student": "b",
                                                            "after": float("nan")}]}),
    "metric nan": _raw({"type": "Trained", "metrics": {"loss": float("nan")}}),
    "profile nan": _raw({"type": "Profile", "vector": [0.0, float("nan")]}),
    "kg clock -1": _raw({"type": "KGDelta", "clock": -1}),
    "kg attr nan": _raw({"type": "KGDelta", "nodes": [{"id": "g", "attrs": {"s": float("nan")}}]}),
    "kg attr list": _raw({"type": "KGDelta", "nodes": [{"id": "g", "attrs": {"s": [1, 2]}}]}),
    "sent_at inf": _raw({"type": "Chat", "sent_at": float("inf")}),
    "round 2**40": _raw({"type": "Chat", "round": 2**40}),
    "round -2": _raw({"type": "Chat", "round": -2}),
    "credit 10**9": _raw({"type": "AdapterRequest", "credit": 10**9}),
    "chunk 2**40": _raw({"type": "AdapterRequest", "chunk_bytes": 2**40}),
    "offset 2**50": _raw({"type": "AdapterChunk", "offset": 2**50}),
    "size 2**62": _raw({"type": "AdapterOffer", "size": 2**62}),
    "heartbeat 0": _raw({"type": "Welcome", "heartbeat_ms": 0}),
    "merge weight inf": _raw({"type": "Merge", "weight": float("inf")}),
    "messages -1": _raw({"type": "StepDone", "messages": -1}),
    "sender 10k chars": _raw({"type": "Chat", "sender": "s" * 10_000}),
    "too many agents": _raw({"type": "Join", "agent_ids": ["a"] * 100_001}),
    "too many capabilities": _raw({"type": "Join", "capabilities": {str(i): "x"
                                                                     for i in range(1025)}}),
    "too many commit paths": _raw({"type": "Commit", "paths": ["p"] * 10_001}),
}


@pytest.mark.parametrize("data", _UNBOUNDED.values(), ids=_UNBOUNDED.keys())
def test_a_field_out_of_bounds_is_refused_as_invalid(data: bytes) -> None:
    with pytest.raises(WireError) as info:
        decode_envelope(data)
    assert info.value.kind == "invalid"


def test_the_bounds_admit_real_use() -> None:
    train = _raw({"type": "Train", "hyper": {"steps": 100_000, "rank": 256, "lr": 1e-4,
                                             "target_modules": "q_proj,v_proj", "seed": 2**40}})
    gen = _raw({"type": "Generate", "requests": [{"prompt": "p" * 100_000, "max_tokens": 32_768,
                                                  "temperature": 2.0}] * 4096})
    agents = [f"learner-{i}" for i in range(10_000)]
    join = encode(Join(sender="host-0", agent_ids=agents, process="host"))[0]  # as Host.run does
    msgs = [decode_envelope(train), decode_envelope(gen), decode_envelope(join)]
    assert isinstance(msgs[0], Train) and msgs[0].hyper["steps"] == 100_000
    assert isinstance(msgs[1], Generate) and len(msgs[1].requests) == 4096
    assert isinstance(msgs[2], Join) and msgs[2].agent_ids == agents


def test_a_batch_is_bounded_in_length_before_its_items_are_decoded() -> None:
    assert len(decode_envelope(encode_batch([Chat()] * MAX_BATCH))) == MAX_BATCH  # type: ignore[arg-type]
    with pytest.raises(WireError) as info:
        decode_envelope(encode_batch([Chat()] * (MAX_BATCH + 1)))
    assert info.value.kind == "invalid"


@pytest.mark.parametrize("kind", sorted(PAYLOAD_TYPES, key=lambda k: k.__name__),
                         ids=lambda k: k.__name__)
def test_a_batch_holding_a_payload_type_is_refused(kind: type[Message]) -> None:
    batch = encode_batch([Chat(content="a"), sample(kind)[0], Chat(content="b")])
    with pytest.raises(WireError) as info:
        decode_envelope(batch)
    assert info.value.kind == "frames"


@pytest.mark.parametrize("data", [
    {"type": "Chat", "version": VERSION + 1, "content": "hi"},  # decodes here, another version
    {"type": "Chat", "version": VERSION + 1, "content": 5},  # a field this version reads otherwise
    {"type": "Teleport", "version": VERSION + 1},  # a type this version does not know
    {"type": "Chat", "version": 70_000},  # past the field's bound
    {"type": "Generated", "version": 1, "texts": ["old"]},  # version 1's Generated
], ids=["same-fields", "other-field-type", "unknown-type", "out-of-bounds", "previous-version"])
def test_another_version_is_refused_as_bad_version_naming_ours(data: dict[str, object]) -> None:
    for frame in (_raw(data), msgspec.msgpack.encode([{"type": "Chat"}, data])):  # alone, batched
        with pytest.raises(WireError) as info:
            decode_envelope(frame)
        assert info.value.kind == "bad_version"
        assert f"version {data['version']} is not supported" in str(info.value)
        assert f"this side speaks version {VERSION}" in str(info.value)
    # a message of this version that fails to decode is not blamed on its version
    with pytest.raises(WireError) as info:
        decode_envelope(_raw({"type": "Chat", "version": VERSION, "content": 5}))
    assert info.value.kind == "invalid"


def test_envelope_of_reads_the_envelope_of_a_refused_message() -> None:
    bad = _raw({"type": "Generate", "msg_id": "m1", "sender": "h0", "round": 4,
                "requests": [{"prompt": "x", "max_tokens": 2**62}]})
    env = envelope_of(bad)
    assert env is not None and (env.msg_id, env.sender, env.round) == ("m1", "h0", 4)
    assert envelope_of(b"\xc1") is None
    assert envelope_of(encode_batch([Chat(), Chat()])) is None
    assert envelope_of(_raw({"type": "Chat", "msg_id": "m" * 10_000})) is None


def test_a_request_out_of_bounds_gets_a_typed_error_reply(echo: str) -> None:
    async def run() -> None:
        async with Client("t-bounds", echo, TransportOptions(max_message_bytes=MAX)) as cli:
            for req in (GenRequest(prompt="x", max_tokens=2**62),
                        GenRequest(prompt="x", temperature=float("nan"))):
                with pytest.raises(RemoteError) as info:
                    await cli.request(Generate(sender="a1", recipient="b2", requests=[req]),
                                      timeout=10)
                assert info.value.remote_code == "wire.invalid"
            ok = await cli.request(Generate(sender="a1", recipient="b2",
                                            requests=[GenRequest(prompt="x")]), timeout=10)
            assert isinstance(ok.msg, Generate)

    asyncio.run(asyncio.wait_for(run(), 60))


def test_a_live_process_refuses_payload_types_in_a_batch_and_keeps_serving(echo: str) -> None:
    sock = _raw_dealer(echo)
    inbox = RawInbox(sock)
    try:
        for kind in (AdapterChunk, Commit):
            sock.send(encode_batch([Chat(sender="a1", recipient="b2"), sample(kind)[0]]))
            reply = _next_reply(inbox)
            assert isinstance(reply, Error) and reply.code == "wire.frames"
        sock.send_multipart(encode(Chat(sender="a1", recipient="b2", content="still there?")))
        reply = _next_reply(inbox)
        assert isinstance(reply, Chat) and reply.content == "still there?"
    finally:
        sock.close(0)


def test_a_live_process_refuses_too_many_frames_and_keeps_serving(echo: str) -> None:
    sock = _raw_dealer(echo)
    inbox = RawInbox(sock)
    n = MAX_PAYLOAD_FRAMES + 1
    try:
        # paths within bounds would still not match: the frame count is refused as read
        env = msgspec.msgpack.encode(Commit(sender="a1", recipient="b2", paths=["p"]))
        sock.send_multipart([env] + [b"x"] * n)
        reply = _next_reply(inbox)
        assert isinstance(reply, Error) and reply.code == "wire.frames"
        assert "frames" in reply.reason
        sock.send_multipart(encode(Chat(sender="a1", recipient="b2", content="still there?")))
        reply = _next_reply(inbox)
        assert isinstance(reply, Chat) and reply.content == "still there?"
    finally:
        sock.close(0)


# -- fuzzing the batch path and multipart messages ------------------------------------

_TYPES = st.sampled_from(MESSAGE_TYPES)
_ITEM = st.one_of(
    _TYPES.map(lambda k: msgspec.to_builtins(sample(k)[0])),
    st.dictionaries(st.sampled_from(["type", "version", "round", "msg_id", "paths", "offset",
                                     "credit", "requests", "value"]),
                    st.sampled_from(["Chat", "Commit", "AdapterChunk", "Reward", 1, -1, 2**63,
                                     None, [], "x", 1.5, float("nan"), {"a": 1}])),
)
_ENVELOPES = st.one_of(
    st.binary(max_size=256),
    _ITEM.map(msgspec.msgpack.encode),
    st.lists(_ITEM, max_size=12).map(msgspec.msgpack.encode),  # batches, any items
    st.lists(_TYPES, min_size=1, max_size=12).map(
        lambda kinds: encode_batch([sample(k)[0] for k in kinds])),
)
_MULTIPART = st.tuples(_ENVELOPES, st.lists(st.binary(max_size=64), max_size=5)).map(
    lambda t: [t[0], *t[1]])


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(_MULTIPART)
def test_hypothesis_multipart_and_batches_raise_only_wire_error(frames: list[bytes]) -> None:
    try:
        env = decode_envelope(frames[0])
    except WireError:
        return
    items = env if isinstance(env, list) else [env]
    assert all(type(m) not in PAYLOAD_TYPES for m in items) or not isinstance(env, list)
    with contextlib.suppress(WireError):
        msg, payload = decode(frames)
        assert len(payload) == payload_frames(msg)


def _reader() -> Server:
    """A server that is not started: its read path runs, its replies go nowhere."""
    return Server("fuzz", "ipc:///nonexistent", TransportOptions(max_message_bytes=MAX))


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(_MULTIPART)
def test_hypothesis_the_read_path_delivers_only_whole_messages(frames: list[bytes]) -> None:
    reader = _reader()
    reader.feed(b"peer", frames)  # nothing may escape
    for inc in reader.recv_nowait(reader.waiting):
        assert len(inc.payload) == payload_frames(inc.msg)


def test_fuzz_the_read_path_with_100k_multipart_messages() -> None:
    rng = random.Random(4321)
    gen = multipart(rng, MAX)
    reader = _reader()
    delivered = 0
    for _ in range(100_000):
        frames = next(gen)
        if len(frames) > MAX_PAYLOAD_FRAMES + 1 or sum(map(len, frames)) > MAX:
            continue  # refused as read, by the socket loop (the live fuzz test covers it)
        reader.feed(b"peer", frames)
        got = reader.recv_nowait(reader.waiting)
        for inc in got:
            assert len(inc.payload) == payload_frames(inc.msg)
        delivered += len(got)
    assert delivered > 10_000  # the valid paths really ran, batches included
