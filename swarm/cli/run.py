"""CLI commands ``swarm run``, ``swarm status`` and ``swarm chat``: the library's run, printed
with rich, and what a running swarm answers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from swarm.config import SwarmConfig, apply_override, load_config, parse_config
from swarm.errors import ConfigError
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

__all__ = ["ConsoleProgress", "register", "load_run"]

_RUN_HELP = "the YAML config the swarm was started with, or its run directory"


def register(sub: Any) -> None:
    """Add the ``run``, ``status`` and ``chat`` commands."""
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
    status.add_argument("file", type=Path, metavar="RUN", help=_RUN_HELP)
    status.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    status.add_argument("--json", action="store_true", help="print raw JSON")
    status.set_defaults(handler=_status)

    chat = sub.add_parser(
        "chat", help="send a message to an agent of a running swarm and print its reply",
        description="Find AGENT's host through the coordinator of the running swarm, send it "
        "MESSAGE as a chat from user:NAME, and print the reply: by default the agent's LLM "
        "answers, with the agent's own adapter.")
    chat.add_argument("file", type=Path, metavar="RUN", help=_RUN_HELP)
    chat.add_argument("agent", metavar="AGENT", help="the agent's id (swarm status lists them)")
    chat.add_argument("message", metavar="MESSAGE", help="what to say")
    chat.add_argument("--timeout", type=_seconds, default=120.0, metavar="S",
                      help="seconds to wait for the reply (default 120)")
    chat.add_argument("--as", dest="user", default=None, metavar="NAME",
                      help="who is writing: the agent hears from user:NAME (default: your login)")
    chat.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    chat.set_defaults(handler=_chat)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds in (0, 86400]")
    return value


def load_run(path: Path, overrides: list[str]) -> SwarmConfig:
    """The config of a run: a YAML config file, or a run directory's ``config.json``.

    Raises:
        ConfigError: no such file, a directory that is not a run directory, or a bad config.
    """
    if not path.is_dir():
        return load_config(path, overrides)
    file = path / "config.json"
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a run directory (no readable config.json: "
                          f"{getattr(exc, 'strerror', None) or exc}); give the swarm's config "
                          f"file or the run directory swarm run printed") from None
    for item in overrides:
        apply_override(raw, item)
    return parse_config(raw)


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
    if event.skills:
        console.print("  per skill (mean over agents): "
                      + " ".join(f"{k}={v:.2f}" for k, v in event.skills.items()))
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
    if history and history[-1].get("skill_scores"):
        console.print(_skill_table(history[0], history[-1]))
    lineage = summary["lineage"]
    console.print(f"lineage: {lineage}")
    console.print("inspect it with:")
    console.print(f"  swarm lineage log -C {lineage} {agents[0] if agents else 'AGENT'}")
    console.print(f"  swarm lineage graph -C {lineage} -o phylogeny.png")
    console.print(f"  git -C {lineage} log --graph --all --oneline")


def _skill_table(first: dict[str, Any], last: dict[str, Any]) -> Table:
    """Each agent's held-out score per skill after the last round (and after the first)."""
    per_agent: dict[str, dict[str, float]] = last["skill_scores"]
    before: dict[str, dict[str, float]] = first.get("skill_scores", {})
    skills = sorted({k for v in per_agent.values() for k in v})
    table = Table(title=f"held-out score per skill after round {last['round']} "
                        f"(after round {first['round']} in brackets)")
    table.add_column("agent")
    for name in skills:
        table.add_column(name, justify="right")
    for agent, scores in sorted(per_agent.items()):
        was = before.get(agent, {})
        table.add_row(agent, *(f"{scores.get(k, float('nan')):.2f} "
                               f"[dim]({was.get(k, float('nan')):.2f})[/]" for k in skills))
    means = last.get("skill_means", {})
    table.add_row("[bold]mean[/]", *(f"[bold]{means.get(k, float('nan')):.2f}[/]"
                                     for k in skills))
    return table


def _chat(args: argparse.Namespace) -> int:
    from swarm.runtime.chat import chat_with

    config = load_run(args.file, args.overrides)
    reply = run_sync(chat_with(config, args.agent, args.message, user=args.user or _login(),
                               timeout=args.timeout))
    print(reply)
    return 0


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli"


def _status(args: argparse.Namespace) -> int:
    config = load_run(args.file, args.overrides)
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
