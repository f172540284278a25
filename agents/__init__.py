"""Agents, built-in roles and the role registry (installed as ``swarm.agents``).

``AgentReport`` (what ``local_update`` returns) and ``PairOutcome`` (what
``learn_from`` returns) are the wire's own types, re-exported here: what an
agent returns is what its host sends, with no second type to convert to.
"""

from __future__ import annotations

import warnings
from typing import Any

from swarm.agents.base import Agent, AgentReport, AgentSpec, HostServices, PairOutcome
from swarm.agents.registry import ROLES, get_role, role
from swarm.agents.roles import Expert, Learner, Listener  # importing them registers them

__all__ = [
    "Agent",
    "AgentReport",
    "AgentSpec",
    "Expert",
    "HostServices",
    "Learner",
    "Listener",
    "PairOutcome",
    "ROLES",
    "get_role",
    "role",
]

_RENAMED = {"Report": AgentReport, "Outcome": PairOutcome}


def __getattr__(name: str) -> Any:
    """The deprecated names ``Report`` and ``Outcome``, with a warning (see CHANGELOG.md)."""
    if name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(f"swarm.agents.{name} is now swarm.agents.{new.__name__}",
                      DeprecationWarning, stacklevel=2)
        return new
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
