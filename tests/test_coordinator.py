"""Coordinator: the round loop against hosts that lie, are slow, go silent or report nothing.

The coordinator runs in the test process on real sockets with a real lineage
(git). Every host is a real process (this file, started as ``python
tests/test_coordinator.py CONFIG HOST MODE AGENT...``) running a real
``Host``; its agents are of a test role that reports a fixed score after a
delay, so no model server is involved, and a ``forge_*`` mode answers steps
with what a misbehaving peer could send. Heartbeats are 100 ms with a
liveness of 5, so "silent" means 0.5 s without a heartbeat.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarm.agents.base import Agent, AgentReport
from swarm.agents.context import AgentContext
from swarm.config import SwarmConfig, parse_config
from swarm.errors import SwarmError
from swarm.runtime.host import Host
from swarm.runtime.population import build_population
from swarm.wire.codec import PairOutcome, Step, StepDone
from tests.conftest import free_base_port

ROOT = Path(__file__).resolve().parent.parent
GHOST = "f" * 64  # a well-formed content hash that is in no store


class FixedAgent(Agent):
    """Reports score 0.5 without an adapter, behaving as the process's ``MODE`` says."""

    __slots__ = ()
    mode = "ok"
    calls = 0

    async def local_update(self, ctx: AgentContext) -> AgentReport:
        """One local step: wait, fail or report, as the mode says."""
        mode, _, arg = type(self).mode.partition(":")
        type(self).calls += 1
        if mode == "slow":
            await asyncio.sleep(float(arg))  # the loop (and its heartbeats) keep running
        elif mode == "silent":
            time.sleep(60)  # the whole process stops answering, heartbeats included
        elif mode == "starved" or (mode == "starved_once" and type(self).calls == 1):
            time.sleep(float(arg))  # as a process the machine gives no CPU for a while
        if mode == "fail" or (mode == "fail_once" and type(self).calls <= 2):
            raise RuntimeError("the model server is gone")
        self.score = math.nan if mode == "nan" else 0.5
        adapter = GHOST if mode == "ghost_adapter" else None
        return AgentReport(agent_id=self.id, adapter=adapter, score=self.score,
                           metrics={"score": 0.5})


class ForgingHost(Host):
    """A host that answers steps with reports and outcomes it was never asked for."""

    mode = ""

    async def step(self, step: Step) -> StepDone:
        """The real answer, then the forgery of ``mode`` on top."""
        if self.mode == "crash_step":
            raise SwarmError(f"cannot run the {step.phase} step")
        done = await super().step(step)
        if self.mode == "forge_foreign" and step.phase == "local":
            extra = [*done.reports, msgspec_copy(done.reports[0], agent_id="good-0")]
            return StepDone(sender=self.host_id, phase="local", reports=extra)
        if self.mode == "forge_pair" and step.phase == "exchange":
            a = step.assignments[0]
            stray = PairOutcome(teacher=a.student, student=a.teacher, before=0.5, after=0.5)
            return StepDone(sender=self.host_id, phase="exchange",
                            outcomes=[*done.outcomes, stray])
        return done


def msgspec_copy(item: Any, **changes: Any) -> Any:
    """A copy of a frozen Struct with ``changes``."""
    import msgspec

    return msgspec.structs.replace(item, **changes)


def serve(config_path: str, host_id: str, mode: str, agents: list[str]) -> None:
    """The host process: a real ``Host`` holding ``agents`` of the test role."""
    from swarm.agents.registry import role
    from swarm.transport.loop import run_loop

    role("test_coordinator_fixed")(FixedAgent)
    FixedAgent.mode = mode
    ForgingHost.mode = mode
    config = parse_config(json.loads(Path(config_path).read_text()))
    specs = [dataclasses.replace(s, role="test_coordinator_fixed")
             for s in build_population(config) if s.agent_id in agents]
    host = ForgingHost(host_id, config, specs, config.adapter_store)
    run_loop(host.run())


def _raw_config(tmp: Path, good: int, bad: int, rounds: int = 1) -> dict[str, Any]:
    return {
        "swarm": {"name": "t", "rounds": rounds, "heldout": 4,
                  "lineage": str(tmp / "run" / "lineage")},
        "model": {"adapter_store": str(tmp / "adapters")},
        "agents": [{"name": "good", "count": good, "skills": ["add"], "examples": 4},
                   {"name": "bad", "count": bad, "skills": ["add"], "examples": 4}],
        "matchmaker": {"kind": "random"},
        "protocol": {"name": "knexa"},
        "transport": {"base_port": free_base_port(), "heartbeat_ms": 100, "liveness": 5},
    }


