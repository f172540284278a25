"""Random and mutated messages for the fuzz tests: single frames, batch envelopes, multipart.

``sample(kind)`` is a message of every type with a non-default body;
``mutations(rng)`` yields envelope frames mutated from those samples (and
batches of them); ``multipart(rng)`` yields whole multipart messages
``[envelope, *payload]``: mutated envelopes with right and wrong payload
counts, batches (with payload types, past ``MAX_BATCH``, with bad items),
oversize messages and messages of too many frames.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import msgspec

from swarm.wire.codec import (
    MAX_BATCH,
    MAX_PAYLOAD_FRAMES,
    MESSAGE_TYPES,
    PAYLOAD_TYPES,
    AdapterChunk,
    AgentReport,
    Assignment,
    Chat,
    Commit,
    Error,
    Event,
    Example,
    Generate,
    GenRequest,
    KGDelta,
    KGEdge,
    KGNode,
    Message,
    Pairing,
    PairOutcome,
    Profile,
    Step,
    StepDone,
    Train,
    encode,
    encode_batch,
    payload_frames,
)

__all__ = ["sample", "mutations", "multipart"]


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
        KGDelta: KGDelta(**env, origin="a1", clock=7, edges=[KGEdge(parent="g", child="s")],
                         nodes=[KGNode(id="g", level="goal",
                                       attrs={"text": "t", "score": 0.5, "n": 2, "done": True})]),
        Commit: Commit(**env, branch="agent/a1", paths=["x.txt", "y.bin"], message="m"),
        AdapterChunk: AdapterChunk(**env, sha256="cd" * 32, offset=4096),
        Chat: Chat(**env, role="assistant", content="héllo", in_reply_to="x"),
        Error: Error(**env, code="c", reason="r", in_reply_to="y"),
        Event: Event(**env, topic="scores", json='{"round": 3}'),
        Step: Step(**env, phase="exchange", assignments=[
            Assignment(teacher="b2", student="a1", teacher_adapter="ab" * 32)]),
        StepDone: StepDone(**env, phase="exchange", messages=4, failed={"c3": "boom"},
                           reports=[AgentReport(agent_id="a1", adapter="ab" * 32, score=0.5,
                                                metrics={"loss": 1.0})],
                           outcomes=[PairOutcome(student="a1", teacher="b2", before=0.25,
                                                 after=0.5, adapter="cd" * 32, accepted=True,
                                                 parents=("ab" * 32, "cd" * 32))]),
    }
    msg = special.get(kind) or kind(**env)
    payload = [f"payload-{i}".encode() * 10 for i in range(payload_frames(msg))]
    return msg, payload


_FREE = [k for k in MESSAGE_TYPES if k not in PAYLOAD_TYPES]


def _seeds() -> list[bytes]:
    seeds = [encode(*sample(k))[0] for k in MESSAGE_TYPES]
    seeds.append(encode_batch([Chat(content="a"), Chat(content="b")]))
    seeds.append(encode_batch([sample(k)[0] for k in _FREE]))
    return seeds


def mutate(rng: random.Random, base: bytes, seeds: list[bytes]) -> bytes:
    """One random mutation of ``base``: cut, flipped bytes, inserted bytes, spliced, bad header."""
    data = bytearray(base)
    op = rng.randrange(6)
    if op == 0:
        return rng.randbytes(rng.randrange(0, 64))
    if op == 1:
        return bytes(data[: rng.randrange(len(data))])
    if op == 2:
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if op == 3:
        i = rng.randrange(len(data))
        return bytes(data[:i] + rng.randbytes(rng.randrange(1, 16)) + data[i:])
    if op == 4:
        other = rng.choice(seeds)
        return bytes(data[: rng.randrange(len(data))] + other[rng.randrange(len(other)):])
    i = rng.randrange(len(data))
    head = rng.choice([0xC0, 0xDC, 0xDD, 0xDE, 0xDF, 0xC4])
    return bytes(data[:i] + bytes([head]) + b"\xff" * 4)


def mutations(rng: random.Random) -> Iterator[bytes]:
    """Envelope frames mutated from a sample of every type and from batches of them."""
    seeds = _seeds()
    while True:
        yield mutate(rng, rng.choice(seeds), seeds)


def _batch(rng: random.Random) -> bytes:
    """A batch envelope: valid, holding a payload type, too long, or with a bad item."""
    items = [sample(rng.choice(_FREE))[0] for _ in range(rng.randrange(1, 40))]
    op = rng.randrange(5)
    if op == 1:
        items.insert(rng.randrange(len(items) + 1), sample(rng.choice(sorted(
            PAYLOAD_TYPES, key=lambda k: k.__name__)))[0])
    elif op == 2 and rng.random() < 0.01:  # rare: a long frame
        items = [Chat(sender="a1", recipient="b2")] * (MAX_BATCH + 1)
    elif op == 3:
        raw = msgspec.msgpack.encode([msgspec.to_builtins(m) for m in items])
        return mutate(rng, raw, [raw])
    elif op == 4:
        bad = rng.choice([{"type": "Chat", "version": 7}, {"type": "Chat", "round": -9},
                          {"type": "Nope"}, {"type": "Reward", "value": float("nan")}, 5, []])
        body = [msgspec.to_builtins(m) for m in items]
        body.insert(rng.randrange(len(body) + 1), bad)
        return msgspec.msgpack.encode(body)
    return encode_batch(items)


def multipart(rng: random.Random, max_bytes: int) -> Iterator[list[bytes]]:
    """Multipart messages ``[envelope, *payload]``, mostly wrong, for a peer whose limit is
    ``max_bytes`` (rarely: oversize and too-many-frames messages)."""
    seeds = _seeds()
    while True:
        r = rng.random()
        if r < 0.35:
            yield [mutate(rng, rng.choice(seeds), seeds)]
        elif r < 0.55:
            yield [_batch(rng)] + [b"p"] * (rng.random() < 0.1)
        elif r < 0.85:  # a payload type, its envelope maybe mutated, frames maybe miscounted
            msg, payload = sample(rng.choice([AdapterChunk, Commit]))
            env = encode(msg, payload)[0]
            if rng.random() < 0.5:
                env = mutate(rng, env, seeds)
            n = len(payload) + rng.choice([0, 0, -1, 1, 3])
            yield [env] + [rng.randbytes(rng.randrange(64)) for _ in range(max(n, 0))]
        elif r < 0.999:  # a payload-free message with frames after it
            env = encode(sample(rng.choice(_FREE))[0])[0]
            yield [env] + [b"x"] * rng.randrange(1, 4)
        elif r < 0.9995:  # oversize in all, each frame under the limit
            env = encode(Commit(sender="a1", recipient="b2", paths=["a", "b"]), [b"", b""])[0]
            half = max_bytes // 2 + 1
            yield [env, b"x" * half, b"y" * half]
        else:  # too many frames
            env = msgspec.msgpack.encode(Commit(sender="a1", recipient="b2", paths=["a"]))
            yield [env] + [b""] * (MAX_PAYLOAD_FRAMES + 1)
