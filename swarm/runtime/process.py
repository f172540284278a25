"""Process entry points started by the launchers: ``python -m swarm.runtime.process PROCESS --run-dir D``.

``PROCESS`` is the kind of process to run: ``coordinator``, ``host`` or
``model-server`` (the same word a host's ``Join.process`` sends). Each process
reads the run directory written by the launcher (``config.json``,
``hosts.json``, ``model.txt``: JSON and text, never pickle), logs to
``D/logs/<name>.log`` through its stdout, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec

from swarm.config import SwarmConfig, parse_config
from swarm.transport.loop import run_loop

__all__ = ["main", "tune_gc", "GC_YOUNG"]

_ROUTING_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}\.[0-9a-f]{16}")  # topology.new_routing_id
#: Net allocations between two collections of the young generation in a host process.
GC_YOUNG = 10_000


def main(argv: list[str] | None = None) -> int:
    """Run one swarm process until it finishes or receives SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m swarm.runtime.process")
    parser.add_argument("process", choices=list(_RUNNERS), help="the kind of process to run")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--index", type=int, default=0, help="host index (host only)")
    parser.add_argument("--resume", action="store_true", help="continue the lineage (coordinator)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format=f"%(asctime)s {args.process} %(levelname)s %(name)s: %(message)s")
    config = parse_config(msgspec.json.decode((args.run_dir / "config.json").read_bytes()))
    runner = _RUNNERS[args.process]
    try:
        run_loop(_until_signalled(runner(config, args)))
    except Exception:
        logging.getLogger("swarm.runtime.process").exception("%s failed", args.process)
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


def tune_gc() -> None:
    """Collect the young generation every ``GC_YOUNG`` net allocations (a host process's setting).

    Thousands of asks in flight each hold a few coroutines and a future; at
    CPython's default of 700 the collector ran every few hundred asks and took
    about a sixth of a host's time (``bench/scale.py``), scanning objects that
    were about to be freed anyway. The older generations keep their thresholds.
    """
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, older, oldest)


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
    from swarm.transport.topology import address_book

    hosts = json.loads((args.run_dir / "hosts.json").read_text())
    mine = set(hosts[args.index])
    specs = [s for s in build_population(config) if s.agent_id in mine]
    peers = address_book(config.transport, config.launcher.hosts, config.model.server).peer(args.index)
    name = f"host-{args.index}"
    tune_gc()
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
    """Run the machine's model server for ``config`` until cancelled.

    Adapters are resolved through the machine's adapter store; each is
    validated against the base model (hash, keys, shapes, rank, finite values,
    norm) the first time the engine loads it.
    """
    from swarm.adapters.store import AdapterStore
    from swarm.adapters.validate import AdapterValidator
    from swarm.serving.jobs import store_merger, store_trainer
    from swarm.serving.registry import create_backend
    from swarm.serving.server import ModelServer
    from swarm.transport.peers import TransportOptions
    from swarm.transport.topology import address_book

    model = Path((args.run_dir / "model.txt").read_text().strip())
    store_root = config.adapter_store
    store = AdapterStore(store_root, AdapterValidator(model, max_rank=config.model.max_lora_rank))
    backend = create_backend(config.model, model, store.checked_path)
    address = address_book(config.transport, config.launcher.hosts, config.model.server).model
    gate = threading.Lock()  # engine batches, training steps and merges take turns on the cores
    server = ModelServer(backend, address,
                         trainer=store_trainer(model, store, seed=config.swarm.seed, gate=gate),
                         merger=store_merger(model, store, gate=gate), gate=gate,
                         options=TransportOptions.from_config(config.transport))
    logging.getLogger("swarm.serving.server").info(
        "model server: %s backend on %s, adapters in %s", backend.name, address, store_root)
    try:
        await server.run()
    finally:
        backend.close()


_Runner = Callable[[SwarmConfig, argparse.Namespace], Coroutine[Any, Any, None]]
#: What each kind of process runs.
_RUNNERS: dict[str, _Runner] = {
    "coordinator": _coordinator, "host": _host, "model-server": _model_server,
}

if __name__ == "__main__":
    raise SystemExit(main())
