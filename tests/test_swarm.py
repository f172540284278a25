"""The swarm end to end: real processes, real model server, real training, real lineage.

One model server (a real vLLM engine) is shared by the module's runs through
``model.server``; every run starts its own coordinator and hosts as
subprocesses through the local launcher.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from swarm.config import SwarmConfig, load_config
from swarm.lineage.reader import LineageReader
from swarm.lineage.repo import LATEST_ROUND_PATH, round_path
from swarm.runtime.events import RoundFinished, RunEvent, RunFinished
from swarm.runtime.local_launcher import LocalLauncher
from swarm.runtime.run import ask_status, run_swarm
from tests.conftest import SMALL, free_base_port

pytestmark = pytest.mark.slow



def _config(tmp_path: Path, shared: list[str], *extra: str) -> SwarmConfig:
    return load_config(SMALL, [*shared, f"swarm.lineage={tmp_path / 'run' / 'lineage'}",
                               f"transport.base_port={free_base_port()}", *extra])


def _quiet(config: SwarmConfig, resume: bool = False) -> dict[str, Any]:
    """A run's summary, once its events were checked against it."""
    events: list[RunEvent] = []
    summary = run_swarm(config, resume=resume, progress=events.append)
    assert summary is not None
    rounds = [e.record for e in events if isinstance(e, RoundFinished)]
    assert rounds and rounds == summary["history"][-len(rounds):]  # every round, as committed
    assert isinstance(events[-1], RunFinished) and events[-1].summary == summary
    return dict(summary)


def _git(lineage: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(lineage), *args], capture_output=True, text=True,
                          check=True).stdout


#: LoRA steps a round for the learning test: with 100, seed 0 measured a mean held-out
#: score of 0.000 after round 0's local step and 0.031 after round 1 (with 20, every
#: score stays 0.000: nothing to compare).
LEARN_STEPS = 100


def test_rounds_learn_and_land_in_the_lineage(tmp_path: Path, model_server: list[str]) -> None:
    config = _config(tmp_path, model_server, "swarm.seed=0",
                     f"agents.0.lora.steps={LEARN_STEPS}", f"agents.1.lora.steps={LEARN_STEPS}")

    summary = _quiet(config)

    history = summary["history"]
    reader = LineageReader(config.lineage_dir)
    assert [r["round"] for r in history] == [0, 1]
    assert all(r["unavailable"] == [] and r["rejected"] == {} for r in history)
    round0 = history[0]["local_scores"]
    assert history[-1]["mean_score"] > sum(round0.values()) / len(round0)  # it learnt
    for rnd in (0, 1):
        record = json.loads(reader.show("swarm", round_path(rnd)))
        assert record["pairs"] == history[rnd]["pairs"]
        assert len(record["rewards"]) == len(record["pairs"])
    state = json.loads(reader.show("swarm", "matchmaker/state.json"))
    assert state  # the matchmaker's state rides with every round
    for agent in ("arith-0", "arith-1", "text-0", "text-1"):
        pointer = json.loads(reader.show(f"agent/{agent}", f"agents/{agent}/adapter.json"))
        assert len(pointer["sha256"]) == 64
        assert reader.adapters is not None and reader.adapters.has(pointer["sha256"])
        pointers = [json.loads(reader.show(e.commit, f"agents/{agent}/adapter.json"))
                    for e in reader.log(agent)]
        versions = {p["sha256"] for p in pointers}
        assert len(versions) >= 2  # trained every round: a new adapter version each time
        assert all(p["sha256"] not in p["parents"] for p in pointers)  # never its own parent
    accepted = [r for rec in history for r in rec["rewards"] if r["accepted"]]
    merges = _git(config.lineage_dir, "rev-list", "--merges", "--all").split()
    assert len(merges) == len(accepted)
    assert "fsck" not in _git(config.lineage_dir, "fsck", "--strict")


