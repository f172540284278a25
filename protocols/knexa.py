"""``knexa``: matchmaker-paired knowledge exchange between PEFT agents (after KNEXA-FL).

Each round every agent trains its LoRA adapter on its local data and reports
its held-out score; the matchmaker pairs agents over their profiles; in each
pair the higher-scoring agent teaches (``orient``); the student takes the
teacher's knowledge either by merging the teacher's adapter into its own
(``exchange: merge``, by ``merge_method``) or by fine-tuning on the teacher's
answers to prompts of the teacher's skills mixed with a replay of its own data
(``exchange: distill``); the student's change in held-out score is the pair's
reward, which the matchmaker learns from. A student keeps what it learnt only
if its score did not drop (``validate``; ``accept: better``: only if it rose).

Several teachers (``teachers: k``): each student takes its ``k`` best-scored
teachers from the matchmaker's pair scores (random pairing: ``k`` random
others). Merged lessons are scored one by one (each teacher's reward is its
own lesson's gain), the validated ones are combined by ``aggregate`` (a robust
rule such as ``median`` over the student and its teachers, or a peft merge),
and the student keeps the best of the mix and the single lessons. Distilled
lessons from several teachers are one training on all their answers.

A single merging (``final_merge: METHOD``): in the last round every agent
takes the merge of all agents' adapters (each student: itself and every other
agent), validated as any lesson.

With ``matchmaker.kind: random`` this is the random-pairing baseline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from swarm.agents.base import Agent, PairOutcome
from swarm.protocols.base import Lesson, Protocol, orient
from swarm.protocols.registry import protocol
from swarm.protocols.settings import ExchangeSettings

if TYPE_CHECKING:
    from swarm.agents.base import AgentReport
    from swarm.agents.context import AgentContext

__all__ = ["Knexa"]

_ROBUST = ("mean", "median", "trimmed_mean", "clipped_mean")


@protocol("knexa")
class Knexa(Protocol):
    """Pairs from the matchmaker; exchange by adapter merge or distillation."""

    settings_schema = ExchangeSettings
    settings: ExchangeSettings

    def final_round(self, round: int) -> bool:
        """Whether ``round`` is the run's last and ``final_merge`` asks for a global merge."""
        return self.settings.final_merge != "none" and self.rounds > 0 and round == self.rounds - 1

    def pairs(
        self,
        round: int,
        reports: Mapping[str, AgentReport],
        profiles: Mapping[str, np.ndarray],
        matchmaker: Any,
        max_pairs: int,
    ) -> list[tuple[str, str]]:
        if self.final_round(round):  # every agent takes the merge of every agent
            ids = sorted(reports)
            return [(t, s) for s in ids for t in ids if t != s]
        if self.settings.teachers > 1:
            return _several_teachers(round, reports, profiles, matchmaker, self.settings.teachers)
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
        if self.settings.exchange == "merge" and type(student).learn_from is not Agent.learn_from:
            return await student.learn_from(  # a role that takes merged lessons its own way
                teacher, teacher_adapter, ctx, weight=self.settings.merge_weight)
        lesson = Lesson(teacher, teacher_adapter, tuple(teacher_skills))
        before = student.score
        candidate = await self._candidate(student, [lesson], ctx)
        if candidate is None:
            return _unchanged(student, teacher)
        after = await student.evaluate(ctx, candidate)
        keep = self._keeps(student, before, after)
        parents = tuple(p for p in (student.adapter, teacher_adapter) if p)
        if keep:
            student.adapter, student.score = candidate, after
            student.skill_scores = student.last_skills
        return PairOutcome(student=student.id, teacher=teacher, before=before, after=after,
                           adapter=student.adapter, accepted=keep, parents=parents,
                           skills=student.skill_scores)

    async def exchange_group(
        self, student: Agent, lessons: Sequence[Lesson], ctx: AgentContext, round: int
    ) -> list[PairOutcome]:
        if self.final_round(round):
            return await self._combined(student, lessons, ctx, self.settings.final_merge)
        if len(lessons) == 1:
            only = lessons[0]
            return [await self.exchange(student, only.teacher, only.adapter, only.skills, ctx)]
        if self.settings.exchange == "distill":
            return await self._combined(student, lessons, ctx, "distill")
        return await self._several(student, lessons, ctx)

    # -- lessons -------------------------------------------------------------------------

    def _keeps(self, student: Agent, before: float, after: float) -> bool:
        if not self.settings.validate:
            return True
        if self.settings.accept == "better":
            return after > before
        return student.accepts(before, after)

    async def _candidate(self, student: Agent, lessons: Sequence[Lesson],
                         ctx: AgentContext) -> str | None:
        """The student's adapter after ``lessons`` by the configured exchange (not evaluated)."""
        usable = [x for x in lessons if x.adapter is not None and x.adapter != student.adapter]
        if not student.learns or not usable:
            return None
        if self.settings.exchange == "distill":
            return await _distilled(student, await _screened(student, usable, ctx,
                                                             self.settings), ctx, self.settings)
        for x in usable:
            await ctx.fetch_adapter(x.adapter or "", x.teacher)
        if student.adapter is None:
            return usable[0].adapter
        return await _merge(ctx, student.adapter, [x.adapter or "" for x in usable],
                            self.settings.merge_method, self.settings)

    async def _several(self, student: Agent, lessons: Sequence[Lesson],
                       ctx: AgentContext) -> list[PairOutcome]:
        """Score each teacher's merged lesson alone, combine the validated ones, keep the best."""
        before, own, own_skills = student.score, student.adapter, student.skill_scores
        alone: list[tuple[Lesson, str | None, float, dict[str, float]]] = []
        for lesson in lessons:
            candidate = await self._candidate(student, [lesson], ctx)
            if candidate is None:
                alone.append((lesson, None, before, own_skills))
                continue
            score = await student.evaluate(ctx, candidate)
            alone.append((lesson, candidate, score, student.last_skills))
        good = [x for x in alone if x[1] is not None and self._keeps(student, before, x[2])]
        options = [(x[1], x[2], x[3], [x[0]]) for x in good]
        if len(good) > 1 and own is not None:
            mix = await _merge(ctx, own, [x[0].adapter or "" for x in good],
                               self.settings.aggregate, self.settings)
            score = await student.evaluate(ctx, mix)
            if self._keeps(student, before, score):
                options.append((mix, score, student.last_skills, [x[0] for x in good]))
        if not self.settings.validate and options:  # no defence: the mix of all, unchecked
            chosen = options[-1]
        else:
            chosen = max(options, key=lambda o: o[1], default=(own, before, own_skills, []))
        adapter, score, skills, used = chosen
        student.adapter, student.score, student.skill_scores = adapter, score, skills
        taken = {x.teacher for x in used}
        return [PairOutcome(student=student.id, teacher=lesson.teacher, before=before,
                            after=after, adapter=student.adapter,
                            accepted=lesson.teacher in taken,
                            parents=tuple(p for p in (own, lesson.adapter) if p),
                            skills=student.skill_scores, kept_score=student.score)
                for lesson, _, after, _ in alone]

    async def _combined(self, student: Agent, lessons: Sequence[Lesson], ctx: AgentContext,
                        how: str) -> list[PairOutcome]:
        """One candidate from all ``lessons`` (a merge by ``how``, or one distillation)."""
        before, own = student.score, student.adapter
        usable = [x for x in lessons if x.adapter is not None]
        if not student.learns or not usable:
            return [_unchanged(student, x.teacher) for x in lessons]
        if how == "distill":
            taught = await _screened(student, usable, ctx, self.settings)
            usable = [x for x, _ in taught]
            candidate = await _distilled(student, taught, ctx, self.settings)
            if candidate is None:
                return [_unchanged(student, x.teacher) for x in lessons]
        else:
            for x in usable:
                await ctx.fetch_adapter(x.adapter or "", x.teacher)
            members = [own] if own is not None else []
            adapters = [*members, *(x.adapter or "" for x in usable)]
            candidate = await ctx.merge_many(adapters, method=how, density=self.settings.density)
        after = await student.evaluate(ctx, candidate)
        keep = self._keeps(student, before, after)
        if keep:
            student.adapter, student.score = candidate, after
            student.skill_scores = student.last_skills
        return [PairOutcome(student=student.id, teacher=x.teacher, before=before, after=after,
                            adapter=student.adapter, accepted=keep and x in usable,
                            parents=tuple(p for p in (own, x.adapter) if p),
                            skills=student.skill_scores, kept_score=student.score)
                for x in lessons]


