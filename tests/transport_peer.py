"""A small server process for the transport tests: ``python tests/transport_peer.py ...``.

Modes: ``echo`` answers every message with a copy of itself (an ``Error`` for a
``Chat`` to an agent it does not host); ``receiver`` also takes adapters and
appends ``<sha256> <size>`` to ``--log`` for each one handed to the
application. Prints ``READY`` once bound.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from swarm.transport.peers import Incoming, Server, TransportOptions
from swarm.transport.security import CurveSecurity
from swarm.transport.transfer import AdapterReceiver, ReceivedAdapter
from swarm.wire.codec import Chat, Error, new_id


class Peer:
    """A running ``transport_peer.py`` process; ``start()`` waits for READY."""

    def __init__(self, mode: str, bind: str, *args: str, stderr: Path | None = None) -> None:
        self.argv = [sys.executable, "-X", "faulthandler", str(Path(__file__)), mode, "--bind", bind,
                     *args]
        self.proc: subprocess.Popen[str] | None = None
        self.stderr = stderr  # where the process's stderr goes (None: inherited)

    def start(self, timeout: float = 30.0) -> Peer:
        err = open(self.stderr, "w") if self.stderr is not None else None  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True, stderr=err,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            if err is not None:
                err.close()
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == "READY":
                return self
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"peer did not start: {self.argv}")

    def memory(self) -> dict[str, int]:
        """The process's ``VmRSS`` and ``VmHWM`` (peak RSS), in bytes (Linux ``/proc``)."""
        assert self.proc is not None
        found: dict[str, int] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
        return found

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> Peer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RawInbox:
    """Reads replies off a raw pyzmq DEALER: unpacks batch frames, skips heartbeats."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.queue: list[Any] = []

    def next(self) -> Any:
        """The next non-heartbeat message (raises ``zmq.Again`` after the socket's rcvtimeo)."""
        from swarm.wire.codec import Heartbeat, decode_envelope

        while True:
            while not self.queue:
                env = decode_envelope(self.sock.recv_multipart()[0])
                self.queue = env if isinstance(env, list) else [env]
            msg = self.queue.pop(0)
            if not isinstance(msg, Heartbeat):
                return msg


def _echo(inc: Incoming, agents: set[str]) -> tuple[object, list[object]]:
    msg = inc.msg
    if isinstance(msg, Chat) and agents and msg.recipient not in agents:
        return Error(code="unknown_recipient", reason=f"no agent {msg.recipient!r} here",
                     in_reply_to=msg.msg_id), []
    copy = msgspec.structs.replace(msg, msg_id=new_id(), ack=False, sent_at=time.time(),
                                   sender=msg.recipient, recipient=msg.sender)
    return copy, [bytes(p) for p in inc.payload]


async def main(args: argparse.Namespace) -> None:
    security = CurveSecurity.load(args.curve) if args.curve else None
    opts = TransportOptions(heartbeat_ms=args.hb, liveness=args.liveness,
                            max_message_bytes=args.max_bytes, security=security)
    agents = set(args.agents.split(",")) if args.agents else set()
    async with Server(args.name, args.bind, opts) as server:
        if args.mode == "receiver":
            AdapterReceiver(server, on_adapter=lambda a: _log(args.log, a),  # takes its hooks
                            window=args.window, chunk_bytes=args.chunk, max_bytes=args.max_adapter)
            if args.delay_ms:
                _slow_down(server, args.delay_ms / 1000.0)
        print("READY", flush=True)
        while True:
            for inc in await server.recv_batch():
                if args.mode == "echo" and args.delay_ms:
                    await asyncio.sleep(args.delay_ms / 1000.0)  # a slow peer
                reply, payload = _echo(inc, agents)
                await server.reply(inc, reply, payload)  # type: ignore[arg-type]


def _log(path: str, adapter: ReceivedAdapter) -> None:
    with open(path, "a") as fh:
        fh.write(f"{adapter.sha256} {adapter.size}\n")


def _slow_down(server: Server, delay: float) -> None:
    """Make the receiver slow so a test can kill it in the middle of a transfer."""
    from swarm.wire.codec import AdapterChunk

    def slow(inc: Incoming) -> None:
        time.sleep(delay)
        take(inc)

    previous = server.add_hook(AdapterChunk, slow)  # the receiver's hook, now behind the delay
    assert previous is not None
    take = previous


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["echo", "receiver"])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--name", default="peer")
    parser.add_argument("--hb", type=int, default=100)
    parser.add_argument("--liveness", type=int, default=3)
    parser.add_argument("--max-bytes", type=int, default=1 << 20)
    parser.add_argument("--agents", default="")
    parser.add_argument("--curve", default="")
    parser.add_argument("--log", default="")
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=1 << 20)
    parser.add_argument("--max-adapter", type=int, default=1 << 30)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(_parse(sys.argv[1:])))
