"""Host: requests to the model server wait while it is heard, and fail once it falls silent.

The model server here is a real process (this file, ``python
tests/test_host_waits.py ADDRESS MODE``): a transport ``Server`` that answers
``Train`` after a delay (``slow:S``, its heartbeats going on meanwhile) or
stops the whole process on the first ``Train`` (``silent``). Heartbeats are
100 ms with a liveness of 5: "silent" means 0.5 s without a heartbeat.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from swarm.errors import PeerUnavailable
from swarm.serving.client import ModelClient
from swarm.transport.peers import Client, TransportOptions
from swarm.wire.codec import Train, Trained

ROOT = Path(__file__).resolve().parent.parent
OPTS = TransportOptions(heartbeat_ms=100, liveness=5)
SHA = "c" * 64


def serve(address: str, mode: str) -> None:
    """The model server process: answers every ``Train`` as ``mode`` says."""
    from swarm.transport.loop import run_loop
    from swarm.transport.peers import Server

    async def main() -> None:
        async with Server("model", address, OPTS) as server:
            while True:
                for inc in await server.recv_batch():
                    if isinstance(inc.msg, Train):
                        asyncio.ensure_future(answer(server, inc))

    async def answer(server: Server, inc: object) -> None:
        if mode == "silent":
            time.sleep(60)  # the whole process stops, heartbeats included
        await asyncio.sleep(float(mode.partition(":")[2]))
        await server.reply(inc, Trained(agent_id="a-0", adapter=SHA))  # type: ignore[arg-type]

    run_loop(main())


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Starts a fake model server process in a mode; returns its address."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(mode: str) -> str:
        address = f"ipc://{tmp_path}/model-{len(procs)}.ipc"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen([sys.executable, __file__, address, mode], cwd=ROOT,
                                      env=env))
        return address

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def _train(address: str, tmp_path: Path, silence_s: float) -> str:
    """A host's training request, through the ``ModelClient`` every host request goes through."""

    async def main() -> str:
        async with Client("host-w", address, OPTS) as client:
            await client.wait_up(30)
            reply = await ModelClient(client, "host-w", silence_s).ask(
                Train(sender="a-0", agent_id="a-0"))
            assert isinstance(reply.msg, Trained)
            return reply.msg.adapter

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_a_slow_model_server_is_waited_for(model_server: Callable[[str], str],
                                           tmp_path: Path) -> None:
    # Prepare: the answer takes 3 s, six liveness timeouts and three times the silence allowed
    address = model_server("slow:3")

    # Execute
    sha = _train(address, tmp_path, silence_s=1.0)

    # Assert
    assert sha == SHA


def test_a_silent_model_server_fails_the_request(model_server: Callable[[str], str],
                                                 tmp_path: Path) -> None:
    # Prepare: the server process stops on the request
    address = model_server("silent")

    # Execute / Assert: the request fails once the server was silent for 1 s
    with pytest.raises(PeerUnavailable):
        _train(address, tmp_path, silence_s=1.0)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
