"""Agent base class, built-in roles and the role registry (installed as ``swarm.agents``)."""
