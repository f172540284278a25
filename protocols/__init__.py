"""Interaction protocols and the protocol registry (installed as ``swarm.protocols``)."""

from swarm.protocols.base import Protocol, orient
from swarm.protocols.registry import PROTOCOLS, get_protocol, protocol

__all__ = ["Protocol", "orient", "PROTOCOLS", "get_protocol", "protocol"]
