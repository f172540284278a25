"""Protocols: the bookkeeping of an exchange (the lineage parents it reports).

The host services here are a stand-in that returns fixed hashes: the test is
of ``knexa``'s own logic around them; the real services run in ``test_swarm``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swarm.agents.base import Agent, AgentSpec
from swarm.agents.context import AgentContext
from swarm.config import parse_config
from swarm.protocols.knexa import Knexa
from swarm.protocols.settings import ExchangeSettings
from swarm.runtime.host import Host
from swarm.runtime.population import build_population
from swarm.skills import Example, Skill
from swarm.wire.codec import GenOutput, GenRequest

OLD, TEACHER, NEW = "a" * 64, "b" * 64, "c" * 64


class FixedServices:
    """Training always yields ``NEW``; generation answers ``"4"``."""

    def __init__(self, skills: dict[str, Skill] | None = None) -> None:
        self.trained_from: list[str | None] = []
        self.prompts: list[str] = []
        self.swarm_skills = skills or {}

    async def train(self, agent_id: str, base_adapter: str | None,
                    examples: Sequence[Example], hyper: dict[str, Any]) -> str:
        self.trained_from.append(base_adapter)
        return NEW

    round = 0

    async def generate_requests(self, requests: Sequence[GenRequest]) -> list[GenOutput]:
        self.prompts += [r.prompt for r in requests]
        return [GenOutput(texts=["4"]) for _ in requests]

    async def fetch_adapter(self, sha: str, owner: str) -> None:
        return None

    async def merge(self, adapters: list[str], weights: list[float], method: str = "svd",
                    density: float = 0.5) -> str:
        return NEW


def test_distill_records_what_the_kept_adapter_was_made_from() -> None:
    # Prepare: a student with an adapter and no held-out set (every candidate is kept)
    knexa = Knexa(ExchangeSettings(exchange="distill", screen=False))
    student = Agent(AgentSpec(agent_id="s", skills=("add",)), adapter=OLD)
    services = FixedServices()

    # Execute
    ctx = AgentContext(student, services)  # type: ignore[arg-type]  (a model-only runtime)
    out = asyncio.run(knexa.exchange(student, "t", TEACHER, ["add"], ctx))

    # Assert: kept, and its parents are the student's old adapter and the teacher's, never itself
    assert out.accepted and out.adapter == NEW and student.adapter == NEW
    assert services.trained_from == [OLD]
    assert out.parents == (OLD, TEACHER)


def test_distill_asks_the_teacher_only_training_prompts_of_a_file_skill(tmp_path: Path) -> None:
    # Prepare: the teacher's skill is a file of 40 lines, 10 of them held out (half of 20)
    data = tmp_path / "capitals.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"capital of land{i}:", "completion": f" c{i}"})
                            + "\n" for i in range(40)))
    config = parse_config({
        "swarm": {"name": "t", "heldout": 20}, "skills": [{"name": "capitals", "file": str(data)}],
        "agents": [{"name": "teach", "skills": ["capitals"], "examples": 10},
                   {"name": "learn", "skills": ["add"], "examples": 10}]})
    specs = build_population(config)
    host = Host("host-t", config, specs, tmp_path)  # the skills a real host offers its agents
    services = FixedServices(host.swarm_skills)
    student = Agent(specs[1], adapter=OLD)
    ctx = AgentContext(student, services)  # type: ignore[arg-type]  (a model-only runtime)

    # Execute
    out = asyncio.run(Knexa(ExchangeSettings(exchange="distill", screen=False)).exchange(
        student, "teach-0", TEACHER, host.skills["teach-0"], ctx))

    # Assert: 64 prompts of the file's training share, none of its held-out ones (which
    # only the student's evaluation of the candidate asks, after them)
    asked, evaluated = services.prompts[:64], services.prompts[64:]
    held = {ex.prompt for ex in specs[0].heldout if ex.skill == "capitals"}
    lines = {f"capital of land{i}:" for i in range(40)}
    assert out.teacher == "teach-0" and evaluated == [ex.prompt for ex in specs[1].heldout]
    assert len(held) == 10 and set(asked) <= lines - held and len(set(asked)) > 20
