"""Typed agent messages between real host processes: ask/reply, errors, knowledge deltas.

Two host processes (this file run as a script) hold agents ``a0, a1`` (host
``host-a``) and ``b0, b1`` (host ``host-b``) and serve peer messages on their
own ROUTERs; the test process is a third host, ``host-t``, holding ``t0``,
whose agent context asks the others. No coordinator: each host's directory is
filled as a ``Welcome`` would fill it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from swarm.agents import Agent, AgentContext, AgentSpec, handles, message, role
from swarm.errors import (
    AskTimeout,
    HandlerError,
    MessageTypeError,
    SecurityError,
    UnknownAgent,
    WireError,
    error_for_code,
)
from swarm.knowledge import KnowledgeGraph
from swarm.transport.peers import Client, TransportOptions
from swarm.wire.codec import MAX_BODY, Ack, AgentMsg, encode

ROOT = Path(__file__).resolve().parent.parent
PLACEMENT = {"a0": "host-a", "a1": "host-a", "b0": "host-b", "b1": "host-b", "t0": "host-t"}


@message("TestQuestion")
class Question(msgspec.Struct, frozen=True):
    text: str


@message("TestAnswer")
class Answer(msgspec.Struct, frozen=True):
    text: str
    by: list[str] = []


@message("TestRelay")
class Relay(msgspec.Struct, frozen=True):
    """Ask each of ``via`` in turn, and answer with what they said."""

    via: list[str]


@message("TestBoom")
class Boom(msgspec.Struct, frozen=True):
    pass


@message("TestSlow")
class Slow(msgspec.Struct, frozen=True):
    seconds: float


@message("TestDumpKG")
class DumpKG(msgspec.Struct, frozen=True):
    pass


@message("TestBig")
class Big(msgspec.Struct, frozen=True):
    data: bytes


class Unregistered(msgspec.Struct, frozen=True):
    text: str


@role("test_talker")
class Talker(Agent):
    """Answers questions, relays them, raises on ``Boom``, dumps its graph."""

    __slots__ = ()

    @handles(Question)
    async def on_question(self, ctx: AgentContext, sender: str, q: Question) -> Answer:
        return Answer(text=f"{self.id} heard {q.text!r} from {sender}", by=[self.id])

    @handles(Relay)
    async def on_relay(self, ctx: AgentContext, sender: str, r: Relay) -> Answer:
        said = [await ctx.ask(agent, Question(text=f"via {self.id}")) for agent in r.via]
        return Answer(text=" | ".join(a.text for a in said), by=[b for a in said for b in a.by])

    @handles(Boom)
    async def on_boom(self, ctx: AgentContext, sender: str, b: Boom) -> Answer:
        raise ValueError("the handler broke")

    @handles(Slow)
    async def on_slow(self, ctx: AgentContext, sender: str, s: Slow) -> Answer:
        await asyncio.sleep(s.seconds)
        return Answer(text="late")

    @handles(DumpKG)
    async def on_dump(self, ctx: AgentContext, sender: str, d: DumpKG) -> Answer:
        return Answer(text=ctx.kg.to_json())


def make_host(name: str, agents: list[str], peers: dict[str, str]) -> Any:
    from swarm.config import parse_config
    from swarm.runtime.host import Host

    config = parse_config({"swarm": {"name": "t"},
                           "agents": [{"name": "g", "count": 1, "skills": ["add"]}],
                           "protocol": {"name": "local"}})
    specs = [AgentSpec(agent_id=a, role="test_talker") for a in agents]
    host = Host(name, config, specs, Path(tempfile.gettempdir()))
    host.messaging.directory.update(PLACEMENT, peers)
    return host


def serve(name: str, peers: dict[str, str]) -> None:
    """A host process: its agents serve peers at ``peers[name]`` until killed."""
    agents = sorted(a for a, h in PLACEMENT.items() if h == name)
    host = make_host(name, agents, peers)
    asyncio.run(host.serve_peers(peers[name]))


def run(coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Two running host processes; yields every host's peer address."""
    d = tmp_path_factory.mktemp("talk")
    book = {h: f"ipc://{d}/{h}.ipc" for h in ("host-a", "host-b", "host-t")}
    procs = [subprocess.Popen([sys.executable, __file__, h, msgspec.json.encode(book).decode()],
                              cwd=ROOT) for h in ("host-a", "host-b")]
    try:
        yield book
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


async def with_tester(peers: dict[str, str], body: Any) -> Any:
    """Run ``body(ctx)`` as agent ``t0`` of an in-process host that serves peers too."""
    host = make_host("host-t", ["t0"], peers)
    serving = asyncio.ensure_future(host.serve_peers(peers["host-t"]))
    try:
        return await body(host.context(host.agents["t0"]), host)
    finally:
        serving.cancel()
        await host.messaging.close()


