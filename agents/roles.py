"""Built-in roles.

- ``learner``: trains its adapter on its local data every round and takes
  knowledge from the teachers it is paired with (the default).
- ``expert``: trains on its local data but never takes knowledge; it only
  teaches (a fixed specialist in the swarm).
- ``listener``: never trains; it only takes knowledge from teachers (a
  newcomer with no local data worth training on).
"""

from __future__ import annotations

from swarm.agents.base import Agent
from swarm.agents.registry import role

__all__ = ["Learner", "Expert", "Listener"]


@role("learner")
class Learner(Agent):
    """Trains locally and learns from teachers."""

    __slots__ = ()


@role("expert")
class Expert(Agent):
    """Trains locally, never takes knowledge from others."""

    __slots__ = ()
    learns = False


@role("listener")
class Listener(Agent):
    """Never trains; learns only from teachers."""

    __slots__ = ()
    trains = False
