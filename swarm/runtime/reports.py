"""Checking a host's answer to a ``Step`` against what the host was asked.

A host is a peer: what it answers goes into the matchmaker (a NaN reward
poisons its statistics for good), into the lineage (an agent id becomes a
branch name, a teacher id a merge parent) and into the next round's steps.
So the coordinator takes nothing on trust. A local report must name an agent
the host was asked to step, once, with a finite score in [0, 1], finite
metrics and an adapter that is in the machine's store;
an exchange outcome must answer an assignment the host was given, once, with
finite scores in [0, 1] and, if kept, a stored adapter whose parents are
content hashes. One bad item rejects the host's whole answer for that phase
of that round (``ReportError``): the coordinator drops only those results,
says why in the round record, and goes on with the other hosts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable

from swarm.adapters.store import AdapterStore
from swarm.adapters.validate import is_sha256
from swarm.errors import ReportError
from swarm.wire.codec import AgentReport, PairOutcome, Step, StepDone

__all__ = ["ReportChecker", "short", "MAX_METRICS", "MAX_PARENTS", "MAX_REASON"]

MAX_METRICS = 64  # named metrics per report
MAX_PARENTS = 8  # parent adapters per outcome
MAX_REASON = 300  # characters of a failure reason kept in the round record


class ReportChecker:
    """Validates ``StepDone`` answers for one swarm.

    Args:
        store: the machine's adapter store (reported adapters must be in it).
    """

    def __init__(self, store: AdapterStore) -> None:
        self.store = store

    def check(self, step: Step, done: StepDone) -> None:
        """Raise ``ReportError`` unless ``done`` is a valid answer to ``step``."""
        if done.phase != step.phase:
            raise ReportError(f"answered a {step.phase!r} step with a {done.phase!r} one")
        if step.phase == "local":
            self._local(step, done)
        else:
            self._exchange(step, done)

    def _local(self, step: Step, done: StepDone) -> None:
        asked = set(step.agent_ids)
        _only(asked, [r.agent_id for r in done.reports], "reported on")
        _only(asked, list(done.failed), "named as failed")
        both = {r.agent_id for r in done.reports} & set(done.failed)
        if both:
            raise ReportError(f"reported and failed at once: {_names(both)}")
        if done.outcomes:
            raise ReportError("sent exchange outcomes in a local step")
        for report in done.reports:
            self._report(report)

    def _report(self, report: AgentReport) -> None:
        who = report.agent_id
        _score(report.score, f"{who}'s score")
        if len(report.metrics) > MAX_METRICS:
            raise ReportError(f"{who} has {len(report.metrics)} metrics (at most {MAX_METRICS})")
        for name, value in report.metrics.items():
            _finite(value, f"{who}'s metric {name[:40]!r}")
        if report.adapter is not None:
            self._stored(report.adapter, f"{who}'s adapter")

    def _exchange(self, step: Step, done: StepDone) -> None:
        given = {(a.teacher, a.student) for a in step.assignments}
        students = {a.student for a in step.assignments}
        pairs = [(o.teacher, o.student) for o in done.outcomes]
        stray = [p for p in pairs if p not in given]
        if stray:
            raise ReportError(f"sent outcomes for pairs it was never assigned: {stray[:3]}")
        twice = [p for p, n in Counter(pairs).items() if n > 1]
        if twice:
            raise ReportError(f"answered pairs {twice[:3]} twice")
        kept: dict[str, str | None] = {}
        for o in done.outcomes:  # a student with several teachers holds one adapter afterwards
            if kept.setdefault(o.student, o.adapter) != o.adapter:
                raise ReportError(f"{o.student}'s outcomes name different adapters it holds")
        _only(students, list({s for _, s in pairs}), "sent outcomes for")
        _only(students, list(done.failed), "named as failed")
        if done.reports:
            raise ReportError("sent local reports in an exchange step")
        for outcome in done.outcomes:
            self._outcome(outcome)

    def _outcome(self, o: PairOutcome) -> None:
        who = f"{o.student} (from {o.teacher})"
        _score(o.before, f"{who}'s score before")
        _score(o.after, f"{who}'s score after")
        if o.kept_score is not None:
            _score(o.kept_score, f"{who}'s kept score")
        if len(o.skills) > MAX_METRICS:
            raise ReportError(f"{who} has {len(o.skills)} skill scores (at most {MAX_METRICS})")
        for name, value in o.skills.items():
            _score(value, f"{who}'s score on {name[:40]!r}")
        if o.adapter is not None:
            self._stored(o.adapter, f"{who}'s adapter")
        elif o.accepted:
            raise ReportError(f"{who} kept an exchange without an adapter")
        if len(o.parents) > MAX_PARENTS:
            raise ReportError(f"{who} names {len(o.parents)} parents (at most {MAX_PARENTS})")
        for parent in o.parents:
            if not is_sha256(parent):
                raise ReportError(f"{who} names a parent that is not a content hash: "
                                  f"{parent[:80]!r}")

    def _stored(self, sha: str, what: str) -> None:
        if not is_sha256(sha):
            raise ReportError(f"{what} is not a content hash: {sha[:80]!r}")
        if not self.store.has(sha):
            raise ReportError(f"{what} {sha[:12]} is not in the adapter store")


def short(reason: str) -> str:
    """A host-supplied reason cut to ``MAX_REASON`` characters for the round record."""
    return reason if len(reason) <= MAX_REASON else reason[:MAX_REASON] + "…"


def _only(allowed: Collection[str], named: list[str], verb: str) -> None:
    extra = [a for a in named if a not in allowed]
    if extra:
        raise ReportError(f"{verb} agents it was not asked for: {_names(extra)}")
    twice = [a for a, n in Counter(named).items() if n > 1]
    if twice:
        raise ReportError(f"{verb} the same agent twice: {_names(twice)}")


def _score(value: float, what: str) -> None:
    _finite(value, what)
    if not 0.0 <= value <= 1.0:
        raise ReportError(f"{what} is {value!r}, outside [0, 1]")


def _finite(value: float, what: str) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ReportError(f"{what} is {value!r}, not a finite number")


def _names(items: Iterable[str]) -> str:
    shown = sorted(items)
    text = ", ".join(repr(a[:60]) for a in shown[:5])
    return text + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")
