"""``swarm artifact``: steer a running evolution (the evogit protocol) and read its versions.

``promote RUN REF`` broadcasts one version (a commit, a tag, or an agent's
individual) to every individual, ``prune RUN AGENT`` retires an individual,
``continue RUN`` resumes a run paused for a person (``protocol.human_every``),
``status RUN`` prints the population. Each is a message to the running
swarm's coordinator, which alone writes the lineage. ``checkout`` is
``swarm lineage checkout`` (any version, to a folder; no swarm needs to run).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["register"]

_RUN_HELP = "the YAML config the swarm was started with, or its run directory"


def register(sub: Any) -> None:
    """Add the ``artifact`` group."""
    group = sub.add_parser("artifact", help="steer an evolving artifact (evogit) of a running swarm")
    cmds = group.add_subparsers(dest="artifact_command", metavar="COMMAND", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = cmds.add_parser(name, help=help, description=help)
        p.add_argument("file", type=Path, metavar="RUN", help=_RUN_HELP)
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="the overrides the swarm was started with")
        p.add_argument("--as", dest="user", default="cli", metavar="NAME",
                       help="who is steering (the sender is user:NAME)")
        p.set_defaults(handler=_steer, action=name)
        return p

    command("promote", "broadcast one version to every individual").add_argument(
        "ref", metavar="REF", help="a commit, tag, or an agent (its individual)")
    prune = command("prune", "retire an individual")
    prune.add_argument("ref", metavar="AGENT")
    prune.add_argument("--reason", default="", help="why (kept with the pruned line)")
    command("continue", "resume a run paused for a person")
    command("status", "print the population and whether the run is paused").add_argument(
        "--json", action="store_true")


def _steer(args: argparse.Namespace) -> int:
    from swarm.cli.run import load_run
    from swarm.protocols.evogit import Steer, Steered
    from swarm.runtime.chat import ask_service
    from swarm.runtime.run import run_sync

    config = load_run(args.file, args.overrides)
    msg = Steer(action=args.action, ref=getattr(args, "ref", ""),
                reason=getattr(args, "reason", ""))
    answer = run_sync(ask_service(config, msg, user=args.user))
    if not isinstance(answer, Steered):
        print(f"the swarm answered {type(answer).__name__}")
        return 2
    state = json.loads(answer.json)
    if getattr(args, "json", False):
        print(json.dumps({"done": answer.done, "paused": answer.paused, **state}, indent=1))
        return 0
    print(answer.done + (" (paused for a person: swarm artifact continue RUN)"
                         if answer.paused else ""))
    if args.action == "status":
        for agent, ind in state.get("population", {}).items():
            print(f"  {agent}: {ind['sha'][:12]} fitness {ind['fitness']}")
    return 0
