"""Agents, built-in roles and the role registry (installed as ``swarm.agents``).

``AgentReport`` (what ``local_update`` returns) and ``PairOutcome`` (what
``learn_from`` returns) are the wire's own types, re-exported here: what an
agent returns is what its host sends, with no second type to convert to.
"""

from __future__ import annotations

import warnings
from typing import Any

from swarm.agents.base import Agent, AgentReport, AgentSpec, PairOutcome
from swarm.agents.byzantine import Byzantine, ByzantineSettings
from swarm.agents.context import OWN, AgentContext
from swarm.agents.registry import ROLES, get_role, role
from swarm.agents.roles import Expert, Learner, Listener  # importing them registers them
from swarm.agents.talk import MESSAGES, handles, message
from swarm.agents.tools import Tool, Toolbox, tool

__all__ = [
    "Agent",
    "AgentContext",
    "AgentReport",
    "AgentSpec",
    "Byzantine",
    "ByzantineSettings",
    "Expert",
    "Learner",
    "Listener",
    "MESSAGES",
    "OWN",
    "PairOutcome",
    "ROLES",
    "Tool",
    "Toolbox",
    "get_role",
    "handles",
    "message",
    "role",
    "tool",
]

_RENAMED = {"Report": AgentReport, "Outcome": PairOutcome}


def __getattr__(name: str) -> Any:
    """The deprecated names ``Report`` and ``Outcome``, with a warning (see CHANGELOG.md)."""
    if name == "HostServices":
        raise ImportError("swarm.agents.HostServices is gone: role hooks take the agent context "
                          "now (local_update(self, ctx), learn_from(self, teacher, "
                          "teacher_adapter, ctx, *, weight)); type it as "
                          "swarm.agents.AgentContext (see CHANGELOG.md)")
    if name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(f"swarm.agents.{name} is now swarm.agents.{new.__name__}",
                      DeprecationWarning, stacklevel=2)
        return new
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
