"""Host: a real host process serving direct peer chats for the agents it holds.

The host runs in its own process (this file, started with ``python
tests/test_host.py ADDRESS``) with three agents of a test role that echoes
each chat; the tests talk to it through a transport ``Client`` and through a
raw ZeroMQ DEALER.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from swarm.agents.base import Agent, AgentSpec
from swarm.agents.context import AgentContext
from swarm.errors import PeerUnavailable, RemoteError
from swarm.transport.peers import Client, TransportOptions
from swarm.wire.codec import Chat, Error, Heartbeat, Message, decode_envelope, encode

AGENTS = ("a0", "a1", "a2")
OPTS = TransportOptions()
ROOT = Path(__file__).resolve().parent.parent


class EchoAgent(Agent):
    """Answers a chat with ``<own id>:<content>`` (registered only in the host process)."""

    __slots__ = ()

    async def on_chat(self, ctx: AgentContext, sender: str, content: str) -> str | None:
        """Echo, prefixed with the agent's id so the test sees who answered."""
        self.messages_received += 1
        return f"{self.id}:{content}"


def serve(address: str) -> None:
    """The host process: three echo agents serving peers at ``address`` until killed."""
    from swarm.agents.registry import role
    from swarm.config import parse_config
    from swarm.runtime.host import Host

    role("test_host_echo")(EchoAgent)
    config = parse_config({"swarm": {"name": "t"},
                           "agents": [{"name": "g", "count": 1, "skills": ["add"]}],
                           "protocol": {"name": "local"}})
    specs = [AgentSpec(agent_id=a, role="test_host_echo") for a in AGENTS]
    host = Host("host-t", config, specs, Path(tempfile.gettempdir()))
    asyncio.run(host.serve_peers(address))


def run(coro: Coroutine[Any, Any, None], timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running host process; yields its peer address."""
    address = f"ipc://{tmp_path_factory.mktemp('host')}/peers.ipc"
    proc = subprocess.Popen([sys.executable, __file__, address], cwd=ROOT)
    try:
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def raw(host: str) -> Iterator[zmq.Socket[bytes]]:
    """A bare DEALER connected to the host (linger 0, 10 s receive timeout)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    sock.connect(host)
    try:
        yield sock
    finally:
        sock.close(linger=0)
        ctx.term()


def raw_recv(sock: zmq.Socket[bytes]) -> Message:
    """The next message from the host that is not a heartbeat (replies may come batched)."""
    while True:
        frames = sock.recv_multipart()
        got = decode_envelope(frames[0])
        for msg in got if isinstance(got, list) else [got]:
            if not isinstance(msg, Heartbeat):
                return msg


async def ask(cli: Client, recipient: str, content: str) -> Message:
    """Chat to ``recipient`` and return the answer (raises ``RemoteError`` for an Error)."""
    await cli.wait_up(30)
    inc = await cli.request(Chat(sender="tester", recipient=recipient, content=content),
                            timeout=10)
    return inc.msg


def test_a_chat_to_an_agent_gets_its_reply(host: str) -> None:
    async def main() -> None:
        async with Client("cli-1", host, OPTS) as cli:
            question = Chat(sender="tester", recipient="a1", content="hello")
            await cli.wait_up(30)
            reply = (await cli.request(question, timeout=10)).msg
            assert isinstance(reply, Chat)
            assert (reply.sender, reply.recipient, reply.content) == ("a1", "tester", "a1:hello")
            assert reply.in_reply_to == question.msg_id == reply.correlation_id

    run(main())


def test_a_batch_of_chats_gets_one_reply_each_from_the_right_agent(host: str) -> None:
    async def main() -> None:
        async with Client("cli-2", host, OPTS) as cli:
            await cli.wait_up(30)
            sent = [Chat(sender="tester", recipient=AGENTS[i % 3], content=str(i))
                    for i in range(300)]
            await cli.send_batch(sent)
            replies: dict[str, Message] = {}
            while len(replies) < len(sent):
                for inc in await cli.recv_batch(timeout=10):
                    assert inc.msg.correlation_id is not None
                    replies[inc.msg.correlation_id] = inc.msg
            for msg in sent:
                got = replies[msg.msg_id]
                assert isinstance(got, Chat)
                assert got.content == f"{msg.recipient}:{msg.content}"

    run(main())


def test_a_chat_to_an_unknown_agent_gets_an_error_and_the_host_keeps_serving(host: str) -> None:
    async def main() -> None:
        async with Client("cli-3", host, OPTS) as cli:
            with pytest.raises(RemoteError) as err:
                await ask(cli, "nobody", "hi")
            assert err.value.remote_code == PeerUnavailable.code
            assert "nobody" in err.value.reason
            reply = await ask(cli, "a2", "still there?")
            assert isinstance(reply, Chat) and reply.content == "a2:still there?"

    run(main())


def test_garbage_bytes_get_an_error_and_the_host_keeps_serving(
    host: str, raw: zmq.Socket[bytes]
) -> None:
    raw.send(b"\xc1 this is not msgpack \x00\xff")
    refusal = raw_recv(raw)
    assert isinstance(refusal, Error)
    assert refusal.code.startswith("wire.")

    question = Chat(sender="raw", recipient="a0", content="ping")
    raw.send_multipart(encode(question))
    reply = raw_recv(raw)
    assert isinstance(reply, Chat)
    assert (reply.content, reply.correlation_id) == ("a0:ping", question.msg_id)

    async def main() -> None:
        async with Client("cli-4", host, OPTS) as cli:
            answer = await ask(cli, "a1", "after garbage")
            assert isinstance(answer, Chat) and answer.content == "a1:after garbage"

    run(main())


def test_a_message_that_is_not_a_chat_is_dropped_and_the_host_keeps_serving(
    host: str, raw: zmq.Socket[bytes]
) -> None:
    raw.send_multipart(encode(Heartbeat(sender="raw")))  # valid, but not a chat: no answer
    raw.send_multipart(encode(Error(sender="raw", recipient="a0", code="x", reason="y")))
    question = Chat(sender="raw", recipient="a2", content="next")
    raw.send_multipart(encode(question))
    reply = raw_recv(raw)
    assert isinstance(reply, Chat) and reply.correlation_id == question.msg_id


if __name__ == "__main__":
    serve(sys.argv[1])
