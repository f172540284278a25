"""Typed ask/reply between agents on two hosts, against a raw pyzmq echo (part of bench/scale.py).

Three host processes (this script run with ``--host``), real ``Host`` objects
serving peers (``Host.serve_peers``), their directories filled as the
coordinator's ``Welcome`` would fill them:

- ``host-a`` holds agents ``a0 .. a{N-1}`` and drives: ``window`` workers, each
  asking in turn, through ``AgentContext.ask``, a random agent of host-b from a
  random agent of host-a (the real typed path: encode, route, a reliable request
  with dedup, the handler, the answer, decode). Per ask it records the latency;
- ``host-b`` holds agents ``b0 .. b{N-1}`` of a role whose ``@handles(Ping)``
  handler answers ``Pong``;
- ``host-e`` holds no agents: its RSS is the zero of memory per agent.

Each host also holds a stats agent that answers ``StatsAsk`` with its RSS after
a ``gc.collect()`` and its CPU seconds. Memory per agent is ``(RSS of a host
with N agents - RSS of host-e) / N``, both idle after the setup (each host's
directory holds all 2N placements), and again after the asks.

The baseline, in the same run: a synchronous pyzmq DEALER keeping ``window``
requests in flight to a pyzmq ROUTER (its own process) that echoes each, one
ZeroMQ message per request, each the size of an ask's request on the wire.
host-a runs it before each repeat of the asks (its loop stands still
meanwhile), so that each ratio compares two runs a moment apart on this shared
machine. Any ask that fails or times out, or an answer that is not the
handler's, makes the bench report an error instead of a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Any

import msgspec
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import scale_raw  # noqa: E402
from bench.scale_raw import percentiles, raw_client, raw_pump  # noqa: E402
from swarm.agents import Agent, AgentContext, AgentSpec, handles, message, role  # noqa: E402
from swarm.errors import SwarmError  # noqa: E402
from swarm.runtime.process import tune_gc  # noqa: E402
from swarm.transport.loop import run_loop  # noqa: E402
from swarm.wire.codec import AgentMsg, encode  # noqa: E402

HOSTS = ("host-a", "host-b", "host-e")
TEXT = "hello, how are you doing today?"  # what an asker says
REPLY = "fine, thanks"  # what every answerer says
ASK_TIMEOUT_S = 30.0


@message("ScalePing")
class Ping(msgspec.Struct, frozen=True):
    """An ask of the bench: a number the answer must carry back, and a short text."""

    n: int
    text: str


@message("ScalePong")
class Pong(msgspec.Struct, frozen=True):
    """The answer to a ``Ping``."""

    n: int
    text: str


@message("ScaleStatsAsk")
class StatsAsk(msgspec.Struct, frozen=True):
    """Ask a host's stats agent for its RSS and CPU time."""


@message("ScaleStats")
class Stats(msgspec.Struct, frozen=True):
    """A host's RSS (after a gc) and CPU seconds."""

    rss: int
    cpu_s: float


def own_stats() -> Stats:
    """This process's RSS after a ``gc.collect()``, and its CPU seconds."""
    gc.collect()
    proc = psutil.Process()
    cpu = proc.cpu_times()
    return Stats(rss=proc.memory_info().rss, cpu_s=cpu.user + cpu.system)


@role("scale_pinger")
class Pinger(Agent):
    """Answers every ``Ping`` with a ``Pong`` that carries its number."""

    __slots__ = ()

    @handles(Ping)
    async def on_ping(self, ctx: AgentContext, sender: str, ping: Ping) -> Pong:
        """Answer."""
        return Pong(n=ping.n, text=REPLY)


@role("scale_ask_stats")
class StatsAgent(Agent):
    """A host's stats agent."""

    __slots__ = ()

    @handles(StatsAsk)
    async def on_stats(self, ctx: AgentContext, sender: str, ask: StatsAsk) -> Stats:
        """The host's stats."""
        return own_stats()


def stats_id(host: str) -> str:
    return f"__stats__.{host}"


def agent_ids(host: str, n: int) -> list[str]:
    """The agents a host holds: ``a0 ..`` on host-a, ``b0 ..`` on host-b, none on host-e."""
    return [] if host == "host-e" else [f"{host[-1]}{i}" for i in range(n)]


