"""CLI commands ``swarm run`` and ``swarm status``: the library's run, printed with rich."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from swarm.config import load_config
from swarm.runtime.events import (
    Interrupted,
    Preparing,
    RoundFinished,
    RoundStarted,
    RunEvent,
    RunFinished,
    RunStarted,
    RunSummary,
)
from swarm.runtime.run import ask_status, run_swarm, run_sync

__all__ = ["ConsoleProgress", "register"]


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
    summary = run_swarm(config, resume=args.resume, progress=ConsoleProgress())
    return 0 if summary is not None else 130


class ConsoleProgress:
    """A ``run_swarm`` progress callback that prints each event as ``swarm run`` shows it.

    Plain output outside a terminal (notebooks, pipes, CI logs): no live widgets.
    Pass it to ``swarm.run_swarm(config, progress=ConsoleProgress())`` to follow a
    run from Python.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(force_jupyter=False, highlight=False)

    def __call__(self, event: RunEvent) -> None:
        """Print one event of the run."""
        console = self.console
        if isinstance(event, Preparing):
            console.print("preparing the run (a tiny or named model is built on first use)")
        elif isinstance(event, RunStarted):
            _print_start(event, console)
        elif isinstance(event, RoundStarted):
            console.print(f"[dim]round {event.round}: {event.hosts} host(s), "
                          f"{event.elapsed_s:.0f} s in[/]")
        elif isinstance(event, RoundFinished):
            _print_round(event, console)
        elif isinstance(event, Interrupted):
            console.print("[yellow]interrupted[/]: stopping every process; committed rounds are kept")
        elif isinstance(event, RunFinished):
            _print_summary(event.swarm, event.summary, console)


def _print_start(event: RunStarted, console: Console) -> None:
    console.print(f"[bold]swarm {event.swarm}[/]: {event.agents} agents, "
                  f"{event.rounds} rounds, protocol {event.protocol}, "
                  f"matchmaker {event.matchmaker}; run dir {event.run_dir}")
    for warning in event.warnings:
        console.print(f"[bold yellow]{warning}[/]")
    if event.archived is not None:
        console.print(f"[dim]the previous run was kept in {event.archived}[/]")


def _print_round(event: RoundFinished, console: Console) -> None:
    from rich.markup import escape

    pairs = ", ".join(f"{t}->{s}" for t, s in event.pairs) or "none"
    rewards = ", ".join(f"{r.student} {r.reward:+.2f}{'' if r.accepted else ' (kept own)'}"
                        for r in event.rewards) or "none"
    scores = " ".join(f"{a}={v:.2f}" for a, v in event.scores.items())
    console.print(f"[bold]round {event.round}[/] mean score {event.mean_score:.3f} "
                  f"({event.seconds:.1f} s, {event.messages_per_s:.1f} msgs/s)")
    console.print(f"  pairs (teacher->student): {pairs}")
    console.print(f"  rewards: {rewards}")
    console.print(f"  scores: {scores}")
    if event.unavailable:
        console.print(f"  [yellow]unavailable: {', '.join(event.unavailable)}[/]")
    for host, why in event.rejected.items():
        console.print(f"  [red]results of {escape(host)} rejected: {escape(why)}[/]")


def _print_summary(name: str, summary: RunSummary, console: Console) -> None:
    history = summary.get("history", [])
    table = Table(title=f"swarm {name}: held-out exact match per agent")
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
    status = run_sync(ask_status(config))
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
