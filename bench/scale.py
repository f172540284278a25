"""How many agents fit in one host process, and how fast do they chat?

One host process (this script again, with ``--serve N``) holds N agents of a
chat role defined here, plus one reserved stats agent, and serves direct peer
messages (``Host.serve_peers``). The driver (this process) sends ``Chat``
messages to random agents through a transport ``Client``, coalesced with
``send_batch``, keeping a bounded window in flight, and counts the replies.

Figures: replies per second with 1,000 and 10,000 agents; memory per agent,
``(RSS with N agents - RSS with 0 agents) / N`` measured in the host after a
``gc.collect()`` (the stats agent answers a chat with its RSS); the host's
RSS after the 10,000-agent traffic. Baseline, in the same run: a raw pyzmq
DEALER/ROUTER echo of frames of the same size, batched and windowed the same
way, so ``msgs_vs_raw_pyzmq`` is the runtime's share of bare ZeroMQ.

Typed asks (``bench/scale_asks.py``): 10,000 agents on two host processes,
agents of one asking agents of the other through ``AgentContext.ask``,
``--ask-window`` asks in flight, against a raw pyzmq DEALER/ROUTER echo with
as many requests in flight: ``asks_per_s_10k_agents``, ``ask_p50_us``,
``ask_p99_us``, ``asks_vs_raw`` and memory per agent of the asking role. A run
in which any ask failed reports no figures (the bench exits non-zero).

    python bench/scale.py            # 3 repeats of 100,000 messages per size, 5 of 100,000 asks
    python bench/scale.py --quick    # 1 repeat of 20,000 messages per size, 3 of 10,000 asks
    python bench/scale.py --only asks  # the typed asks alone
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import scale_asks  # noqa: E402
from bench.common import write_result  # noqa: E402
from swarm.agents.base import Agent, AgentSpec  # noqa: E402
from swarm.agents.context import AgentContext  # noqa: E402
from swarm.agents.registry import role  # noqa: E402
from swarm.transport.loop import run_loop  # noqa: E402
from swarm.transport.peers import Client, TransportOptions  # noqa: E402
from swarm.wire.codec import Chat, encode_batch  # noqa: E402

STATS_ID = "__stats__"  # reserved agent: answers any chat with the host's RSS and CPU time
TEXT = "hello, how are you doing today?"  # what the driver says
REPLY = "fine, thanks"  # what every chat agent answers
GIB = 1 << 30
ASK_AGENTS = 10_000  # typed asks: half of them on each of two hosts (bench/scale_asks.py)


@role("scale_chat")
class ScaleChat(Agent):
    """Answers every chat with a short text."""

    __slots__ = ()

    async def on_chat(self, ctx: AgentContext, sender: str, content: str) -> str | None:
        """Count the message and reply."""
        self.messages_received += 1
        return REPLY


@role("scale_stats")
class ScaleStats(Agent):
    """The reserved stats agent: replies with the host's RSS (after a gc) and CPU seconds."""

    __slots__ = ()

    async def on_chat(self, ctx: AgentContext, sender: str, content: str) -> str | None:
        """Collect garbage, then report ``{"rss": bytes, "cpu_s": seconds}``."""
        gc.collect()
        proc = psutil.Process()
        cpu = proc.cpu_times()
        return json.dumps({"rss": proc.memory_info().rss, "cpu_s": cpu.user + cpu.system})


# -- the host process -------------------------------------------------------------------


def serve(n_agents: int, address: str) -> None:
    """Run one host with ``n_agents`` chat agents and the stats agent until killed."""
    logging.basicConfig(level=logging.INFO, format="host: %(levelname)s %(name)s: %(message)s")
    from swarm.config import parse_config
    from swarm.runtime.host import Host

    config = parse_config({"swarm": {"name": "scale"},
                           "agents": [{"name": "g", "count": 1, "skills": ["add"]}],
                           "protocol": {"name": "local"}})
    specs = [AgentSpec(agent_id=f"a{i}", role="scale_chat") for i in range(n_agents)]
    specs.append(AgentSpec(agent_id=STATS_ID, role="scale_stats"))
    host = Host("scale-host", config, specs, Path(tempfile.gettempdir()))
    del specs
    run_loop(host.serve_peers(address))  # the loop swarm's host processes run on


