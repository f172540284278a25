"""Transport: routing by agent id, ROUTER_MANDATORY, heartbeats, reconnects, acks, limits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import time
import tracemalloc
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq
import zmq.asyncio

from swarm.errors import PeerUnavailable, RemoteError, WireError
from swarm.transport.loop import run_loop
from swarm.transport.peers import Client, Server, TransportOptions
from swarm.transport.pubsub import Publisher, Subscriber
from swarm.transport.settings import TransportSection
from swarm.transport.topology import endpoint
from swarm.wire.codec import (
    MAX_BATCH,
    Chat,
    Commit,
    Error,
    Pairing,
    Reward,
    decode_envelope,
    encode,
    encode_batch,
)
from tests.transport_peer import Peer, RawInbox

HB = 200  # ms; liveness 3 -> 0.6 s, slack for a loaded 2-core machine
OPTS = TransportOptions(heartbeat_ms=HB, liveness=3, max_message_bytes=1 << 20)


def run(coro: Coroutine[Any, Any, None], timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


def count_busy_polls(cli: Client) -> list[int]:
    """A list that gets a 1 each time ``cli`` busy-polls."""
    polls: list[int] = []
    poll = cli.busy_poll

    def spy(fut: asyncio.Future[Any]) -> None:
        polls.append(1)
        poll(fut)

    cli.busy_poll = spy  # type: ignore[method-assign]
    return polls


def raw_dealer(address: str, routing_id: bytes) -> zmq.Socket[bytes]:
    """A bare pyzmq DEALER connected to ``address``: a peer that never heartbeats."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.connect(address)
    return sock


@pytest.fixture
def address(tmp_path: Path) -> str:
    return f"ipc://{tmp_path}/srv.ipc"


@pytest.fixture
def echo(address: str) -> Iterator[Peer]:
    with Peer("echo", address, "--hb", str(HB), "--max-bytes", str(1 << 20)) as peer:
        yield peer


def test_options_and_endpoint_from_config() -> None:
    section = TransportSection(heartbeat_ms=250, liveness=4, max_message_bytes=4096)
    opts = TransportOptions.from_config(section)
    assert (opts.heartbeat_ms, opts.liveness, opts.max_message_bytes) == (250, 4, 4096)
    assert opts.timeout_s == 1.0
    assert endpoint(section, 2) == "tcp://127.0.0.1:47002"
    assert TransportOptions.from_config(TransportSection(busy_poll_us=0)).busy_poll_us == 0
    # silence: the config's, but never under ten liveness timeouts
    assert opts.silence_s == 30.0
    assert TransportOptions.from_config(TransportSection(silence_s=300.0)).silence_s == 300.0
    slow = TransportSection(heartbeat_ms=10_000, liveness=5, silence_s=30.0)
    assert TransportOptions.from_config(slow).silence_s == 500.0


@pytest.mark.parametrize("budget_us", [0, 2_000_000])
def test_a_lone_request_takes_its_answer_in_the_busy_poll(echo: Peer, address: str, budget_us: int) -> None:
    # With a budget (2 s here, far above a local round trip) the answer is in when the poll
    # returns (taken during it, or already before it on a loaded machine); with none the
    # request never polls.
    async def main() -> None:
        opts = TransportOptions(heartbeat_ms=HB, liveness=3, busy_poll_us=budget_us)
        async with Client("host-a", address, opts) as cli:
            await cli.wait_up(10)
            polled: list[bool] = []
            poll = cli.busy_poll

            def spy(fut: asyncio.Future[Any]) -> None:
                poll(fut)
                polled.append(fut.done())

            cli.busy_poll = spy  # type: ignore[method-assign]
            for i in range(5):
                inc = await cli.request(Chat(sender="a", recipient="b", content=str(i)), timeout=10)
                assert inc.msg.content == str(i)
            assert polled == ([True] * 5 if budget_us else [])
            # two requests made in one loop pass: both go out before either polls, so at most
            # the one still waiting after the other was answered polls (none, unloaded)
            both = await asyncio.gather(*(cli.request(Chat(sender="a", content=c), timeout=10) for c in "xy"))
            assert [inc.msg.content for inc in both] == ["x", "y"]
            assert len(polled) in ((5, 6) if budget_us else (0,))

    run(main())