def test_host_killed_mid_round_is_restarted_and_resumes(tmp_path: Path,
                                                        model_server: list[str]) -> None:
    config = _config(tmp_path, model_server, "launcher.hosts=2", "swarm.rounds=3")
    launcher = LocalLauncher(config)
    launcher.prepare()
    launcher.start()
    try:
        _wait_for_round(config, 0)
        victim = launcher.pids()["host-1"]
        os.killpg(victim, signal.SIGKILL)
        code = _wait_for_exit(launcher)
    finally:
        launcher.stop()

    assert code == 0
    assert launcher.children["host-1"].restarts == 1
    reader = LineageReader(config.lineage_dir)
    records = [json.loads(reader.show("swarm", round_path(r))) for r in range(3)]
    host1 = set(json.loads((config.run_dir / "hosts.json").read_text())[1])
    assert host1 & set(records[1]["unavailable"])  # the round went on without them
    assert set(records[1]["scores"]) == set(records[0]["scores"]) - host1
    assert host1 <= set(records[2]["scores"])  # back after the restart
    for agent in host1:  # resumed from the last committed adapter, not from scratch
        log = reader.log(agent)
        pointers = [json.loads(reader.show(e.commit, f"agents/{agent}/adapter.json"))
                    for e in log]
        assert pointers[0]["parents"], f"{agent} restarted without its committed adapter"


def test_coordinator_killed_then_resumed(tmp_path: Path, model_server: list[str]) -> None:
    config = _config(tmp_path, model_server, "swarm.rounds=3")
    launcher = LocalLauncher(config)
    launcher.prepare()
    launcher.start()
    try:
        _wait_for_round(config, 0)
        status = asyncio.run(ask_status(config))  # what `swarm status` prints
        assert list(status["members"]) == ["host-0"]
        assert status["round"] >= 1 and status["last"]["round"] >= 0
        os.kill(launcher.pids()["coordinator"], signal.SIGKILL)
        assert _wait_for_exit(launcher) == -signal.SIGKILL
    finally:
        launcher.stop()
    reader = LineageReader(config.lineage_dir)
    committed = json.loads(reader.show("swarm", LATEST_ROUND_PATH))["round"]
    state_before = json.loads(reader.show("swarm", "matchmaker/state.json"))

    from swarm.runtime.coordinator import Coordinator
    from swarm.runtime.recorder import Recorder

    restored = Recorder.open(config)
    coordinator = Coordinator(config, [], restored, resume=True)
    assert coordinator.matchmaker.state() == state_before
    assert coordinator.round == restored.next_round() == committed + 1
    restored.close()
    summary = _quiet(config, resume=True)

    assert [r["round"] for r in summary["history"]] == [0, 1, 2]
    assert summary["history"][committed] == json.loads(
        reader.show("swarm", round_path(committed)))


def test_ctrl_c_stops_every_process_and_keeps_what_was_committed(
        tmp_path: Path, model_server: list[str]) -> None:
    # Prepare: `swarm run` as a user starts it, a round committed
    config = _config(tmp_path, model_server, "swarm.rounds=50")
    sets = [f"--set={item}" for item in [*model_server, f"swarm.lineage={config.lineage_dir}",
                                         f"transport.base_port={config.transport.base_port}",
                                         "swarm.rounds=50"]]
    swarm = Path(sys.executable).with_name("swarm")
    cli = subprocess.Popen([str(swarm), "run", str(SMALL), *sets], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        assert cli.stdout is not None
        shown = []
        while not shown or not shown[-1].startswith("round 0 mean score"):
            shown.append(cli.stdout.readline())  # pytest-timeout bounds the wait
            assert shown[-1], "".join(shown)  # the run ended before round 0 was shown
        # Execute: Ctrl-C
        cli.send_signal(signal.SIGINT)
        rest, _ = cli.communicate(timeout=120)
        out = "".join(shown) + rest
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()

    # Assert: exit 130, said so, no process of the run left, the committed rounds kept
    assert cli.returncode == 130, out
    assert "interrupted: stopping every process; committed rounds are kept" in out
    assert _processes_of(config.run_dir) == []
    latest = json.loads(LineageReader(config.lineage_dir).show("swarm", LATEST_ROUND_PATH))
    assert latest["round"] >= 0
    assert "fsck" not in _git(config.lineage_dir, "fsck", "--strict")


def _processes_of(run_dir: Path) -> list[str]:
    """Command lines of live processes started for ``run_dir``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(run_dir).encode() in argv:
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def _wait_for_round(config: SwarmConfig, rnd: int, timeout: float = 600.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (config.lineage_dir / "HEAD").exists():
            try:
                latest = json.loads(LineageReader(config.lineage_dir).show("swarm",
                                                                          LATEST_ROUND_PATH))
                if latest["round"] >= rnd:
                    return
            except Exception:  # not committed yet
                pass
        time.sleep(0.5)
    raise TimeoutError(f"round {rnd} not committed within {timeout} s")


def _wait_for_exit(launcher: LocalLauncher, timeout: float = 900.0) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        code = launcher.poll()
        if code is not None:
            return code
        time.sleep(0.3)
    raise TimeoutError("the swarm did not finish")