def _unchanged(student: Agent, teacher: str) -> PairOutcome:
    return PairOutcome(student=student.id, teacher=teacher, before=student.score,
                       after=student.score, adapter=student.adapter, skills=student.skill_scores)


async def _merge(ctx: AgentContext, own: str, teachers: Sequence[str], method: str,
                 settings: ExchangeSettings) -> str:
    """``own`` with ``teachers``: a robust rule over all of them, or ``own + w * mean(teachers)``."""
    if method in _ROBUST:
        return await ctx.merge_many([own, *teachers], method=method, density=settings.density)
    share = settings.merge_weight / len(teachers)
    return await ctx.merge_many([own, *teachers], [1.0, *([share] * len(teachers))],
                                method=method, density=settings.density)


async def _screened(student: Agent, lessons: Sequence[Lesson], ctx: AgentContext,
                    settings: ExchangeSettings) -> list[tuple[Lesson, list[str]]]:
    """Each lesson worth distilling with the skills to take from it.

    ``screen``: the teacher's adapter is measured on the student's own held-out
    set, skill by skill, and only the skills where it beats the student are
    taught (a teacher better at nothing, a liar's inflated score, a poisoned
    adapter: no lesson). Without it: the teacher's skills as the config gives them.
    """
    if not settings.screen:
        return [(x, list(x.skills) or list(student.spec.skills)) for x in lessons]
    mine = dict(student.skill_scores)
    out = []
    for lesson in lessons:
        await student.evaluate(ctx, lesson.adapter)
        better = [s for s, v in student.last_skills.items() if v > mine.get(s, 0.0)]
        if better:
            out.append((lesson, better))
    return out


