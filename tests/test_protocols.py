"""Protocols: the bookkeeping of an exchange (the lineage parents it reports).

The host services here are a stand-in that returns fixed hashes: the test is
of ``knexa``'s own logic around them; the real services run in ``test_swarm``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from swarm.agents.base import Agent, AgentSpec
from swarm.agents.context import AgentContext
from swarm.protocols.knexa import Knexa
from swarm.protocols.settings import ExchangeSettings
from swarm.skills import Example
from swarm.wire.codec import GenOutput, GenRequest

OLD, TEACHER, NEW = "a" * 64, "b" * 64, "c" * 64


class FixedServices:
    """Training always yields ``NEW``; generation answers ``"4"``."""

    def __init__(self) -> None:
        self.trained_from: list[str | None] = []

    async def train(self, agent_id: str, base_adapter: str | None,
                    examples: Sequence[Example], hyper: dict[str, Any]) -> str:
        self.trained_from.append(base_adapter)
        return NEW

    round = 0

    async def generate_requests(self, requests: Sequence[GenRequest]) -> list[GenOutput]:
        return [GenOutput(texts=["4"]) for _ in requests]

    async def fetch_adapter(self, sha: str, owner: str) -> None:
        return None

    async def merge(self, adapters: list[str], weights: list[float], method: str = "svd",
                    density: float = 0.5) -> str:
        return NEW


def test_distill_records_what_the_kept_adapter_was_made_from() -> None:
    # Prepare: a student with an adapter and no held-out set (every candidate is kept)
    knexa = Knexa(ExchangeSettings(exchange="distill"))
    student = Agent(AgentSpec(agent_id="s", skills=("add",)), adapter=OLD)
    services = FixedServices()

    # Execute
    ctx = AgentContext(student, services)  # type: ignore[arg-type]  (a model-only runtime)
    out = asyncio.run(knexa.exchange(student, "t", TEACHER, ["add"], ctx))

    # Assert: kept, and its parents are the student's old adapter and the teacher's, never itself
    assert out.accepted and out.adapter == NEW and student.adapter == NEW
    assert services.trained_from == [OLD]
    assert out.parents == (OLD, TEACHER)
