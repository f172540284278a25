"""Interaction protocols and the protocol registry (installed as ``swarm.protocols``)."""
