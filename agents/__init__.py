"""Agents, built-in roles and the role registry (installed as ``swarm.agents``)."""

from swarm.agents.base import Agent, AgentSpec, HostServices, Outcome, Report
from swarm.agents.registry import ROLES, get_role, role

__all__ = [
    "Agent",
    "AgentSpec",
    "HostServices",
    "Outcome",
    "Report",
    "ROLES",
    "get_role",
    "role",
]