async def _distilled(student: Agent, taught: Sequence[tuple[Lesson, list[str]]],
                     ctx: AgentContext, settings: ExchangeSettings) -> str | None:
    """Fine-tune the student on its teachers' greedy answers to fresh prompts of the skills each
    teaches, mixed with a ``replay`` share of its own training data (seeded by student,
    teachers, round); ``None`` when no teacher teaches anything."""
    from swarm.skills import Example, make_dataset

    if not taught:
        return None
    teachers = "|".join(x.teacher for x, _ in taught)
    key = f"{student.id}|{teachers}|{len(student.history)}".encode()
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
    replayed = int(round(settings.distill_examples * settings.replay))
    per_teacher = max(1, (settings.distill_examples - replayed) // len(taught))
    samples: list[Example] = []
    for lesson, skills in taught:
        # A file skill draws from its training share (ctx.swarm_skills), never a held-out prompt.
        drawn = [ctx.swarm_skills.get(name, name) for name in skills]
        prompts = [ex.prompt for ex in make_dataset(drawn, per_teacher, rng)]
        answers = await ctx.complete_many(prompts, adapter=lesson.adapter, max_tokens=16)
        samples += [Example(p, " " + a.strip().split("\n", 1)[0], "distill")
                    for p, a in zip(prompts, answers, strict=True)]
    own = list(student.spec.train)
    if replayed and own:
        samples += [own[int(i)] for i in rng.choice(len(own), size=replayed, replace=True)]
    samples = [samples[int(i)] for i in rng.permutation(len(samples))]
    return await ctx.train(samples)


def _several_teachers(round: int, reports: Mapping[str, AgentReport],
                      profiles: Mapping[str, np.ndarray], matchmaker: Any,
                      k: int) -> list[tuple[str, str]]:
    """Every reporting agent's ``k`` best teachers by the matchmaker's scores, as pairs.

    A matchmaker with ``scores(profiles, round)`` (LinUCB) ranks each student's
    candidates by ``S[teacher, student]`` (exploration bonus included); one
    without it (random) gives ``k`` teachers drawn by its generator.
    """
    ids = sorted(a for a in profiles if a in reports)
    if len(ids) < 2:
        return []
    k = min(k, len(ids) - 1)
    scores = getattr(matchmaker, "scores", None)
    out = []
    if scores is None:
        rng = getattr(matchmaker, "rng", None) or np.random.default_rng([round, len(ids)])
        for s in ids:
            others = [t for t in ids if t != s]
            out += [(others[int(i)], s) for i in rng.choice(len(others), size=k, replace=False)]
        return out
    order, matrix = scores({a: profiles[a] for a in ids}, round)  # sorted ids, diagonal -inf
    for j, s in enumerate(order):
        out += [(order[int(i)], s) for i in np.argsort(-matrix[:, j], kind="stable")[:k]]
    return out