def placement(n: int) -> dict[str, str]:
    """Every agent's host, as a ``Welcome`` would carry it."""
    out = {a: h for h in HOSTS for a in agent_ids(h, n)}
    out.update({stats_id(h): h for h in HOSTS})
    return out


# -- the host processes -------------------------------------------------------------------


def make_host(name: str, n: int, book: dict[str, str], missing: int = 0) -> Any:
    """A ``Host`` with its agents and its stats agent, its directory filled."""
    from swarm.config import parse_config
    from swarm.runtime.host import Host

    config = parse_config({"swarm": {"name": "scale"},
                           "agents": [{"name": "g", "count": 1, "skills": ["add"]}],
                           "protocol": {"name": "local"}})
    specs = [AgentSpec(agent_id=a, role="scale_pinger") for a in agent_ids(name, n)]
    del specs[len(specs) - missing:]
    specs.append(AgentSpec(agent_id=stats_id(name), role="scale_ask_stats"))
    host = Host(name, config, specs, Path(tempfile.gettempdir()))
    host.messaging.directory.update(placement(n) if name != "host-e" else {
        stats_id(h): h for h in HOSTS}, book)
    return host


def serve(name: str, n: int, book: dict[str, str], missing: int = 0) -> None:
    """Run a host that only answers, until killed (without the last ``missing`` agents)."""
    logging.basicConfig(level=logging.WARNING, format=f"{name}: %(levelname)s %(message)s")
    tune_gc()  # as a host process does (swarm.runtime.process)
    host = make_host(name, n, book, missing)
    run_loop(host.serve_peers(book[name]))


def drive(n: int, book: dict[str, str], raw: str, runs: list[int], warmup: int, window: int,
          seed: int, out: Path) -> None:
    """Run host-a: serve, measure the others and itself, ask, write the results to ``out``."""
    logging.basicConfig(level=logging.WARNING, format="host-a: %(levelname)s %(message)s")
    tune_gc()  # as a host process does (swarm.runtime.process)
    result = run_loop(_drive(n, book, raw, runs, warmup, window, seed))
    out.write_text(json.dumps(result))


async def _drive(n: int, book: dict[str, str], raw: str, runs: list[int], warmup: int,
                 window: int, seed: int) -> dict[str, Any]:
    """Each repeat: the raw echo's requests (the loop stands still meanwhile), then the asks."""
    host = make_host("host-a", n, book)
    serving = asyncio.ensure_future(host.serve_peers(book["host-a"]))
    frame = ask_frame_bytes()
    try:
        contexts = [host.context(host.agents[f"a{i}"]) for i in range(n)]  # one per agent
        me = host.context(host.agents[stats_id("host-a")])
        idle = await all_stats(me, timeout=120.0)
        rng = np.random.default_rng(seed)
        with raw_client(raw) as sock:
            raw_pump(sock, warmup, window, frame)
            warm = await pump(host, contexts, warmup, window, rng)
            raws, timed = [], []
            for total in runs:
                raws.append(raw_pump(sock, total, window, frame))
                cpu = time.process_time()
                timed.append(await pump(host, contexts, total, window, rng))
                timed[-1]["cpu_s"] = time.process_time() - cpu
        busy = await all_stats(me, timeout=ASK_TIMEOUT_S)
    finally:
        serving.cancel()
        await host.messaging.close()
    return {"idle": idle, "busy": busy, "runs": timed, "raw": raws, "warmup": warmup,
            "warmup_failures": warm["failures"], "warmup_failed": warm["failed"]}


async def all_stats(me: AgentContext, timeout: float) -> dict[str, dict[str, float]]:
    """Every host's stats (host-a's own, the others' through an ask)."""
    got = {}
    for host in ("host-e", "host-b"):
        stats = await me.ask(stats_id(host), StatsAsk(), timeout=timeout)
        got[host] = msgspec.structs.asdict(stats)
    got["host-a"] = msgspec.structs.asdict(own_stats())
    return got