def test_many_agents_share_one_client_and_replies_route_by_agent(echo: Peer, address: str) -> None:
    async def main() -> None:
        async with Client("host-a", address, OPTS) as cli:
            replies = await asyncio.gather(*[
                cli.request(Chat(sender=f"agent-{i}", recipient="b", content=str(i)), timeout=10)
                for i in range(200)
            ])
            for i, inc in enumerate(replies):
                assert inc.msg.recipient == f"agent-{i}" and inc.msg.content == str(i)

    run(main())


def test_no_busy_poll_towards_a_peer_that_answers_slowly(address: str) -> None:
    # Answers take 20 ms, far over the 300 us budget: after the first four the client
    # stops polling instead of burning 300 us of CPU per request.
    async def main() -> None:
        async with Client("host-a", address, TransportOptions(heartbeat_ms=HB, liveness=3)) as cli:
            await cli.wait_up(10)
            polls = count_busy_polls(cli)
            for i in range(8):
                inc = await cli.request(Chat(sender="a", recipient="b", content=str(i)), timeout=10)
                assert inc.msg.content == str(i)
            assert len(polls) == 4

    with Peer("echo", address, "--hb", str(HB), "--delay-ms", "20"):
        run(main())


def test_a_failing_hook_during_the_busy_poll_does_not_fail_the_request(address: str) -> None:
    # The echo of a fire-and-forget Chat reaches a hook that raises while a request polls
    # (answers 5 ms apart, a 50 ms budget): the error goes to the loop's handler, as it
    # would from the reader callback, and the request still gets its own answer.
    async def main() -> None:
        errors: list[BaseException] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx["exception"]))
        opts = TransportOptions(heartbeat_ms=HB, liveness=3, busy_poll_us=50_000)
        async with Client("host-a", address, opts) as cli:
            await cli.wait_up(10)

            def hook(inc: Any) -> None:
                raise RuntimeError(f"hook failed on {inc.msg.content}")

            cli.add_hook(Chat, hook)
            await cli.send(Chat(sender="a", recipient="b", content="boom"))
            inc = await cli.request(Chat(sender="a", recipient="b", content="ok"), timeout=10)
            assert inc.msg.content == "ok"
        assert [str(e) for e in errors] == ["hook failed on boom"]

    with Peer("echo", address, "--hb", str(HB), "--delay-ms", "5"):
        run(main())


def test_server_routes_by_recipient_and_refuses_unknown_peers(address: str) -> None:
    async def main() -> None:
        async with Server("srv", address, OPTS) as srv, Client("host-b", address, OPTS) as cli:
            await cli.wait_up(10)
            await cli.send(Chat(sender="agent-7", content="hello"))
            first = await srv.recv(timeout=10)
            assert srv.routes["agent-7"] == first.peer == b"host-b"
            await srv.send(Chat(sender="srv", recipient="agent-7", content="routed"))
            got = await cli.recv(timeout=10)
            assert got.msg.content == "routed"
            with pytest.raises(PeerUnavailable):
                await srv.send(Chat(recipient="agent-unknown"))
            with pytest.raises(PeerUnavailable):  # ROUTER_MANDATORY: unroutable raises
                await srv.send(Chat(recipient="x"), peer=b"no-such-peer")

    run(main())


def test_oversize_send_is_refused_locally(address: str) -> None:
    async def main() -> None:
        async with Client("host-c", address, OPTS) as cli:
            with pytest.raises(WireError) as info:
                await cli.send(Commit(paths=["big"]), [b"x" * (2 << 20)])
            assert info.value.kind == "oversize"

    run(main())


