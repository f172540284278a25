"""knexa's lessons: several teachers, validation, the global merge, distillation with replay.

The runtime here is a stand-in whose adapters have a known held-out accuracy
(a merge's is the mean of its inputs', any poisoned input makes it 0): these
tests are of knexa's choices around the model server. The real merges run in
``test_jobs``, real swarms with several teachers and Byzantine peers in
``test_byzantine``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from swarm.agents.base import Agent, AgentSpec
from swarm.agents.context import AgentContext
from swarm.protocols.base import Lesson
from swarm.protocols.knexa import Knexa
from swarm.protocols.settings import ExchangeSettings
from swarm.skills import Example, make_dataset
from swarm.wire.codec import GenOutput, GenRequest

HELDOUT = tuple(Example(f"add: {i} + 1 =", f" {i + 1}", "add") for i in range(24))


def _sha(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


class KnownAccuracy:
    """Adapters with known accuracy; merges average it, a poisoned input makes it 0."""

    round = 0
    swarm_skills: dict[str, Any] = {}

    def __init__(self, accuracy: dict[str, float]) -> None:
        self.accuracy = dict(accuracy)
        self.merges: list[tuple[list[str], str]] = []
        self.trained: list[list[Example]] = []
        self.asked: list[str | None] = []

    async def generate_requests(self, requests: Sequence[GenRequest]) -> list[GenOutput]:
        answers = {ex.prompt: ex.completion for ex in HELDOUT}
        right = round(self.accuracy.get(requests[0].adapter or "", 0.0) * len(requests))
        self.asked.append(requests[0].adapter)
        return [GenOutput(texts=[answers.get(r.prompt or "", " 1") if i < right else " x"])
                for i, r in enumerate(requests)]

    async def merge(self, adapters: list[str], weights: list[float], method: str = "svd",
                    density: float = 0.5) -> str:
        sha = _sha(adapters, weights, method)
        values = [self.accuracy[a] for a in adapters]
        self.accuracy[sha] = 0.0 if min(values) < 0 else float(np.mean(values))
        self.merges.append((list(adapters), method))
        return sha

    async def train(self, agent_id: str, base_adapter: str | None,
                    examples: Sequence[Example], hyper: dict[str, Any]) -> str:
        self.trained.append(list(examples))
        sha = _sha("trained", base_adapter, len(self.trained))
        self.accuracy[sha] = 0.5
        return sha

    async def fetch_adapter(self, sha: str, owner: str) -> None:
        return None


def _student(adapter: str, score: float) -> Agent:
    train = tuple(make_dataset(["add"], 16, np.random.default_rng(0)))
    agent = Agent(AgentSpec(agent_id="s", skills=("add",), train=train, heldout=HELDOUT),
                  adapter=adapter)
    agent.score = score
    return agent


OWN, GOOD, BETTER, POISON = "a" * 64, "b" * 64, "c" * 64, "d" * 64
ACCURACY = {OWN: 0.25, GOOD: 0.75, BETTER: 1.0, POISON: -1.0}


def _run(settings: ExchangeSettings, lessons: list[Lesson], rounds: int = 0,
         round: int = 0) -> tuple[Agent, KnownAccuracy, list[Any]]:
    runtime = KnownAccuracy(ACCURACY)
    student = _student(OWN, 0.25)
    knexa = Knexa(settings, rounds)
    ctx = AgentContext(student, runtime)  # type: ignore[arg-type]
    return student, runtime, asyncio.run(knexa.exchange_group(student, lessons, ctx, round))


def test_each_teacher_is_scored_alone_and_a_poisoned_lesson_is_refused() -> None:
    lessons = [Lesson("good", GOOD), Lesson("byz", POISON)]

    student, runtime, out = _run(ExchangeSettings(teachers=2), lessons)

    by = {o.teacher: o for o in out}
    assert by["good"].after == 0.5 and by["good"].accepted  # mean(0.25, 0.75)
    assert by["byz"].after == 0.0 and not by["byz"].accepted  # its reward is negative
    assert student.score == 0.5 and all(o.kept_score == 0.5 for o in out)
    assert all(o.adapter == student.adapter for o in out)  # one adapter kept for both
    assert len(runtime.merges) == 2  # two lessons alone, no mix of a single good one


def test_the_validated_lessons_are_mixed_by_the_aggregate_and_the_best_is_kept() -> None:
    lessons = [Lesson("good", GOOD), Lesson("better", BETTER), Lesson("byz", POISON)]

    student, runtime, out = _run(ExchangeSettings(teachers=3, aggregate="median"), lessons)

    mixes = [m for m in runtime.merges if m[1] == "median"]
    assert mixes == [([OWN, GOOD, BETTER], "median")]  # the poisoned teacher is not in it
    # alone: 0.5 and 0.625; the mix of all three is (0.25+0.75+1)/3 = 0.667: kept
    assert abs(student.score - 2 / 3) < 1e-9
    assert {o.teacher for o in out if o.accepted} == {"good", "better"}


def test_without_defences_the_mix_of_every_teacher_is_taken_unchecked() -> None:
    lessons = [Lesson("good", GOOD), Lesson("byz", POISON)]

    student, _, out = _run(ExchangeSettings(teachers=2, validate=False), lessons)

    assert student.score == 0.0 and all(o.accepted for o in out)  # poisoned, and kept


def test_accept_better_refuses_a_lesson_that_only_ties() -> None:
    runtime = KnownAccuracy({OWN: 0.25, GOOD: 0.25})
    student = _student(OWN, 0.25)
    ctx = AgentContext(student, runtime)  # type: ignore[arg-type]
    for accept, kept in (("not_worse", True), ("better", False)):
        student.adapter = OWN
        knexa = Knexa(ExchangeSettings(accept=accept))  # type: ignore[arg-type]
        out = asyncio.run(knexa.exchange(student, "t", GOOD, ["add"], ctx))
        assert out.accepted is kept


def test_the_last_round_is_one_merge_of_every_agent() -> None:
    lessons = [Lesson("t1", GOOD), Lesson("t2", BETTER)]
    settings = ExchangeSettings(final_merge="mean")
    knexa = Knexa(settings, rounds=3)
    reports = {a: msgspec.defstruct("R", [("score", float)])(0.5) for a in ("x", "y", "z")}

    pairs = knexa.pairs(2, reports, {a: np.zeros(2) for a in reports}, None, 1)  # type: ignore[arg-type]
    student, runtime, out = _run(settings, lessons, rounds=3, round=2)

    assert sorted(pairs) == sorted((t, s) for s in "xyz" for t in "xyz" if t != s)
    assert runtime.merges == [([OWN, GOOD, BETTER], "mean")]
    assert student.score == (0.25 + 0.75 + 1.0) / 3 and all(o.accepted for o in out)
    assert not Knexa(settings, rounds=3).final_round(1)


def test_distillation_mixes_the_teachers_answers_with_a_replay_of_own_data() -> None:
    settings = ExchangeSettings(exchange="distill", distill_examples=8, replay=0.5, teachers=2,
                                screen=False)
    lessons = [Lesson("t1", GOOD, ("reverse",)), Lesson("t2", BETTER, ("sort",))]

    student, runtime, out = _run(settings, lessons)

    (samples,) = runtime.trained  # one training on all teachers' answers
    own = {ex.prompt for ex in student.spec.train}
    replayed = [ex for ex in samples if ex.prompt in own]
    taught = [ex for ex in samples if ex.skill == "distill"]
    assert len(replayed) == 4 and len(taught) == 4
    assert {ex.prompt.split(":")[0] for ex in taught} == {"reverse", "sort"}
    assert runtime.asked[:2] == [GOOD, BETTER]  # each teacher answered its own skill's prompts
    assert all(o.accepted for o in out) and student.score == 0.5


def test_screening_teaches_only_what_a_teacher_measures_better_at() -> None:
    """A poisoned teacher (and a liar) measures 0 on the student's held-out set: no lesson."""
    settings = ExchangeSettings(exchange="distill", distill_examples=8, replay=0.5, teachers=2)
    lessons = [Lesson("good", GOOD, ("reverse",)), Lesson("byz", POISON, ("reverse",))]

    student, runtime, out = _run(settings, lessons)

    (samples,) = runtime.trained
    taught = [ex for ex in samples if ex.skill == "distill"]
    assert taught and all(ex.prompt.startswith("add:") for ex in taught)  # measured, not claimed
    assert runtime.asked.count(POISON) == 1  # measured once, never asked to teach
    by = {o.teacher: o for o in out}
    assert by["good"].accepted and not by["byz"].accepted

    _, runtime, out = _run(settings, [Lesson("byz", POISON, ("reverse",))])
    assert runtime.trained == [] and not any(o.accepted for o in out)