async def pump(host: Any, contexts: list[AgentContext], total: int, window: int,
               rng: np.random.Generator) -> dict[str, Any]:
    """``total`` asks from random agents of host-a to random agents of host-b, ``window`` at once.

    ``contexts`` are host-a's agents' (each asks through its own, as a hook would).
    Returns seconds taken, latency percentiles (microseconds) and every failure.
    """
    n = len(contexts)
    askers = rng.integers(n, size=total).tolist()
    targets = [f"b{i}" for i in rng.integers(n, size=total)]
    latency = np.zeros(total)
    failures: list[str] = []
    todo = iter(range(total))
    clock = time.perf_counter

    async def worker() -> None:
        for i in todo:
            started = clock()
            try:
                pong = await contexts[askers[i]].ask(targets[i], Ping(n=i, text=TEXT),
                                                     timeout=ASK_TIMEOUT_S)
            except SwarmError as exc:
                failures.append(f"ask {i} to {targets[i]}: {type(exc).__name__}: {exc}")
                continue
            latency[i] = clock() - started
            if not (isinstance(pong, Pong) and pong.n == i):
                failures.append(f"ask {i} to {targets[i]} answered {pong!r}")

    host.messaging.take_log()  # what came before (the stats asks) was a step of its own
    start = clock()
    await asyncio.gather(*(worker() for _ in range(window)))
    seconds = clock() - start
    logged = len(host.messaging.take_log())  # what a StepDone would ship; asked + answered
    if logged != 2 * total and not failures:
        failures.append(f"{logged} log entries for {total} asks (2 each expected)")
    return {"asks": total, "seconds": seconds, "failures": failures[:20],
            "failed": len(failures), **percentiles(latency)}


def ask_frame_bytes() -> int:
    """The size of one ask's request on the wire (its ``AgentMsg`` envelope)."""
    kind, body = "ScalePing", msgspec.msgpack.encode(Ping(n=12345, text=TEXT))
    msg = AgentMsg(sender="a1234", recipient="b1234", kind=kind, body=body, asks=True, ack=True)
    return len(encode(msg)[0])


# -- the driver (bench/scale.py's process) -------------------------------------------------


