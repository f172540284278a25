"""Process entry points started by the launchers: ``python -m swarm.runtime.process ROLE --run-dir D``.

Each process reads the run directory written by the launcher (``config.json``,
``hosts.json``, ``model.txt``: JSON and text, never pickle), logs to
``D/logs/ROLE.log`` through its stdout, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import msgspec

from swarm.config.schema import SwarmConfig
from swarm.transport import loop as aio

__all__ = ["main"]

_ROUTING_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}\.[0-9a-f]{16}")  # topology.new_routing_id


def main(argv: list[str] | None = None) -> int:
    """Run one swarm process until it finishes or receives SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m swarm.runtime.process")
    parser.add_argument("role", choices=["coordinator", "host", "model-server"])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--index", type=int, default=0, help="host index (host only)")
    parser.add_argument("--resume", action="store_true", help="continue the lineage (coordinator)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format=f"%(asctime)s {args.role} %(levelname)s %(name)s: %(message)s")
    config = msgspec.json.decode((args.run_dir / "config.json").read_bytes(), type=SwarmConfig)
    runner = {"coordinator": _coordinator, "host": _host, "model-server": _model_server}[args.role]
    try:
        aio.run(_until_signalled(runner(config, args)))
    except Exception:
        logging.getLogger("swarm.runtime.process").exception("%s failed", args.role)
        return 1
    return 0


async def _until_signalled(work: Coroutine[Any, Any, None]) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        logging.getLogger("swarm.runtime.process").info("stopped by signal")


async def _coordinator(config: SwarmConfig, args: argparse.Namespace) -> None:
    from swarm.runtime.coordinator import Coordinator
    from swarm.runtime.recorder import Recorder

    hosts = json.loads((args.run_dir / "hosts.json").read_text())
    expected = [a for host in hosts for a in host]
    recorder = Recorder.open(config)
    summary = await Coordinator(config, expected, recorder, resume=args.resume).run()
    (args.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))


async def _host(config: SwarmConfig, args: argparse.Namespace) -> None:
    from swarm.runtime.host import Host
    from swarm.runtime.population import build_population
    from swarm.transport.topology import PEER_OFFSET, endpoint

    hosts = json.loads((args.run_dir / "hosts.json").read_text())
    mine = set(hosts[args.index])
    specs = [s for s in build_population(config) if s.agent_id in mine]
    peers = endpoint(config.transport, PEER_OFFSET + args.index)
    name = f"host-{args.index}"
    await Host(name, config, specs, config.adapter_store, peer_address=peers,
               routing_id=_routing_id(args.run_dir, name)).run()


def _routing_id(run_dir: Path, host_id: str) -> str:
    """The host's secret routing id, made by its first start and kept by its restarts.

    A restarted host reuses it, so the coordinator sees the same peer come back
    (and lets it join again); the file is readable only by its owner. It is
    written to a temporary file and renamed into place, so a crash never leaves
    an empty or partial id; one that does not read as this host's id is made anew.
    """
    from swarm.transport.topology import new_routing_id

    path = run_dir / "ids" / host_id
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError, UnicodeDecodeError):
        kept = path.read_text().strip()
        if _ROUTING_ID.fullmatch(kept) and kept.startswith(f"{host_id}."):
            return kept
    fd, tmp = tempfile.mkstemp(prefix=f".{host_id}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(new_routing_id(host_id))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path.read_text().strip()


async def _model_server(config: SwarmConfig, args: argparse.Namespace) -> None:
    from swarm.serving.server import serve

    model = Path((args.run_dir / "model.txt").read_text().strip())
    await serve(config, model, config.adapter_store)


if __name__ == "__main__":
    raise SystemExit(main())
