"""Adapter transfer between processes: verified, exactly once, resumable, crash-safe."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from swarm.errors import TransferError
from swarm.transport.peers import Client, Server, TransportOptions
from swarm.transport.transfer import AdapterReceiver, AdapterSender
from tests.transport_peer import Peer

HB = 200  # ms; liveness 3 -> 0.6 s, slack for a loaded 2-core machine
OPTS = TransportOptions(heartbeat_ms=HB, liveness=3, max_message_bytes=8 << 20)


def run(coro: Coroutine[Any, Any, None], timeout: float = 120) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


def deliveries(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def receiver(tmp_path: Path, *extra: str) -> tuple[Peer, str, Path]:
    address = f"ipc://{tmp_path}/recv.ipc"
    log = tmp_path / "delivered.log"
    args = ["--hb", str(HB), "--max-bytes", str(8 << 20), "--log", str(log), *extra]
    return Peer("receiver", address, *args), address, log


def test_adapter_arrives_verified_and_exactly_once(tmp_path: Path) -> None:
    peer, address, log = receiver(tmp_path, "--chunk", str(256 << 10), "--window", "4")
    data = os.urandom(5 * (1 << 20) + 12345)  # not a multiple of the chunk size
    sha = hashlib.sha256(data).hexdigest()

    async def main() -> None:
        async with Client("sender-1", address, OPTS) as cli:
            await cli.wait_up(10)
            sender = AdapterSender(cli)
            await sender.send(data, sha, sender="a1", recipient="b2", agent_id="a1")
            await sender.send(data, sha, sender="a1", recipient="b2")  # offered again

    with peer:
        run(main())
    assert deliveries(log) == [f"{sha} {len(data)}"]


def test_wrong_sha256_is_never_handed_on(tmp_path: Path) -> None:
    peer, address, log = receiver(tmp_path)
    data = os.urandom(3 << 20)
    wrong = hashlib.sha256(b"something else").hexdigest()

    async def main() -> None:
        async with Client("sender-2", address, OPTS) as cli:
            await cli.wait_up(10)
            with pytest.raises(TransferError, match="mismatch"):
                await AdapterSender(cli, retries=1).send(data, wrong)

    with peer:
        run(main())
    assert deliveries(log) == []


def test_too_large_adapter_is_refused_with_an_error(tmp_path: Path) -> None:
    peer, address, log = receiver(tmp_path, "--max-adapter", str(1 << 20))

    async def main() -> None:
        async with Client("sender-3", address, OPTS) as cli:
            await cli.wait_up(10)
            with pytest.raises(TransferError, match="over the limit"):
                await AdapterSender(cli).send(os.urandom(2 << 20))

    with peer:
        run(main())
    assert deliveries(log) == []


def test_transfer_resumes_from_the_receivers_offset_after_a_reconnect(tmp_path: Path) -> None:
    """The sender's connection breaks, the receiver keeps its partial buffer: resume."""
    address = f"ipc://{tmp_path}/resume.ipc"
    data = os.urandom(4 << 20)
    sha = hashlib.sha256(data).hexdigest()

    async def main() -> None:
        got: list[bytes] = []
        async with Server("recv", address, OPTS) as srv:
            rx = AdapterReceiver(srv, on_adapter=lambda a: got.append(bytes(a.data)),
                                 window=1, chunk_bytes=256 << 10)
            async with Client("sender-4", address, OPTS) as cli:
                await cli.wait_up(10)
                sender = AdapterSender(cli)
                task = asyncio.ensure_future(sender.send(data, sha))
                while rx.progress(sha) < 1 << 20:
                    await asyncio.sleep(0.001)
                cli.reconnect()  # the connection breaks mid-transfer
                held = rx.progress(sha)
                await task
            assert held >= 1 << 20 and got == [data]

    run(main())


def test_credit_goes_back_in_batches_of_a_quarter_window(tmp_path: Path) -> None:
    address = f"ipc://{tmp_path}/credit.ipc"
    data = os.urandom(8 << 20)
    sha = hashlib.sha256(data).hexdigest()

    async def main() -> None:
        got: list[bytes] = []
        async with Server("recv", address, OPTS) as srv:
            AdapterReceiver(srv, on_adapter=lambda a: got.append(bytes(a.data)),  # takes its hooks
                            window=8, chunk_bytes=1 << 20)
            answers: list[Any] = []
            answer = srv.send_nowait  # the receiver answers through it

            def spy(msg: Any, payload: Any = (), peer: bytes | None = None) -> bool:
                answers.append(msg)
                return answer(msg, payload, peer)

            srv.send_nowait = spy  # type: ignore[method-assign]
            async with Client("sender-6", address, OPTS) as cli:
                await cli.wait_up(10)
                await AdapterSender(cli).send(data, sha)
        # 8 chunks, credit every 2: after chunks 2, 4 and 6; the 8th gets the verdict
        credits = [(m.received, m.credit) for m in answers if type(m).__name__ == "AdapterAck" and not m.done]
        assert credits == [(2 << 20, 2), (4 << 20, 2), (6 << 20, 2)]
        assert answers[-1].done and answers[-1].ok and got == [data]

    run(main())


def test_receiver_killed_mid_64mib_transfer(tmp_path: Path) -> None:
    """SIGKILL the receiver mid-transfer: the sender notices by heartbeat, the
    transfer completes on the restarted receiver, sha256 matches, delivered once."""
    peer, address, log = receiver(tmp_path, "--chunk", str(256 << 10), "--window", "2",
                                  "--delay-ms", "2")
    fast, _, _ = receiver(tmp_path)
    data = os.urandom(64 << 20)
    sha = hashlib.sha256(data).hexdigest()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with Client("sender-5", address, OPTS) as cli:
            await cli.wait_up(10)
            noticed = asyncio.Event()
            cli.on_down(noticed.set)
            sender = AdapterSender(cli, retries=3)
            task = asyncio.ensure_future(sender.send(data, sha, agent_id="a1"))
            while sender.acked < 8 << 20:
                assert not task.done()
                await asyncio.sleep(0.01)
            killed_at = loop.time()
            await asyncio.to_thread(peer.kill)
            assert 0 < sender.acked < len(data)
            await asyncio.wait_for(noticed.wait(), 30)  # before any restart
            print(f"sender noticed the crash after {loop.time() - killed_at:.3f} s "
                  f"(heartbeat timeout {OPTS.timeout_s} s)")
            assert not task.done() and deliveries(log) == []
            await asyncio.to_thread(fast.start)  # same address, no slow-down this time
            await task

    peer.start()
    try:
        run(main(), timeout=240)
    finally:
        peer.stop()
        fast.stop()
    assert deliveries(log) == [f"{sha} {len(data)}"]
