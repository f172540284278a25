"""What a run tells its caller: typed progress events and the final summary.

``swarm.runtime.run.run_swarm`` hands each event to the ``progress`` callback
it was given (``Progress``); the library prints nothing itself. The CLI's
callback (``swarm.cli.run.ConsoleProgress``) prints them as ``swarm run``
does. Events are plain frozen dataclasses: a callback may keep them, log
them or send them on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

__all__ = [
    "Interrupted",
    "Preparing",
    "Progress",
    "Reward",
    "RoundFinished",
    "RoundStarted",
    "RunEvent",
    "RunFinished",
    "RunStarted",
    "RunSummary",
    "skill_means",
    "skill_scores",
]

#: The prefix of a report metric that holds a held-out score per skill (``skill.add``).
SKILL_METRIC = "skill."


def skill_scores(metrics: Mapping[str, float]) -> dict[str, float]:
    """The per-skill held-out scores among a report's metrics (``skill.<name>``), by skill."""
    return {k[len(SKILL_METRIC):]: float(v) for k, v in sorted(metrics.items())
            if k.startswith(SKILL_METRIC)}


def skill_means(skills: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each skill's mean over the agents scored on it."""
    sums: dict[str, list[float]] = {}
    for per_agent in skills.values():
        for name, value in per_agent.items():
            sums.setdefault(name, []).append(float(value))
    return {name: sum(v) / len(v) for name, v in sorted(sums.items())}


class RunSummary(TypedDict):
    """What a finished run returns (also its ``summary.json``).

    ``history`` holds every round record, as committed to the lineage's
    ``rounds/<nnnnn>.json`` (round, scores, mean_score, skill_scores (agent ->
    skill -> held-out score after the round), skill_means, local_scores, pairs,
    rewards, unavailable, exchange_failures, rejected, seconds, messages).
    """

    rounds: int
    history: list[dict[str, Any]]
    lineage: str


@dataclass(frozen=True, slots=True)
class Preparing:
    """The run directory is being written (a tiny or named model is built on first use)."""


@dataclass(frozen=True, slots=True)
class RunStarted:
    """The run directory is ready and the processes are being started."""

    swarm: str
    agents: int
    rounds: int
    protocol: str
    matchmaker: str
    run_dir: Path
    warnings: tuple[str, ...] = ()
    archived: Path | None = None  # where the previous run in the run directory was moved


@dataclass(frozen=True, slots=True)
class RoundStarted:
    """The coordinator started a round's local step (``attempt`` counts its retries)."""

    round: int
    hosts: int
    attempt: int
    elapsed_s: float  # since the processes were started


@dataclass(frozen=True, slots=True)
class Reward:
    """One exchange of a round: the student's change in held-out score."""

    teacher: str
    student: str
    reward: float
    accepted: bool  # False: the student kept its own adapter


@dataclass(frozen=True, slots=True)
class RoundFinished:
    """A round was committed to the lineage."""

    round: int
    mean_score: float
    scores: Mapping[str, float]
    pairs: tuple[tuple[str, str], ...]  # (teacher, student)
    rewards: tuple[Reward, ...]
    unavailable: tuple[str, ...]
    rejected: Mapping[str, str]  # host -> why its results were dropped
    seconds: float
    messages_per_s: float
    record: Mapping[str, Any] = field(repr=False)  # the round record as committed
    skills: Mapping[str, float] = field(default_factory=dict)  # skill -> mean over agents

    @classmethod
    def from_record(cls, record: Mapping[str, Any], messages_per_s: float) -> RoundFinished:
        """The event of a committed round record (``RunSummary.history``'s items)."""
        return cls(
            round=int(record["round"]), mean_score=float(record["mean_score"]),
            scores=dict(record["scores"]),
            pairs=tuple((str(t), str(s)) for t, s in record["pairs"]),
            rewards=tuple(Reward(r["teacher"], r["student"], float(r["reward"]),
                                 bool(r["accepted"])) for r in record["rewards"]),
            unavailable=tuple(record["unavailable"]), rejected=dict(record.get("rejected", {})),
            seconds=float(record["seconds"]), messages_per_s=messages_per_s, record=record,
            skills=dict(record.get("skill_means", {})))


@dataclass(frozen=True, slots=True)
class RunFinished:
    """Every round is done; ``summary`` is what ``run_swarm`` returns."""

    swarm: str
    summary: RunSummary


@dataclass(frozen=True, slots=True)
class Interrupted:
    """Ctrl-C or SIGTERM: every process is being stopped; committed rounds are kept."""


RunEvent = Preparing | RunStarted | RoundStarted | RoundFinished | RunFinished | Interrupted
Progress = Callable[[RunEvent], None]
