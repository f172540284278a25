"""The evogit service's LLM parts against a real model server: the judge, hunks the LLM takes.

A real model server on SmolLM2-135M-Instruct (configs/evogit.yaml's model
section; the tiny random model rambles in JSON whitespace) answers the
coordinator's requests through ``ModelCaller``, the client the coordinator
gives its protocol's service. Structured output holds the model to the
verdict's and the side's schema, so the mechanics (a verdict that decides (1+1)
selection, a merge whose hunk the LLM chose) are what is tested, not the
model's taste.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarm.lineage.gitstore import GitLineageStore
from swarm.protocols.base import ServiceContext
from swarm.protocols.evogit import Crossover, EvogitSettings, MutationTask
from swarm.protocols.evolution import Evolution
from swarm.runtime.services import ModelCaller
from swarm.sandbox import SandboxLimits
from swarm.transport.options import TransportOptions
from tests.conftest import free_base_port
from tests.test_evogit import AGENTS, PARAMS, SCORE, edit

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "evogit.yaml"


@pytest.fixture(scope="module")
def smollm2_server(tmp_path_factory: pytest.TempPathFactory, smollm2: Path) -> Iterator[str]:
    """A model server process on SmolLM2 for this module; its address."""
    from swarm.config import load_config
    from swarm.runtime.local_launcher import start_model_server

    work = tmp_path_factory.mktemp("smollm2-server")
    port = free_base_port()
    config = load_config(CONFIG, [f"transport.base_port={port}",
                                  f"model.adapter_store={work / 'adapters'}",
                                  f"swarm.lineage={work / 'server' / 'lineage'}"])
    proc = start_model_server(config, work / "server")
    yield f"tcp://127.0.0.1:{port + 2}"
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def service(tmp: Path, address: str, **settings: Any) -> tuple[Evolution, ModelCaller]:
    seed = tmp / "seed"
    seed.mkdir()
    (seed / "score.py").write_bytes(SCORE)
    (seed / "params.txt").write_text(PARAMS)
    caller = ModelCaller(address, TransportOptions())
    store = GitLineageStore.open(tmp / "lineage", create=True)
    evo = Evolution(EvogitSettings(**{
        "artifact": "toy", "seed": str(seed), "mutable": ["params.txt"],
        "section_lines": 16, "limits": SandboxLimits(cpu_s=10, wall_s=20), **settings}),
        ServiceContext(store=store, agents=AGENTS, seed=0, rounds=4, generate=caller.generate))
    return evo, caller


def test_the_judge_decides_selection(tmp_path: Path, smollm2_server: str) -> None:
    evo, caller = service(tmp_path, smollm2_server, evaluator="judge",
                          command=["{python}", "score.py"])

    async def run() -> Any:
        try:
            await evo.start(0)
            task = await evo.handle("a", MutationTask())
            return await evo.handle("a", edit(task, "x = 0.1", "x = 0.6", "raise x"))
        finally:
            await caller.close()

    done = asyncio.run(run())

    seed = evo.artifact.seed_sha()
    assert seed is not None and evo.artifact.evaluation(seed)["fitness"] == 0.0
    assert done.status == "ok" and done.fitness in (1.0, -1.0), done.detail
    assert done.detail.split(":")[0] in ("good", "bad")
    assert done.accepted is (done.fitness == 1.0)
    assert evo.artifact.evaluation(done.child)["evaluator"] == "judge"


def test_a_conflicting_hunk_is_taken_by_the_llm(tmp_path: Path, smollm2_server: str) -> None:
    evo, caller = service(tmp_path, smollm2_server, resolve="llm",
                          command=["{python}", "score.py"])

    async def run() -> Any:
        try:
            await evo.start(0)
            ta = await evo.handle("a", MutationTask())
            tc = await evo.handle("c", MutationTask())
            await evo.handle("a", edit(ta, "x = 0.1", "x = 0.4"))
            await evo.handle("c", edit(tc, "x = 0.1", "x = 0.2"))
            return await evo.handle("a", Crossover(theirs="c"))
        finally:
            await caller.close()

    merged = asyncio.run(run())

    assert merged.status == "ok" and evo.stats["llm_hunks"] == 1
    text = evo.artifact.files(merged.child)["params.txt"].decode()
    assert ("x = 0.4" in text) != ("x = 0.2" in text) and "<<<<<<<" not in text
    assert merged.fitness == pytest.approx(0.4 if "x = 0.4" in text else 0.2)
