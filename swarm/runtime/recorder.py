"""The lineage writer of one swarm run: each round the coordinator hands it is one commit batch.

The ``Recorder`` is the coordinator's single point of contact with the
lineage store (it is the sole writer). It owns no matchmaker and builds no
profiles: the coordinator owns both and hands over the matchmaker's state
to commit with each round. Each round is one atomic batch:

- a commit on ``agent/<id>`` for every agent whose adapter changed in the
  local step (its adapter pointer and profile);
- a merge commit on ``agent/<student>`` with ``agent/<teacher>`` as second
  parent for every exchange the student kept, so ``git log --graph --all``
  shows who learnt from whom;
- a commit on ``agent/<id>`` with ``agents/<id>/kg.json`` (its knowledge graph,
  node-link JSON) and ``agents/<id>/state.json`` (its role's state) for every
  agent whose graph or state changed (in the same commit as its adapter when
  both changed);
- a commit on ``swarm`` with ``rounds/<nnnnn>.json`` and ``rounds/latest.json``
  (pairings, rewards, scores), ``messages/<nnnnn>.json`` (the round's agent
  messages, as ``lineage.messages`` says) and ``matchmaker/state.json``;

and, in the same ref transaction, the held-out scores as git notes. A restarted coordinator
(``--resume``) reads the last round, the matchmaker state (``matchmaker_state``)
and every agent's last adapter back from the lineage.

The lineage keeps its adapters in the machine's adapter store
(``model.adapter_store``), the one the model server writes what it trains into:
a commit writes only the pointer (no weights are copied), and ``--resume``
finds every committed adapter where the hosts look for it (nothing is copied
back).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from swarm.config.schema import SwarmConfig
from swarm.errors import LineageError
from swarm.lineage.gitstore import GitLineageStore
from swarm.lineage.repo import (
    LATEST_ROUND_PATH,
    MATCHMAKER_PATH,
    SWARM_BRANCH,
    adapter_path,
    agent_branch,
    kg_path,
    messages_path,
    profile_path,
    round_path,
    state_path,
)
from swarm.lineage.store import LineageStore
from swarm.lineage.writer import CommitSpec
from swarm.runtime.events import skill_scores
from swarm.wire.codec import AgentReport, AgentState, LogEntry, PairOutcome

__all__ = ["Recorder"]


class Recorder:
    """The lineage writer of one run: rounds in, commits out."""

    def __init__(self, config: SwarmConfig, store: LineageStore, adapter_root: Path) -> None:
        self.config = config
        self.store = store
        self.adapter_root = adapter_root
        self._committed: dict[str, str] = {}  # agent -> adapter sha at its branch tip

    @property
    def path(self) -> Path:
        """The lineage directory."""
        return self.store.path

    @classmethod
    def open(cls, config: SwarmConfig) -> Recorder:
        """Open (or create) the lineage of ``config`` and read which adapters it holds."""
        store = GitLineageStore.open(config.lineage_dir, create=True,
                                     adapter_store=config.adapter_store)
        recorder = cls(config, store, config.adapter_store)
        recorder._committed = recorder.adapters()
        return recorder

    def adapters(self) -> dict[str, str]:
        """Each agent's last committed adapter sha (already in the machine's store: nothing is copied).

        Raises:
            LineageError: a committed adapter is missing from the store.
        """
        out: dict[str, str] = {}
        for ref in self.store.refs("refs/heads/agent/"):
            agent = ref.removeprefix("refs/heads/agent/")
            pointer = _read_json(self.store, agent_branch(agent), adapter_path(agent))
            if pointer is None:
                continue
            sha = str(pointer["sha256"])
            if not self.store.adapters.has(sha):
                raise LineageError(f"adapter {sha} committed on {agent_branch(agent)} is missing "
                                   f"from the adapter store {self.store.adapters.root} "
                                   f"(swarm lineage fsck -C {self.store.path} lists what is lost)")
            out[agent] = sha
        return out

    def next_round(self) -> int:
        """The first round not yet committed (0 for a new lineage)."""
        record = _read_json(self.store, SWARM_BRANCH, LATEST_ROUND_PATH)
        return 0 if record is None else int(record["round"]) + 1

    def history(self) -> list[dict[str, Any]]:
        """Every committed round record, in order."""
        last = self.next_round()
        records = (_read_json(self.store, SWARM_BRANCH, round_path(r)) for r in range(last))
        return [r for r in records if r is not None]

    def matchmaker_state(self) -> dict[str, Any] | None:
        """The matchmaker state committed with the last round (None for a new lineage)."""
        state = _read_json(self.store, SWARM_BRANCH, MATCHMAKER_PATH)
        if state is None or isinstance(state, dict):
            return state
        raise LineageError(f"{MATCHMAKER_PATH} on {SWARM_BRANCH} is not a JSON object")

    def agent_states(self) -> dict[str, AgentState]:
        """Each agent's committed knowledge graph and role state (JSON text), at its branch tip."""
        out: dict[str, AgentState] = {}
        for ref in self.store.refs("refs/heads/agent/"):
            agent = ref.removeprefix("refs/heads/agent/")
            kg = _read_text(self.store, agent_branch(agent), kg_path(agent))
            state = _read_text(self.store, agent_branch(agent), state_path(agent))
            if kg is not None or state is not None:
                out[agent] = AgentState(kg=kg, state=state)
        return out

    def commit_round(self, rnd: int, reports: Mapping[str, AgentReport],
                     outcomes: Sequence[PairOutcome], record: Mapping[str, Any],
                     matchmaker_state: Mapping[str, Any],
                     states: Mapping[str, AgentState] | None = None,
                     messages: Sequence[LogEntry] = ()) -> None:
        """Commit one round and its score notes in one atomic transaction (module docstring).

        ``matchmaker_state`` is the coordinator's matchmaker after the round's
        rewards, committed as ``matchmaker/state.json``; ``states`` the graphs and role
        states that changed this round; ``messages`` the round's agent messages.
        Nothing is remembered as committed unless the whole transaction landed,
        so a failed round can be committed again as it was.
        """
        specs: list[CommitSpec] = []
        committed = dict(self._committed)
        for agent, report in sorted(reports.items()):
            if report.adapter and report.adapter != committed.get(agent):
                parents = [committed[agent]] if agent in committed else []
                pointer = self._pointer(report.adapter, agent, rnd, parents)
                specs.append(CommitSpec(
                    agent_branch(agent),
                    self._files(agent, pointer, report.score, rnd, skill_scores(report.metrics)),
                    f"round {rnd}: {agent} trained on its local data (score {report.score:.3f})"))
                committed[agent] = report.adapter
        lessons: dict[str, list[PairOutcome]] = {}  # several teachers: one commit, many parents
        for o in outcomes:
            if o.accepted and o.adapter and o.adapter != committed.get(o.student):
                lessons.setdefault(o.student, []).append(o)
        for student, taken in lessons.items():
            first = taken[0]
            after = first.after if first.kept_score is None else first.kept_score
            parents = list(dict.fromkeys(p for o in taken for p in o.parents))
            pointer = self._pointer(first.adapter or "", student, rnd, parents)
            teachers = ", ".join(o.teacher for o in taken)
            specs.append(CommitSpec(
                agent_branch(student), self._files(student, pointer, after, rnd, first.skills),
                f"round {rnd}: {student} learnt from {teachers} "
                f"(score {first.before:.3f} -> {after:.3f})",
                parents=[agent_branch(student), *(agent_branch(o.teacher) for o in taken)]))
            committed[student] = first.adapter or ""
        self._add_states(specs, states or {}, rnd)
        body = dict(record)
        kept = self._kept(messages)
        swarm_files: dict[str, Any] = {round_path(rnd): body, LATEST_ROUND_PATH: body,
                                       MATCHMAKER_PATH: dict(matchmaker_state)}
        if kept is not None:
            swarm_files[messages_path(rnd)] = {
                "round": rnd, "total": len(messages), "kept": len(kept),
                "policy": self.config.lineage.messages,
                "messages": [msgspec.to_builtins(e) for e in kept]}
        specs.append(CommitSpec(SWARM_BRANCH, swarm_files,
                                f"round {rnd}: mean score {record['mean_score']:.3f}, "
                                f"{len(outcomes)} exchange(s), {len(messages)} message(s)"))
        notes = {i: {"round": rnd, "score": _score_of(spec)} for i, spec in enumerate(specs)
                 if spec.branch != SWARM_BRANCH}
        self.store.commit_many(specs, notes=notes)
        self._committed = committed

    def _add_states(self, specs: list[CommitSpec], states: Mapping[str, AgentState],
                    rnd: int) -> None:
        """Put each changed graph and state into the agent's first commit of the round (or a new one)."""
        first = {spec.branch: i for i, spec in reversed(list(enumerate(specs)))}
        for agent, state in sorted(states.items()):
            files: dict[str, Any] = {}
            if state.kg is not None:
                files[kg_path(agent)] = state.kg
            if state.state is not None:
                files[state_path(agent)] = state.state
            if not files:
                continue
            branch = agent_branch(agent)
            if branch in first:
                i = first[branch]
                specs[i] = dataclasses.replace(specs[i], files={**specs[i].files, **files})
            else:
                specs.append(CommitSpec(branch, files, f"round {rnd}: {agent}'s knowledge and "
                                                       f"state"))

    def _kept(self, messages: Sequence[LogEntry]) -> list[LogEntry] | None:
        """The round's messages the lineage keeps (``lineage.messages``); None: none at all."""
        section = self.config.lineage
        if section.messages == "none":
            return None
        if section.messages == "sample":
            cut = int(section.sample_fraction * (1 << 32))
            messages = [m for m in messages
                        if int.from_bytes(hashlib.sha256(m.msg_id.encode()).digest()[:4],
                                          "big") < cut]
        return list(messages[:section.max_messages])

    def _pointer(self, sha: str, agent: str, rnd: int, parents: list[str]) -> dict[str, Any]:
        return self.store.pointer(sha, {"parents": parents, "agent": agent, "round": rnd,
                                        "base_model": self.config.model.path})

    @staticmethod
    def _files(agent: str, pointer: Mapping[str, Any], score: float, rnd: int,
               skills: Mapping[str, float]) -> dict[str, Any]:
        profile = {"round": rnd, "score": score, **({"skills": dict(skills)} if skills else {})}
        return {adapter_path(agent): pointer, profile_path(agent): profile}

    def close(self) -> None:
        """Flush and release the lineage."""
        self.store.close()


def _score_of(spec: CommitSpec) -> float:
    for path, value in spec.files.items():
        if path.endswith("profile.json") and isinstance(value, Mapping):
            return float(value["score"])
    return float("nan")


def _read_text(store: Any, ref: str, path: str) -> str | None:
    try:
        return bytes(store.show(ref, path)).decode()
    except LineageError:
        return None


def _read_json(store: Any, ref: str, path: str) -> Any:
    try:
        return json.loads(store.show(ref, path))
    except LineageError:
        return None