def test_an_ask_across_hosts_gets_the_handlers_typed_answer(peers: dict[str, str]) -> None:
    async def body(ctx: AgentContext, host: Any) -> Answer:
        return await ctx.ask("b0", Question(text="hello"), timeout=30)

    answer = run(with_tester(peers, body))
    assert isinstance(answer, Answer)
    assert answer == Answer(text="b0 heard 'hello' from t0", by=["b0"])


def test_a_handler_asks_on_its_own_host_and_across_hosts(peers: dict[str, str]) -> None:
    # b0 asks b1 (same host, in process) and a0 (the other host) and back to t0's host
    async def body(ctx: AgentContext, host: Any) -> Answer:
        return await ctx.ask("b0", Relay(via=["b1", "a0", "t0"]), timeout=30)

    answer = run(with_tester(peers, body))
    assert answer.by == ["b1", "a0", "t0"]
    assert "b1 heard 'via b0' from b0" in answer.text and "a0 heard" in answer.text


def test_a_raising_handler_is_a_typed_error_and_the_host_keeps_serving(
        peers: dict[str, str]) -> None:
    async def body(ctx: AgentContext, host: Any) -> tuple[str, Answer]:
        try:
            await ctx.ask("a1", Boom(), timeout=30)
        except HandlerError as exc:
            caught = str(exc)
        else:
            raise AssertionError("the ask did not fail")
        return caught, await ctx.ask("a1", Question(text="still there?"), timeout=30)

    caught, after = run(with_tester(peers, body))
    assert "ValueError: the handler broke" in caught
    assert after.by == ["a1"]


def test_an_ask_without_an_answer_in_time_is_an_ask_timeout(peers: dict[str, str]) -> None:
    async def body(ctx: AgentContext, host: Any) -> Answer:
        with pytest.raises(AskTimeout, match="did not answer"):
            await ctx.ask("a0", Slow(seconds=5), timeout=1.0)
        return await ctx.ask("a0", Question(text="after"), timeout=30)

    assert run(with_tester(peers, body)).by == ["a0"]


def test_unknown_agent_unregistered_type_and_oversize_get_clear_errors(
        peers: dict[str, str]) -> None:
    async def body(ctx: AgentContext, host: Any) -> None:
        with pytest.raises(UnknownAgent, match="nobody"):
            await ctx.ask("nobody", Question(text="?"))
        with pytest.raises(MessageTypeError, match="not a registered agent message"):
            await ctx.ask("b0", Unregistered(text="?"))  # type: ignore[arg-type]
        with pytest.raises(WireError, match="over"):
            await ctx.ask("b0", Big(data=b"x" * (MAX_BODY + 1)))

    run(with_tester(peers, body))


async def raw_ask(address: str, msg: AgentMsg, routing_id: bytes = b"host-t.99") -> Any:
    """Send an ``AgentMsg`` as a bare transport client; the answer (or the error raised)."""
    async with Client(routing_id.decode(), address, TransportOptions()) as client:
        await client.wait_up(30)
        try:
            inc = await client.request(msg, timeout=30)
        except Exception as exc:
            code = getattr(exc, "remote_code", "")
            return error_for_code(code, str(exc)) if code else exc
        return inc.msg


def test_a_host_answers_bad_messages_with_typed_errors_and_keeps_serving(
        peers: dict[str, str]) -> None:
    address = peers["host-b"]
    unknown_type = AgentMsg(sender="t0", recipient="b0", kind="NoSuchKind", body=b"\x80",
                            asks=True)
    bad_body = AgentMsg(sender="t0", recipient="b0", kind="TestQuestion",
                        body=msgspec.msgpack.encode({"text": 3}), asks=True)
    to_nobody = AgentMsg(sender="t0", recipient="nobody", kind="TestQuestion",
                         body=msgspec.msgpack.encode(Question(text="?")), asks=True)
    # host-t's connection claims to speak for a0, an agent of host-a
    forged = AgentMsg(sender="a0", recipient="b0", kind="TestQuestion",
                      body=msgspec.msgpack.encode(Question(text="I am a0")), asks=True)
    good = AgentMsg(sender="t0", recipient="b0", kind="TestQuestion",
                    body=msgspec.msgpack.encode(Question(text="ok?")), asks=True)

    got = [run(raw_ask(address, m)) for m in (unknown_type, bad_body, to_nobody)]
    got.append(run(raw_ask(address, forged)))
    last = run(raw_ask(address, good))

    assert isinstance(got[0], MessageTypeError) and "NoSuchKind" in str(got[0])
    assert isinstance(got[1], MessageTypeError) and "does not decode" in str(got[1])
    assert isinstance(got[2], UnknownAgent)
    assert isinstance(got[3], SecurityError) and "claims to be from a0" in str(got[3])
    assert isinstance(last, AgentMsg)
    assert msgspec.msgpack.decode(last.body, type=Answer).by == ["b0"]


