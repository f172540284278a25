"""The ``local`` launcher: the swarm's processes as watched subprocesses on this machine.

It writes the run directory (the resolved config and the host assignment, as
JSON; see ``swarm.runtime.rundir`` for which directories a run may move), starts the model server, the coordinator and the hosts as
``python -m swarm.runtime.process ROLE`` subprocesses, restarts a host that dies (up to
``launcher.max_restarts`` times), and on Ctrl-C or SIGTERM stops every process
it started, with their children (each runs in its own process group), so
nothing is orphaned. The lineage is written by the coordinator, which
commits each round before it starts the next one, so stopping loses nothing
already committed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from swarm.config import SwarmConfig, to_dict
from swarm.errors import ModelError, SwarmError
from swarm.runtime.population import assign_hosts, build_population
from swarm.runtime.rundir import claim_run_dir, make_room, model_cache

__all__ = ["LocalLauncher", "Child", "resolve_model", "start_model_server", "write_run_files"]

log = logging.getLogger(__name__)


@dataclass
class Child:
    """One started process and how to start it again."""

    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: list[float] = field(default_factory=list)


class LocalLauncher:
    """Start, watch and stop the processes of one swarm on this machine."""

    def __init__(self, config: SwarmConfig, resume: bool = False) -> None:
        self.config = config
        self.resume = resume
        self.run_dir = config.run_dir
        self.children: dict[str, Child] = {}
        self.archived: Path | None = None  # where an earlier run in run_dir was moved
        self.warnings: list[str] = []  # shown by `swarm run` (e.g. bound off loopback in plaintext)
        self._stopping = False

    def prepare(self) -> Path:
        """Write ``config.json`` and ``hosts.json`` into the run directory; returns it.

        A new run moves an earlier run aside only when swarm made its directory
        (``swarm.runtime.rundir``); anything else is never moved or overwritten.

        Raises:
            SwarmError: ``--resume`` without a lineage, or a run directory that
                swarm did not make already holds a run's files.
            ConfigError: ``transport.security: curve`` without usable keys (nothing started).
        """
        from swarm.transport.security import check_transport

        warning = check_transport(self.config.transport)
        self.warnings = [warning] if warning else []
        lineage = self.config.lineage_dir
        if self.resume and not (lineage / "HEAD").is_file():
            raise SwarmError(f"--resume: {lineage} holds no lineage to continue")
        if not self.resume:
            self.archived = make_room(self.config)
        check_ports_free(self.config)
        claim_run_dir(self.run_dir)
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.config.adapter_store.mkdir(parents=True, exist_ok=True)
        write_run_files(self.config, self.run_dir)
        specs = build_population(self.config)
        hosts = assign_hosts(specs, self.config.launcher.hosts)
        (self.run_dir / "hosts.json").write_text(
            json.dumps([[s.agent_id for s in h] for h in hosts], indent=1))
        return self.run_dir

    def start(self) -> None:
        """Start the model server, the coordinator and every host."""
        base = [sys.executable, "-m", "swarm.runtime.process"]
        run = ["--run-dir", str(self.run_dir)]
        self.launch_model_server()
        coord = [*base, "coordinator", *run, *(["--resume"] if self.resume else [])]
        self._spawn(Child("coordinator", coord, self.run_dir / "logs" / "coordinator.log"))
        for i in range(self.config.launcher.hosts):
            self._spawn(Child(f"host-{i}", [*base, "host", *run, "--index", str(i)],
                              self.run_dir / "logs" / f"host-{i}.log"))

    def launch_model_server(self) -> None:
        """Start this run's model server, unless ``model.server`` names one already running."""
        if self.config.model.server is None:
            argv = [sys.executable, "-m", "swarm.runtime.process", "model-server", "--run-dir",
                    str(self.run_dir)]
            self._spawn(Child("model-server", argv, self.run_dir / "logs" / "model-server.log"))

    def _spawn(self, child: Child) -> None:
        child.proc = spawn(child.argv, child.log)
        child.started.append(time.time())
        self.children[child.name] = child

    def poll(self) -> int | None:
        """Check children once: restart dead hosts; the coordinator's exit code when it ends."""
        for child in list(self.children.values()):
            proc = child.proc
            if proc is None or proc.poll() is None:
                continue
            if child.name == "coordinator":
                return proc.returncode
            if self._stopping:
                continue
            if child.name.startswith("host-") and self.config.launcher.restart \
                    and child.restarts < self.config.launcher.max_restarts:
                child.restarts += 1
                self._spawn(child)
            elif child.name == "model-server" or child.name.startswith("host-"):
                raise SwarmError(f"{child.name} exited with code {proc.returncode}; "
                                 f"see {child.log}")
        return None

    def stop(self, grace: float = 10.0) -> None:
        """Stop every process started (and its children): SIGTERM, then SIGKILL after ``grace``."""
        self._stopping = True
        order = [*(["coordinator"] if "coordinator" in self.children else []),
                 *[n for n in self.children if n.startswith("host-")],
                 *(["model-server"] if "model-server" in self.children else [])]
        for name in order:
            self._signal(name, signal.SIGTERM)
        deadline = time.time() + grace
        for name in order:
            proc = self.children[name].proc if name in self.children else None
            if proc is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.time()))
            self._signal(name, signal.SIGKILL)  # the process group: engine workers included
            proc.wait()

    def _signal(self, name: str, sig: signal.Signals) -> None:
        child = self.children.get(name)
        if child is None or child.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, sig)

    def pids(self) -> dict[str, int]:
        """The pid of each running child."""
        return {n: c.proc.pid for n, c in self.children.items()
                if c.proc is not None and c.proc.poll() is None}


