"""Agent profiles: what the runtime knows of an agent, as the matchmaker's fixed-length vector.

The profile builder is separate from the bandit: it only turns an
``AgentSnapshot`` (a small dataclass the coordinator fills from a round's
report) into a float vector, with the same layout and the same fixed
normalization every round, so a profile means the same thing in round 1 and in
round 1,000 and after a restart (no running statistics).

Layout, for ``metrics = (m_1 .. m_M)`` and ``skills = (s_1 .. s_K)``
(``ProfileBuilder.features`` lists the names)::

    index      feature          raw input                      normalization
    0          score            held-out evaluation score       clip to [0, 1]
    1          score_delta      score - previous score          clip to [-1, 1] (0 without a previous)
    2..1+M     metric:<m>       extra evaluation metric m      tanh(value / scale_m)   (0 if absent)
    2+M..1+M+K skill:<s>        examples of skill s            share among the swarm skills (sum 1, or all 0)
    2+M+K      has_adapter      whether the agent has one      0 or 1
    3+M+K      adapter_norm     Frobenius norm of its update   tanh(norm / norm_scale)
    4+M+K      comm_cost        bytes it sent and received     log1p(bytes) / log1p(comm_scale), clip [0, 1]

Every feature lies in [-1, 1], so the matchmaker's squared and product
features stay in the same range. ``dim == 5 + M + K``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from swarm.errors import MatchmakerError

__all__ = ["AgentSnapshot", "ProfileBuilder", "ReportLike"]


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """What the runtime knows of one agent this round, in raw units.

    Args:
        agent_id: the agent's id.
        score: held-out evaluation score (higher is better, usually in [0, 1]).
        previous_score: the score one round earlier, or None the first time.
        metrics: extra evaluation metrics by name (only the builder's ``metrics`` are used).
        skill_examples: number (or weight) of local examples per skill.
        has_adapter: whether the agent has trained an adapter yet.
        adapter_norm: Frobenius norm of the adapter's weight update (0 if unknown).
        comm_bytes: bytes the agent sent and received in the last round.
    """

    agent_id: str
    score: float
    previous_score: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    skill_examples: Mapping[str, float] = field(default_factory=dict)
    has_adapter: bool = False
    adapter_norm: float = 0.0
    comm_bytes: float = 0.0


class ReportLike(Protocol):
    """The fields of a round report (``swarm.wire.codec.AgentReport``) the builder reads."""

    @property
    def agent_id(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def adapter(self) -> str | None: ...
    @property
    def metrics(self) -> Mapping[str, float]: ...


class ProfileBuilder:
    """Turn ``AgentSnapshot``s (or round reports) into profile vectors of length ``dim``.

    Args:
        skills: every skill of the swarm, in a fixed order (one feature each).
        metrics: extra metric names and the scale each is divided by before ``tanh``.
        norm_scale: adapter norm that maps to ``tanh(1) ~ 0.76``.
        comm_scale: byte count that maps to 1.0 (default 1 GB).
        agent_skills: each agent's skills, by id (from the config: a report does not carry them).
    """

    def __init__(self, skills: Iterable[str] = (), metrics: Mapping[str, float] | None = None,
                 norm_scale: float = 10.0, comm_scale: float = 1e9,
                 agent_skills: Mapping[str, Sequence[str]] | None = None) -> None:
        self.skills = tuple(dict.fromkeys(skills))
        self.agent_skills = dict(agent_skills or {})
        self.metrics = dict(metrics or {})
        if any(not s > 0 for s in self.metrics.values()) or not norm_scale > 0 or not comm_scale > 1:
            raise MatchmakerError("metric scales and norm_scale must be > 0, comm_scale > 1")
        self.norm_scale = float(norm_scale)
        self.comm_scale = float(comm_scale)
        self._previous: dict[str, float] = {}

    @property
    def dim(self) -> int:
        """Length of every profile this builder makes."""
        return 5 + len(self.metrics) + len(self.skills)

    @property
    def features(self) -> list[str]:
        """The name of each position of a profile."""
        return (["score", "score_delta"] + [f"metric:{m}" for m in self.metrics]
                + [f"skill:{s}" for s in self.skills] + ["has_adapter", "adapter_norm", "comm_cost"])

    def build(self, item: AgentSnapshot | ReportLike) -> NDArray[np.float64]:
        """The profile of one agent; a report is first turned into a snapshot (``snapshot``)."""
        snap = item if isinstance(item, AgentSnapshot) else self.snapshot(item)
        return self.vector(snap)

    def build_all(self, items: Mapping[str, AgentSnapshot | ReportLike]) -> dict[str, NDArray[np.float64]]:
        """``build`` for each agent, keyed like ``items``: the matchmaker's ``profiles``."""
        return {agent: self.build(item) for agent, item in items.items()}

    def vector(self, snap: AgentSnapshot) -> NDArray[np.float64]:
        """The normalized feature vector of a snapshot (pure: no memory involved)."""
        raw = [snap.score, snap.adapter_norm, snap.comm_bytes, *snap.metrics.values(),
               *snap.skill_examples.values()]
        if snap.previous_score is not None:
            raw.append(snap.previous_score)
        if not all(math.isfinite(float(x)) for x in raw):
            raise MatchmakerError(f"snapshot of agent {snap.agent_id!r} holds NaN or infinity")
        if snap.adapter_norm < 0 or snap.comm_bytes < 0 or any(
                v < 0 for v in snap.skill_examples.values()):
            raise MatchmakerError(f"snapshot of agent {snap.agent_id!r} has a negative norm, "
                                  "byte count or example count")
        score = min(max(float(snap.score), 0.0), 1.0)
        delta = 0.0 if snap.previous_score is None else float(snap.score - snap.previous_score)
        out = [score, min(max(delta, -1.0), 1.0)]
        out += [math.tanh(float(snap.metrics.get(m, 0.0)) / s) for m, s in self.metrics.items()]
        counts = [float(snap.skill_examples.get(s, 0.0)) for s in self.skills]
        total = sum(counts)
        out += [c / total if total > 0 else 0.0 for c in counts]
        out += [1.0 if snap.has_adapter else 0.0, math.tanh(snap.adapter_norm / self.norm_scale),
                min(math.log1p(snap.comm_bytes) / math.log1p(self.comm_scale), 1.0)]
        return np.array(out, dtype=np.float64)

    def snapshot(self, report: ReportLike) -> AgentSnapshot:
        """A snapshot of a round report; remembers its score as the agent's next ``previous_score``.

        The agent's skills are the builder's ``agent_skills`` (none for an agent
        it does not know); without the number of examples of each, they
        count equally; ``metrics["adapter_norm"]`` and ``metrics["comm_bytes"]``
        fill the adapter norm and communication cost when the report has them.
        Call it once per agent per round: each call moves the remembered score on.
        """
        metrics = dict(report.metrics)
        snap = AgentSnapshot(
            agent_id=report.agent_id, score=float(report.score),
            previous_score=self._previous.get(report.agent_id), metrics=metrics,
            skill_examples={s: 1.0 for s in self.agent_skills.get(report.agent_id, ())},
            has_adapter=report.adapter is not None,
            adapter_norm=float(metrics.get("adapter_norm", 0.0)),
            comm_bytes=float(metrics.get("comm_bytes", 0.0)))
        self._previous[report.agent_id] = float(report.score)
        return snap

    def state(self) -> dict[str, Any]:
        """The remembered scores (for score deltas), JSON-ready."""
        return {"previous": dict(self._previous)}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back remembered scores written by ``state``."""
        try:
            self._previous = {str(k): float(v) for k, v in state["previous"].items()}
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            raise MatchmakerError(f"bad profile builder state: {exc!r}") from exc
