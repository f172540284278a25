"""``knexa``: matchmaker-paired knowledge exchange between PEFT agents (after KNEXA-FL).

Each round every agent trains its LoRA adapter on its local data and reports
its held-out score; the matchmaker pairs agents over their profiles; in each
pair the higher-scoring agent teaches (``orient``); the student takes the
teacher's knowledge either by merging the teacher's adapter into its own
(``exchange: merge``) or by fine-tuning on the teacher's answers to prompts
of the teacher's skills (``exchange: distill``); the student's change in
held-out score is the pair's reward, which the matchmaker learns from.
A student keeps what it learnt only if its score did not drop.

With ``matchmaker.kind: random`` this is the random-pairing baseline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from swarm.protocols.base import Protocol, orient
from swarm.protocols.registry import protocol
from swarm.protocols.settings import ExchangeSettings

if TYPE_CHECKING:
    from swarm.agents.base import Agent, AgentReport, PairOutcome
    from swarm.agents.context import AgentContext

__all__ = ["Knexa"]


@protocol("knexa")
class Knexa(Protocol):
    """Pairs from the matchmaker; exchange by adapter merge or distillation."""

    settings_schema = ExchangeSettings

    def pairs(
        self,
        round: int,
        reports: Mapping[str, AgentReport],
        profiles: Mapping[str, np.ndarray],
        matchmaker: Any,
        max_pairs: int,
    ) -> list[tuple[str, str]]:
        if getattr(matchmaker, "directed", False):  # scored as the pairs will be oriented
            scores = {a: reports[a].score if a in reports else 0.0 for a in profiles}
            chosen = matchmaker.select(profiles, max_pairs, round, orient=scores)
        else:
            chosen = matchmaker.select(profiles, max_pairs, round)
        return [orient(pair, reports) for pair in chosen]

    async def exchange(
        self,
        student: Agent,
        teacher: str,
        teacher_adapter: str | None,
        teacher_skills: Sequence[str],
        ctx: AgentContext,
    ) -> PairOutcome:
        if self.settings.exchange == "distill":
            return await _distill(student, teacher, teacher_adapter, teacher_skills, ctx)
        return await student.learn_from(
            teacher, teacher_adapter, ctx, weight=self.settings.merge_weight
        )


async def _distill(
    student: Agent,
    teacher: str,
    teacher_adapter: str | None,
    skills: Sequence[str],
    ctx: AgentContext,
) -> PairOutcome:
    """Fine-tune the student on the teacher's greedy answers to fresh prompts of its skills."""
    from swarm.agents.base import PairOutcome
    from swarm.skills import Example, make_dataset

    before = student.score
    if not student.learns or teacher_adapter is None or not skills:
        return PairOutcome(student=student.id, teacher=teacher, before=before, after=before,
                           adapter=student.adapter)
    key = f"{student.id}|{teacher}|{len(student.history)}".encode()
    seed = int.from_bytes(hashlib.sha256(key).digest()[:8], "little")
    # A file skill draws from its training share (ctx.swarm_skills), never a held-out prompt.
    drawn = [ctx.swarm_skills.get(name, name) for name in skills]
    prompts = [ex.prompt for ex in make_dataset(drawn, 64, np.random.default_rng(seed))]
    answers = await ctx.complete_many(prompts, adapter=teacher_adapter, max_tokens=16)
    samples = [Example(p, " " + a.strip(), "distill") for p, a in zip(prompts, answers, strict=True)]
    candidate = await ctx.train(samples)
    after = await student.evaluate(ctx, candidate)
    keep = student.accepts(before, after)
    # The parents are what the candidate was made from, read before a kept
    # candidate replaces the student's adapter (else it is its own parent).
    parents = tuple(p for p in (student.adapter, teacher_adapter) if p)
    if keep:
        student.adapter, student.score = candidate, after
    return PairOutcome(student=student.id, teacher=teacher, before=before, after=after,
                       adapter=student.adapter, accepted=keep, parents=parents)
