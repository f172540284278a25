"""What the coordinator keeps of its agents between commits: their graphs, states and words.

Hosts ship each step's message log and the knowledge graphs and role states
that changed (``StepDone.log``, ``StepDone.states``); the ``AgentLedger`` keeps
the entries one of the host's own agents took part in and the states of the
host's own agents (a host speaks for its agents only), remembers every
agent's latest state (read from the lineage at start) and hands back, for a
host incarnation's first step, what the lineage holds of its agents
(``Step.restore``). What changed in a round is committed with it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from swarm.wire.codec import AgentState, LogEntry, StepDone

__all__ = ["AgentLedger"]

log = logging.getLogger(__name__)


class AgentLedger:
    """Agents' latest states, and the round's changes and messages."""

    def __init__(self, states: Mapping[str, AgentState]) -> None:
        self.states: dict[str, AgentState] = dict(states)
        self.changed: set[str] = set()  # agents whose state changed this round
        self.messages: list[LogEntry] = []  # the round's agent messages

    def start_round(self) -> None:
        """Forget the last round's changes and messages (they were committed)."""
        self.changed, self.messages = set(), []

    def take(self, host: str, agents: Iterable[str], done: StepDone) -> None:
        """Keep what ``host`` (holding ``agents``) shipped with a step."""
        own = set(agents)
        self.messages.extend(e for e in done.log if e.sender in own or e.recipient in own)
        for agent, state in done.states.items():
            if agent not in own:
                log.warning("coordinator: host %s sent the state of %s, not its agent", host,
                            agent[:80])
                continue
            old = self.states.get(agent, AgentState())
            self.states[agent] = AgentState(
                kg=state.kg if state.kg is not None else old.kg,
                state=state.state if state.state is not None else old.state)
            self.changed.add(agent)

    def restore(self, agents: Iterable[str]) -> dict[str, AgentState]:
        """What is known of ``agents``' graphs and role states (a fresh host's ``restore``)."""
        out = {}
        for agent in agents:
            state = self.states.get(agent)
            if state is not None and (state.kg or state.state):
                out[agent] = state
        return out

    def round_changes(self) -> dict[str, AgentState]:
        """The states that changed this round, by agent (sorted)."""
        return {a: self.states[a] for a in sorted(self.changed)}
