"""ReportChecker: a host's answer to a step is checked against the step (swarm/reports.py).

The coordinator's use of it, with real host processes, is in test_coordinator.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm.adapters.store import COMPLETE_MARKER, AdapterStore
from swarm.adapters.validate import WEIGHTS_FILE
from swarm.errors import ReportError
from swarm.runtime.reports import ReportChecker
from swarm.wire.codec import AgentReport, Assignment, PairOutcome, Step, StepDone

STORED, OTHER = "a" * 64, "b" * 64


@pytest.fixture
def checker(tmp_path: Path) -> ReportChecker:
    """A checker over a store that holds adapter ``STORED``."""
    (tmp_path / STORED).mkdir()
    (tmp_path / STORED / WEIGHTS_FILE).write_bytes(b"weights")
    (tmp_path / STORED / COMPLETE_MARKER).write_text(STORED)  # as AdapterStore.put leaves it
    return ReportChecker(AdapterStore(tmp_path))


LOCAL = Step(phase="local", agent_ids=["a-0", "a-1"])
EXCHANGE = Step(phase="exchange", assignments=[Assignment(teacher="t-0", student="a-0")])


def _local(*reports: AgentReport, failed: dict[str, str] | None = None) -> StepDone:
    return StepDone(phase="local", reports=list(reports), failed=failed or {})


def _exchange(*outcomes: PairOutcome, failed: dict[str, str] | None = None) -> StepDone:
    return StepDone(phase="exchange", outcomes=list(outcomes), failed=failed or {})


def test_valid_answers_pass(checker: ReportChecker) -> None:
    checker.check(LOCAL, _local(AgentReport(agent_id="a-0", adapter=STORED, score=0.5,
                                            metrics={"loss": 1.0}),
                                failed={"a-1": "RuntimeError: boom"}))
    checker.check(EXCHANGE, _exchange(PairOutcome(teacher="t-0", student="a-0", before=0.5,
                                                  after=0.75, accepted=True, adapter=STORED,
                                                  parents=[STORED, OTHER])))


@pytest.mark.parametrize(("done", "said"), [
    (_local(AgentReport(agent_id="a-0", score=float("nan"))), "not a finite number"),
    (_local(AgentReport(agent_id="a-0", score=float("inf"))), "not a finite number"),
    (_local(AgentReport(agent_id="a-0", score=1.5)), "outside [0, 1]"),
    (_local(AgentReport(agent_id="a-0", metrics={"m": float("nan")})), "metric 'm'"),
    (_local(AgentReport(agent_id="a-0", adapter=OTHER)), "not in the adapter store"),
    (_local(AgentReport(agent_id="a-0", adapter="../../etc")), "not a content hash"),
    (_local(AgentReport(agent_id="x-9")), "not asked for"),
    (_local(AgentReport(agent_id="a-0"), AgentReport(agent_id="a-0")), "twice"),
    (_local(failed={"x-9": "gone"}), "not asked for"),
    (_local(AgentReport(agent_id="a-0"), failed={"a-0": "gone"}), "reported and failed"),
    (_exchange(), "answered a 'local' step with a 'exchange' one"),
])
def test_bad_local_answers_are_refused(checker: ReportChecker, done: StepDone, said: str) -> None:
    with pytest.raises(ReportError) as err:
        checker.check(LOCAL, done)
    assert said in str(err.value)


@pytest.mark.parametrize(("outcome", "said"), [
    (PairOutcome(teacher="a-0", student="t-0"), "never assigned"),
    (PairOutcome(teacher="x-9", student="a-0"), "never assigned"),
    (PairOutcome(teacher="t-0", student="a-0", after=float("nan")), "not a finite number"),
    (PairOutcome(teacher="t-0", student="a-0", accepted=True), "without an adapter"),
    (PairOutcome(teacher="t-0", student="a-0", accepted=True, adapter=OTHER),
     "not in the adapter store"),
    (PairOutcome(teacher="t-0", student="a-0", parents=["main\nagent/x"]),
     "not a content hash"),
    (PairOutcome(teacher="t-0", student="a-0", parents=[STORED] * 9), "at most 8"),
])
def test_bad_outcomes_are_refused(checker: ReportChecker, outcome: PairOutcome,
                                  said: str) -> None:
    with pytest.raises(ReportError) as err:
        checker.check(EXCHANGE, _exchange(outcome))
    assert said in str(err.value)


def test_the_same_assignment_answered_twice_is_refused(checker: ReportChecker) -> None:
    twice = PairOutcome(teacher="t-0", student="a-0", before=0.5, after=0.5)

    with pytest.raises(ReportError, match="twice"):
        checker.check(EXCHANGE, _exchange(twice, twice))
