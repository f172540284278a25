"""The coordinator's matchmaker, as agents reach it: profiles, partner choices, rewards.

Agents talk to each other host to host; whom to talk to is the matchmaker's
call, and the matchmaker lives in the coordinator. An agent (through its
host) publishes its profile (``Profile``: a vector summarising what it
knows), asks whom to ask (``Choose``, answered with a ``Pairing`` of
``(answerer, asker)`` pairs, best first, with their scores) and says what an
answer was worth (``Reward`` with the query's context). Every message is
checked against the peer it came from: an agent speaks only through the
host that joined with it.

Which profiles the matchmaker sees is the protocol's choice
(``Protocol.profile_dim``): ``None`` keeps the coordinator's profile builder
(skills and scores from the round reports); a length means the agents'
published vectors of that length, which agents publish again each round (a
restarted coordinator has none until they do).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from swarm.errors import MatchmakerError, SecurityError, SwarmError
from swarm.matching.matchmaker import Matchmaker
from swarm.matching.query import Query
from swarm.wire.codec import Choose, Message, Pairing, Profile, Reward

__all__ = ["PartnerService"]


class PartnerService:
    """Answers agents' ``Profile``, ``Choose`` and ``Reward`` messages with the matchmaker."""

    def __init__(self, matchmaker: Callable[[], Matchmaker], dim: int | None,
                 round_of: Callable[[], int]) -> None:
        self.matchmaker = matchmaker  # the coordinator's current one (restored on --resume)
        self.dim = dim
        self.round_of = round_of
        self.published: dict[str, np.ndarray] = {}
        self.choices = 0
        self.rewards = 0

    def profiles(self, built: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What the matchmaker sees: the agents' published vectors, or ``built`` ones."""
        return dict(self.published) if self.dim is not None else dict(built)

    def handle(self, msg: Message, agents_of_peer: set[str],
               built: Mapping[str, np.ndarray]) -> Message | None:
        """The answer to ``msg`` (a ``Pairing`` for a ``Choose``; None otherwise).

        Raises:
            SecurityError: the message speaks for an agent of another host.
            MatchmakerError: a bad profile, query or reward.
        """
        if isinstance(msg, Profile):
            self._own(msg.agent_id, agents_of_peer)
            self._profile(msg)
            return None
        if isinstance(msg, Choose):
            self._own(msg.asker, agents_of_peer)
            return self._choose(msg, built)
        if isinstance(msg, Reward):
            self._own(msg.student, agents_of_peer)
            self._reward(msg, built)
            return None
        raise SwarmError(f"not a matchmaking message: {type(msg).__name__}")

    @staticmethod
    def _own(agent: str, agents_of_peer: set[str]) -> None:
        if agent not in agents_of_peer:
            raise SecurityError(f"a message for agent {agent[:80]!r} came from a peer that "
                                f"does not hold it")

    def _profile(self, msg: Profile) -> None:
        if self.dim is None:
            raise MatchmakerError("this swarm's protocol builds profiles itself; agents do not "
                                  "publish them (Protocol.profile_dim is None)")
        vec = np.asarray(msg.vector, dtype=np.float64)
        if vec.shape != (self.dim,):
            raise MatchmakerError(f"profile of {msg.agent_id} has {vec.shape[0]} numbers, "
                                  f"the protocol's profiles have {self.dim}")
        self.published[msg.agent_id] = vec

    def _choose(self, msg: Choose, built: Mapping[str, np.ndarray]) -> Pairing:
        profiles = self.profiles(built)
        query = Query(asker=msg.asker, candidates=tuple(msg.candidates),
                      context=tuple(msg.context), k=msg.k)
        ranked = self.matchmaker().choose(query, profiles, max(self.round_of(), 0))
        self.choices += 1
        return Pairing(sender="coordinator", pairs=[(a, msg.asker) for a, _ in ranked],
                       scores=[s if math.isfinite(s) else 0.0 for _, s in ranked])

    def _reward(self, msg: Reward, built: Mapping[str, np.ndarray]) -> None:
        profiles = self.profiles(built)
        context = list(msg.context) if msg.context else None
        self.matchmaker().update((msg.teacher, msg.student), profiles, msg.value,
                                 context=context)
        self.rewards += 1