def test_an_ask_is_acked_by_its_answer_alone_and_a_resend_gets_the_same_answer(
        peers: dict[str, str]) -> None:
    from tests.transport_peer import RawInbox  # not at the top: this file runs as the hosts too

    # Prepare: a bare DEALER speaking as host-t's agent t0 (a reliable request, as ctx.ask sends)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger, sock.rcvtimeo = 0, 10_000
    sock.setsockopt(zmq.ROUTING_ID, b"host-t.98")
    sock.connect(peers["host-a"])
    inbox = RawInbox(sock)
    ask = AgentMsg(sender="t0", recipient="a0", kind="TestQuestion", asks=True, ack=True,
                   body=msgspec.msgpack.encode(Question(text="once?")))
    delta = AgentMsg(sender="t0", recipient="a1", kind="KGDelta", ack=True,
                     body=msgspec.msgpack.encode(KnowledgeGraph("t0").add("x", "fact")))
    try:
        # Execute: the ask twice (a resend: the same msg_id), then an at-least-once send
        sock.send_multipart(encode(ask))
        first = inbox.next()
        sock.send_multipart(encode(ask))
        again = inbox.next()
        sock.send_multipart(encode(delta))
        acked = inbox.next()
    finally:
        sock.close(0)

    # Assert: the answer, no Ack before it; the resend's answer is the cached one (the handler
    # ran once); a send that waits for an ack still gets one
    assert isinstance(first, AgentMsg) and first.correlation_id == ask.msg_id
    assert msgspec.msgpack.decode(first.body, type=Answer).by == ["a0"]
    assert again == first
    assert isinstance(acked, Ack) and acked.correlation_id == delta.msg_id


def test_replicas_that_get_the_same_deltas_in_other_orders_are_equal(
        peers: dict[str, str]) -> None:
    # Prepare: deltas from three origins, one of them an edge whose ends arrive later
    a, b, c = KnowledgeGraph("x"), KnowledgeGraph("y"), KnowledgeGraph("z")
    deltas = [a.add("goal", "goal"), a.add("sub", "subgoal", parent="goal", w=1),
              b.add("fact1", "fact", text="Zorbia's capital is Quantix"),
              c.add("fact0", "fact"),  # z's clock is 1, then 2: its "sub" outranks x's (2, "x")
              c.add("sub", "subgoal", parent="goal", w=2), b.add("fact2", "fact", parent="sub")]

    async def body(ctx: AgentContext, host: Any) -> tuple[str, str]:
        # Execute: b0 gets them in order, b1 in reverse, over the wire (host-b merges)
        await ctx.share(deltas[0], to=["b0", "b1"])
        for d in deltas[1:]:
            await ctx.send("b0", d)
        for d in reversed(deltas[1:]):
            await ctx.send("b1", d)
        kg0 = (await ctx.ask("b0", DumpKG(), timeout=30)).text
        kg1 = (await ctx.ask("b1", DumpKG(), timeout=30)).text
        return kg0, kg1

    kg0, kg1 = run(with_tester(peers, body))
    g0, g1 = KnowledgeGraph.from_json(kg0), KnowledgeGraph.from_json(kg1)

    # Assert: equal replicas, with every node, the later stamp's attributes, every edge
    assert g0 == g1
    assert set(g0.graph.nodes) == {"goal", "sub", "fact0", "fact1", "fact2"}
    assert g0.graph.nodes["sub"]["w"] == 2
    assert set(g0.graph.edges) == {("goal", "sub"), ("sub", "fact2")}


def test_the_ask_log_records_who_said_what(peers: dict[str, str]) -> None:
    async def body(ctx: AgentContext, host: Any) -> list[Any]:
        await ctx.ask("a0", Question(text="logged"), timeout=30)
        with pytest.raises(UnknownAgent):
            await ctx.ask("ghost", Question(text="lost"))
        return host.messaging.take_log()

    entries = run(with_tester(peers, body))
    asked, answered, failed = entries
    assert (asked.sender, asked.recipient, asked.kind) == ("t0", "a0", "TestQuestion")
    assert msgspec.json.decode(asked.body) == {"text": "logged"}
    assert (answered.sender, answered.kind, answered.correlation_id) == (
        "a0", "TestAnswer", asked.msg_id)
    assert (failed.recipient, failed.error) == ("ghost", "agent.unknown")


if __name__ == "__main__":
    serve(sys.argv[1], msgspec.json.decode(sys.argv[2]))
