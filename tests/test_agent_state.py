"""Agents that talk across host processes found through the coordinator, and whose
knowledge graphs and role state land in the lineage and survive a host restart.

A coordinator runs in this process and two real host processes (this file as a
script) hold agents of the ``test_state_counter`` role: each round every agent
asks an agent of the other host (whose address only the coordinator's
``Welcome`` gave it), adds what it heard to its knowledge graph and counts
its rounds in its role state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from swarm.agents import Agent, AgentContext, AgentReport, handles, message
from swarm.agents.registry import role
from swarm.config import parse_config
from swarm.knowledge import KnowledgeGraph
from swarm.runtime.population import build_population
from tests.conftest import free_base_port

ROOT = Path(__file__).resolve().parent.parent
HOSTS = {"host-0": ["c-0", "c-2"], "host-1": ["c-1", "c-3"]}


@message("StateTestPing")
class Ping(msgspec.Struct, frozen=True):
    round: int


@message("StateTestPong")
class Pong(msgspec.Struct, frozen=True):
    fact: str


class Counter(Agent):
    """Counts its rounds (role state); each round asks its partner and files the answer."""

    __slots__ = ("count",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.count = 0

    async def local_update(self, ctx: AgentContext) -> AgentReport:
        n = int(self.id.split("-")[1])
        partner = f"c-{(n + 1) % 4}"  # always an agent of the other host
        pong = await ctx.ask(partner, Ping(round=ctx.round), timeout=30)
        self.count += 1
        if "root" not in ctx.kg.graph:
            ctx.kg.add("root", "goal", text="learn from the others")
        ctx.kg.add(f"r{ctx.round}", "fact", parent="root", text=pong.fact)
        return AgentReport(agent_id=self.id, score=self.count / 10, metrics={"score": 0.0})

    @handles(Ping)
    async def on_ping(self, ctx: AgentContext, sender: str, ping: Ping) -> Pong:
        return Pong(fact=f"{self.id} told {sender} in round {ping.round}")

    def save_state(self) -> Any:
        return {"count": self.count}

    def load_state(self, state: Any) -> None:
        self.count = int(state["count"])


def serve(config_path: str, host_id: str) -> None:
    """A host process holding its agents of the counter role."""
    from swarm.runtime.host import Host
    from swarm.transport.loop import run_loop
    from swarm.transport.topology import address_book

    role("test_state_counter")(Counter)
    config = parse_config(json.loads(Path(config_path).read_text()))
    index = sorted(HOSTS).index(host_id)
    specs = [dataclasses.replace(s, role="test_state_counter")
             for s in build_population(config) if s.agent_id in HOSTS[host_id]]
    peer = address_book(config.transport, 2).peer(index)
    run_loop(Host(host_id, config, specs, config.adapter_store, peer_address=peer).run())


def raw_config(tmp: Path, rounds: int, port: int) -> dict[str, Any]:
    return {
        "swarm": {"name": "t", "rounds": rounds, "heldout": 4,
                  "lineage": str(tmp / "run" / "lineage")},
        "model": {"adapter_store": str(tmp / "adapters")},
        "agents": [{"name": "c", "count": 4, "skills": ["add"], "examples": 4,
                    "role": "learner"}],
        "matchmaker": {"kind": "random"},
        "protocol": {"name": "local"},
        "launcher": {"hosts": 2},
        "transport": {"base_port": port, "heartbeat_ms": 100, "liveness": 5},
    }


class Run:
    """The coordinator here, the two host processes as subprocesses."""

    def __init__(self, tmp: Path, raw: dict[str, Any]) -> None:
        self.path = tmp / "config.json"
        self.path.write_text(json.dumps(raw))
        self.config = parse_config(raw)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.procs = [subprocess.Popen([sys.executable, __file__, str(self.path), h], cwd=ROOT,
                                       env=env) for h in sorted(HOSTS)]

    def coordinate(self, resume: bool = False) -> dict[str, Any]:
        from swarm.runtime.coordinator import Coordinator
        from swarm.runtime.recorder import Recorder

        expected = [s.agent_id for s in build_population(self.config)]
        coordinator = Coordinator(self.config, expected, Recorder.open(self.config),
                                  resume=resume)
        summary: dict[str, Any] = asyncio.run(asyncio.wait_for(coordinator.run(), 90))
        return summary

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    made: list[Run] = []
    yield made
    for r in made:
        r.stop()


def test_agents_talk_across_hosts_and_their_state_survives_a_restart(
        tmp_path: Path, runs: list[Run]) -> None:
    from swarm.lineage.reader import LineageReader
    from swarm.lineage.repo import kg_path, messages_path, state_path

    # Prepare: a first run of two rounds
    port = free_base_port()
    runs.append(Run(tmp_path, raw_config(tmp_path, rounds=2, port=port)))
    first = runs[-1].coordinate()
    runs[-1].stop()

    # Execute: the hosts restart (new processes) and the run resumes for a third round
    runs.append(Run(tmp_path, raw_config(tmp_path, rounds=3, port=port)))
    second = runs[-1].coordinate(resume=True)

    # Assert: every agent reported every round; the counts went on from the lineage
    assert [r["unavailable"] for r in first["history"]] == [[], []]
    last = second["history"][-1]
    assert last["round"] == 2 and last["unavailable"] == []
    assert last["scores"] == {f"c-{i}": pytest.approx(0.3) for i in range(4)}
    assert last["agent_messages"] == 8  # 4 asks and their 4 answers

    lineage = LineageReader(runs[-1].config.lineage_dir)
    for i in range(4):
        agent = f"c-{i}"
        assert json.loads(lineage.show(f"agent/{agent}", state_path(agent))) == {"count": 3}
        kg = KnowledgeGraph.from_json(lineage.show(f"agent/{agent}", kg_path(agent)).decode())
        assert sorted(kg.children("root")) == ["r0", "r1", "r2"]
        partner = f"c-{(i + 1) % 4}"
        assert kg.graph.nodes["r2"]["text"] == f"{partner} told {agent} in round 2"

    log = json.loads(lineage.show("swarm", messages_path(2)))
    assert log["total"] == 8 and log["kept"] == 8
    asks = [m for m in log["messages"] if m["kind"] == "StateTestPing"]
    assert sorted((m["sender"], m["recipient"]) for m in asks) == [
        ("c-0", "c-1"), ("c-1", "c-2"), ("c-2", "c-3"), ("c-3", "c-0")]
    answers = {m["correlation_id"]: m for m in log["messages"] if m["kind"] == "StateTestPong"}
    assert all(answers[m["msg_id"]]["sender"] == m["recipient"] for m in asks)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