def test_frame_over_maxmsgsize_is_dropped_and_receiver_keeps_running(
    echo: Peer, address: str
) -> None:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger, sock.rcvtimeo = 0, 2000
    sock.connect(address)
    try:
        sock.send_multipart(encode(Commit(paths=["big"]), [b"x" * (2 << 20)]))
        with pytest.raises(zmq.Again):  # libzmq cut that connection: no reply at all
            RawInbox(sock).next()
    finally:
        sock.close(0)
    assert echo.alive

    async def main() -> None:
        async with Client("host-d", address, OPTS) as cli:
            inc = await cli.request(Chat(sender="a", content="after"), timeout=10)
            assert inc.msg.content == "after"

    run(main())


def test_client_notices_a_killed_server_and_reconnects_after_restart(
    echo: Peer, address: str
) -> None:
    async def main() -> None:
        async with Client("host-e", address, OPTS) as cli:
            await cli.wait_up(10)
            downs: list[float] = []
            cli.on_down(lambda: downs.append(asyncio.get_running_loop().time()))
            assert echo.proc is not None
            echo.proc.send_signal(signal.SIGSTOP)  # hung: connection up, nothing answers
            with pytest.raises(PeerUnavailable):  # failed by the heartbeat timeout, not the 30 s
                await cli.request(Chat(sender="a", content="never answered"), timeout=30)
            assert len(downs) == 1 and not cli.up
            echo.kill()
            await asyncio.to_thread(echo.start)
            await cli.wait_up(30)
            assert cli.reconnects >= 1
            inc = await cli.request(Chat(sender="a", content="back"), timeout=10)
            assert inc.msg.content == "back"

    run(main())


def test_send_reliable_survives_a_restart_and_is_acked(echo: Peer, address: str) -> None:
    async def main() -> None:
        async with Client("host-f", address, OPTS) as cli:
            await cli.wait_up(10)
            echo.kill()
            task = asyncio.ensure_future(
                cli.send_reliable(Reward(sender="s", teacher="t", student="s", value=0.5),
                                  timeout=30)
            )
            await asyncio.sleep(0.5)
            assert not task.done()  # nobody acknowledged it yet
            await asyncio.to_thread(echo.start)
            await task  # acknowledged by the restarted server
            echoed = await cli.recv(timeout=10)  # and delivered to its application
            assert isinstance(echoed.msg, Reward) and echoed.msg.value == 0.5

    run(main())


def test_duplicates_are_delivered_once_and_answered_from_cache(echo: Peer, address: str) -> None:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger, sock.rcvtimeo = 0, 5000
    sock.connect(address)

    inbox = RawInbox(sock)

    def replies() -> list[Any]:
        return [inbox.next(), inbox.next()]

    try:
        msg = Chat(sender="a", recipient="b", content="once", ack=True)
        sock.send_multipart(encode(msg))
        first = replies()  # an Ack and the echo
        assert {type(m).__name__ for m in first} == {"Ack", "Chat"}
        echo_reply = next(m for m in first if isinstance(m, Chat))
        sock.send_multipart(encode(msg))  # the same msg_id again
        again = replies()  # an Ack and the cached reply, not a second delivery
        assert {type(m).__name__ for m in again} == {"Ack", "Chat"}
        assert next(m for m in again if isinstance(m, Chat)) == echo_reply
        sock.rcvtimeo = 1000
        with pytest.raises(zmq.Again):
            inbox.next()
    finally:
        sock.close(0)


