"""Run a swarm from Python: launch it, follow its events, return its summary.

``run_swarm`` is what ``swarm run`` and ``swarm.run_swarm`` call. It prints
nothing: each step of the run reaches the caller as a typed event
(``swarm.runtime.events``) through the optional ``progress`` callback, which
the CLI turns into its live output. Ctrl-C (or SIGTERM) stops every process
the run started and loses nothing already committed; ``run_swarm`` then
returns None.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from swarm.config.schema import SwarmConfig
from swarm.errors import PeerUnavailable, SwarmError
from swarm.runtime.events import (
    Interrupted,
    Preparing,
    Progress,
    RoundFinished,
    RoundStarted,
    RunEvent,
    RunFinished,
    RunStarted,
    RunSummary,
)
from swarm.runtime.local_launcher import LocalLauncher
from swarm.transport.loop import run_loop

__all__ = ["ask_status", "run_swarm", "run_sync"]

T = TypeVar("T")


def run_swarm(config: SwarmConfig, resume: bool = False,
              progress: Progress | None = None) -> RunSummary | None:
    """Launch ``config`` on this machine and wait for it to finish.

    Args:
        config: a validated config (``swarm.load_config``).
        resume: continue the lineage from its last committed round.
        progress: called with every event of the run (``swarm.runtime.events``),
            in order, from the calling thread or a worker thread of this call.

    Returns:
        The summary (``RunSummary``), or None if the run was interrupted.

    Raises:
        SwarmError: the run could not start, or the coordinator failed.
    """
    from swarm.runtime.inline_launcher import InlineLauncher

    tell = progress or _ignore
    kind = InlineLauncher if config.launcher.kind == "inline" else LocalLauncher
    launcher = kind(config, resume=resume)
    tell(Preparing())
    run_dir = launcher.prepare()
    tell(RunStarted(config.swarm.name, config.agent_count, config.swarm.rounds,
                    config.protocol.name, config.matchmaker.kind, run_dir,
                    tuple(launcher.warnings), launcher.archived))
    launcher.start()
    try:
        with _sigterm_as_interrupt():
            code = run_sync(_watch(config, launcher, tell))
    except KeyboardInterrupt:
        tell(Interrupted())
        return None
    finally:
        launcher.stop()
    if code != 0:
        raise SwarmError(f"the coordinator exited with code {code}; see {run_dir / 'logs'}")
    summary = cast(RunSummary, json.loads((run_dir / "summary.json").read_text()))
    tell(RunFinished(config.swarm.name, summary))
    return summary


def _ignore(event: RunEvent) -> None:
    """The progress callback of a caller that gave none."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a run like Ctrl-C does: every child stopped, nothing committed lost."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` that also works where a loop already runs (Jupyter): in a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_loop(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run_loop, coro).result()


async def _watch(config: SwarmConfig, launcher: LocalLauncher, tell: Progress) -> int:
    """Turn the coordinator's published events into ``tell`` calls until it exits."""
    from swarm.transport.peers import TransportOptions
    from swarm.transport.pubsub import Subscriber
    from swarm.transport.topology import address_book

    options = TransportOptions.from_config(config.transport)
    started, last_msgs = time.time(), 0
    async with Subscriber("cli", address_book(config.transport, config.launcher.hosts, config.model.server).events, options=options) as events:
        while True:
            code = launcher.poll()
            if code is not None:
                return int(code)
            try:
                batch = await events.recv_batch(timeout=0.5)
            except TimeoutError:
                continue
            for inc in batch:
                body = json.loads(getattr(inc.msg, "json", "{}") or "{}")  # an Event
                topic = inc.peer.decode(errors="replace")
                if topic == "scores":
                    rate = (body["messages"] - last_msgs) / max(body["seconds"], 1e-3)
                    last_msgs = body["messages"]
                    tell(RoundFinished.from_record(body, rate))
                elif topic == "round":
                    tell(RoundStarted(int(body["round"]), int(body["members"]),
                                      int(body.get("attempt", 1)), time.time() - started))


async def ask_status(config: SwarmConfig, timeout: float = 5.0) -> dict[str, Any]:
    """What the coordinator of the running swarm of ``config`` reports (``swarm status``).

    Raises:
        PeerUnavailable: no swarm answers at the config's control address.
        SwarmError: something else than a status report answered.
    """
    from swarm.transport.peers import Client, TransportOptions
    from swarm.transport.topology import address_book
    from swarm.wire.codec import Status, StatusReport

    options = TransportOptions.from_config(config.transport)
    address = address_book(config.transport, config.launcher.hosts, config.model.server).control
    async with Client("status-cli", address, options) as client:
        try:
            reply = await client.request(Status(sender="status-cli"), timeout=timeout)
        except SwarmError:
            raise PeerUnavailable(f"no swarm answers at {address}") from None
    if not isinstance(reply.msg, StatusReport):
        raise SwarmError(f"unexpected answer {type(reply.msg).__name__}")
    result: dict[str, Any] = json.loads(reply.msg.json)
    return result