@contextmanager
def process(*args: str, script: str = __file__) -> Iterator[subprocess.Popen[bytes]]:
    """``script`` (this one by default) started with ``args``; terminated (then killed) on exit."""
    proc = subprocess.Popen([sys.executable, str(Path(script).resolve()), *args])
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def free_address() -> str:
    """A TCP address on localhost with a port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def run_hosts(n: int, runs: list[int], warmup: int, window: int, seed: int,
              missing: int = 0) -> dict[str, Any]:
    """Start host-b, host-e and the raw echo, run host-a (the driver) to its end; its results.

    ``missing`` agents of host-b's share are left out of it (a check of the refusal).
    """
    addresses: set[str] = set()
    while len(addresses) < len(HOSTS) + 1:  # four distinct ports
        addresses.add(free_address())
    *ends, raw = sorted(addresses)
    book = dict(zip(HOSTS, ends, strict=True))
    common = ["--agents", str(n), "--book", json.dumps(book)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "asks.json"
        with process("--host", "host-b", *common, "--missing", str(missing)), \
                process("--host", "host-e", *common), process(raw, script=scale_raw.__file__):
            driver = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--host", "host-a", *common,
                 "--address", raw, "--runs", ",".join(map(str, runs)), "--warmup", str(warmup),
                 "--window", str(window), "--seed", str(seed), "--out", str(out)],
                timeout=1800)
        if driver.returncode != 0 or not out.exists():
            raise SystemExit(f"asks: host-a exited with status {driver.returncode}: "
                             f"refusing to report figures")
        result: dict[str, Any] = json.loads(out.read_text())
    return result


def measure(n: int, runs: list[int], warmup: int, window: int, seed: int,
            missing: int = 0) -> dict[str, Any]:
    """Asks and the raw echo, alternately: host-a's results.

    Raises:
        SystemExit: an ask failed, timed out or was answered wrongly (no figures for such a run).
    """
    hosts = run_hosts(n, runs, warmup, window, seed, missing)
    failed = hosts["warmup_failures"] + [f for r in hosts["runs"] for f in r["failures"]]
    if failed:
        total = hosts["warmup_failed"] + sum(r["failed"] for r in hosts["runs"])
        raise SystemExit(f"asks: {total} ask(s) failed, refusing to report figures: "
                         + "; ".join(failed[:5]))
    return hosts


def figures(m: dict[str, Any], n: int) -> tuple[dict[str, Any], dict[str, float], dict[str, str]]:
    """BENCH.md's ``asks_*`` figures, the ratio to raw pyzmq and the goals.

    Rates and latencies are medians over the repeats; the ratio is the median of
    each repeat's asks/s over the raw echo's measured just before it.
    """
    runs, raw = m["runs"], m["raw"]
    rates = [r["asks"] / r["seconds"] for r in runs]
    raw_rates = [r["asks"] / r["seconds"] for r in raw]
    idle, busy = m["idle"], m["busy"]
    zero = idle["host-e"]["rss"]
    per_agent = {h: (idle[h]["rss"] - zero) / n for h in ("host-a", "host-b")}
    asks = sum(r["asks"] for r in runs)
    b_cpu = busy["host-b"]["cpu_s"] - idle["host-b"]["cpu_s"]  # it idles while the raw echo runs
    fig: dict[str, Any] = {
        "asks_per_s_10k_agents": round(median(rates)),
        "ask_p50_us": round(median(r["p50_us"] for r in runs), 1),
        "ask_p99_us": round(median(r["p99_us"] for r in runs), 1),
        "raw_pyzmq_asks_per_s": round(median(raw_rates)),
        "raw_pyzmq_ask_p50_us": round(median(r["p50_us"] for r in raw), 1),
        "raw_pyzmq_ask_p99_us": round(median(r["p99_us"] for r in raw), 1),
        "ask_bytes_per_agent": round(max(per_agent.values())),
        "ask_bytes_per_agent_host_a": round(per_agent["host-a"]),
        "ask_bytes_per_agent_host_b": round(per_agent["host-b"]),
        "ask_host_rss_bytes_0_agents": int(zero),
        "ask_host_a_rss_after_bytes": int(busy["host-a"]["rss"]),
        "ask_host_b_rss_after_bytes": int(busy["host-b"]["rss"]),
        "ask_host_a_cpu_us_per_ask": round(sum(r["cpu_s"] for r in runs) / asks * 1e6, 2),
        "ask_host_b_cpu_us_per_ask": round(b_cpu / (asks + m["warmup"]) * 1e6, 2),
        "runs_asks_per_s_10k_agents": [round(r) for r in rates],
        "runs_raw_pyzmq_asks_per_s": [round(r) for r in raw_rates],
    }
    ratios = {"asks_vs_raw": median(a / r for a, r in zip(rates, raw_rates, strict=True)),
              "ask_p50_vs_raw": fig["ask_p50_us"] / fig["raw_pyzmq_ask_p50_us"]}
    goals = {"asks_vs_raw": ">= 0.3", "ask_bytes_per_agent": "<= 2048"}
    return fig, ratios, goals


def main() -> None:
    """The host processes this script is started as.

    With ``SWARM_BENCH_PROFILE=DIR`` in the environment each host process runs
    under cProfile and writes ``DIR/<host>.prof`` when it ends (or is terminated).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", choices=HOSTS)
    parser.add_argument("--address", default="")
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--book", default="{}")
    parser.add_argument("--runs", default="10000")
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--missing", type=int, default=0)
    args = parser.parse_args()
    profile_dir = os.environ.get("SWARM_BENCH_PROFILE")
    if profile_dir and args.host:
        profiled(Path(profile_dir) / f"{args.host}.prof")
    if args.host == "host-a":
        drive(args.agents, json.loads(args.book), args.address,
              [int(r) for r in args.runs.split(",")], args.warmup, args.window, args.seed,
              args.out)
    elif args.host:
        serve(args.host, args.agents, json.loads(args.book), args.missing)


def profiled(path: Path) -> None:
    """Profile this process from now on; write the stats to ``path`` at exit or SIGTERM."""
    import atexit
    import cProfile
    import signal

    prof = cProfile.Profile()
    atexit.register(lambda: (prof.disable(), prof.dump_stats(str(path))))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    prof.enable()


if __name__ == "__main__":
    main()