def test_server_forgets_a_silent_peer_but_holds_its_names_for_silence_s(address: str) -> None:
    opts = dataclasses.replace(OPTS, silence_s=4 * OPTS.timeout_s)

    async def main() -> None:
        lost: list[bytes] = []
        async with Server("srv", address, opts, on_peer_lost=lost.append) as srv:
            sock = raw_dealer(address, b"mute")
            sock.send_multipart(encode(Chat(sender="quiet-agent")))
            await srv.recv(timeout=10)
            assert b"mute" in srv.peers and srv.routes["quiet-agent"] == b"mute"
            for _ in range(100):
                if lost:
                    break
                await asyncio.sleep(opts.timeout_s / 10)
            sock.close(0)
            assert lost == [b"mute"] and b"mute" not in srv.peers
            with pytest.raises(PeerUnavailable):  # no sends to a silent peer
                await srv.send(Chat(recipient="quiet-agent"))
            # A starved peer is not a dead one: another peer cannot take its name yet.
            intruder = raw_dealer(address, b"intruder")
            intruder.send_multipart(encode(Chat(sender="quiet-agent")))
            await srv.recv(timeout=10)
            assert srv.routes["quiet-agent"] == b"mute"
            # After silence_s of silence the name is free.
            await asyncio.sleep(opts.silence_s + 2 * opts.timeout_s)
            assert "quiet-agent" not in srv.routes
            intruder.send_multipart(encode(Chat(sender="quiet-agent")))
            await srv.recv(timeout=10)
            assert srv.routes["quiet-agent"] == b"intruder"
            intruder.close(0)

    run(main())


def test_publish_subscribe_filters_by_topic(tmp_path: Path) -> None:
    address = f"ipc://{tmp_path}/pub.ipc"

    async def main() -> None:
        async with Publisher("coord", address, OPTS) as pub, \
                Subscriber("host", address, ["round"], OPTS) as sub:
            for _ in range(200):  # a SUB joins asynchronously (slow joiner)
                await pub.publish("round", Pairing(round=0, pairs=[("a", "b")]))
                await pub.publish("other", Chat(content="filtered"))
                try:
                    inc = await sub.recv(timeout=0.05)
                    break
                except TimeoutError:
                    continue
            assert inc.peer == b"round" and isinstance(inc.msg, Pairing)
            assert inc.msg.pairs == [("a", "b")]

    run(main())


def test_send_batch_delivers_every_message(echo: Peer, address: str) -> None:
    async def main() -> None:
        async with Client("host-g", address, OPTS) as cli:
            await cli.wait_up(10)
            await cli.send_batch([Chat(sender=f"a{i}", content=str(i)) for i in range(50)])
            got: list[str] = []
            while len(got) < 50:
                got += [inc.msg.content for inc in await cli.recv_batch(timeout=10)]
            assert sorted(got, key=int) == [str(i) for i in range(50)]

    run(main())