def raw_echo(address: str) -> None:
    """The baseline server: a pyzmq ROUTER echoing every message back as it came."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(address)
    while True:
        sock.send_multipart(sock.recv_multipart(copy=False), copy=False)


# -- the driver -------------------------------------------------------------------------


async def host_stats(client: Client) -> dict[str, float]:
    """Ask the stats agent for the host's RSS and CPU seconds."""
    reply = await client.request(Chat(sender="driver", recipient=STATS_ID, content="stats"),
                                 timeout=60.0)
    assert isinstance(reply.msg, Chat), reply.msg
    stats: dict[str, float] = json.loads(reply.msg.content)
    return stats


async def pump(client: Client, n_agents: int, total: int, batch: int, window: int,
               rng: np.random.Generator) -> float:
    """Send ``total`` chats to random agents, ``window`` at most in flight; seconds taken."""
    ids = [f"a{i}" for i in range(n_agents)]
    sent = received = 0
    start = time.perf_counter()
    while received < total:
        while sent < total and sent - received < window:
            picks = rng.integers(n_agents, size=min(batch, total - sent))
            await client.send_batch([Chat(sender="driver", recipient=ids[i], content=TEXT)
                                     for i in picks])
            sent += len(picks)
        try:
            batch_in = await client.recv_batch(max_items=window, timeout=60.0)
        except TimeoutError:
            raise RuntimeError(
                f"no reply for 60 s: sent {sent}, received {received}, client up={client.up} "
                f"reconnects={client.reconnects} waiting={client.waiting} paused={client.paused} "
                f"queued={client.queued} readable={client.check_readable()}") from None
        for inc in batch_in:
            if not isinstance(inc.msg, Chat):
                raise RuntimeError(f"host answered {inc.msg!r}")
            received += 1
    return time.perf_counter() - start


async def measure_host(address: str, n_agents: int, runs: list[int], batch: int,
                       window: int, seed: int) -> dict[str, Any]:
    """Connect to a started host: idle stats, then timed pumps, then stats again."""
    rng = np.random.default_rng(seed)
    async with Client("driver", address, TransportOptions()) as client:
        await client.wait_up(timeout=120.0)
        idle = await host_stats(client)
        rates = []
        if n_agents:
            await pump(client, n_agents, min(runs[0], 5000), batch, window, rng)  # warm-up
            for total in runs:
                rates.append(total / await pump(client, n_agents, total, batch, window, rng))
        busy = await host_stats(client)
    return {"idle": idle, "busy": busy, "rates": rates}


def run_host(n_agents: int, runs: list[int], batch: int, window: int,
             seed: int) -> dict[str, Any]:
    """Start a host with ``n_agents`` agents, measure it, stop it."""
    address = scale_asks.free_address()
    with scale_asks.process("--serve", str(n_agents), "--address", address, script=__file__):
        return run_loop(measure_host(address, n_agents, runs, batch, window, seed))


