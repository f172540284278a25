"""``swarm chat RUN AGENT "..."``: a message to an agent of a running swarm, and its reply.

Real processes throughout: the coordinator is the run's own process entry
(``python -m swarm.runtime.process coordinator``), the hosts are processes too,
and the CLI talks to them over real ZeroMQ sockets. One swarm's hosts (this
file as a script) hold agents of an echo role whose round never ends, so the
swarm is mid-round while the tests talk to it; another runs the built-in
``learner`` role on a real model server (tiny model, ``hf`` backend), whose
reply is its LLM's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from swarm.agents import Agent, AgentContext, AgentReport
from swarm.cli.main import main
from swarm.config import SwarmConfig, parse_config, to_dict
from swarm.errors import SwarmError
from tests.conftest import free_base_port

ROOT = Path(__file__).resolve().parent.parent
HOSTS = [["e-0", "e-2"], ["e-1", "e-3"]]


class Echo(Agent):
    """Echoes a chat, says who wrote; ``slow`` takes a minute, ``raise`` raises."""

    __slots__ = ()

    async def on_chat(self, ctx: AgentContext, sender: str, content: str) -> str | None:
        self.messages_received += 1
        if content == "slow":
            await asyncio.sleep(60)
        if content == "raise":
            raise ValueError("asked to fail")
        return f"{self.id} heard {sender}: {content}"

    async def local_update(self, ctx: AgentContext) -> AgentReport:
        await asyncio.sleep(3600)  # the round goes on while the tests talk to the swarm
        return AgentReport(agent_id=self.id)


def serve(run_dir: str, index: str) -> None:
    """A host process holding its agents of the echo role."""
    import dataclasses

    from swarm.agents.registry import role
    from swarm.runtime.host import Host
    from swarm.runtime.population import build_population
    from swarm.transport.loop import run_loop
    from swarm.transport.topology import address_book

    role("test_chat_echo")(Echo)
    config = parse_config(json.loads((Path(run_dir) / "config.json").read_text()))
    mine = set(HOSTS[int(index)])
    specs = [dataclasses.replace(s, role="test_chat_echo")
             for s in build_population(config) if s.agent_id in mine]
    peer = address_book(config.transport, 2).peer(int(index))
    run_loop(Host(f"host-{index}", config, specs, config.adapter_store, peer_address=peer).run())


class Swarm:
    """A run directory, its config file, and the processes of the run."""

    def __init__(self, tmp: Path, raw: dict[str, Any]) -> None:
        self.run_dir = tmp / "run"
        (self.run_dir / "logs").mkdir(parents=True)
        self.file = tmp / "swarm.yaml"
        self.file.write_text(yaml.safe_dump(raw))
        self.config: SwarmConfig = parse_config(raw)
        (self.run_dir / "config.json").write_bytes(msgspec.json.encode(to_dict(self.config)))
        (self.run_dir / "hosts.json").write_text(json.dumps(HOSTS))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *argv: str) -> None:
        log = open(self.run_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 (the child's)
        self.procs[name] = subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
        log.close()

    def process(self, kind: str, *extra: str) -> None:
        self.start(kind, "-m", "swarm.runtime.process", kind, "--run-dir", str(self.run_dir),
                   *extra)

    def wait_for(self, agents: set[str], timeout: float = 120.0) -> None:
        """Until the coordinator places ``agents`` (their hosts joined)."""
        from swarm.runtime.run import ask_status, run_sync

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                members = run_sync(ask_status(self.config, timeout=2.0))["members"]
                if agents <= {a for held in members.values() for a in held}:
                    return
            except SwarmError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{agents} never joined; logs in {self.run_dir / 'logs'}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def raw_config(tmp: Path, port: int, **model: Any) -> dict[str, Any]:
    return {
        "swarm": {"name": "chat-t", "rounds": 2, "heldout": 2,
                  "lineage": str(tmp / "run" / "lineage")},
        "model": {"adapter_store": str(tmp / "adapters"), **model},
        "agents": [{"name": "e", "count": 4, "skills": ["add"], "examples": 4}],
        "matchmaker": {"kind": "random"},
        "protocol": {"name": "local"},
        "launcher": {"hosts": 2},
        # silence_s: a stopped host keeps its place (the "unreachable" test stops one)
        "transport": {"base_port": port, "heartbeat_ms": 100, "liveness": 5, "silence_s": 300},
    }


@pytest.fixture(scope="module")
def echo_swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    """A swarm mid-round: the coordinator process and two echo hosts."""
    tmp = tmp_path_factory.mktemp("echo")
    swarm = Swarm(tmp, raw_config(tmp, free_base_port()))
    try:
        swarm.process("coordinator")
        for index in ("0", "1"):
            swarm.start(f"host-{index}", __file__, str(swarm.run_dir), index)
        swarm.wait_for({a for held in HOSTS for a in held})
        yield swarm
    finally:
        swarm.stop()


def chat(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["chat", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_chat_reaches_an_agent_on_either_host_and_prints_its_reply(
        echo_swarm: Swarm, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute: by the config file, and by the run directory
    by_file = chat(capsys, str(echo_swarm.file), "e-1", "hello there", "--as", "ann")
    by_dir = chat(capsys, str(echo_swarm.run_dir), "e-2", "hi", "--as", "bob")

    # Assert: each agent's own reply, to the user who wrote
    assert by_file == (0, "e-1 heard user:ann: hello there\n", "")
    assert by_dir == (0, "e-2 heard user:bob: hi\n", "")


def test_an_unknown_agent_is_one_clear_line_and_exit_code_2(echo_swarm: Swarm) -> None:
    # Execute: the installed command line, in a process of its own
    done = subprocess.run([sys.executable, "-m", "swarm", "chat", str(echo_swarm.file), "e0",
                           "hi"], cwd=ROOT, capture_output=True, text=True, timeout=120)

    # Assert
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "swarm: error: no agent 'e0' on any live host of swarm 'chat-t'; did you mean 'e-0'? "
        "(its agents: e-0, e-1, e-2, e-3)"]


def test_a_reply_too_slow_is_a_timeout_and_the_host_keeps_serving(
        echo_swarm: Swarm, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute: e-0 takes a minute; then its host's other agent, e-2
    slow = chat(capsys, str(echo_swarm.file), "e-0", "slow", "--timeout", "2", "--as", "ann")
    after = chat(capsys, str(echo_swarm.file), "e-2", "still there?", "--as", "ann")

    # Assert
    assert slow[0] == 2 and slow[1] == ""
    assert slow[2] == ("swarm: error: e-0 (on host-0) did not reply within 2 s "
                       "(--timeout to wait longer)\n")
    assert after == (0, "e-2 heard user:ann: still there?\n", "")


def test_an_on_chat_that_raises_is_an_error_and_the_agent_answers_the_next(
        echo_swarm: Swarm, capsys: pytest.CaptureFixture[str]) -> None:
    failed = chat(capsys, str(echo_swarm.file), "e-3", "raise")
    after = chat(capsys, str(echo_swarm.file), "e-3", "again", "--as", "ann")
    assert failed[0] == 2 and failed[1] == ""
    assert failed[2] == "swarm: error: e-3's on_chat raised ValueError: asked to fail\n"
    assert after == (0, "e-3 heard user:ann: again\n", "")


def test_a_host_that_does_not_answer_is_named(echo_swarm: Swarm,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: host-1 stops (its place in the swarm kept: silence_s is long)
    host = echo_swarm.procs["host-1"]
    os.killpg(host.pid, signal.SIGSTOP)
    try:
        # Execute
        code, out, err = chat(capsys, str(echo_swarm.file), "e-1", "hi")
    finally:
        os.killpg(host.pid, signal.SIGCONT)

    # Assert
    address = f"tcp://127.0.0.1:{echo_swarm.config.transport.base_port + 11}"
    assert (code, out) == (2, "")
    assert err == (f"swarm: error: e-1's host host-1 does not answer at {address} "
                   f"(it may have stopped; see swarm status)\n")


def test_no_running_swarm_is_one_clear_line(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    port = free_base_port()
    file = tmp_path / "swarm.yaml"
    file.write_text(yaml.safe_dump(raw_config(tmp_path, port)))
    code, out, err = chat(capsys, str(file), "e-0", "hi")
    assert (code, out) == (2, "")
    assert err.startswith(f"swarm: error: no swarm answers at tcp://127.0.0.1:{port}: "
                          f"is swarm 'chat-t' running?")
    missing = chat(capsys, str(tmp_path), "e-0", "hi")  # a directory that is not a run's
    assert missing[0] == 2 and "not a run directory (no readable config.json" in missing[2]


def test_a_built_in_role_answers_with_its_llm(tmp_path: Path, tiny_model: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from swarm.agents.base import CHAT_MAX_TOKENS
    from swarm.agents.roles import Learner
    from swarm.runtime.local_launcher import write_run_files
    from swarm.runtime.population import build_population
    from swarm.serving.base import MappingResolver
    from swarm.serving.hf_backend import HFBackend
    from swarm.wire.messages import GenRequest

    # Prepare: a model server, the coordinator and host-0 of two (so no round starts:
    # the coordinator waits for host-1, and the chat is the model's only request)
    swarm = Swarm(tmp_path, raw_config(tmp_path, free_base_port(), path=str(tiny_model),
                                       backend="hf"))
    write_run_files(swarm.config, swarm.run_dir)
    try:
        for kind in ("model-server", "coordinator"):
            swarm.process(kind)
        swarm.process("host", "--index", "0")
        swarm.wait_for({"e-0"})

        # Execute
        code, out, err = chat(capsys, str(swarm.run_dir), "e-2", "Who are you?", "--as", "ann")
    finally:
        swarm.stop()

    # Assert: the reply is the base model's greedy answer to what the learner asks it
    spec = next(s for s in build_population(swarm.config) if s.agent_id == "e-2")
    turns = Learner(spec).chat_turns("user:ann", "Who are you?")
    want = HFBackend(tiny_model, MappingResolver()).generate(
        [GenRequest(messages=turns, max_tokens=CHAT_MAX_TOKENS)])[0].text
    assert (code, err) == (0, "") and want.strip()
    assert out == f"{want}\n"


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