@pytest.mark.parametrize("first", ["queued", "alone"])
def test_a_message_that_cannot_go_is_cut_out_of_its_batch_and_the_batch_still_goes(
    echo: Peer, address: str, first: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Everything after the first message queues (a long quiet window, so a loaded machine
    # cannot send them one by one). An oversize envelope and one that fails to encode are
    # refused, with their bytes cut out of the batch: the others all arrive. "alone": the
    # refused messages are the first of their batch, which must then not linger empty.
    monkeypatch.setattr("swarm.transport.outbox.QUIET_S", 10.0)

    async def main() -> None:
        async with Client("host-h", address, OPTS) as cli:
            await cli.wait_up(10)
            cli.post(Chat(sender="a0", content="0"))  # direct: opens the quiet window
            sent = 1
            if first == "queued":
                for i in range(1, 5):
                    cli.post(Chat(sender=f"a{i}", content=str(i)))
                sent = 5
                assert cli.queued >= 4  # they are in a batch (a heartbeat may be too)
            with pytest.raises(WireError) as info:
                cli.post(Chat(sender="big", content="x" * (2 << 20)))
            assert info.value.kind == "oversize"
            with pytest.raises(TypeError):
                cli.post(Chat(sender="bad", content=object()))  # type: ignore[arg-type]
            with pytest.raises(WireError):
                await cli.send(Chat(sender="big", content="x" * (2 << 20)))
            await cli.send(Chat(sender=f"a{sent}", content=str(sent)))
            got: list[str] = []
            while len(got) < sent + 1:
                got += [inc.msg.content for inc in await cli.recv_batch(timeout=10)]
            assert sorted(got, key=int) == [str(i) for i in range(sent + 1)]

    run(main())


def test_the_busy_poll_gives_the_loop_back_when_another_socket_has_input(tmp_path: Path) -> None:
    # A request polls with a 2 s budget towards a peer that answers after 300 ms. A message
    # for a server on the same loop arrives 50 ms in: the poll must stop so the loop takes
    # it then, not after the answer (without the gate the poll holds the loop until then).
    import threading

    address, other = f"ipc://{tmp_path}/echo.ipc", f"ipc://{tmp_path}/other.ipc"
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(other)

    def later() -> None:
        threading.Event().wait(0.05)
        sock.send(encode(Chat(sender="x", content="for the server"))[0])

    thread = threading.Thread(target=later)

    async def main() -> None:
        opts = TransportOptions(heartbeat_ms=HB, liveness=3, busy_poll_us=2_000_000)
        events: list[str] = []
        async with Server("host-s", other, OPTS) as srv, Client("host-c", address, opts) as cli:
            srv.add_hook(Chat, lambda inc: events.append(inc.msg.content))
            await cli.wait_up(10)
            polls = count_busy_polls(cli)
            thread.start()
            inc = await cli.request(Chat(sender="a", recipient="b", content="slow"), timeout=10)
            events.append(inc.msg.content)
            for _ in range(100):
                if len(events) == 2:
                    break
                await asyncio.sleep(0.05)
            assert polls == [1]  # the request did poll
            assert events == ["for the server", "slow"]

    try:
        with Peer("echo", address, "--hb", str(HB), "--delay-ms", "300"):
            run(main())
    finally:
        if thread.is_alive():
            thread.join()  # it uses the socket
        sock.close(0)


def test_every_message_of_a_batch_counts_against_the_inbox_limit(address: str) -> None:
    frames, per_frame, room = 40, 500, 1000
    opts = TransportOptions(heartbeat_ms=HB, liveness=3, inbox_max=room)

    async def main() -> None:
        async with Server("srv-inbox", address, opts) as srv:
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.linger = 0
            sock.connect(address)
            try:
                batch = encode_batch([Chat(sender="a", content=str(i)) for i in range(per_frame)])
                for _ in range(frames):
                    sock.send(batch)
                time.sleep(1.0)  # (blocks the loop) libzmq queues every frame at the server
                await asyncio.sleep(0.5)  # the loop drains what the inbox has room for
                held = srv.waiting
                assert srv.paused and held < room + per_frame  # not 20,000
                got = 0
                while got < frames * per_frame:  # and nothing is lost
                    got += len(await srv.recv_batch(timeout=10))
                assert got == frames * per_frame
            finally:
                sock.close(0)

    run(main())


def test_a_message_of_too_many_frames_is_dropped_as_it_is_read(address: str) -> None:
    n = 200_000  # empty frames: python holds at most MAX_PAYLOAD_FRAMES of them at once

    async def main() -> None:
        async with Server("srv-frames", address, OPTS) as srv:
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.linger, sock.rcvtimeo = 0, 10_000
            sock.connect(address)
            commit = Commit(sender="a", paths=["p"])
            try:
                sock.send_multipart([msgspec.msgpack.encode(commit)] + [b""] * n)
                time.sleep(1.0)  # (blocks the loop) the whole message reaches the server
                tracemalloc.start()
                try:
                    reply = None
                    while reply is None:
                        await asyncio.sleep(0.05)
                        with contextlib.suppress(zmq.Again):
                            reply = RawInbox(sock).next() if sock.poll(0) else None
                    peak = tracemalloc.get_traced_memory()[1]
                finally:
                    tracemalloc.stop()
                assert isinstance(reply, Error) and reply.code == "wire.frames"
                assert reply.correlation_id == commit.msg_id  # the sender learns which
                assert peak < 8 << 20  # 200,000 frames held would be ~30 MiB
                assert not srv.waiting
            finally:
                sock.close(0)

    run(main())


def test_a_request_whose_answer_is_unreadable_fails_at_once(address: str) -> None:
    async def main() -> None:
        router = zmq.asyncio.Context.instance().socket(zmq.ROUTER)
        router.linger = 0
        router.bind(address)
        try:
            async with Client("cli-bad-answer", address, OPTS) as cli:
                task = asyncio.ensure_future(cli.request(Chat(sender="a", content="q"),
                                                         timeout=30))
                while True:  # the client's heartbeat comes first, then the request
                    peer, env = await router.recv_multipart()
                    msg = decode_envelope(env)
                    if isinstance(msg, Chat):
                        break
                bad = {"type": "StepDone", "msg_id": "r1", "correlation_id": msg.msg_id,
                       "reports": [{"agent_id": "a", "score": float("nan")}]}
                await router.send_multipart([peer, msgspec.msgpack.encode(bad)])
                with pytest.raises(RemoteError) as info:  # not PeerUnavailable after 30 s
                    await task
                assert info.value.remote_code == "wire.invalid"
                assert "score" in str(info.value)
        finally:
            router.close(0)

    run(main())


def test_a_batch_never_grows_past_the_receivers_limit(echo: Peer, address: str) -> None:
    big = "x" * ((1 << 20) - 20_000)  # under the 1 MiB limit alone, over it with the others

    async def main() -> None:
        async with Client("host-big", address, OPTS) as cli:
            await cli.wait_up(10)
            msgs = [Chat(sender="a", content=str(i) * 10_000) for i in range(5)]
            msgs.insert(3, Chat(sender="a", content=big))
            waits = [cli.request(m, timeout=20) for m in msgs]  # one loop pass: one batch
            replies = await asyncio.gather(*waits)
            assert [r.msg.content for r in replies] == [m.content for m in msgs]

    run(main())


def test_transport_options_refuse_a_batch_longer_than_the_wire_allows() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        TransportOptions(max_batch=MAX_BATCH + 1)


# A process descheduled for longer than the liveness timeout (a loaded, shared machine)
# wakes with its heartbeat timer long due; uvloop runs due timers before it reads its
# sockets, so the heartbeat loop judges the peers before their traffic is read. Their
# silence during this process's own stall must not count against them.


def test_a_server_that_stalls_keeps_its_peers_and_the_replies_it_owes_them(address: str) -> None:
    async def main() -> None:
        lost: list[bytes] = []
        async with Server("srv", address, OPTS, on_peer_lost=lost.append) as srv:
            sock = raw_dealer(address, b"quiet")
            sock.send_multipart(encode(Chat(sender="a", recipient="srv", content="hi")))
            inc = await srv.recv(timeout=10)
            time.sleep(3 * OPTS.timeout_s)  # the process stalls after taking the message
            await asyncio.sleep(0.05)  # the heartbeat timer, due long ago, runs first
            assert lost == [] and b"quiet" in srv.peers
            await srv.reply(inc, Chat(content="late, but sent"))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if sock.poll(100):
                    msg = decode_envelope(sock.recv_multipart()[0])
                    if isinstance(msg, Chat):
                        assert msg.content == "late, but sent"
                        break
                await asyncio.sleep(0)
            else:
                raise AssertionError("the reply never came")
            sock.close(0)

    run_loop(asyncio.wait_for(main(), 60))


def test_a_client_that_stalls_does_not_declare_its_server_down(echo: Peer, address: str) -> None:
    async def main() -> None:
        async with Client("host-stall", address, OPTS) as cli:
            await cli.wait_up(10)
            downs: list[int] = []
            cli.on_down(lambda: downs.append(1))
            assert echo.proc is not None
            echo.proc.send_signal(signal.SIGSTOP)  # the whole machine stalls: both processes
            time.sleep(3 * OPTS.timeout_s)
            echo.proc.send_signal(signal.SIGCONT)
            await asyncio.sleep(0.05)  # nothing from the server is waiting: it stalled too
            assert downs == [] and cli.up and cli.reconnects == 0
            inc = await cli.request(Chat(sender="a", content="still here"), timeout=10)
            assert inc.msg.content == "still here"

    run_loop(asyncio.wait_for(main(), 60))