def run_raw(runs: list[int], batch: int, window: int, frame_bytes: int) -> list[float]:
    """Messages per second through a raw pyzmq echo, ``batch`` messages per frame."""
    address = scale_asks.free_address()
    frame = bytes(frame_bytes)
    rates = []
    with scale_asks.process("--raw-echo", "--address", address, script=__file__):
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 60_000)
        sock.connect(address)
        try:
            sock.send(frame)  # warm-up: wait for the echo server to be up
            sock.recv()
            for total in runs:
                frames = -(-total // batch)
                start = time.perf_counter()
                sent = received = 0
                while received < frames:
                    while sent < frames and (sent - received) * batch < window:
                        sock.send(frame, copy=False)
                        sent += 1
                    sock.recv(copy=False)
                    received += 1
                rates.append(frames * batch / (time.perf_counter() - start))
        finally:
            sock.close(linger=0)
            ctx.term()
    return rates


def batch_bytes(batch: int) -> int:
    """The size of one coalesced frame of ``batch`` chats as the driver sends them."""
    msgs = [Chat(sender="driver", recipient=f"a{i}", content=TEXT) for i in range(batch)]
    return len(encode_batch(msgs))


def main() -> None:
    """Measure, print the table, write ``bench/results/scale.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat of 20,000 messages")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--raw-echo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", default="", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=256, help="chats per coalesced frame")
    parser.add_argument("--window", type=int, default=8192, help="chats in flight at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ask-window", type=int, default=1000,
                        help="typed asks in flight at once (and the raw echo's requests)")
    parser.add_argument("--only", choices=("chat", "asks"), default=None,
                        help="measure only the chat path or only the typed asks")
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.address)
        return
    if args.raw_echo:
        raw_echo(args.address)
        return
    runs = [20_000] if args.quick else [100_000] * 3
    sizes = {"1k": 1_000, "10k": 10_000}
    asks = None
    if args.only != "chat":
        ask_runs = [10_000] * 3 if args.quick else [100_000] * 5
        asks = scale_asks.measure(ASK_AGENTS // 2, ask_runs, 2_000 if args.quick else 10_000,
                                  args.ask_window, args.seed)
    if args.only == "asks":
        report_asks(args, asks)
        return
    empty = run_host(0, runs, args.batch, args.window, args.seed)
    hosts = {k: run_host(n, runs, args.batch, args.window, args.seed) for k, n in sizes.items()}
    raw = run_raw(runs, args.batch, args.window, batch_bytes(args.batch))
    report(args, runs, sizes, empty, hosts, raw, asks)


def report(args: argparse.Namespace, runs: list[int], sizes: dict[str, int],
           empty: dict[str, Any], hosts: dict[str, dict[str, Any]], raw: list[float],
           asks: dict[str, Any] | None = None) -> None:
    """Turn the measurements into BENCH.md's figures, ratios and goals."""
    figures: dict[str, Any] = {}
    for key, n in sizes.items():
        h = hosts[key]
        figures[f"msgs_per_s_{key}_agents"] = round(statistics.median(h["rates"]))
        figures[f"bytes_per_agent_{key}"] = round((h["idle"]["rss"] - empty["idle"]["rss"]) / n)
        figures[f"host_rss_idle_bytes_{key}"] = int(h["idle"]["rss"])
        figures[f"host_rss_bytes_{key}"] = int(max(h["idle"]["rss"], h["busy"]["rss"]))
        cpu = h["busy"]["cpu_s"] - h["idle"]["cpu_s"]
        figures[f"host_cpu_us_per_msg_{key}"] = round(cpu / (sum(runs) + 5000) * 1e6, 2)
    figures["host_rss_bytes_0_agents"] = int(empty["idle"]["rss"])
    figures["raw_pyzmq_msgs_per_s"] = round(statistics.median(raw))
    figures["runs_msgs_per_s_10k_agents"] = [round(r) for r in hosts["10k"]["rates"]]
    ratios = {"msgs_vs_raw_pyzmq": figures["msgs_per_s_10k_agents"] / figures["raw_pyzmq_msgs_per_s"],
              "msgs_10k_vs_1k_agents": figures["msgs_per_s_10k_agents"] / figures["msgs_per_s_1k_agents"]}
    params = {"agents": list(sizes.values()), "messages_per_run": runs[0], "repeats": len(runs),
              "batch": args.batch, "window": args.window, "chat_bytes": len(TEXT),
              "frame_bytes": batch_bytes(args.batch), "quick": args.quick, "seed": args.seed}
    goals = {"host_rss_bytes_10k": f"<= {GIB}"}
    if asks is not None:
        params.update(ask_params(args, asks))
        more, more_ratios, more_goals = scale_asks.figures(asks, ASK_AGENTS // 2)
        figures.update(more)
        ratios.update(more_ratios)
        goals.update(more_goals)
    write_result("scale", params, figures, ratios, goals)


def ask_params(args: argparse.Namespace, asks: dict[str, Any]) -> dict[str, Any]:
    """The typed asks' parameters."""
    runs = asks["runs"]
    return {"ask_agents": ASK_AGENTS, "ask_hosts": 2, "asks_per_run": runs[0]["asks"],
            "ask_repeats": len(runs), "ask_window": args.ask_window,
            "ask_frame_bytes": scale_asks.ask_frame_bytes()}


def report_asks(args: argparse.Namespace, asks: dict[str, Any] | None) -> None:
    """``--only asks``: the typed asks' figures alone (a development run)."""
    assert asks is not None
    figures, ratios, goals = scale_asks.figures(asks, ASK_AGENTS // 2)
    params = {"quick": args.quick, "seed": args.seed, **ask_params(args, asks)}
    write_result("scale", params, figures, ratios, goals)


if __name__ == "__main__":
    main()
