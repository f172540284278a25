"""CLI commands ``swarm run`` and ``swarm status``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from swarm.config import SwarmConfig, load_config
from swarm.errors import SwarmError
from swarm.transport.loop import run_loop

__all__ = ["register", "run_swarm"]

T = TypeVar("T")


def register(sub: Any) -> None:
    """Add the ``run`` and ``status`` commands."""
    run = sub.add_parser(
        "run",
        help="launch a swarm from a config and show its progress",
        description="Validate FILE, start the model server, coordinator and hosts, show live "
        "progress, commit every round to the lineage, and print a summary. Ctrl-C stops every "
        "process started and keeps every round already committed.",
    )
    run.add_argument("file", type=Path, help="YAML swarm config")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key (repeatable)")
    run.add_argument("--resume", action="store_true",
                     help="continue an existing lineage from its last committed round")
    run.set_defaults(handler=_run)

    status = sub.add_parser("status", help="members, round, last pairings and rewards of a running swarm",
                            description="Ask the coordinator of a running swarm for its status.")
    status.add_argument("file", type=Path, help="the YAML config the swarm was started with")
    status.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    status.add_argument("--json", action="store_true", help="print raw JSON")
    status.set_defaults(handler=_status)


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.file, args.overrides)
    summary = run_swarm(config, resume=args.resume)
    return 0 if summary is not None else 130


def run_swarm(config: SwarmConfig, resume: bool = False,
              console: Console | None = None) -> dict[str, Any] | None:
    """Launch ``config`` locally, show progress, return the summary (None if interrupted)."""
    from swarm.runtime.inline_launcher import InlineLauncher
    from swarm.runtime.local_launcher import LocalLauncher

    # Plain output outside a terminal (notebooks, pipes, CI logs): no live widgets.
    console = console or Console(force_jupyter=False, highlight=False)
    kind = InlineLauncher if config.launcher.kind == "inline" else LocalLauncher
    launcher = kind(config, resume=resume)
    console.print("preparing the run (the tiny model is built on first use)")
    run_dir = launcher.prepare()
    console.print(f"[bold]swarm {config.swarm.name}[/]: {config.agent_count} agents, "
                  f"{config.swarm.rounds} rounds, protocol {config.protocol.name}, "
                  f"matchmaker {config.matchmaker.kind}; run dir {run_dir}")
    for warning in launcher.warnings:
        console.print(f"[bold yellow]{warning}[/]")
    if launcher.archived is not None:
        console.print(f"[dim]the previous run was kept in {launcher.archived}[/]")
    launcher.start()
    try:
        with _sigterm_as_interrupt():
            code = _run_sync(_watch(config, launcher, console))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: stopping every process; committed rounds are kept")
        return None
    finally:
        launcher.stop()
    if code != 0:
        raise SwarmError(f"the coordinator exited with code {code}; see {run_dir / 'logs'}")
    summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    _print_summary(config, summary, console)
    return summary


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


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` that also works where a loop already runs (Jupyter): in a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_loop(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run_loop, coro).result()


async def _watch(config: SwarmConfig, launcher: Any, console: Console) -> int:
    from swarm.transport.peers import TransportOptions
    from swarm.transport.pubsub import Subscriber
    from swarm.transport.topology import EVENTS_OFFSET, endpoint

    options = TransportOptions.from_config(config.transport)
    started, last_msgs = time.time(), 0
    async with Subscriber("cli", endpoint(config.transport, EVENTS_OFFSET), options=options) as events:
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
                    _print_round(body, rate, console)
                elif topic == "round":
                    console.print(f"[dim]round {body['round']}: {body['members']} host(s), "
                                  f"{time.time() - started:.0f} s in[/]")


def _print_round(body: dict[str, Any], rate: float, console: Console) -> None:
    from rich.markup import escape

    pairs = ", ".join(f"{t}->{s}" for t, s in body["pairs"]) or "none"
    rewards = ", ".join(f"{r['student']} {r['reward']:+.2f}{'' if r['accepted'] else ' (kept own)'}"
                        for r in body["rewards"]) or "none"
    scores = " ".join(f"{a}={v:.2f}" for a, v in body["scores"].items())
    console.print(f"[bold]round {body['round']}[/] mean score {body['mean_score']:.3f} "
                  f"({body['seconds']:.1f} s, {rate:.1f} msgs/s)")
    console.print(f"  pairs (teacher->student): {pairs}")
    console.print(f"  rewards: {rewards}")
    console.print(f"  scores: {scores}")
    if body["unavailable"]:
        console.print(f"  [yellow]unavailable: {', '.join(body['unavailable'])}[/]")
    for host, why in body.get("rejected", {}).items():
        console.print(f"  [red]results of {escape(host)} rejected: {escape(why)}[/]")


def _print_summary(config: SwarmConfig, summary: dict[str, Any], console: Console) -> None:
    history = summary.get("history", [])
    table = Table(title=f"swarm {config.swarm.name}: held-out exact match per agent")
    table.add_column("agent")
    for rec in history:
        table.add_column(f"r{rec['round']}", justify="right")
    agents = sorted({a for rec in history for a in rec["scores"]})
    for agent in agents:
        table.add_row(agent, *(f"{rec['scores'].get(agent, float('nan')):.2f}" for rec in history))
    table.add_row("[bold]mean[/]", *(f"[bold]{rec['mean_score']:.3f}[/]" for rec in history))
    console.print(table)
    lineage = summary["lineage"]
    console.print(f"lineage: {lineage}")
    console.print("inspect it with:")
    console.print(f"  swarm lineage log -C {lineage} {agents[0] if agents else 'AGENT'}")
    console.print(f"  swarm lineage graph -C {lineage} -o phylogeny.png")
    console.print(f"  git -C {lineage} log --graph --all --oneline")


def _status(args: argparse.Namespace) -> int:
    config = load_config(args.file, args.overrides)
    status = _run_sync(_ask_status(config))
    if args.json:
        print(json.dumps(status, indent=1))
        return 0
    print(f"swarm {status['swarm']}: round {status['round']} of {status['rounds']}")
    for host, agents in status["members"].items():
        print(f"  {host}: {len(agents)} agents ({', '.join(agents[:6])}{' ...' if len(agents) > 6 else ''})")
    last = status.get("last") or {}
    if last:
        print(f"last round {last['round']}: mean score {last['mean_score']:.3f}")
        for r in last["rewards"]:
            print(f"  {r['teacher']} -> {r['student']}: reward {r['reward']:+.3f}")
        for host, why in last.get("rejected", {}).items():
            print(f"  results of {host} rejected: {why}")
    for host, why in status.get("rejected", {}).items():
        print(f"round {status['round']}: results of {host} rejected: {why}")
    return 0


async def _ask_status(config: SwarmConfig) -> dict[str, Any]:
    from swarm.transport.peers import Client, TransportOptions
    from swarm.transport.topology import CONTROL_OFFSET, endpoint
    from swarm.wire.codec import Status, StatusReport

    options = TransportOptions.from_config(config.transport)
    address = endpoint(config.transport, CONTROL_OFFSET)
    async with Client("status-cli", address, options) as client:
        try:
            reply = await client.request(Status(sender="status-cli"), timeout=5.0)
        except SwarmError:
            print(f"swarm: error: no swarm answers at {address}", file=sys.stderr)
            raise SystemExit(2) from None
    if not isinstance(reply.msg, StatusReport):
        raise SwarmError(f"unexpected answer {type(reply.msg).__name__}")
    result: dict[str, Any] = json.loads(reply.msg.json)
    return result
