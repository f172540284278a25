"""The evogit protocol in a running swarm: real host processes, a person steering from the CLI.

A coordinator runs in a thread of this process, one real host process (this file
as a script) holds three agents of a scripted evolver (its ``propose`` raises
``x`` by a step that depends on the agent, instead of asking an LLM). The run
pauses for a person after round 1 (``human_every: 2``, ``human_policy: wait``);
the test promotes one version and continues it with ``swarm artifact``, then
resumes the finished run for two more rounds with ``--resume``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from swarm.agents.context import AgentContext
from swarm.agents.registry import role
from swarm.config import parse_config
from swarm.protocols.evogit import Edit, Evolver, Section
from swarm.runtime.population import build_population
from tests.conftest import free_base_port
from tests.test_evogit import PARAMS, SCORE

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ["e-0", "e-1", "e-2"]


class Scripted(Evolver):
    """Raises ``x`` by 0.05 * (agent number + 1) each round; odd agents lower it in round 0."""

    async def propose(self, ctx: AgentContext, task: Section) -> Edit | None:
        n = int(self.id.split("-")[1])
        lines = task.lines.splitlines()
        step = 0.05 * (n + 1) * (-1 if n % 2 and ctx.round == 0 else 1)
        out = [f"x = {float(line.split(' = ')[1]) + step:.3f}" if line.startswith("x = ")
               else line for line in lines]
        return Edit(lines=out, message=f"x by {step:+.2f}")


def serve(config_path: str) -> None:
    from swarm.runtime.host import Host
    from swarm.transport.loop import run_loop
    from swarm.transport.topology import address_book

    role("test_scripted_evolver")(Scripted)
    config = parse_config(json.loads(Path(config_path).read_text()))
    specs = [dataclasses.replace(s, role="test_scripted_evolver") for s in build_population(config)]
    peer = address_book(config.transport, 1).peer(0)
    run_loop(Host("host-0", config, specs, config.adapter_store, peer_address=peer).run())


def raw_config(tmp: Path, rounds: int, port: int, policy: str = "wait") -> dict[str, Any]:
    seed = tmp / "seed"
    if not seed.exists():
        seed.mkdir()
        (seed / "score.py").write_bytes(SCORE)
        (seed / "params.txt").write_text(PARAMS)
    return {
        "swarm": {"name": "evo", "rounds": rounds, "heldout": 4,
                  "lineage": str(tmp / "run" / "lineage")},
        "model": {"adapter_store": str(tmp / "adapters")},
        "agents": [{"name": "e", "count": 3, "skills": ["add"], "examples": 4,
                    "role": "evolver"}],
        "matchmaker": {"kind": "random"},
        "protocol": {"name": "evogit", "artifact": "toy", "seed": str(seed),
                     "mutable": ["params.txt"], "command": ["{python}", "score.py"],
                     "section_lines": 16, "crossover_every": 2, "human_every": 2,
                     "human_policy": policy,
                     "limits": {"cpu_s": 10, "memory_mb": 512, "processes": 16,
                                "file_mb": 8, "wall_s": 20}},
        "launcher": {"hosts": 1},
        "transport": {"base_port": port, "heartbeat_ms": 100, "liveness": 5},
    }


class Run:
    """The coordinator in a thread here, the host as a subprocess."""

    def __init__(self, tmp: Path, raw: dict[str, Any], resume: bool = False) -> None:
        self.path = tmp / "config.json"
        self.path.write_text(json.dumps(raw))
        self.config = parse_config(raw)
        self.summary: dict[str, Any] = {}
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.host = subprocess.Popen([sys.executable, __file__, str(self.path)], cwd=ROOT, env=env)
        self.thread = threading.Thread(target=self._coordinate, args=(resume,), daemon=True)
        self.thread.start()

    def _coordinate(self, resume: bool) -> None:
        from swarm.runtime.coordinator import Coordinator
        from swarm.runtime.recorder import Recorder

        expected = [s.agent_id for s in build_population(self.config)]
        coordinator = Coordinator(self.config, expected, Recorder.open(self.config), resume=resume)
        self.summary = asyncio.run(asyncio.wait_for(coordinator.run(), 400))

    def artifact(self, action: str, *args: str) -> dict[str, Any]:
        """``swarm artifact ACTION RUN ARGS...`` (status as JSON)."""
        extra = ["--json"] if action == "status" else []
        out = subprocess.run([sys.executable, "-m", "swarm", "artifact", action, str(self.path),
                              *args, *extra], capture_output=True, text=True, timeout=60,
                             cwd=ROOT)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if action == "status" else {"out": out.stdout}

    def wait_paused(self, timeout: float = 300) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                status = self.artifact("status")
            except AssertionError:  # not serving yet
                time.sleep(0.5)
                continue
            if status["paused"]:
                return status
            time.sleep(0.5)
        raise AssertionError("the run never paused for a person")

    def finish(self) -> dict[str, Any]:
        self.thread.join(450)
        assert not self.thread.is_alive(), "the coordinator did not finish"
        return self.summary

    def stop(self) -> None:
        self.host.kill()
        self.host.wait(timeout=10)


def test_a_person_promotes_and_continues_and_the_evolution_resumes(tmp_path: Path) -> None:
    from swarm.lineage.artifacts import Artifact
    from swarm.lineage.gitstore import GitLineageStore

    port = free_base_port()
    run = Run(tmp_path, raw_config(tmp_path, rounds=3, port=port))
    try:
        # Execute: the run pauses after round 1; a person promotes e-2's version, continues
        paused = run.wait_paused()
        best = max(paused["population"].items(), key=lambda kv: kv[1]["fitness"])
        promoted = run.artifact("promote", best[0])
        run.artifact("continue")
        first = run.finish()
    finally:
        run.stop()

    # Assert: the pause came after round 1 with every round's mutations evaluated and noted
    assert paused["round"] == 2 and "promoted" in promoted["out"]
    assert [r["round"] for r in first["history"]] == [0, 1, 2]
    store = GitLineageStore.open(run.config.lineage_dir, writer=False)
    art = Artifact(store, "toy")
    tag = store.resolve("toy-promoted-1")
    assert tag == best[1]["sha"]
    rounds = first["history"]
    kinds = [e["kind"] for r in rounds for e in r["artifact"]["events"]]
    assert kinds.count("mutate") == 9 and "merge" in kinds and "promote" in kinds, \
        [[(e["kind"], e.get("agent"), e.get("detail")) for e in r["artifact"]["events"]]
         for r in rounds]
    # round 0: odd agents lowered x: (1+1) kept the even agents' children only
    r0 = {e["agent"]: e["accepted"] for e in rounds[0]["artifact"]["events"]}
    assert r0 == {"e-0": True, "e-1": False, "e-2": True}
    for tip in art.individuals().values():
        assert store.git("merge-base", "--is-ancestor", tag, tip, check=False) == b""
        assert art.evaluation(tip) is not None
    graph = store.git("log", "--graph", "--all", "--oneline").decode()
    assert "mutate e-0" in graph and "merge" in graph and "promote" in graph

    # Execute: resume the finished run for two more rounds (the host is a new process)
    tips = art.individuals()
    run2 = Run(tmp_path, raw_config(tmp_path, rounds=5, port=port, policy="continue"),
               resume=True)
    try:
        second = run2.finish()
    finally:
        run2.stop()

    # Assert: rounds 3 and 4 went on from the lineage's individuals; the seed is the same one
    assert [r["round"] for r in second["history"]][-2:] == [3, 4]
    store = GitLineageStore.open(run.config.lineage_dir, writer=False)
    art = Artifact(store, "toy")
    seed = art.seed_sha()
    assert seed is not None and store.git("rev-list", "--max-parents=0", "--all").split() \
        .count(seed.encode()) == 1
    r3 = second["history"][-2]["artifact"]["events"]
    assert {e["agent"]: e["parents"][0] for e in r3 if e["kind"] == "mutate"} == tips, r3
    assert not store.fsck()



def test_steering_without_a_running_swarm_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw_config(tmp_path, rounds=1, port=free_base_port())))

    out = subprocess.run([sys.executable, "-m", "swarm", "artifact", "continue", str(path)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)

    assert out.returncode == 2
    assert "swarm: error: no swarm answers at tcp://127.0.0.1:" in out.stderr
    assert "Traceback" not in out.stderr


if __name__ == "__main__":
    serve(sys.argv[1])