def check_ports_free(config: SwarmConfig) -> None:
    """Refuse to start when a port the swarm binds is taken (another swarm still running?).

    Raises:
        SwarmError: naming the ports in use and the key that moves them.
    """
    from swarm.transport.topology import swarm_ports

    taken = []
    for port in swarm_ports(config.transport, config.launcher.hosts,
                            own_model_server=not config.model.server):
        with socket.socket() as sock:
            # As ZeroMQ binds: a port in TIME_WAIT from a finished run is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((config.transport.host, port))
            except OSError:
                taken.append(port)
    if taken:
        raise SwarmError(
            f"transport.base_port: port(s) {taken} on {config.transport.host} are in use "
            f"(is another swarm still running?); pick free ones with "
            f"--set transport.base_port=N")


def write_run_files(config: SwarmConfig, run_dir: Path) -> None:
    """Write what every process of a run reads: ``config.json`` and ``model.txt``."""
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    model = resolve_model(config, model_cache(run_dir), progress=log.info)
    (run_dir / "model.txt").write_text(str(model))
    (run_dir / "config.json").write_bytes(msgspec.json.encode(to_dict(config)))


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a child in its own process group (so it can be stopped with its children)."""
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def start_model_server(config: SwarmConfig, run_dir: Path) -> subprocess.Popen[bytes]:
    """Start a model server on its own, e.g. to share one engine across several runs.

    Point runs at it with ``model.server`` set to its address and the same
    ``model.adapter_store``.
    """
    write_run_files(config, run_dir)
    argv = [sys.executable, "-m", "swarm.runtime.process", "model-server", "--run-dir", str(run_dir)]
    return spawn(argv, run_dir / "logs" / "model-server.log")


def resolve_model(config: SwarmConfig, cache: Path,
                  progress: Callable[[str], None] | None = None) -> Path:
    """The base model folder ``model.path`` names.

    In this order: ``tiny`` (built once into ``cache``), a named local model
    (``swarm.models.local``: built once into the user's model cache, verified
    on every use), an existing folder, a hub id ``org/name`` (fetched where a
    hub can be reached), or, with the ``openai`` backend, the name the server
    serves.

    Raises:
        ModelError: none of these, or the model cannot be built or fetched.
    """
    from swarm.models.local import LOCAL_MODELS, download_hub_model, is_hub_id, resolve_local

    name = config.model.path
    if name != "tiny":
        if name in LOCAL_MODELS.names():
            return resolve_local(name, progress=progress)
        path = Path(name).expanduser()
        if path.is_dir():
            return path
        if is_hub_id(name) and not path.exists():
            if config.model.backend == "openai":
                return path  # the served model's name; the server has the weights
            return download_hub_model(name)
        if config.model.backend == "openai" and not path.exists():
            return path
        raise ModelError(f"model.path {name!r} is not a folder, a local model "
                         f"({', '.join(LOCAL_MODELS.names())}, tiny) or a hub id (org/name)")
    from swarm.models.tiny import TinySpec, build_tiny_model

    spec = TinySpec(**msgspec.to_builtins(config.model.tiny))
    key = "-".join(f"{k}{v}" for k, v in sorted(msgspec.to_builtins(config.model.tiny).items()))
    dest = cache / f"tiny-{key}"
    if not (dest / "model.safetensors").exists():
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        build_tiny_model(tmp, spec)
        tmp.rename(dest)
    return dest.resolve()