class Swarm:
    """A coordinator in this process and host processes, one per ``(host, mode, agents)``."""

    def __init__(self, tmp: Path, raw: dict[str, Any]) -> None:
        self.tmp = tmp
        self.path = tmp / "config.json"
        self.path.write_text(json.dumps(raw))
        self.config: SwarmConfig = parse_config(raw)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start_host(self, host: str, mode: str, agents: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.procs.append(subprocess.Popen(
            [sys.executable, __file__, str(self.path), host, mode, *agents], cwd=ROOT, env=env))

    def run(self, during: Any = None, **kwargs: Any) -> Any:
        """Run the coordinator to the end; returns it and its summary.

        With ``during`` (an async function of the coordinator) that runs alongside,
        and its result comes third.
        """
        from swarm.runtime.coordinator import Coordinator
        from swarm.runtime.recorder import Recorder

        expected = [s.agent_id for s in build_population(self.config)]
        coordinator = Coordinator(self.config, expected, Recorder.open(self.config), **kwargs)

        async def main() -> Any:
            if during is None:
                return coordinator, await coordinator.run()
            summary, extra = await asyncio.gather(coordinator.run(), during(coordinator))
            return coordinator, summary, extra

        return asyncio.run(asyncio.wait_for(main(), 60))

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[Any]:
    """Builds a ``Swarm`` in ``tmp_path`` (call it with the raw config) and stops its hosts."""
    made: list[Swarm] = []

    def make(raw: dict[str, Any]) -> Swarm:
        made.append(Swarm(tmp_path, raw))
        return made[-1]

    yield make
    for s in made:
        s.stop()


@pytest.mark.parametrize(("mode", "why"), [
    ("nan", "$.reports[0].score"),  # the wire refuses a NaN before any report check
    ("ghost_adapter", "not in the adapter store"),
    ("forge_foreign", "not asked for"),
])
def test_a_bad_report_drops_only_that_hosts_results(swarm: Any, tmp_path: Path, mode: str,
                                                    why: str) -> None:
    # Prepare: host-0 is honest, host-1 sends one bad local report
    s = swarm(_raw_config(tmp_path, good=2, bad=2))
    s.start_host("host-0", "ok", ["good-0", "good-1"])
    s.start_host("host-1", mode, ["bad-0", "bad-1"])

    # Execute
    coordinator, summary = s.run()

    # Assert: the round is committed with host-0's results only, and says why
    from swarm.lineage.reader import LineageReader
    from swarm.lineage.repo import round_path

    record = json.loads(LineageReader(s.config.lineage_dir).show("swarm", round_path(0)))
    assert record == summary["history"][0]
    assert set(record["scores"]) == {"good-0", "good-1"}
    assert record["unavailable"] == ["bad-0", "bad-1"]
    assert list(record["rejected"]) == ["host-1"] and why in record["rejected"]["host-1"]
    assert {a for pair in record["pairs"] for a in pair} <= {"good-0", "good-1"}
    assert coordinator.status()["last"]["rejected"] == record["rejected"]  # `swarm status`


def test_swarm_status_names_the_rejected_host(swarm: Any, tmp_path: Path) -> None:
    # Prepare: host-1 sends a NaN score every round; host-0 takes 4 s a step
    s = swarm(_raw_config(tmp_path, good=2, bad=2, rounds=2))
    s.start_host("host-0", "slow:4", ["good-0", "good-1"])
    s.start_host("host-1", "nan", ["bad-0", "bad-1"])

    async def status_during_round_1(coordinator: Any) -> str:
        while not coordinator.history:
            await asyncio.sleep(0.05)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "swarm", "status", str(s.path), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return out.decode()

    # Execute: `swarm status`, a real CLI process, while round 1 runs
    _, _, printed = s.run(during=status_during_round_1)

    # Assert: it names host-1 and why, for the last round and for the current one
    assert "results of host-1 rejected: local step: answer refused by the wire" in printed
    assert "reports[0].score" in printed
    assert "round 1: results of host-1 rejected" in printed


def test_the_event_stream_carries_typed_events_under_their_topic(swarm: Any,
                                                                 tmp_path: Path) -> None:
    # Prepare: a swarm whose one round takes 2 s, so a subscriber is connected before it ends
    s = swarm(_raw_config(tmp_path, good=1, bad=1))
    s.start_host("host-0", "slow:2", ["good-0", "bad-0"])

    async def subscriber(coordinator: Any) -> list[Any]:
        from swarm.transport.peers import TransportOptions
        from swarm.transport.pubsub import Subscriber
        from swarm.transport.topology import EVENTS_OFFSET, endpoint

        got: list[Any] = []
        address = endpoint(s.config.transport, EVENTS_OFFSET)
        async with Subscriber("watcher", address, options=TransportOptions()) as events:
            while not any(topic == "scores" for topic, _ in got):
                for inc in await events.recv_batch(timeout=30):
                    got.append((inc.peer.decode(), inc.msg))
        return got

    # Execute
    _, summary, got = s.run(during=subscriber)

    # Assert: every event is an Event whose topic is the stream's, with the round as its body
    from swarm.wire.codec import Event

    assert all(isinstance(msg, Event) and msg.topic == topic for topic, msg in got)
    scores = next(json.loads(msg.json) for topic, msg in got if topic == "scores")
    assert scores == summary["history"][0]


def test_a_malformed_join_is_refused_and_the_coordinator_keeps_serving(swarm: Any,
                                                                       tmp_path: Path) -> None:
    # Prepare: a swarm whose one round takes 3 s, and a stranger with a malformed Join
    s = swarm(_raw_config(tmp_path, good=1, bad=1))
    s.start_host("host-0", "slow:3", ["good-0", "bad-0"])

    async def stranger(coordinator: Any) -> tuple[str, Any]:
        from swarm.errors import RemoteError
        from swarm.transport.peers import Client, TransportOptions
        from swarm.transport.topology import endpoint
        from swarm.wire.codec import Join, Status

        while not coordinator.members:
            await asyncio.sleep(0.05)
        address = endpoint(s.config.transport, 0)
        async with Client("stranger", address, TransportOptions(heartbeat_ms=100)) as cli:
            bad = Join(sender="host-9", agent_ids=["good-0"], process="coordinator")
            try:
                await cli.request(bad, timeout=10)
                refused = ""
            except RemoteError as exc:
                refused = exc.reason
            return refused, (await cli.request(Status(sender="stranger"), timeout=10)).msg

    # Execute
    _, summary, (refused, status) = s.run(during=stranger)

    # Assert: an Error answered the Join, Status was still answered, the round completed
    assert "is not 'host'" in refused
    assert json.loads(status.json)["members"] == {"host-0": ["good-0", "bad-0"]}
    assert set(summary["history"][0]["scores"]) == {"good-0", "bad-0"}


def test_an_outcome_for_a_pair_never_assigned_is_refused(swarm: Any, tmp_path: Path) -> None:
    # Prepare: 4 agents, 2 random pairs, so host-1 (3 of them) is a student's host
    s = swarm(_raw_config(tmp_path, good=1, bad=3))
    s.start_host("host-0", "ok", ["good-0"])
    s.start_host("host-1", "forge_pair", ["bad-0", "bad-1", "bad-2"])

    # Execute
    _, summary = s.run()

    # Assert: host-1's exchange results are dropped, host-0's kept, the round committed
    record = summary["history"][0]
    students = {student for _, student in record["pairs"]}
    assert students & {"bad-0", "bad-1", "bad-2"}
    assert "never assigned" in record["rejected"]["host-1"]
    assert {r["student"] for r in record["rewards"]} == students - {"bad-0", "bad-1", "bad-2"}
    assert all(record["exchange_failures"][a].startswith("host host-1 rejected")
               for a in students - {"good-0"})
    assert set(record["scores"]) == {"good-0", "bad-0", "bad-1", "bad-2"}


def test_a_slow_host_is_waited_for(swarm: Any, tmp_path: Path) -> None:
    # Prepare: host-1 takes 3 s, six liveness timeouts, to step its agents
    s = swarm(_raw_config(tmp_path, good=2, bad=2))
    s.start_host("host-0", "ok", ["good-0", "good-1"])
    s.start_host("host-1", "slow:3", ["bad-0", "bad-1"])

    # Execute
    _, summary = s.run()

    # Assert: nobody was dropped
    record = summary["history"][0]
    assert record["unavailable"] == [] and record["rejected"] == {}
    assert set(record["scores"]) == {"good-0", "good-1", "bad-0", "bad-1"}


def test_a_host_starved_for_a_while_is_waited_for(swarm: Any, tmp_path: Path) -> None:
    # Prepare: host-1 sends nothing for 2 s (four liveness timeouts), less than the silence allowed
    s = swarm(_raw_config(tmp_path, good=2, bad=2))
    s.start_host("host-0", "ok", ["good-0", "good-1"])
    s.start_host("host-1", "starved:2", ["bad-0", "bad-1"])

    # Execute
    _, summary = s.run(silence_s=10.0)

    # Assert: its results are in the round
    record = summary["history"][0]
    assert record["unavailable"] == []
    assert set(record["scores"]) == {"good-0", "good-1", "bad-0", "bad-1"}


def test_a_silent_host_is_dropped_and_the_round_goes_on(swarm: Any, tmp_path: Path) -> None:
    # Prepare: host-1's process stops answering anything, heartbeats included
    s = swarm(_raw_config(tmp_path, good=2, bad=2))
    s.start_host("host-0", "ok", ["good-0", "good-1"])
    s.start_host("host-1", "silent", ["bad-0", "bad-1"])

    # Execute
    coordinator, summary = s.run(silence_s=1.0)

    # Assert: the round is committed without host-1, which is no longer a member
    record = summary["history"][0]
    assert set(record["scores"]) == {"good-0", "good-1"}
    assert record["unavailable"] == ["bad-0", "bad-1"]
    assert list(coordinator.members) == ["host-0"]


def test_a_host_whose_step_fails_answers_and_is_dropped_from_the_round(swarm: Any,
                                                                       tmp_path: Path) -> None:
    # Prepare: host-1's step itself raises (not one agent's work: the whole step)
    s = swarm(_raw_config(tmp_path, good=2, bad=2))
    s.start_host("host-0", "ok", ["good-0", "good-1"])
    s.start_host("host-1", "crash_step", ["bad-0", "bad-1"])

    # Execute: the coordinator is not left waiting for an answer that never comes
    _, summary = s.run()

    # Assert
    record = summary["history"][0]
    assert set(record["scores"]) == {"good-0", "good-1"}
    assert record["unavailable"] == ["bad-0", "bad-1"]


def test_a_dropped_host_heard_again_is_back_the_next_round(swarm: Any, tmp_path: Path) -> None:
    # Prepare: host-1 is silent for 3 s in round 0 only, longer than the 1 s allowed;
    # host-0 takes 5 s a step, so host-1 is heard again before round 1 starts
    s = swarm(_raw_config(tmp_path, good=2, bad=2, rounds=2))
    s.start_host("host-0", "slow:5", ["good-0", "good-1"])
    s.start_host("host-1", "starved_once:3", ["bad-0", "bad-1"])

    # Execute
    _, summary = s.run(silence_s=1.0)

    # Assert: dropped from round 0, stepped again in round 1
    first, second = summary["history"]
    assert first["unavailable"] == ["bad-0", "bad-1"]
    assert second["unavailable"] == []
    assert set(second["scores"]) == {"good-0", "good-1", "bad-0", "bad-1"}


def test_a_round_nobody_reported_is_not_committed(swarm: Any, tmp_path: Path) -> None:
    # Prepare: every agent of the only host fails its local step, every time
    s = swarm(_raw_config(tmp_path, good=1, bad=1))
    s.start_host("host-0", "fail", ["good-0", "bad-0"])

    # Execute
    with pytest.raises(SwarmError, match="no agent reported in 2 attempt") as err:
        s.run(round_attempts=2)

    # Assert: the error says why, and the lineage holds no round
    from swarm.runtime.recorder import Recorder

    assert "the model server is gone" in str(err.value)
    recorder = Recorder.open(s.config)
    assert recorder.next_round() == 0 and recorder.history() == []
    recorder.close()


def test_a_round_nobody_reported_is_retried(swarm: Any, tmp_path: Path) -> None:
    # Prepare: both agents fail the first attempt only
    s = swarm(_raw_config(tmp_path, good=1, bad=1))
    s.start_host("host-0", "fail_once", ["good-0", "bad-0"])

    # Execute
    _, summary = s.run(round_attempts=2)

    # Assert: round 0 is the second attempt's, with every agent
    record = summary["history"][0]
    assert record["unavailable"] == [] and set(record["scores"]) == {"good-0", "bad-0"}



def _pairs_of(s: Any, resume: bool = False) -> list[Any]:
    # one host holds every agent: a resumed run starts with the first host that joins
    s.start_host("host-0", "ok", [f"{g}-{i}" for g in ("good", "bad") for i in range(4)])
    _, summary = s.run(resume=resume)
    s.stop()
    return [r["pairs"] for r in summary["history"]]


def test_a_resumed_coordinator_continues_the_lineages_matchmaker(swarm: Any,
                                                                  tmp_path: Path) -> None:
    # Prepare: the pairs of an uninterrupted two-round run, and a run cut after round 0
    whole = _pairs_of(swarm(_raw_config(tmp_path / "whole", good=4, bad=4, rounds=2)))
    cut = _pairs_of(swarm(_raw_config(tmp_path / "cut", good=4, bad=4, rounds=1)))

    # Execute: the cut run resumed to two rounds
    resumed = _pairs_of(swarm(_raw_config(tmp_path / "cut", good=4, bad=4, rounds=2)),
                        resume=True)

    # Assert: the matchmaker came back from the lineage, generator included, so round 1
    # pairs as in the uninterrupted run (a new matchmaker would repeat round 0's draw)
    assert cut == whole[:1] and resumed == whole
    assert whole[1] != whole[0]


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
