"""The evogit service's LLM parts against a real model server: the judge, hunks the LLM takes.

The session's model server (``model_server`` in conftest: a real vLLM engine on the
tiny model) answers the coordinator's requests through ``ModelCaller``, the
client the coordinator gives its protocol's service. Structured output holds
the tiny model to the verdict's and the side's schema, so the mechanics (a
verdict that decides (1+1) selection, a merge whose hunk the LLM chose) are
what is tested, not the model's taste.
"""

from __future__ import annotations

import asyncio
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
from tests.test_evogit import AGENTS, PARAMS, SCORE, edit


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


def address_of(model_server: list[str]) -> str:
    return next(o.split("=", 1)[1] for o in model_server if o.startswith("model.server="))


def test_the_judge_decides_selection(tmp_path: Path, model_server: list[str]) -> None:
    evo, caller = service(tmp_path, address_of(model_server), evaluator="judge",
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


def test_a_conflicting_hunk_is_taken_by_the_llm(tmp_path: Path, model_server: list[str]) -> None:
    evo, caller = service(tmp_path, address_of(model_server), resolve="llm",
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
